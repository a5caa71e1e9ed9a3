//! Harness shared by `tests/hostile.rs`, `tests/faults.rs` and `tests/logs.rs`: the real router
//! over real TLS on 127.0.0.1:0, clients, a well-behaved background prober, metrics and memory
//! readings.
//!
//! Every step that could hang is bounded ([`bounded`]); every server listens on loopback only.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine as _;
use bytes::Bytes;
use dualstack_webhook::cluster::{Cluster, ServiceCidrs};
use dualstack_webhook::commands::EXAMPLE_POLICY;
use dualstack_webhook::commands::certs;
use dualstack_webhook::domain::policy::Policy;
use dualstack_webhook::metrics::Metrics;
use dualstack_webhook::server::routes::{self, AppState};
use dualstack_webhook::server::{self, tls};
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

/// Upper bound for any single step; generous for a loaded 2-core CI machine.
pub(crate) const BOUND: Duration = Duration::from_secs(15);

/// A valid CREATE review that the example policy patches (dual-stack, IPv6 first).
pub(crate) const REVIEW: &[u8] =
    include_bytes!("../fixtures/dual-v4/mutate/create-clusterip-defaults.json");

/// The uid in [`REVIEW`].
pub(crate) const REVIEW_UID: &str = "705ab4f6-6393-11e8-b7cc-42010a800001";

pub(crate) async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(BOUND, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {BOUND:?}"))
}

pub(crate) fn install_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

// === the webhook under test ===

/// The real router (example policy, dual-stack IPv4-first cluster) behind `serve_tls`.
pub(crate) struct Webhook {
    pub(crate) addr: SocketAddr,
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: JoinHandle<io::Result<()>>,
    pub(crate) metrics: Metrics,
    pub(crate) registry: Registry,
    pub(crate) state: AppState,
}

pub(crate) fn app_state(metrics: Metrics) -> AppState {
    let cidrs = ServiceCidrs::parse("10.96.0.0/16,fd00:10:96::/112").unwrap();
    AppState {
        policy: Arc::new(ArcSwap::from_pointee(
            Policy::from_yaml(EXAMPLE_POLICY).unwrap(),
        )),
        cluster: Arc::new(ArcSwap::from_pointee(Cluster::with_cidrs(Some(cidrs)))),
        metrics,
        log_tasks: Default::default(),
    }
}

/// Starts the webhook with certificates from `paths` (loaded through their paths, so a test may
/// rotate them) and the given server options.
pub(crate) async fn start(
    resolver: Arc<tls::CertResolver>,
    client_ca: Option<&Path>,
    options: server::ServerOptions,
) -> Webhook {
    install_provider();
    let config = tls::server_config(resolver, client_ca).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let state = app_state(metrics.clone());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server::serve_tls(
        listener,
        config,
        routes::router(state.clone()),
        options,
        metrics.clone(),
        shutdown.clone(),
    ));
    Webhook {
        addr,
        shutdown,
        task,
        metrics,
        registry,
        state,
    }
}

/// Generates certificates into `dir` and starts the webhook on them; returns it and an HTTP/1.1
/// client configuration that trusts it.
pub(crate) async fn start_in(
    dir: &Path,
    options: server::ServerOptions,
) -> (Webhook, Arc<ClientConfig>) {
    let paths = certs::generate(dir, &[], &[]).unwrap();
    let resolver = tls::CertResolver::load(&paths.cert, &paths.key).unwrap();
    let webhook = start(resolver, None, options).await;
    (webhook, client_config(&[&paths.ca_cert], H1, None))
}

impl Webhook {
    /// The value of a sample in the registry, e.g. `tls_handshake_failures_total`.
    pub(crate) fn counter(&self, sample: &str) -> u64 {
        counter_in(&encode(&self.registry), sample)
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        bounded("serve_tls to return", self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

pub(crate) fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

/// The value of `dualstack_webhook_{sample}` in Prometheus text, 0 when absent.
pub(crate) fn counter_in(text: &str, sample: &str) -> u64 {
    let prefix = format!("dualstack_webhook_{sample} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

// === clients ===

pub(crate) const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
pub(crate) const H1: &[&[u8]] = &[b"http/1.1"];
pub(crate) const H2: &[&[u8]] = &[b"h2"];

/// A client configuration trusting every CA in `cas` (read now), offering `alpn`, presenting
/// `identity` when given.
pub(crate) fn client_config(
    cas: &[&Path],
    alpn: &[&[u8]],
    identity: Option<&certs::ClientPaths>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = CertificateDer::pem_file_iter(&id.cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(&id.key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A copy of `config` offering other ALPN protocols.
pub(crate) fn with_alpn(config: &Arc<ClientConfig>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config = (**config).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub(crate) async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

pub(crate) fn post(uri: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(uri)
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}

/// The status and body of one POST over a new HTTP/1.1 connection on `stream`.
pub(crate) async fn h1_post(
    stream: TlsStream<TcpStream>,
    path: &str,
    body: impl Into<Bytes>,
) -> Result<(StatusCode, Bytes), hyper::Error> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let response = sender.send_request(post(path, body)).await?;
    let status = response.status();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

pub(crate) type H2Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

pub(crate) async fn h2_client(stream: TlsStream<TcpStream>) -> Result<H2Sender, hyper::Error> {
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

pub(crate) async fn h2_post(
    sender: &mut H2Sender,
    path: &str,
    body: impl Into<Bytes>,
) -> Result<(StatusCode, Bytes), hyper::Error> {
    sender.ready().await?;
    let response = sender
        .send_request(post(&format!("https://localhost{path}"), body))
        .await?;
    let status = response.status();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

/// Whether `body` is the example policy's answer to [`REVIEW`]: allowed, uid echoed, and the
/// dual-stack patch (a wrong or empty answer is as much a failure as an error).
pub(crate) fn is_good_answer(status: StatusCode, body: &[u8]) -> bool {
    patched_families(status, body).is_some_and(|f| f == ["IPv6", "IPv4"])
}

/// The `ipFamilies` the answer's patch sets, if the answer is a 200 AdmissionReview for
/// [`REVIEW_UID`] that allows the request.
pub(crate) fn patched_families(status: StatusCode, body: &[u8]) -> Option<Vec<String>> {
    if status != StatusCode::OK {
        return None;
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    let r = &v["response"];
    if r["uid"] != REVIEW_UID || r["allowed"] != true {
        return None;
    }
    let patch = base64::engine::general_purpose::STANDARD
        .decode(r["patch"].as_str()?)
        .ok()?;
    let patch: Value = serde_json::from_slice(&patch).ok()?;
    let ops = patch.as_array()?;
    let op = ops.iter().find(|op| op["path"] == "/spec/ipFamilies")?;
    serde_json::from_value(op["value"].clone()).ok()
}

// === the well-behaved client ===

/// Results of a [`Prober`] run.
#[derive(Debug, Default)]
pub(crate) struct ProbeStats {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) slowest: Duration,
    pub(crate) errors: Vec<String>,
}

/// A well-behaved client that keeps posting [`REVIEW`] on a new connection each time (a full
/// handshake per request, so it needs the accept loop too) until stopped.
pub(crate) struct Prober {
    stop: Arc<AtomicBool>,
    attempts: Arc<AtomicU64>,
    task: JoinHandle<ProbeStats>,
}

impl Prober {
    pub(crate) fn start(addr: SocketAddr, config: Arc<ClientConfig>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let attempts = Arc::new(AtomicU64::new(0));
        let attempted = attempts.clone();
        let config = with_alpn(&config, H1);
        let task = tokio::spawn(async move {
            let mut stats = ProbeStats::default();
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                let result = tokio::time::timeout(BOUND, async {
                    let stream = connect(addr, config.clone()).await?;
                    h1_post(stream, "/mutate", REVIEW)
                        .await
                        .map_err(io::Error::other)
                })
                .await;
                stats.slowest = stats.slowest.max(started.elapsed());
                attempted.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(Ok((status, body))) if is_good_answer(status, &body) => stats.ok += 1,
                    other => {
                        stats.failed += 1;
                        stats.errors.push(format!("{other:?}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stats
        });
        Self {
            stop,
            attempts,
            task,
        }
    }

    /// Stops the prober (once it has made a few requests, however short the test) and returns
    /// what it saw.
    pub(crate) async fn finish(self) -> ProbeStats {
        let enough = async {
            while self.attempts.load(Ordering::Relaxed) < 3 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        bounded("the prober's first requests", enough).await;
        self.stop.store(true, Ordering::Relaxed);
        bounded("the prober to stop", self.task).await.unwrap()
    }
}

/// Asserts that the prober was served all along: several answers, none failed, none slow.
pub(crate) fn assert_served(stats: &ProbeStats, slowest: Duration) {
    assert!(stats.ok >= 3, "too few answers: {stats:?}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert!(
        stats.slowest < slowest,
        "a request took {:?}: {stats:?}",
        stats.slowest
    );
}

/// Counts of requests sent under load, by result.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl Tally {
    pub(crate) fn record(&self, good: bool) {
        let n = if good { &self.ok } else { &self.failed };
        n.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

// === memory ===

/// This process's resident set size in KiB (`VmRSS` in /proc/self/status).
pub(crate) fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// This process's peak RSS in KiB (`VmHWM` in /proc/self/status).
pub(crate) fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Resets this process's peak RSS (`VmHWM`) to the current RSS.
pub(crate) fn reset_hwm() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

// === log lines ===

/// Log lines written into memory, for a test to read.
#[derive(Clone, Default)]
pub(crate) struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    /// A subscriber writing here what is at `info` and above, plain, without time or colours.
    pub(crate) fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        let out = self.clone();
        tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::INFO)
            .finish()
    }

    /// The lines written so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }
}
