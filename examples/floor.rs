//! The benchmark floor: rustls + hyper answering every request with one constant
//! AdmissionReview, without parsing anything. A bench tool, not a product binary: `bench/run.sh`
//! runs it next to the webhook so the webhook's numbers can be read as a ratio of what TLS and
//! HTTP alone cost on the same machine in the same run.
//!
//! It uses the webhook's own TLS configuration ([`tls::server_config`]: same provider, ALPN, no
//! resumption) and hyper-util's builders, HTTP/1.1 or HTTP/2 as ALPN chose (as `server::https`
//! does), and it reads each request body to the end, as any real server must; what it leaves out
//! is everything the webhook adds on top: the connection caps and deadlines, axum routing, the body
//! limit and deadline, decoding, the policy, the patch, encoding, logging and metrics.
//!
//! ```text
//! cargo build --release --example floor
//! target/release/examples/floor --listen 127.0.0.1:9443 --tls-cert tls.crt --tls-key tls.key
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use dualstack_webhook::server::tls;

/// What the webhook answers to `bench/data/review-typical.json` on `/mutate` (a patched CREATE),
/// byte for byte (`tests/webhook.rs` checks it), so both servers send the same bytes back.
const ANSWER: &str = include_str!("../bench/data/answer-typical.json");

/// The floor server's command line.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[clap(long, default_value = "127.0.0.1:9443")]
    listen: SocketAddr,
    /// PEM certificate chain.
    #[clap(long)]
    tls_cert: PathBuf,
    /// PEM private key.
    #[clap(long)]
    tls_key: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A subscriber that is never interested: without one, `tracing` (built with its `log`
    // feature for other crates) falls back to building every h2/hyper span for `log`, which cost
    // the floor ~8 k instructions a request that the webhook, with its subscriber, does not pay.
    tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::new())?;
    let args = Args::parse();
    // The same runtime as `serve` (multi-thread; TOKIO_WORKER_THREADS applies to both).
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let resolver = tls::CertResolver::load(&args.tls_cert, &args.tls_key)?;
    let acceptor = TlsAcceptor::from(tls::server_config(resolver, None)?);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http2().timer(TokioTimer::new());
    // The protocol ALPN chose, as the webhook does (`server::https`): HTTP/1.1 is what
    // kube-apiserver speaks to a webhook behind a Service.
    let (http1, http2) = (http.clone().http1_only(), http.http2_only());
    loop {
        let (stream, _) = listener.accept().await?;
        let (acceptor, http1, http2) = (acceptor.clone(), http1.clone(), http2.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let http = if h2 { http2 } else { http1 };
            let service = hyper::service::service_fn(answer);
            let _ = http.serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

/// Reads the body to the end (flow control and TLS decryption are part of the floor) and
/// answers the constant review.
async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let _ = req.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(ANSWER.as_bytes())));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
