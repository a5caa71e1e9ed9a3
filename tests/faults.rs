//! Faults under load, each counting failed requests (the target is zero): certificate rotation
//! through a Secret-style `..data` swap, the policy file replaced by a broken one and then a good
//! one, and SIGTERM while requests are in flight (the drain, and the `--shutdown-delay` before
//! it). Plus mutual TLS through the real binary.
//!
//! The policy and SIGTERM faults run the real binary (`serve`), so the wiring in `commands::serve` (the
//! reload task, readiness, metrics, signal handling, drain) is what is tested. All traffic stays
//! on 127.0.0.1, and every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use dualstack_webhook::commands::certs;
use dualstack_webhook::server::{self, tls};
use http_body_util::{BodyExt, StreamBody};
use hyper::StatusCode;
use hyper::body::Frame;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// === load ===

/// Runs `workers` clients posting [`REVIEW`] until `stop`: half on a new HTTP/1.1 connection per
/// request (a handshake each time), half on one long-lived HTTP/2 connection each (as
/// kube-apiserver does). Every answer is judged by `good`; a request that errors or gets any
/// other answer is a failure.
fn load(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    workers: usize,
    good: fn(StatusCode, &[u8]) -> bool,
    stop: Arc<AtomicBool>,
) -> (Arc<Tally>, Vec<tokio::task::JoinHandle<Vec<String>>>) {
    let tally = Arc::new(Tally::default());
    let tasks = (0..workers)
        .map(|i| {
            let (config, tally, stop) = (config.clone(), tally.clone(), stop.clone());
            tokio::spawn(async move {
                let mut errors = Vec::new();
                let mut h2: Option<H2Sender> = None;
                while !stop.load(Ordering::Relaxed) {
                    let result = tokio::time::timeout(BOUND, async {
                        if i % 2 == 0 {
                            let stream = connect(addr, with_alpn(&config, H1)).await?;
                            return h1_post(stream, "/mutate", REVIEW)
                                .await
                                .map_err(std::io::Error::other);
                        }
                        if h2.is_none() {
                            let stream = connect(addr, with_alpn(&config, H2)).await?;
                            h2 = Some(h2_client(stream).await.map_err(std::io::Error::other)?);
                        }
                        let sender = h2.as_mut().unwrap();
                        h2_post(sender, "/mutate", REVIEW)
                            .await
                            .map_err(std::io::Error::other)
                    })
                    .await;
                    let ok = matches!(&result, Ok(Ok((status, body))) if good(*status, body));
                    tally.record(ok);
                    if !ok && errors.len() < 5 {
                        errors.push(format!("{result:?}"));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                errors
            })
        })
        .collect();
    (tally, tasks)
}

async fn finish(tasks: Vec<tokio::task::JoinHandle<Vec<String>>>) -> Vec<String> {
    let mut errors = Vec::new();
    for task in tasks {
        errors.extend(bounded("a load worker to stop", task).await.unwrap());
    }
    errors
}

// === 1. certificate rotation under load ===

/// Points `root/..data` at `version` the way the kubelet does: a new symlink renamed over it.
fn point_data_at(root: &Path, version: &str) {
    let tmp = root.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, root.join("..data")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_fails_no_request() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // Six versions, each with its own CA; clients trust all of them (as a caBundle holding the old
    // and the new CA does during a rotation).
    let rotations = 5;
    let versions: Vec<String> = (0..=rotations).map(|i| format!("..2026_{i}")).collect();
    let generated: Vec<_> = versions
        .iter()
        .map(|v| certs::generate(&root.join(v), &[], &[]).unwrap())
        .collect();
    point_data_at(root, &versions[0]);
    for file in ["tls.crt", "tls.key"] {
        symlink(Path::new("..data").join(file), root.join(file)).unwrap();
    }
    let cas: Vec<&Path> = generated.iter().map(|g| g.ca_cert.as_path()).collect();
    let config = client_config(&cas, H1, None);
    let resolver = tls::CertResolver::load(&root.join("tls.crt"), &root.join("tls.key")).unwrap();
    let webhook = start(resolver.clone(), None, server::ServerOptions::default()).await;
    let watcher = tokio::spawn(tls::watch_certificates(
        resolver,
        Duration::from_millis(50),
        webhook.metrics.clone(),
        webhook.shutdown.clone(),
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let (tally, tasks) = load(
        webhook.addr,
        config.clone(),
        4,
        is_good_answer,
        stop.clone(),
    );
    for i in 1..=rotations {
        tokio::time::sleep(Duration::from_millis(400)).await;
        point_data_at(root, &versions[i]);
        // The kubelet removes the old version once ..data points at the new one.
        std::fs::remove_dir_all(root.join(&versions[i - 1])).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    let errors = finish(tasks).await;
    let (ok, failed) = tally.get();
    eprintln!(
        "certificate rotation: {rotations} rotations, {ok} requests answered, {failed} failed"
    );
    assert_eq!(failed, 0, "{errors:#?}");
    assert!(ok > 50, "too little load: {ok}");

    // Every rotation was picked up, and new connections see the last certificate.
    assert_eq!(
        webhook.counter(r#"certificate_reloads_total{result="success"}"#),
        rotations as u64
    );
    assert_eq!(
        webhook.counter(r#"certificate_reloads_total{result="failure"}"#),
        0
    );
    let stream = connect(webhook.addr, config).await.unwrap();
    let served = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let last = std::fs::read_to_string(&generated[rotations].cert).unwrap();
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    assert_eq!(
        served,
        CertificateDer::from_pem_slice(last.as_bytes()).unwrap()
    );
    drop(stream);
    webhook.stop().await;
    bounded("the watcher to stop", watcher).await.unwrap();
}

// === the real binary ===

/// `dualstack-webhook serve` on free loopback ports, killed on drop.
struct Binary {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
}

fn free_port() -> SocketAddr {
    // Bound and released: another process could take it in between, which on loopback in a
    // test run is unlikely enough (and then `start` fails loudly, not silently).
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

impl Binary {
    async fn start(
        dir: &Path,
        paths: &certs::GeneratedPaths,
        policy: &Path,
        extra: &[&str],
    ) -> Self {
        let (addr, admin) = (free_port(), free_port());
        let log = dir.join("webhook.log");
        let child = Command::new(env!("CARGO_BIN_EXE_dualstack-webhook"))
            .arg("serve")
            .args(["--listen", &addr.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .arg("--tls-cert")
            .arg(&paths.cert)
            .arg("--tls-key")
            .arg(&paths.key)
            .arg("--policy")
            .arg(policy)
            .args(["--service-cidrs", "10.96.0.0/16,fd00:10:96::/112"])
            .args(["--reload-interval", "1"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut binary = Self {
            child,
            addr,
            admin,
            log,
        };
        let ready = async {
            loop {
                if let Ok((200, _)) = admin_get(admin, "/readyz").await {
                    return;
                }
                if let Ok(Some(status)) = binary.child.try_wait() {
                    panic!("exited with {status}: {}", binary.log());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        bounded("the webhook to be ready", ready).await;
        binary
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn metric(&self, sample: &str) -> u64 {
        let (_, text) = admin_get(self.admin, "/metrics").await.unwrap();
        counter_in(&text, sample)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on the admin port over plain HTTP/1.1: status and body.
async fn admin_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut tcp = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(BOUND, tcp.read_to_string(&mut response)).await??;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {response:?}")))?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
}

// === 2. policy reload under load ===

const IPV4_FIRST: &str = "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n\
    defaults: {ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv4, IPv6]}\n";
const BROKEN: &str = "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n\
    rules: [{name: typo, match: {namspaces: [prod]}}]\n";

/// An answer from either policy: the example (IPv6 first) or [`IPV4_FIRST`].
fn good_under_either_policy(status: StatusCode, body: &[u8]) -> bool {
    patched_families(status, body).is_some_and(|f| f == ["IPv6", "IPv4"] || f == ["IPv4", "IPv6"])
}

/// Lays out a ConfigMap volume whose `policy.yaml` holds `text`, as version `version`.
fn configmap_version(root: &Path, version: &str, text: &str) {
    std::fs::create_dir(root.join(version)).unwrap();
    std::fs::write(root.join(version).join("policy.yaml"), text).unwrap();
    point_data_at(root, version);
}

/// The families the webhook patches in now, over a new connection.
async fn current_families(addr: SocketAddr, config: &Arc<ClientConfig>) -> Vec<String> {
    let stream = connect(addr, config.clone()).await.unwrap();
    let (status, body) = bounded("review", h1_post(stream, "/mutate", REVIEW))
        .await
        .unwrap();
    patched_families(status, &body).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_then_good_policy_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let paths = certs::generate(&dir.path().join("tls"), &[], &[]).unwrap();
    let cm = dir.path().join("policy");
    std::fs::create_dir(&cm).unwrap();
    configmap_version(&cm, "..v1", dualstack_webhook::commands::EXAMPLE_POLICY);
    symlink("..data/policy.yaml", cm.join("policy.yaml")).unwrap();
    let webhook = Binary::start(dir.path(), &paths, &cm.join("policy.yaml"), &[]).await;
    let config = client_config(&[&paths.ca_cert], H1, None);
    assert_eq!(
        current_families(webhook.addr, &config).await,
        ["IPv6", "IPv4"]
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (tally, tasks) = load(
        webhook.addr,
        config.clone(),
        4,
        good_under_either_policy,
        stop.clone(),
    );

    // A broken policy: refused and counted, the last good one stays in force, still ready.
    tokio::time::sleep(Duration::from_millis(300)).await;
    configmap_version(&cm, "..v2", BROKEN);
    let failure = r#"policy_reloads_total{result="failure"}"#;
    let counted = async {
        while webhook.metric(failure).await == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    bounded("the broken policy to be counted", counted).await;
    assert_eq!(admin_get(webhook.admin, "/readyz").await.unwrap().0, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await; // another reload tick or two
    assert_eq!(
        current_families(webhook.addr, &config).await,
        ["IPv6", "IPv4"]
    );
    assert_eq!(admin_get(webhook.admin, "/readyz").await.unwrap().0, 200);
    assert_eq!(
        webhook.metric(failure).await,
        1,
        "logged and counted once per change"
    );

    // A good policy: in force within seconds.
    let swapped = Instant::now();
    configmap_version(&cm, "..v3", IPV4_FIRST);
    let applied = async {
        while current_families(webhook.addr, &config).await != ["IPv4", "IPv6"] {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    bounded("the good policy to take effect", applied).await;
    let took = swapped.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let errors = finish(tasks).await;
    let (ok, failed) = tally.get();
    eprintln!(
        "policy reload: broken then good policy, {ok} requests answered, {failed} failed; new policy in force after {took:?}"
    );
    assert_eq!(failed, 0, "{errors:#?}\n{}", webhook.log());
    assert!(ok > 50, "too little load: {ok}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert_eq!(
        webhook
            .metric(r#"policy_reloads_total{result="success"}"#)
            .await,
        1
    );
    assert_eq!(admin_get(webhook.admin, "/readyz").await.unwrap().0, 200);
    assert!(!webhook.log().contains("panicked"), "{}", webhook.log());
}

// === 3. SIGTERM under load ===

/// A request body sent in two halves: the second only once `release` flips to true.
fn two_halves(
    release: tokio::sync::watch::Receiver<bool>,
) -> http_body_util::combinators::BoxBody<Bytes, std::io::Error> {
    let half = REVIEW.len() / 2;
    let first = Bytes::from_static(&REVIEW[..half]);
    let second = Bytes::from_static(&REVIEW[half..]);
    let chunks = futures_util::stream::unfold((0, release), move |(n, mut release)| {
        let (first, second) = (first.clone(), second.clone());
        async move {
            match n {
                0 => Some((Ok(Frame::data(first)), (1, release))),
                1 => {
                    let _ = release.wait_for(|r| *r).await;
                    Some((Ok(Frame::data(second)), (2, release)))
                }
                _ => None,
            }
        }
    });
    StreamBody::new(chunks).boxed()
}

/// The drain on its own: with `--shutdown-delay 0` the listener closes at the signal (the
/// delay before it is the next test's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_completes_in_flight_requests_and_exits_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let paths = certs::generate(&dir.path().join("tls"), &[], &[]).unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, dualstack_webhook::commands::EXAMPLE_POLICY).unwrap();
    let mut webhook = Binary::start(dir.path(), &paths, &policy, &["--shutdown-delay", "0"]).await;
    let config = client_config(&[&paths.ca_cert], H1, None);

    // Background load until SIGTERM.
    let stop = Arc::new(AtomicBool::new(false));
    let (tally, tasks) = load(
        webhook.addr,
        config.clone(),
        4,
        is_good_answer,
        stop.clone(),
    );

    // Requests in flight across the signal: 3 on HTTP/1.1 connections, 3 on one HTTP/2
    // connection, each with half its body sent before SIGTERM and half after.
    let (release, released) = tokio::sync::watch::channel(false);
    let mut in_flight = Vec::new();
    for _ in 0..3 {
        let stream = connect(webhook.addr, with_alpn(&config, H1)).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::post("/mutate")
            .header("host", "localhost")
            .body(two_halves(released.clone()))
            .unwrap();
        in_flight.push(tokio::spawn(async move {
            let res = sender.send_request(req).await?;
            let status = res.status();
            Ok::<_, hyper::Error>((status, res.into_body().collect().await?.to_bytes()))
        }));
    }
    let stream = connect(webhook.addr, with_alpn(&config, H2)).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let mut sender = sender.clone();
        let req = hyper::Request::post("https://localhost/mutate")
            .body(two_halves(released.clone()))
            .unwrap();
        in_flight.push(tokio::spawn(async move {
            sender.ready().await?;
            let res = sender.send_request(req).await?;
            let status = res.status();
            Ok::<_, hyper::Error>((status, res.into_body().collect().await?.to_bytes()))
        }));
    }
    // Let the halves and the load reach the server, then signal.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok_before, failed_before) = tally.get();
    let signalled = Instant::now();
    webhook.sigterm();
    stop.store(true, Ordering::Relaxed);

    // New connections are refused while the in-flight requests wait for their second halves.
    let refused = async {
        while TcpStream::connect(webhook.addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    bounded("new connections to be refused", refused).await;
    assert!(
        webhook.child.try_wait().unwrap().is_none(),
        "exited with requests in flight"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.send(true).unwrap();

    let mut completed = 0;
    for request in in_flight {
        let (status, body) = bounded("an in-flight request", request)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("in-flight request failed: {e}\n{}", webhook.log()));
        assert!(
            is_good_answer(status, &body),
            "{status} {}",
            String::from_utf8_lossy(&body)
        );
        completed += 1;
    }
    let exited = async {
        loop {
            if let Some(status) = webhook.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let status = bounded("the process to exit", exited).await;
    let took = signalled.elapsed();
    // Requests the load had in flight when the signal came finish too; those that started after
    // it meet a closed listener or a GOAWAY (a client retries those elsewhere) and are not counted.
    let _ = finish(tasks).await;
    let (ok_after, _) = tally.get();
    eprintln!(
        "SIGTERM: {ok_before} requests answered before the signal ({failed_before} failed), {} more while draining, {completed}/6 slow in-flight requests completed; exited {status} after {took:?}",
        ok_after - ok_before
    );
    assert_eq!(failed_before, 0);
    assert!(ok_before > 20, "too little load: {ok_before}");
    assert!(status.success(), "{status}: {}", webhook.log());
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM"
    );
    let log = webhook.log();
    assert!(log.contains("SIGTERM"), "{log}");
    // Each answer's log line is written after the answer (by a task of its own): none is lost
    // to the exit. A few more lines than answers counted: the load's requests that the webhook
    // answered as the client stopped.
    let lines = log
        .lines()
        .filter(|l| l.contains(": patched endpoint=Mutate uid="))
        .count();
    let answered = ok_after as usize + completed;
    assert!(
        lines >= answered,
        "{lines} lines for {answered} answers:\n{log}"
    );
}

// === 3b. the shutdown delay ===

/// One review on a new connection (a handshake of its own, as a client that the endpoints still
/// route to this pod would open), bounded by 2 s: whether it was answered well.
async fn fresh_review(addr: SocketAddr, config: &Arc<ClientConfig>) -> bool {
    let result = tokio::time::timeout(Duration::from_secs(2), async {
        let stream = connect(addr, with_alpn(config, H1)).await?;
        h1_post(stream, "/mutate", REVIEW)
            .await
            .map_err(std::io::Error::other)
    })
    .await;
    matches!(result, Ok(Ok((status, body))) if is_good_answer(status, &body))
}

/// Waits (bounded) until `/readyz` answers 503; the time it took from `since`.
async fn until_not_ready(webhook: &Binary, since: Instant) -> Duration {
    let not_ready = async {
        while !matches!(admin_get(webhook.admin, "/readyz").await, Ok((503, _))) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        since.elapsed()
    };
    bounded("/readyz to answer 503", not_ready).await
}

/// Waits (bounded) for the process to exit; its status and the time from `since`.
async fn until_exit(webhook: &mut Binary, since: Instant) -> (std::process::ExitStatus, Duration) {
    let exited = async {
        loop {
            if let Some(status) = webhook.child.try_wait().unwrap() {
                return (status, since.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    bounded("the process to exit", exited).await
}

/// What a rollout needs: after SIGTERM, `/readyz` answers 503 at once (the endpoints drop the
/// pod), while new connections are still accepted and answered for `--shutdown-delay` (the
/// endpoints and kube-proxy lag behind), as are requests on a connection opened before; then the
/// process drains and exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_off_and_keeps_serving_for_the_shutdown_delay() {
    const DELAY: Duration = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let paths = certs::generate(&dir.path().join("tls"), &[], &[]).unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, dualstack_webhook::commands::EXAMPLE_POLICY).unwrap();
    let delay = DELAY.as_secs().to_string();
    let mut webhook =
        Binary::start(dir.path(), &paths, &policy, &["--shutdown-delay", &delay]).await;
    let config = client_config(&[&paths.ca_cert], H1, None);
    // One HTTP/2 connection opened before the signal and kept, as kube-apiserver keeps its own.
    let stream = connect(webhook.addr, with_alpn(&config, H2)).await.unwrap();
    let mut h2 = h2_client(stream).await.unwrap();

    // A stream of requests across the signal, until shortly before the delay ends.
    let stop = Arc::new(AtomicBool::new(false));
    let (tally, tasks) = load(
        webhook.addr,
        config.clone(),
        4,
        is_good_answer,
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok_before, _) = tally.get();
    let signalled = Instant::now();
    webhook.sigterm();

    let not_ready_after = until_not_ready(&webhook, signalled).await;
    // Until 500 ms before the delay ends (margin for a loaded machine: a request started then
    // must be accepted before the listener closes): new connections, and the connection from
    // before, are answered while /readyz stays 503.
    let (mut fresh, mut on_h2) = (0, 0);
    while signalled.elapsed() < DELAY - Duration::from_millis(500) {
        let at = signalled.elapsed();
        assert!(
            fresh_review(webhook.addr, &config).await,
            "a new connection {at:?} after SIGTERM was not answered\n{}",
            webhook.log()
        );
        fresh += 1;
        let answer = bounded("a review on the HTTP/2 connection", async {
            h2_post(&mut h2, "/mutate", REVIEW).await
        })
        .await;
        assert!(
            matches!(&answer, Ok((status, body)) if is_good_answer(*status, body)),
            "{answer:?}"
        );
        on_h2 += 1;
        assert_eq!(admin_get(webhook.admin, "/readyz").await.unwrap().0, 503);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let errors = finish(tasks).await;
    let (ok_after, failed) = tally.get();
    let (status, took) = until_exit(&mut webhook, signalled).await;
    eprintln!(
        "shutdown delay {DELAY:?}: /readyz 503 after {not_ready_after:?}; during the delay \
         {fresh} reviews on new connections, {on_h2} on the HTTP/2 connection from before and \
         {} from the load ({failed} failed); exited {status} after {took:?}",
        ok_after - ok_before
    );
    assert!(
        not_ready_after < Duration::from_millis(200),
        "/readyz still 200 {not_ready_after:?} after SIGTERM"
    );
    assert!(fresh >= 5 && on_h2 >= 5, "too few checks: {fresh}, {on_h2}");
    assert_eq!(failed, 0, "{errors:#?}\n{}", webhook.log());
    assert!(
        ok_after - ok_before > 20,
        "too little load during the delay"
    );
    assert!(status.success(), "{status}: {}", webhook.log());
    // Nothing was left in flight, so the drain is quick: delay + a small margin.
    assert!(
        took >= DELAY && took < DELAY + Duration::from_secs(3),
        "exited {took:?} after SIGTERM"
    );
    let log = webhook.log();
    for phase in ["shutting down: not ready", "shutdown delay over", "stopped"] {
        assert_eq!(log.matches(phase).count(), 1, "{phase:?} once in:\n{log}");
    }
}

/// A second SIGTERM during the delay skips the rest of it (as Ctrl-C twice does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_cuts_the_shutdown_delay_short() {
    let dir = tempfile::tempdir().unwrap();
    let paths = certs::generate(&dir.path().join("tls"), &[], &[]).unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, dualstack_webhook::commands::EXAMPLE_POLICY).unwrap();
    let mut webhook = Binary::start(dir.path(), &paths, &policy, &["--shutdown-delay", "30"]).await;
    let config = client_config(&[&paths.ca_cert], H1, None);

    let first = Instant::now();
    webhook.sigterm();
    until_not_ready(&webhook, first).await;
    assert!(
        fresh_review(webhook.addr, &config).await,
        "still serving during the delay"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(webhook.child.try_wait().unwrap().is_none(), "exited early");
    let second = Instant::now();
    webhook.sigterm();
    let (status, took) = until_exit(&mut webhook, second).await;
    eprintln!(
        "second SIGTERM {:?} after the first: exited {status} {took:?} later (delay 30 s)",
        second - first
    );
    assert!(status.success(), "{status}: {}", webhook.log());
    assert!(
        took < Duration::from_secs(3),
        "exited {took:?} after the second SIGTERM"
    );
    let log = webhook.log();
    assert_eq!(log.matches("second signal").count(), 1, "{log}");
    assert!(!log.contains("shutdown delay over"), "{log}");
}

// === 4. mutual TLS through the binary ===

#[tokio::test]
async fn client_ca_accepts_a_client_certificate_and_refuses_none() {
    let dir = tempfile::tempdir().unwrap();
    let paths = certs::generate(&dir.path().join("tls"), &[], &[]).unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, dualstack_webhook::commands::EXAMPLE_POLICY).unwrap();
    let ca = paths.ca_cert.to_str().unwrap().to_owned();
    let webhook = Binary::start(dir.path(), &paths, &policy, &["--client-ca", &ca]).await;

    let identity =
        certs::generate_client(&paths.ca_key, "kube-apiserver", &dir.path().join("client"))
            .unwrap();
    for alpn in [H1, H2] {
        let config = client_config(&[&paths.ca_cert], alpn, Some(&identity));
        let stream = bounded("connect", connect(webhook.addr, config))
            .await
            .unwrap();
        let (status, body) = bounded("review", async {
            if alpn == H2 {
                h2_post(&mut h2_client(stream).await?, "/mutate", REVIEW).await
            } else {
                h1_post(stream, "/mutate", REVIEW).await
            }
        })
        .await
        .unwrap();
        assert!(is_good_answer(status, &body), "{status}");
    }

    // No client certificate: no answer. (With TLS 1.3 the client's side of the handshake may
    // complete first, so the refusal may surface at the first request.)
    let config = client_config(&[&paths.ca_cert], H1, None);
    let result = bounded("refused", async {
        let stream = connect(webhook.addr, config).await?;
        h1_post(stream, "/mutate", REVIEW)
            .await
            .map_err(std::io::Error::other)
    })
    .await;
    assert!(result.is_err(), "{result:?}");
    let failures = async {
        while webhook.metric("tls_handshake_failures_total").await == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    bounded("the refusal to be counted", failures).await;
}
