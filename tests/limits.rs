//! The accept loop's caps on both listeners, over real sockets on 127.0.0.1 (the webhook's HTTPS
//! port with the real router, the admin port with the real admin router): request heads far past
//! the head-size cap, idle connections past the idle limit, and more connections than the
//! connection caps. A well-behaved client runs alongside and must be served throughout.
//!
//! Clients connect from several loopback addresses (127.0.1.x, 127.0.2.x), as pods would from
//! their own, so the per-address cap applies as it would in a cluster; the well-behaved client
//! connects from 127.0.0.1. The server, the well-behaved client and the attackers each run on a
//! tokio runtime of their own, as separate processes would: on one runtime the well-behaved
//! client's tasks would queue behind hundreds of attacking ones, and the latencies would measure
//! this process's scheduling rather than the server. Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use dualstack_webhook::metrics::Metrics;
use dualstack_webhook::server::admin::{self, Readiness};
use dualstack_webhook::server::{self, MAX_CONNECTIONS_PER_IP, ServerOptions};
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One test at a time: memory readings of this process mean nothing while another test in it
/// allocates, and latencies mean little while another floods the same two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A multi-threaded tokio runtime on threads of its own, shut down when dropped.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn new(threads: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .unwrap();
        Self(Some(runtime))
    }

    fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.as_ref().unwrap().spawn(future)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async test may not do.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The webhook (the real router over TLS, `serve_tls`) on a runtime of its own (two threads, the
/// server's two cores), and a client configuration trusting it.
async fn webhook_on(
    runtime: &Runtime,
    dir: &std::path::Path,
    options: ServerOptions,
) -> (Webhook, Arc<rustls::ClientConfig>) {
    let dir = dir.to_owned();
    runtime
        .spawn(async move { start_in(&dir, options).await })
        .await
        .unwrap()
}

/// What a well-behaved client's answers must come within, at the 99th percentile.
const P99: Duration = Duration::from_millis(50);

/// The listeners' options as a cluster would see these tests' clients: each 127.0.0.0/8 address
/// stands for a pod, so loopback clients are not exempt from the per-address cap.
fn as_pods(options: ServerOptions) -> ServerOptions {
    ServerOptions {
        loopback_exempt_from_per_ip: false,
        ..options
    }
}

/// A loopback address for attacking client `i`, `per_address` clients to each (127.0.1.1 on).
fn source(i: usize, per_address: usize) -> IpAddr {
    let n = i / per_address;
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        1 + (n / 250) as u8,
        1 + (n % 250) as u8,
    ))
}

/// A TCP connection to `addr` from `ip` (any 127/8 address is this host's), without Nagle's
/// delay, as Go's clients (kube-apiserver's, Prometheus's) and the kubelet connect: with it, a
/// request written in two pieces waits for the server's delayed ACK (40 ms).
async fn tcp_from(ip: IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ip, 0))?;
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// The well-behaved client's address.
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A TLS connection (HTTP/1.1 or HTTP/2, as `config` offers) to `addr` from `ip`.
async fn tls_from(
    ip: IpAddr,
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = tcp_from(ip, addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// Reads until EOF or an error, or until `deadline`: what arrived, and when the peer closed
/// (`None`: still open at the deadline).
async fn closed_by<S: AsyncRead + Unpin>(
    stream: &mut S,
    deadline: Instant,
) -> (Vec<u8>, Option<Instant>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await;
        match read {
            Ok(Ok(0) | Err(_)) => return (got, Some(Instant::now())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, None),
        }
    }
}

/// The status and body of a GET on a new HTTP/1.1 connection over `io`.
async fn h1_get<S>(io: S, path: &str) -> Result<(StatusCode, Bytes), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    get(&mut sender, path).await
}

type H1Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn get(sender: &mut H1Sender, path: &str) -> Result<(StatusCode, Bytes), hyper::Error> {
    sender.ready().await?;
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await?;
    let status = response.status();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

// === the servers ===

/// The admin router behind `serve_plain` on 127.0.0.1:0.
struct AdminServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<io::Result<()>>,
}

async fn start_admin(options: ServerOptions) -> AdminServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut registry = Registry::default();
    let _metrics = Metrics::register(&mut registry);
    let readiness = Readiness::default();
    readiness.set_ready();
    let app = admin::router(Arc::new(registry), readiness);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server::serve_plain(
        listener,
        app,
        options,
        shutdown.clone(),
    ));
    AdminServer {
        addr,
        shutdown,
        task,
    }
}

/// The admin server on a runtime of its own.
async fn admin_on(runtime: &Runtime, options: ServerOptions) -> AdminServer {
    runtime.spawn(start_admin(options)).await.unwrap()
}

impl AdminServer {
    async fn stop(self) {
        self.shutdown.cancel();
        bounded("serve_plain to return", self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// `GET /healthz` on a new connection from 127.0.0.1, as the kubelet probes.
async fn probe_admin(addr: SocketAddr) -> Result<(), String> {
    let tcp = tcp_from(LOCALHOST, addr).await.map_err(|e| e.to_string())?;
    match h1_get(tcp, "/healthz").await {
        Ok((StatusCode::OK, body)) if body == "ok\n" => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// `POST /mutate` with the review on a new TLS connection from 127.0.0.1: a full handshake per
/// request, so the well-behaved client needs the accept loop too.
async fn probe_webhook(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Result<(), String> {
    let stream = tls_from(LOCALHOST, addr, config)
        .await
        .map_err(|e| e.to_string())?;
    match h1_post(stream, "/mutate", REVIEW).await {
        Ok((status, body)) if is_good_answer(status, &body) => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// A request on one HTTP/2 connection that is kept (connected now), posting the review:
/// kube-apiserver's way.
async fn steady_webhook(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> impl FnMut() -> BoxFuture<'static, Result<(), String>> + Send + 'static {
    let stream = tls_from(LOCALHOST, addr, with_alpn(&config, H2))
        .await
        .unwrap();
    let sender = h2_client(stream).await.unwrap();
    move || {
        let mut sender = sender.clone();
        Box::pin(async move {
            match h2_post(&mut sender, "/mutate", REVIEW).await {
                Ok((status, body)) if is_good_answer(status, &body) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
    }
}

/// A request on one HTTP/1.1 connection that is kept (connected now), getting `/metrics`:
/// Prometheus's way (asked every 10 ms, so never idle for long).
async fn steady_admin(
    addr: SocketAddr,
) -> impl FnMut() -> BoxFuture<'static, Result<(), String>> + Send + 'static {
    let tcp = tcp_from(LOCALHOST, addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let sender = Arc::new(tokio::sync::Mutex::new(sender));
    move || {
        let sender = sender.clone();
        Box::pin(async move {
            match get(&mut *sender.lock().await, "/metrics").await {
                Ok((StatusCode::OK, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
    }
}

// === the well-behaved client, timed ===

/// What a [`Timed`] client saw.
#[derive(Debug, Default)]
struct Latencies {
    times: Vec<Duration>,
    errors: Vec<String>,
}

impl Latencies {
    fn p99(&self) -> Duration {
        let mut times = self.times.clone();
        times.sort();
        let rank = (times.len() * 99).div_ceil(100).max(1);
        times[rank - 1]
    }

    /// Asserts every request was answered, at least `min` of them, with a p99 under [`P99`].
    fn assert_served(&self, min: usize) {
        let p99 = self.assert_answered(min, BOUND);
        assert!(p99 < P99, "p99 {p99:?} over {} answers", self.times.len());
    }

    /// Asserts every request was answered, at least `min` of them, each within `slowest`;
    /// returns the p99.
    fn assert_answered(&self, min: usize, slowest: Duration) -> Duration {
        assert!(self.errors.is_empty(), "failed requests: {:?}", self.errors);
        assert!(self.times.len() >= min, "only {} answers", self.times.len());
        let mut sorted = self.times.clone();
        sorted.sort();
        let (p50, p99, max) = (
            sorted[sorted.len() / 2],
            self.p99(),
            sorted[sorted.len() - 1],
        );
        let n = sorted.len();
        eprintln!("well-behaved client: {n} answers, p50 {p50:?}, p99 {p99:?}, slowest {max:?}");
        assert!(max < slowest, "an answer took {max:?}");
        p99
    }
}

/// A well-behaved client that repeats a request until stopped, timing each.
struct Timed {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Latencies>,
}

impl Timed {
    /// Starts a client on a connection it keeps (`setup` connects and returns the request):
    /// it asks every 2 ms, so that even a short flood sees many of its requests.
    async fn steady<F, Fut>(
        runtime: &Runtime,
        setup: impl Future<Output = F> + Send + 'static,
    ) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send,
    {
        Self::start(runtime, setup, Duration::from_millis(2)).await
    }

    /// Starts a client that opens a new connection for each request (`request`), every 10 ms.
    async fn fresh<F, Fut>(runtime: &Runtime, request: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send,
    {
        Self::start(runtime, async { request }, Duration::from_millis(10)).await
    }

    /// Runs `setup` on `runtime`, then the request it returns every `every` until stopped;
    /// returns once the setup is done.
    async fn start<F, Fut>(
        runtime: &Runtime,
        setup: impl Future<Output = F> + Send + 'static,
        every: Duration,
    ) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        let task = runtime.spawn(async move {
            let mut request = setup.await;
            let _ = ready.send(());
            let mut seen = Latencies::default();
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                match tokio::time::timeout(BOUND, request()).await {
                    Ok(Ok(())) => seen.times.push(started.elapsed()),
                    Ok(Err(error)) => seen.errors.push(error),
                    Err(_) => seen.errors.push(format!("no answer within {BOUND:?}")),
                }
                tokio::time::sleep(every).await;
            }
            seen
        });
        bounded("the well-behaved client to connect", is_ready)
            .await
            .unwrap();
        Self { stop, task }
    }

    /// Stops the client and returns what it saw.
    async fn finish(self) -> Latencies {
        self.stop.store(true, Ordering::Relaxed);
        bounded("the well-behaved client to stop", self.task)
            .await
            .unwrap()
    }
}

// === memory ===

/// User and system CPU time of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may contain spaces) start at field 3; utime and
    // stime are fields 14 and 15, in clock ticks (100 a second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

// === (a) request heads of 390 KB ===

/// Connections in each flood: the report's 300, from 50 addresses (6 each, under both listeners'
/// per-address caps).
const FLOOD: usize = 300;
const FLOOD_PER_ADDRESS: usize = 6;

/// The length of each partial request head: the report's 390 KB, under hyper's default cap of
/// about 400 KiB, so that without a cap of its own the server keeps all of it.
const HEAD_LEN: usize = 390 * 1000;

/// Bytes of header padding, shared by every client (the clients run in this process too, and
/// must not hold 300 copies of the head).
static PAD: [u8; 16 * 1024] = [b'a'; 16 * 1024];

/// What a flooding client saw: what the server answered, and how long after the client began
/// the server closed the connection (`None`: still open at the deadline).
type Flooded = (Vec<u8>, Option<Duration>);

/// Sends the start of a request head of [`HEAD_LEN`] bytes that never ends, and waits for the
/// server to close the connection.
async fn partial_head<S: AsyncRead + AsyncWrite + Unpin>(stream: S, deadline: Instant) -> Flooded {
    let started = Instant::now();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut sent = 0;
    // Writes until the server stops taking bytes (a server that neither reads nor closes would
    // stall the writes); meanwhile reads until it closes. Once it has closed, writing on would
    // only burn this process's CPU, which the well-behaved client needs.
    let write = async {
        let start = b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nX-Pad: ";
        if writer.write_all(start).await.is_ok() {
            while sent < HEAD_LEN {
                let n = PAD.len().min(HEAD_LEN - sent);
                if writer.write_all(&PAD[..n]).await.is_err() {
                    break;
                }
                sent += n;
            }
            let _ = writer.flush().await;
        }
        // Keep the write half open: the read decides when this client is done.
        std::future::pending::<()>().await;
    };
    let (answer, closed) = tokio::select! {
        () = write => unreachable!("pending"),
        read = closed_by(&mut reader, deadline) => read,
    };
    (answer, closed.map(|at| at - started))
}

/// A connection of any kind, TLS or not.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Over how long the flooding clients start sending their heads, one after another (about one
/// every 2 ms). All [`FLOOD`] connections are open before the first byte, and without a head cap
/// all of them hold their head at the end. Sent in the same instant, 300 heads are 300 of this
/// process's tasks doing 16 KiB of TLS and socket work each on the two cores the server shares
/// with them, in a debug build: that would measure this process's scheduling more than the
/// server.
const SPREAD: Duration = Duration::from_millis(600);

/// Floods a listener with [`FLOOD`] clients sending partial heads of [`HEAD_LEN`] bytes (started
/// over [`SPREAD`]) while two well-behaved clients run, and asserts that memory grows by less
/// than `max_growth_kib`, that every connection is closed at the head cap (well before the
/// header timeout), and that both clients are served. `clients` starts them, once the flood's
/// connections are open: `steady` on a connection it keeps (the API server's way, and
/// Prometheus's), and `fresh` on a new connection each time (the kubelet's way). Both must be
/// answered with a p99 under [`P99`].
///
/// `connect(i)` opens flooding client `i`'s connection. All are open (TLS handshakes done)
/// before any sends a byte of its head: a flood of handshakes is another test's
/// (tests/hostile.rs).
async fn head_flood<C, Fut>(
    what: &str,
    connect: C,
    timeout: Duration,
    max_growth_kib: u64,
    clients: impl Future<Output = (Timed, Timed)>,
) where
    C: Fn(usize) -> Fut,
    Fut: Future<Output = Box<dyn Io>> + Send + 'static,
{
    // Warm up (allocator arenas, TLS sessions) with a small flood before the reading.
    let warm_up: Vec<_> = (0..10).map(|i| tokio::spawn(connect(i))).collect();
    let mut warm = Vec::new();
    for conn in warm_up {
        let conn = bounded("warm-up connect", conn).await.unwrap();
        warm.push(tokio::spawn(partial_head(
            conn,
            Instant::now() + timeout * 2,
        )));
    }
    for client in warm {
        bounded("warm-up", client).await.unwrap();
    }
    let conns: Vec<_> = (0..FLOOD).map(|i| tokio::spawn(connect(i))).collect();
    let mut first = Vec::new();
    for conn in conns {
        first.push(bounded("a flooding client to connect", conn).await.unwrap());
    }
    let (steady, fresh) = clients.await;

    let before = rss_kib();
    reset_hwm();
    let cpu = cpu_time();
    let started = Instant::now();
    // A connection still open this long after the last head started is held by the server.
    let deadline = started + SPREAD + timeout + Duration::from_secs(1);
    let floods: Vec<_> = (first.into_iter().enumerate())
        .map(|(i, conn)| {
            let start = started + SPREAD * i as u32 / FLOOD as u32;
            tokio::spawn(async move {
                tokio::time::sleep_until(start.into()).await;
                partial_head(conn, deadline).await
            })
        })
        .collect();
    let mut open = 0;
    let mut slowest = Duration::ZERO;
    for flood in floods {
        let (answer, closed) = bounded("a flooding client", flood).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        // Nothing but a 431 (when it arrives before the reset): never an answer.
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431 "),
            "{what}: {answer}"
        );
        match closed {
            Some(after) => slowest = slowest.max(after),
            None => open += 1,
        }
    }
    let (peak, after, cpu) = (vm_hwm_kib(), rss_kib(), cpu_time() - cpu);
    let (steady, fresh) = (steady.finish().await, fresh.finish().await);
    eprintln!(
        "{what}: {FLOOD} partial heads in {:?}, {open} connections still open at the end, the \
         others closed at most {slowest:?} after their first byte; rss before {before} KiB, \
         peak {peak} KiB (+{} KiB), after {after} KiB; {cpu:?} of CPU",
        started.elapsed(),
        peak.saturating_sub(before),
    );
    assert!(
        peak < before + max_growth_kib,
        "{what}: peak RSS {peak} KiB, {before} KiB before: over the {max_growth_kib} KiB bound"
    );
    assert_eq!(open, 0, "{what}: connections held");
    assert!(
        slowest < timeout / 2,
        "{what}: closed only after {slowest:?}"
    );
    steady.assert_served(50);
    fresh.assert_served(20);
}

/// What a flood may add to this process's peak RSS, in KiB, when the listener holds at most
/// `cap` connections.
///
/// The server: a connection holds at most 80 KiB while its head arrives (TLS state, a head of up
/// to `MAX_HEAD_BYTES`, hyper's buffers, the task: the module doc of
/// `dualstack_webhook::server::https`), and at most 300 are open (all of the flood): 23.4 MiB.
/// The clients, in this process too: a task, a socket and (for TLS) a rustls client each, at most
/// 32 KiB: 9.4 MiB. Plus 4 MiB for the allocator: 37 MiB. Without a head cap of its own the
/// server alone holds 300 × 390 KB ≈ 112 MiB.
fn flood_max_growth_kib(cap: usize) -> u64 {
    const CONN_KIB: usize = 80;
    const CLIENT_KIB: usize = 32;
    (cap.min(FLOOD) * CONN_KIB + FLOOD * CLIENT_KIB + 4 * 1024) as u64
}

/// Options for the floods: a header timeout well past how long the head cap takes (so the cap is
/// what closes the connections), and room for every flooding connection at once (the webhook
/// port has it, the admin port's cap is raised), so that all 300 may hold a head at the same
/// time: the worst case for memory. (Connections past the cap are the (c) tests' business.)
fn flood_options(base: ServerOptions) -> ServerOptions {
    ServerOptions {
        header_read_timeout: Duration::from_secs(3),
        max_connections: base.max_connections.max(FLOOD + 8),
        ..base
    }
}

#[tokio::test]
async fn partial_heads_of_390_kb_are_cut_off_at_the_head_cap_on_the_webhook_port() {
    let _serial = SERIAL.lock().await;
    let (server_runtime, client_runtime) = (Runtime::new(2), Runtime::new(1));
    let dir = tempfile::tempdir().unwrap();
    let options = flood_options(as_pods(ServerOptions::default()));
    let (webhook, config) = webhook_on(&server_runtime, dir.path(), options).await;
    let addr = webhook.addr;
    let flood_config = with_alpn(&config, H1);
    let connect = move |i: usize| {
        let config = flood_config.clone();
        async move {
            let tls = tls_from(source(i, FLOOD_PER_ADDRESS), addr, config);
            Box::new(tls.await.unwrap()) as Box<dyn Io>
        }
    };
    let clients = async {
        let steady = Timed::steady(&client_runtime, steady_webhook(addr, config.clone()));
        let fresh = Timed::fresh(&client_runtime, move || probe_webhook(addr, config.clone()));
        (steady.await, fresh.await)
    };
    let max_growth = flood_max_growth_kib(options.max_connections);
    let timeout = options.header_read_timeout;
    head_flood("webhook port", connect, timeout, max_growth, clients).await;
    webhook.stop().await;
}

#[tokio::test]
async fn partial_heads_of_390_kb_are_cut_off_at_the_head_cap_on_the_admin_port() {
    let _serial = SERIAL.lock().await;
    let (server_runtime, client_runtime) = (Runtime::new(2), Runtime::new(1));
    let options = flood_options(as_pods(ServerOptions::admin()));
    let admin = admin_on(&server_runtime, options).await;
    let addr = admin.addr;
    let connect = move |i: usize| async move {
        let tcp = tcp_from(source(i, FLOOD_PER_ADDRESS), addr).await.unwrap();
        Box::new(tcp) as Box<dyn Io>
    };
    let clients = async {
        let steady = Timed::steady(&client_runtime, steady_admin(addr));
        let fresh = Timed::fresh(&client_runtime, move || probe_admin(addr));
        (steady.await, fresh.await)
    };
    let max_growth = flood_max_growth_kib(options.max_connections);
    let timeout = options.header_read_timeout;
    head_flood("admin port", connect, timeout, max_growth, clients).await;
    admin.stop().await;
}

// === (b) idle connections to the admin port ===

#[tokio::test]
async fn idle_connections_to_the_admin_port_are_closed_after_their_timeouts() {
    let _serial = SERIAL.lock().await;
    let (server_runtime, client_runtime) = (Runtime::new(2), Runtime::new(1));
    let timeout = Duration::from_millis(1000);
    // Room for all of them, so that the timeout is what closes them (past the cap the quiet ones
    // would give way to newer ones: the next test).
    let idle = 400;
    let options = ServerOptions {
        header_read_timeout: timeout,
        keep_alive_timeout: timeout,
        max_connections: idle + 8,
        ..as_pods(ServerOptions::admin())
    };
    let admin = admin_on(&server_runtime, options).await;
    let addr = admin.addr;

    // A scraper on its own keep-alive connection: served throughout.
    let scraper = Timed::steady(&client_runtime, steady_admin(addr)).await;

    // 400 connections from 50 addresses (8 each, the admin port's cap per address): a third
    // silent, a third with 8 KB of a request head, a third idle after one request (the
    // keep-alive idle limit).
    let per_address = server::ADMIN_MAX_CONNECTIONS_PER_IP;
    let started = Instant::now();
    let deadline = started + BOUND;
    let mut conns = Vec::new();
    for i in 0..idle {
        let tcp = bounded("connect", tcp_from(source(i, per_address), addr))
            .await
            .unwrap();
        conns.push(tokio::spawn(async move {
            let mut tcp = tcp;
            let connected = Instant::now();
            match i % 3 {
                0 => {}
                1 => {
                    tcp.write_all(b"GET /healthz HTTP/1.1\r\nX-Pad: ")
                        .await
                        .unwrap();
                    tcp.write_all(&PAD[..8 * 1000]).await.unwrap();
                }
                _ => {
                    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
                    tcp.write_all(request).await.unwrap();
                }
            }
            let (got, closed) = closed_by(&mut tcp, deadline).await;
            (i % 3, connected, got, closed)
        }));
    }
    let mut open = 0;
    let mut quickest = Duration::MAX;
    let mut slowest = Duration::ZERO;
    let mut last = Duration::ZERO;
    for conn in conns {
        let (kind, connected, got, closed) = bounded("an idle client", conn).await.unwrap();
        let got = String::from_utf8_lossy(&got);
        match kind {
            // One answer, then nothing.
            2 => assert!(
                got.starts_with("HTTP/1.1 200 ") && got.ends_with("ok\n"),
                "{got}"
            ),
            // A 408 at most (hyper sends one when a head times out).
            _ => assert!(got.is_empty() || got.starts_with("HTTP/1.1 408 "), "{got}"),
        }
        match closed {
            Some(at) => {
                quickest = quickest.min(at - connected);
                slowest = slowest.max(at - connected);
                last = last.max(at - started);
            }
            None => open += 1,
        }
    }
    eprintln!(
        "{open} of {idle} idle connections open after {:?}",
        started.elapsed()
    );
    assert_eq!(open, 0, "idle connections held past {BOUND:?}");
    eprintln!(
        "each closed {quickest:?} to {slowest:?} after connecting, the last {last:?} after the \
         first connected"
    );
    // None closed before the timeout, and each soon after it (measured from its own connect:
    // opening the 400 takes a while on a busy machine).
    assert!(
        quickest >= timeout - Duration::from_millis(50),
        "{quickest:?}"
    );
    assert!(slowest < timeout * 3, "{slowest:?}");
    scraper.finish().await.assert_served(10);
    admin.stop().await;
}

// === (c) more connections than the caps ===

#[tokio::test]
async fn connections_past_the_per_address_cap_are_refused_and_others_served() {
    let _serial = SERIAL.lock().await;
    let (server_runtime, client_runtime) = (Runtime::new(2), Runtime::new(1));
    let dir = tempfile::tempdir().unwrap();
    let options = as_pods(ServerOptions::default());
    let (webhook, config) = webhook_on(&server_runtime, dir.path(), options).await;
    let addr = webhook.addr;
    let probe_config = config.clone();
    let probe = Timed::fresh(&client_runtime, move || {
        probe_webhook(addr, probe_config.clone())
    })
    .await;

    // One address opens twice its cap of silent connections: those past the cap are closed at
    // once, the others wait for their handshake (10 s) and are still open a moment later.
    let from = source(0, 1);
    let extra = MAX_CONNECTIONS_PER_IP;
    let mut conns = Vec::new();
    for _ in 0..MAX_CONNECTIONS_PER_IP + extra {
        conns.push(bounded("connect", tcp_from(from, addr)).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut closed = 0;
    for conn in &mut conns {
        if closed_by(conn, deadline).await.1.is_some() {
            closed += 1;
        }
    }
    assert_eq!(closed, extra, "closed at once");
    // Another address is not affected: its connections complete the handshake and are served.
    let tls = tls_from(source(1, 1), addr, config.clone()).await.unwrap();
    let (status, body) = bounded("review", h1_post(tls, "/mutate", REVIEW))
        .await
        .unwrap();
    assert!(is_good_answer(status, &body), "{status}");
    // Closing some gives the address room again.
    conns.truncate(MAX_CONNECTIONS_PER_IP - 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = tcp_from(from, addr).await.unwrap();
    let still_open = Instant::now() + Duration::from_millis(300);
    assert_eq!(closed_by(&mut again, still_open).await.1, None);

    probe.finish().await.assert_served(10);
    drop((conns, again));
    webhook.stop().await;
}

/// An HTTP/2 connection from `ip` that has had one review answered and stays open (its client
/// answers pings): a connection at work, which no new connection displaces.
async fn busy_h2(ip: IpAddr, addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> H2Sender {
    let stream = tls_from(ip, addr, with_alpn(config, H2)).await.unwrap();
    let mut sender = h2_client(stream).await.unwrap();
    let (status, body) = h2_post(&mut sender, "/mutate", REVIEW).await.unwrap();
    assert!(is_good_answer(status, &body), "{status}");
    sender
}

#[tokio::test]
async fn connections_past_the_cap_wait_while_established_ones_are_served() {
    let _serial = SERIAL.lock().await;
    let (server_runtime, client_runtime) = (Runtime::new(2), Runtime::new(1));
    let dir = tempfile::tempdir().unwrap();
    let cap = 8;
    let options = ServerOptions {
        max_connections: cap,
        ..as_pods(ServerOptions::default())
    };
    let (webhook, config) = webhook_on(&server_runtime, dir.path(), options).await;
    let addr = webhook.addr;

    // The API server's way: one HTTP/2 connection, many reviews on it.
    let api_server = Timed::steady(&client_runtime, steady_webhook(addr, config.clone())).await;

    // Connections at work fill the rest of the cap, from several addresses; then one more
    // connects and sends a review.
    let mut busy = Vec::new();
    for i in 0..cap - 1 {
        busy.push(busy_h2(source(i, 2), addr, &config).await);
    }
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let result = probe_webhook(addr, with_alpn(&config, H1)).await;
        (result, started.elapsed())
    });
    // It waits (connected, in the listen backlog: the TLS handshake does not even start), and
    // the server does not spin meanwhile.
    let cpu = cpu_time();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let used = cpu_time() - cpu;
    assert!(!waiting.is_finished(), "served past the cap");
    // The HTTP/2 client's requests every 2 ms take some of this, in both the client and the
    // server; a spinning accept loop would take a whole core.
    assert!(used < Duration::from_millis(500), "{used:?} of CPU in 1 s");

    // One of the busy ones goes away: the waiting connection is accepted and served.
    let freed = Instant::now();
    drop(busy.pop());
    let (result, waited) = bounded("the waiting client", waiting).await.unwrap();
    result.unwrap();
    let after = freed.elapsed();
    eprintln!("waited {waited:?} in all, {after:?} after a connection closed; {used:?} of CPU");
    assert!(waited >= Duration::from_millis(1000), "{waited:?}");
    assert!(after < Duration::from_millis(500), "{after:?}");

    api_server.finish().await.assert_served(20);
    drop(busy);
    webhook.stop().await;
}

/// Opens `n` connections from 8-a-piece addresses, each sending `first` (nothing, or part of a
/// request head) and then nothing; returns, for each, when it was opened and when the server
/// closed it (`None`: still open at `deadline`).
async fn quiet_flood(
    addr: SocketAddr,
    n: usize,
    first: &'static [u8],
    deadline: Instant,
) -> Vec<JoinHandle<(Instant, Option<Instant>)>> {
    let mut conns = Vec::new();
    for i in 0..n {
        let mut tcp = bounded("connect", tcp_from(source(i, 8), addr))
            .await
            .unwrap();
        let opened = Instant::now();
        tcp.write_all(first).await.unwrap();
        conns.push(tokio::spawn(async move {
            (opened, closed_by(&mut tcp, deadline).await.1)
        }));
    }
    conns
}

/// How long a new connection may wait, at the connection cap, for the oldest connection that
/// has sent nothing to give way: the server's grace for such connections (250 ms) and a margin.
/// The kubelet gives a probe 1 s.
const GIVE_WAY: Duration = Duration::from_millis(500);

#[tokio::test]
async fn connections_that_send_nothing_give_way_to_new_ones_past_the_cap() {
    let _serial = SERIAL.lock().await;
    let (server_runtime, client_runtime) = (Runtime::new(2), Runtime::new(1));
    let timeout = Duration::from_secs(3);
    // More than the cap, but not more than the cap and the listen backlog (128 each) at once:
    // past that the kernel drops SYNs until the quiet connections' grace is over, and a client
    // whose SYN is dropped (the kubelet's too) retries after 1 s.
    let flood = 240;

    // The admin port at its cap (128) with connections that send nothing or half a head: the
    // kubelet's way (a new connection per probe) is served throughout, each new connection
    // taking the place of the oldest quiet one.
    let options = ServerOptions {
        header_read_timeout: timeout,
        ..as_pods(ServerOptions::admin())
    };
    let admin = admin_on(&server_runtime, options).await;
    let addr = admin.addr;
    let kubelet = Timed::fresh(&client_runtime, move || probe_admin(addr)).await;
    let started = Instant::now();
    let deadline = started + BOUND;
    let mut conns = quiet_flood(addr, flood / 2, b"", deadline).await;
    let half_a_head = b"GET /healthz HTTP/1.1\r\nX-Pad: aaaa";
    conns.extend(quiet_flood(addr, flood / 2, half_a_head, deadline).await);
    tokio::time::sleep(GIVE_WAY).await;
    let kubelet = kubelet.finish().await;
    let (mut early, mut open) = (0, 0);
    for conn in conns {
        match bounded("a quiet connection", conn).await.unwrap() {
            (opened, Some(closed)) if closed - opened < timeout - Duration::from_millis(50) => {
                early += 1;
            }
            (_, Some(_)) => {}
            (_, None) => open += 1,
        }
    }
    eprintln!(
        "admin port: of {flood} quiet connections, {early} made way for newer ones, the others \
         closed at the header timeout, {open} still open after {:?}",
        started.elapsed()
    );
    assert_eq!(open, 0);
    // All but the last 128 (fewer: some made way for the kubelet's) made way early.
    let cap = server::ADMIN_MAX_CONNECTIONS;
    assert!(early >= flood - cap, "{early}");
    kubelet.assert_answered(20, GIVE_WAY);
    admin.stop().await;

    // The webhook port: connections that never start their TLS handshake make way for one that
    // does, and count as failed handshakes.
    let dir = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        handshake_timeout: timeout,
        ..as_pods(ServerOptions::default())
    };
    let (webhook, config) = webhook_on(&server_runtime, dir.path(), options).await;
    let addr = webhook.addr;
    let cap = server::MAX_CONNECTIONS;
    let started = Instant::now();
    let conns = quiet_flood(addr, cap, b"", started + BOUND).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let probe = Timed::fresh(&client_runtime, move || probe_webhook(addr, config.clone())).await;
    tokio::time::sleep(GIVE_WAY).await;
    let probe = probe.finish().await;
    let mut early = 0;
    for conn in conns {
        let (opened, closed) = bounded("a quiet connection", conn).await.unwrap();
        let closed = closed.expect("closed by the handshake timeout at the latest");
        early += usize::from(closed - opened < timeout - Duration::from_millis(50));
    }
    eprintln!("webhook port: {early} of {cap} silent connections made way for the probe's");
    // At least the probe's first connection found the cap full (its later ones may find the
    // place the previous one left).
    assert!((1..=probe.times.len()).contains(&early), "{early}");
    probe.assert_answered(20, GIVE_WAY);
    // The server counts a failed handshake after the connection is closed: wait for the count.
    let counted = async {
        while webhook.counter("tls_handshake_failures_total") < cap as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    bounded(
        "every silent connection counted as a failed handshake",
        counted,
    )
    .await;
    webhook.stop().await;
}
