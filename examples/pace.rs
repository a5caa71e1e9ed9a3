//! The benchmark's fixed-rate client: POSTs one body over HTTPS (HTTP/1.1, keep-alive) at evenly
//! spaced instants, open loop, and prints each request's latency. A bench tool, not a product
//! binary: `bench/run.sh` and `bench/compare.sh` drive the webhook and the floor with it.
//!
//! h2load's `--rps` does not space requests evenly: at 1000 req/s over 10 connections most of its
//! requests leave two to four at once, and the median one waits behind another's answer
//! (bench/README.md, "Pacing"). Here connection `k` of `C` (one thread each) sends request `j` at
//! `start + (k + C·j) / rate`: one request every `1 / rate` over all connections. Each thread
//! sleeps to just before its instant and spins the rest: blocking I/O on a thread of its own, not
//! an async client, whose timers tick in milliseconds. A latency is measured from the instant the
//! request was due, not the one it was sent, so a late answer that delays the next request is
//! charged to the server (no coordinated omission).
//!
//! ```text
//! cargo build --release --example pace
//! target/release/examples/pace --connect 127.0.0.1:9443 --ca ca.crt --body review.json \
//!   --rate 1000 --connections 1 --seconds 5 > latencies.txt
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};

/// The client's command line.
#[derive(Parser)]
struct Args {
    /// The server's address.
    #[clap(long)]
    connect: SocketAddr,
    /// PEM CA that signed the server's certificate (its SANs must include the address's IP).
    #[clap(long)]
    ca: PathBuf,
    /// The request body (JSON), sent as `POST PATH`.
    #[clap(long)]
    body: PathBuf,
    /// The request path.
    #[clap(long, default_value = "/mutate")]
    path: String,
    /// Requests a second, over all connections.
    #[clap(long, value_parser = clap::value_parser!(u32).range(1..))]
    rate: u32,
    /// Connections, each on its own thread, taking the instants in turn.
    #[clap(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// How long to send at the rate. Every latency is printed, one per line, in microseconds; on
    /// stderr, how many were answered at what rate.
    #[clap(long, default_value_t = 5.0)]
    seconds: f64,
    /// Requests sent back to back on each connection before the paced ones (not printed).
    #[clap(long, default_value_t = 200)]
    warm_up: u32,
}

/// How long before its instant a thread stops sleeping and spins, at most: more than a sleeping
/// thread's timer slack (50 µs) and wake-up on this VM. At high rates less, so that the threads'
/// spinning takes at most half the client's core.
const SPIN: Duration = Duration::from_micros(150);

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&args.ca).context("cannot read --ca")? {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let body = std::fs::read(&args.body).context("cannot read --body")?;
    let mut request = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        args.path,
        args.connect,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);

    let mut connections = Vec::new();
    for _ in 0..args.connections {
        let mut connection = Connection::open(args.connect, config.clone())?;
        for _ in 0..args.warm_up {
            connection.exchange(&request)?;
        }
        connections.push(connection);
    }
    let interval = Duration::from_secs(1) / args.rate;
    let spin = SPIN.min(interval / 2);
    let count = (args.seconds * f64::from(args.rate)) as u32 / args.connections;
    let start = Instant::now() + Duration::from_millis(10);
    let threads: Vec<_> = connections
        .into_iter()
        .zip(0..)
        .map(|(mut connection, k)| {
            let request = request.clone();
            let step = interval * args.connections;
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let mut latencies = Vec::with_capacity(count as usize);
                for j in 0..count {
                    let due = start + interval * k + step * j;
                    wait_until(due, spin);
                    connection.exchange(&request)?;
                    latencies.push(due.elapsed());
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for thread in threads {
        latencies.extend(
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??,
        );
    }
    // The rate reached: behind a server slower than the rate, the last answers come late.
    let seconds = start.elapsed().as_secs_f64();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for latency in &latencies {
        writeln!(out, "{}", latency.as_micros())?;
    }
    out.flush()?;
    let answered = latencies.len();
    eprintln!(
        "{answered} answered in {seconds:.3} s: {:.0} req/s",
        answered as f64 / seconds
    );
    Ok(())
}

/// Sleeps until `spin` before `due`, then spins to it, letting other threads run meanwhile.
fn wait_until(due: Instant, spin: Duration) {
    let now = Instant::now();
    if due > now + spin {
        std::thread::sleep(due - now - spin);
    }
    while Instant::now() < due {
        std::thread::yield_now();
    }
}

/// One keep-alive HTTPS connection.
struct Connection {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buffer: Vec<u8>,
}

impl Connection {
    fn open(address: SocketAddr, config: Arc<rustls::ClientConfig>) -> anyhow::Result<Self> {
        let tcp =
            TcpStream::connect(address).with_context(|| format!("cannot connect to {address}"))?;
        tcp.set_nodelay(true)?;
        let tls =
            rustls::ClientConnection::new(config, ServerName::IpAddress(address.ip().into()))?;
        Ok(Self {
            stream: rustls::StreamOwned::new(tls, tcp),
            buffer: Vec::with_capacity(16 * 1024),
        })
    }

    /// Sends `request` and reads the whole answer, which must be a 200 with a content-length.
    fn exchange(&mut self, request: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(request)?;
        self.buffer.clear();
        let end = loop {
            self.read_more()?;
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = response.parse(&self.buffer)? {
                if response.code != Some(200) {
                    bail!("answered {:?}", response.code);
                }
                let length = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                    .context("an answer without content-length")?;
                break head + length;
            }
        };
        while self.buffer.len() < end {
            self.read_more()?;
        }
        Ok(())
    }

    /// Appends what the server has sent to the buffer, waiting for at least one byte.
    fn read_more(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0; 16 * 1024];
        let read = self.stream.read(&mut chunk)?;
        ensure!(read > 0, "the server closed the connection");
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}
