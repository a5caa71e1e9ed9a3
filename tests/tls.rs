//! Real-socket tests of the HTTPS server: handshake, ALPN, certificate rotation, timeouts, drain.
//!
//! Every server listens on 127.0.0.1:0 with certificates generated into a temporary directory,
//! and every step that could hang is bounded by [`bounded`].
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use dualstack_webhook::commands::certs;
use dualstack_webhook::metrics::Metrics;
use dualstack_webhook::server::{self, tls};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::version::{TLS12, TLS13};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

/// Upper bound for any single step; generous for a loaded 2-core CI machine.
const BOUND: Duration = Duration::from_secs(10);

async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(BOUND, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {BOUND:?}"))
}

fn install_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

// === server harness ===

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<io::Result<()>>,
    metrics: Metrics,
    registry: Registry,
}

fn echo_app() -> Router {
    Router::new().route("/echo", post(|body: Bytes| async move { body }))
}

async fn start(
    resolver: Arc<tls::CertResolver>,
    client_ca: Option<&Path>,
    app: Router,
    options: server::ServerOptions,
) -> Server {
    install_provider();
    let config = tls::server_config(resolver, client_ca).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server::serve_tls(
        listener,
        config,
        app,
        options,
        metrics.clone(),
        shutdown.clone(),
    ));
    Server {
        addr,
        shutdown,
        task,
        metrics,
        registry,
    }
}

async fn start_echo(dir: &Path) -> (Server, certs::GeneratedPaths) {
    start_echo_with(dir, Default::default()).await
}

/// [`start_echo`] with options of the test's own (timeouts).
async fn start_echo_with(
    dir: &Path,
    options: server::ServerOptions,
) -> (Server, certs::GeneratedPaths) {
    let paths = certs::generate(dir, &[], &[]).unwrap();
    let resolver = tls::CertResolver::load(&paths.cert, &paths.key).unwrap();
    let server = start(resolver, None, echo_app(), options).await;
    (server, paths)
}

impl Server {
    /// The value of a counter sample, e.g. `tls_handshake_failures_total`.
    fn counter(&self, sample: &str) -> u64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        let prefix = format!("dualstack_webhook_{sample} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    /// Waits until a counter reaches `want`: the server counts after the client has moved on.
    async fn wait_for_counter(&self, sample: &str, want: u64) {
        let reached = async {
            while self.counter(sample) < want {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        bounded(sample, reached).await;
        assert_eq!(self.counter(sample), want, "{sample}");
    }

    async fn stop(self) {
        self.shutdown.cancel();
        bounded("serve_tls to return", self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

// === client helpers ===

struct Client {
    versions: &'static [&'static SupportedProtocolVersion],
    alpn: &'static [&'static [u8]],
    identity: Option<certs::ClientPaths>,
}

const BOTH: &[&SupportedProtocolVersion] = &[&TLS13, &TLS12];
const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1: &[&[u8]] = &[b"http/1.1"];
const ONLY_TLS12: &[&SupportedProtocolVersion] = &[&TLS12];
const ONLY_TLS13: &[&SupportedProtocolVersion] = &[&TLS13];

impl Default for Client {
    fn default() -> Self {
        Self {
            versions: BOTH,
            alpn: H2_AND_H1,
            identity: None,
        }
    }
}

impl Client {
    /// A client configuration that trusts only the CA in `ca` (read now).
    fn config(&self, ca: &Path) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(self.versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match &self.identity {
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
        config.alpn_protocols = self.alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    name: &str,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

fn echo_request(uri: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(uri)
        .header(hyper::header::HOST, "localhost")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// One POST over a new HTTP/1.1 connection.
async fn h1_post(
    stream: TlsStream<TcpStream>,
    path: &str,
    body: &'static str,
) -> Result<(StatusCode, Bytes), hyper::Error> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let response = sender.send_request(echo_request(path, body)).await?;
    let status = response.status();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

type H2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn h2_client(stream: TlsStream<TcpStream>) -> Result<H2, hyper::Error> {
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn h2_post(
    sender: &mut H2,
    path: &str,
    body: &'static str,
) -> Result<(StatusCode, Bytes), hyper::Error> {
    sender.ready().await?;
    let uri = format!("https://localhost{path}");
    let response = sender.send_request(echo_request(&uri, body)).await?;
    let status = response.status();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

/// Connects and asserts an echo round trip works, in the protocol ALPN chose.
async fn assert_echo(addr: SocketAddr, config: Arc<ClientConfig>) {
    let stream = bounded("connect", connect(addr, config, "localhost"))
        .await
        .unwrap();
    let echo = async {
        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            h2_post(&mut h2_client(stream).await?, "/echo", "ping").await
        } else {
            h1_post(stream, "/echo", "ping").await
        }
    };
    let (status, body) = bounded("echo", echo).await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ping"[..]));
}

// === 1. handshake, ALPN, SAN verification ===

#[tokio::test]
async fn serves_http1_and_http2_with_a_verified_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (server, paths) = start_echo(dir.path()).await;

    // HTTP/1.1, and the chain verifies against ca.crt for both a DNS and an IP SAN.
    let config = Client {
        alpn: H1,
        ..Default::default()
    }
    .config(&paths.ca_cert);
    for name in ["localhost", "127.0.0.1"] {
        let stream = bounded("connect", connect(server.addr, config.clone(), name))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let (status, body) = bounded("h1", h1_post(stream, "/echo", "over h1"))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"over h1");
    }

    // A client that offers no ALPN at all gets HTTP/1.1.
    let config = Client {
        alpn: &[],
        ..Default::default()
    }
    .config(&paths.ca_cert);
    let stream = bounded("connect", connect(server.addr, config, "localhost"))
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), None);
    let (status, _) = bounded("h1", h1_post(stream, "/echo", "no alpn"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);

    // HTTP/2 is negotiated by ALPN when the client offers it first.
    let config = Client::default().config(&paths.ca_cert);
    let stream = bounded("connect", connect(server.addr, config, "localhost"))
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut h2 = bounded("h2 handshake", h2_client(stream)).await.unwrap();
    for _ in 0..2 {
        let (status, body) = bounded("h2", h2_post(&mut h2, "/echo", "over h2"))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"over h2");
    }

    // A name that is not a SAN is refused by the client.
    let config = Client::default().config(&paths.ca_cert);
    let err = bounded("connect", connect(server.addr, config, "example.com"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");

    server
        .wait_for_counter("tls_handshake_failures_total", 1)
        .await;
    server.stop().await;
}

// === 2. protocol versions ===

#[tokio::test]
async fn accepts_tls12_and_tls13_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (server, paths) = start_echo(dir.path()).await;
    let cases: [(
        &'static [&'static SupportedProtocolVersion],
        ProtocolVersion,
    ); 2] = [
        (ONLY_TLS12, ProtocolVersion::TLSv1_2),
        (ONLY_TLS13, ProtocolVersion::TLSv1_3),
    ];
    for (versions, want) in cases {
        let config = Client {
            versions,
            alpn: H1,
            ..Default::default()
        }
        .config(&paths.ca_cert);
        let stream = bounded("connect", connect(server.addr, config, "localhost"))
            .await
            .unwrap_or_else(|e| panic!("{want:?}: {e}"));
        assert_eq!(stream.get_ref().1.protocol_version(), Some(want));
        let (status, _) = bounded("echo", h1_post(stream, "/echo", "v"))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
    }
    server.stop().await;
}

// === 3. Secret-volume rotation ===

/// Lays out `root` like a kubelet Secret volume whose current version is `version`.
fn secret_volume(root: &Path, version: &str) -> certs::GeneratedPaths {
    let paths = certs::generate(&root.join(version), &[], &[]).unwrap();
    symlink(version, root.join("..data")).unwrap();
    for file in ["tls.crt", "tls.key", "ca.crt"] {
        symlink(Path::new("..data").join(file), root.join(file)).unwrap();
    }
    paths
}

/// Does what the kubelet does on a Secret update: write the new version, atomically re-point
/// `..data` at it, delete the old version.
fn rotate_secret_volume(root: &Path, old: &str, new: &str) -> certs::GeneratedPaths {
    let paths = certs::generate(&root.join(new), &[], &[]).unwrap();
    symlink(new, root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join(old)).unwrap();
    paths
}

#[tokio::test]
async fn rotates_certificates_from_a_secret_volume() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let old = secret_volume(root, "..2026_a");
    let resolver = tls::CertResolver::load(&root.join("tls.crt"), &root.join("tls.key")).unwrap();
    let server = start(resolver.clone(), None, echo_app(), Default::default()).await;
    let watcher = tokio::spawn(tls::watch_certificates(
        resolver.clone(),
        Duration::from_millis(50),
        server.metrics.clone(),
        server.shutdown.clone(),
    ));

    // Client configurations are built now: the old CA file goes away with the old version.
    let old_ca = Client::default().config(&old.ca_cert);
    assert_echo(server.addr, old_ca.clone()).await;
    let stream = bounded("connect", connect(server.addr, old_ca.clone(), "localhost"))
        .await
        .unwrap();
    let mut open_h2 = bounded("h2 handshake", h2_client(stream)).await.unwrap();
    bounded("h2", h2_post(&mut open_h2, "/echo", "before"))
        .await
        .unwrap();

    let new = rotate_secret_volume(root, "..2026_a", "..2026_b");
    let new_ca = Client::default().config(&new.ca_cert);
    let rotated = async {
        while connect(server.addr, new_ca.clone(), "localhost")
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    bounded("the watcher to pick up the new pair", rotated).await;

    assert_echo(server.addr, new_ca).await;
    let err = bounded("connect", connect(server.addr, old_ca, "localhost"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");

    // The connection opened before the rotation keeps working on its original session.
    let (status, body) = bounded("h2", h2_post(&mut open_h2, "/echo", "after"))
        .await
        .unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"after"[..]));

    assert!(!resolver.reload().unwrap(), "nothing changed since");
    assert_eq!(
        server.counter(r#"certificate_reloads_total{result="success"}"#),
        1
    );
    assert_eq!(
        server.counter(r#"certificate_reloads_total{result="failure"}"#),
        0
    );
    drop(open_h2);
    server.stop().await;
    bounded("the watcher to stop", watcher).await.unwrap();
}

// === 4. broken and partial updates ===

#[tokio::test]
async fn broken_or_partial_updates_keep_the_last_good_pair() {
    let dir = tempfile::tempdir().unwrap();
    let paths = certs::generate(dir.path(), &[], &[]).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = certs::generate(other_dir.path(), &[], &[]).unwrap();
    let ca = Client::default().config(&paths.ca_cert);
    let other_ca = Client::default().config(&other.ca_cert);

    // A mismatched pair is refused at start.
    let err = tls::CertResolver::load(&paths.cert, &other.key).unwrap_err();
    assert!(matches!(err, tls::Error::KeyMismatch { .. }), "{err}");

    let resolver = tls::CertResolver::load(&paths.cert, &paths.key).unwrap();
    let server = start(resolver.clone(), None, echo_app(), Default::default()).await;
    let original_key = std::fs::read(&paths.key).unwrap();

    // Garbage in the key: refused, the old pair keeps serving.
    std::fs::write(&paths.key, "not a key").unwrap();
    let err = resolver.reload().unwrap_err();
    assert!(matches!(err, tls::Error::ParseKey(..)), "{err}");
    assert!(err.to_string().contains("tls.key"), "{err}");
    assert_echo(server.addr, ca.clone()).await;

    // The watcher counts every failed attempt (it logs only the first of a kind).
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(tls::watch_certificates(
        resolver.clone(),
        Duration::from_millis(10),
        server.metrics.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    bounded("the watcher to stop", watcher).await.unwrap();
    assert!(server.counter(r#"certificate_reloads_total{result="failure"}"#) >= 2);
    assert_eq!(
        server.counter(r#"certificate_reloads_total{result="success"}"#),
        0
    );

    // Back to the pair in use: not a reload.
    std::fs::write(&paths.key, &original_key).unwrap();
    assert!(!resolver.reload().unwrap());

    // Half an update (new certificate, old key): refused, old pair still served.
    std::fs::copy(&other.cert, &paths.cert).unwrap();
    let err = resolver.reload().unwrap_err();
    assert!(matches!(err, tls::Error::KeyMismatch { .. }), "{err}");
    assert_echo(server.addr, ca.clone()).await;
    assert!(
        bounded(
            "connect",
            connect(server.addr, other_ca.clone(), "localhost")
        )
        .await
        .is_err()
    );

    // The other half arrives: the next reload takes the new pair.
    std::fs::copy(&other.key, &paths.key).unwrap();
    assert!(resolver.reload().unwrap());
    assert_echo(server.addr, other_ca).await;

    server.stop().await;
}

// === 5. handshake timeout ===

#[tokio::test]
async fn silent_clients_are_cut_off_after_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let options = server::ServerOptions {
        handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (server, paths) = start_echo_with(dir.path(), options).await;

    let started = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Others are served while the silent client holds its connection.
    assert_echo(server.addr, Client::default().config(&paths.ca_cert)).await;

    let mut buf = [0u8; 64];
    let read = bounded("the server to close", silent.read(&mut buf)).await;
    let elapsed = started.elapsed();
    assert!(matches!(read, Ok(0)) || read.is_err(), "{read:?}");
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    server
        .wait_for_counter("tls_handshake_failures_total", 1)
        .await;
    server.stop().await;
}

// === 6. header read timeout ===

/// Opens a TLS connection, sends `prefix` and returns how long the server took to close it.
async fn time_until_closed(addr: SocketAddr, config: Arc<ClientConfig>, prefix: &[u8]) -> Duration {
    let mut stream = bounded("connect", connect(addr, config, "localhost"))
        .await
        .unwrap();
    let started = Instant::now();
    stream.write_all(prefix).await.unwrap();
    stream.flush().await.unwrap();
    let mut rest = Vec::new();
    let read = bounded("the server to close", stream.read_to_end(&mut rest)).await;
    // Closed (with or without close_notify, possibly after a 408): never a 200.
    assert!(
        !String::from_utf8_lossy(&rest).contains(" 200 "),
        "{read:?}"
    );
    started.elapsed()
}

#[tokio::test]
async fn incomplete_request_heads_are_cut_off_after_the_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let options = server::ServerOptions {
        header_read_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (server, paths) = start_echo_with(dir.path(), options).await;
    let config = Client {
        alpn: H1,
        ..Default::default()
    }
    .config(&paths.ca_cert);

    // A long partial head, a few bytes (too few to tell HTTP/1.1 from an HTTP/2 preface), and
    // nothing at all after the handshake: all are closed, while others are served meanwhile.
    let prefixes: [&[u8]; 3] = [
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\n",
        b"POST /e",
        b"",
    ];
    let slow = prefixes.map(|prefix| {
        let config = config.clone();
        tokio::spawn(async move { time_until_closed(server.addr, config, prefix).await })
    });
    // The same for HTTP/2: a client that negotiates h2 and sends only part of the preface.
    let h2_config = Client::default().config(&paths.ca_cert);
    let h2_silent = tokio::spawn(time_until_closed(server.addr, h2_config, b"PRI * HTTP/2.0"));
    assert_echo(server.addr, config).await;
    let elapsed = h2_silent.await.unwrap();
    assert!(elapsed >= Duration::from_millis(250), "h2: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "h2: {elapsed:?}");
    for (prefix, task) in prefixes.iter().zip(slow) {
        let elapsed = task.await.unwrap();
        let prefix = String::from_utf8_lossy(prefix);
        assert!(
            elapsed >= Duration::from_millis(250),
            "{prefix:?}: {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(5), "{prefix:?}: {elapsed:?}");
    }
    server.stop().await;
}

/// An HTTP/1.1 connection waits between requests for the keep-alive limit, not the header read
/// timeout: kube-apiserver reuses a pooled connection for up to 90 s, and a new one costs it a
/// TLS handshake per review.
#[tokio::test]
async fn http1_connections_are_kept_between_requests_until_the_keep_alive_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let header_read_timeout = Duration::from_millis(300);
    let keep_alive_timeout = Duration::from_millis(1500);
    let options = server::ServerOptions {
        header_read_timeout,
        keep_alive_timeout,
        ..Default::default()
    };
    let (server, paths) = start_echo_with(dir.path(), options).await;
    let config = Client {
        alpn: H1,
        ..Default::default()
    }
    .config(&paths.ca_cert);
    let stream = bounded("connect", connect(server.addr, config, "localhost"))
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);

    for idle in [Duration::ZERO, header_read_timeout * 3] {
        tokio::time::sleep(idle).await;
        bounded("the connection to be ready", sender.ready())
            .await
            .unwrap();
        let response = bounded(
            "an answer",
            sender.send_request(echo_request("/echo", "again")),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "after {idle:?} idle");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "again");
    }
    let answered = Instant::now();
    bounded("the server to close", conn).await.unwrap().unwrap();
    let idle = answered.elapsed();
    assert!(
        idle >= keep_alive_timeout - Duration::from_millis(50),
        "{idle:?}"
    );
    assert!(idle < Duration::from_secs(5), "{idle:?}");
    server.stop().await;
}

// === 7. graceful shutdown ===

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_refuses_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let paths = certs::generate(dir.path(), &[], &[]).unwrap();
    let resolver = tls::CertResolver::load(&paths.cert, &paths.key).unwrap();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let slow = move || {
        let started = started_tx.clone();
        async move {
            let _ = started.send(());
            // Long enough to check that new connections are refused while it runs.
            tokio::time::sleep(Duration::from_millis(500)).await;
            "done"
        }
    };
    let app = echo_app().route("/slow", post(slow));
    let server = start(resolver, None, app, Default::default()).await;

    // One slow request on HTTP/1.1 and one on HTTP/2.
    let h1_config = Client {
        alpn: H1,
        ..Default::default()
    }
    .config(&paths.ca_cert);
    let h1_stream = bounded("connect", connect(server.addr, h1_config, "localhost"))
        .await
        .unwrap();
    let h1 = tokio::spawn(h1_post(h1_stream, "/slow", ""));
    let h2_config = Client::default().config(&paths.ca_cert);
    let h2_stream = bounded("connect", connect(server.addr, h2_config, "localhost"))
        .await
        .unwrap();
    let mut h2_sender = bounded("h2 handshake", h2_client(h2_stream)).await.unwrap();
    let h2 = tokio::spawn(async move { h2_post(&mut h2_sender, "/slow", "").await });
    for _ in 0..2 {
        bounded("the handlers to start", started_rx.recv()).await;
    }

    server.shutdown.cancel();
    let refused = async {
        while TcpStream::connect(server.addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    bounded("new connections to be refused", refused).await;
    assert!(!h1.is_finished() && !h2.is_finished(), "drained too early");

    for (proto, request) in [("h1", h1), ("h2", h2)] {
        let (status, body) = bounded("in-flight request", request)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{proto}: {e}"));
        assert_eq!(
            (status, &body[..]),
            (StatusCode::OK, &b"done"[..]),
            "{proto}"
        );
    }
    bounded("serve_tls to return", server.task)
        .await
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(server.addr).await.is_err());
}

// === 8. generated certificates ===

#[test]
fn generated_certificate_has_every_san_and_serves_only_as_a_server() {
    use rustls::client::danger::ServerCertVerifier;
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};

    let dir = tempfile::tempdir().unwrap();
    let extra_dns = vec!["webhook.example.com".to_owned(), "localhost".to_owned()];
    let extra_ips: Vec<IpAddr> = vec![
        "10.96.0.10".parse().unwrap(),
        "fd00::10".parse().unwrap(),
        "127.0.0.1".parse().unwrap(),
    ];
    let paths = certs::generate(dir.path(), &extra_dns, &extra_ips).unwrap();

    let leaf_der = CertificateDer::from_pem_file(&paths.cert).unwrap();
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(n) => dns.push((*n).to_owned()),
            GeneralName::IPAddress(b) => ips.push(match b.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()),
                _ => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()),
            }),
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    let mut want_dns: Vec<String> = certs::DEFAULT_DNS_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    want_dns.push("webhook.example.com".to_owned());
    assert_eq!(dns, want_dns, "defaults then extras, no duplicates");
    let mut want_ips = certs::DEFAULT_IPS.to_vec();
    want_ips.extend(&extra_ips[..2]);
    assert_eq!(ips, want_ips);

    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    assert!(!leaf.is_ca());
    let now = x509_parser::time::ASN1Time::now().timestamp();
    let (not_before, not_after) = (
        leaf.validity().not_before.timestamp(),
        leaf.validity().not_after.timestamp(),
    );
    assert!(not_before < now - 60, "not-before is slightly in the past");
    let days = (not_after - now) / 86_400;
    assert!((364..=366).contains(&days), "valid for {days} days");

    let ca_der = CertificateDer::from_pem_file(&paths.ca_cert).unwrap();
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    assert!(ca.is_ca());
    assert!(ca.key_usage().unwrap().unwrap().value.key_cert_sign());
    assert_eq!(leaf.issuer(), ca.subject());

    // And a real verifier agrees for every name, and for nothing else.
    install_provider();
    let mut roots = RootCertStore::empty();
    roots.add(ca_der).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let now = rustls::pki_types::UnixTime::now();
    let names = want_dns
        .iter()
        .cloned()
        .chain(want_ips.iter().map(|ip| ip.to_string()));
    for name in names {
        let server_name = ServerName::try_from(name.clone()).unwrap();
        verifier
            .verify_server_cert(&leaf_der, &[], &server_name, &[], now)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let elsewhere = ServerName::try_from("elsewhere.example.com").unwrap();
    assert!(
        verifier
            .verify_server_cert(&leaf_der, &[], &elsewhere, &[], now)
            .is_err()
    );
}

// === 9. client certificates ===

#[tokio::test]
async fn client_ca_requires_a_client_certificate_from_that_ca() {
    let dir = tempfile::tempdir().unwrap();
    let paths = certs::generate(dir.path(), &[], &[]).unwrap();
    let resolver = tls::CertResolver::load(&paths.cert, &paths.key).unwrap();
    let server = start(
        resolver,
        Some(&paths.ca_cert),
        echo_app(),
        Default::default(),
    )
    .await;

    let with_cert = Client {
        identity: Some(
            certs::generate_client(&paths.ca_key, "kube-apiserver", dir.path()).unwrap(),
        ),
        ..Default::default()
    };
    assert_echo(server.addr, with_cert.config(&paths.ca_cert)).await;

    // Without a certificate (and with one from another CA), no request gets through. With TLS 1.3
    // the client's handshake completes before the server judges the certificate, so the failure
    // may come at the first request rather than at connect.
    let other_dir = tempfile::tempdir().unwrap();
    let other = certs::generate(other_dir.path(), &[], &[]).unwrap();
    let stranger = Client {
        identity: Some(
            certs::generate_client(&other.ca_key, "stranger", other_dir.path()).unwrap(),
        ),
        ..Default::default()
    };
    for client in [Client::default(), stranger] {
        let config = Client { alpn: H1, ..client }.config(&paths.ca_cert);
        let result = bounded("request", async {
            let stream = connect(server.addr, config, "localhost").await?;
            h1_post(stream, "/echo", "x")
                .await
                .map_err(io::Error::other)
        })
        .await;
        assert!(result.is_err(), "{result:?}");
    }
    server.stop().await;
}
