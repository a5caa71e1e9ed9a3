//! A rolling update through the real API server: two isolated webhook instances behind a small
//! test-only TCP proxy that plays kube-proxy and the endpoints controller, `failurePolicy: Fail`,
//! and a client creating Services while instance 1 gets SIGTERM (instance 2 keeps serving, as
//! the new pod of a rollout does). With `--shutdown-delay 3` no write fails; the control, with
//! `--shutdown-delay 0` (what the webhook did before the flag), shows failed writes.
//!
//! The path under test: kube-apiserver keeps an HTTP/2 connection to the backend it reached
//! first. On SIGTERM instance 1 answers `/readyz` with 503 and keeps serving; the proxy, which
//! polls `/readyz` once a second (endpoint updates lag like that), sends new connections to
//! instance 2 from its next poll on. After the delay instance 1 closes its listener and GOAWAYs
//! its connections, and the API server reconnects through the proxy, to instance 2. Without the
//! delay the reconnect comes before the proxy has noticed, reaches a closed port, and the
//! webhook call (so the write) fails.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::support::{self, Render, Webhook};

/// How often the proxy polls each backend's `/readyz`: its endpoints lag by up to this much.
const POLL: Duration = Duration::from_secs(1);
/// The most connections the proxy pipes at once (kube-apiserver needs one or two); more are
/// closed at once.
const MAX_CONNECTIONS: usize = 64;
/// One create every 100 ms (~10/s), for 15 s.
const CREATE_EVERY: Duration = Duration::from_millis(100);
const RUN_FOR: Duration = Duration::from_secs(15);
/// When, into the loop, instance 1 gets SIGTERM (right after a poll of the proxy's).
const SIGTERM_AT: Duration = Duration::from_secs(4);

/// With the delay, no create fails while instance 1 leaves, and the API server moves to
/// instance 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e harness: make e2e"]
async fn rollout_with_shutdown_delay_fails_no_write() {
    let delay = 3;
    let run = rollout("e2e-iso-roll-delay", delay).await;
    assert!(
        run.failures.is_empty(),
        "{} of {} creates failed: {:#?}",
        run.failures.len(),
        run.ok + run.failures.len(),
        run.failures
    );
    assert!(run.ok >= 100, "only {} creates ran", run.ok);
    let exited = run.exited_after.expect("instance 1 exited");
    // The delay, then a drain with only quick reviews in flight.
    assert!(
        exited >= Duration::from_secs(delay) && exited < Duration::from_secs(delay + 5),
        "instance 1 exited {exited:?} after SIGTERM"
    );
    assert!(
        run.to_new >= 1,
        "the API server never reached instance 2: {run:?}"
    );
}

/// The control: without the delay, the API server's reconnects reach instance 1's closed port
/// until the proxy's next poll, and those writes fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e harness: make e2e"]
async fn rollout_without_shutdown_delay_fails_writes() {
    let run = rollout("e2e-iso-roll-nodelay", 0).await;
    assert!(
        !run.failures.is_empty(),
        "expected failed creates without the delay: {run:?}"
    );
    assert!(run.exited_after.is_some(), "instance 1 exited");
}

// === the rollout ===

/// What one rollout saw.
#[derive(Debug)]
struct Run {
    /// Creates that succeeded (and were mutated).
    ok: usize,
    /// The creates that failed, with the error and when (from SIGTERM).
    failures: Vec<String>,
    /// When instance 1 exited, from SIGTERM.
    exited_after: Option<Duration>,
    /// Connections the proxy piped to instance 1 and to instance 2.
    to_old: u64,
    to_new: u64,
    /// Connections it forwarded to a backend that refused them.
    refused: u64,
}

/// Instances 1 and 2 (`--shutdown-delay delay`) behind a proxy, configurations for `ns` only
/// pointing at the proxy, a loop of creates, SIGTERM to instance 1 during it.
async fn rollout(ns: &str, delay: u64) -> Run {
    let cidrs = support::env("E2E_SERVICE_CIDRS");
    let policy = support::isolated_policy();
    let mut old = Webhook::start_with_shutdown_delay(&format!("{ns}-1"), &cidrs, &policy, delay);
    let new = Webhook::start_with_shutdown_delay(&format!("{ns}-2"), &cidrs, &policy, delay);
    let mut proxy = Proxy::start(&[&old, &new]).await;
    let client = support::client().await;
    let api = support::namespace(&client, ns).await;
    // Both CAs: a connection through the proxy may reach either instance.
    let render = Render {
        name: ns,
        base_url: &format!("https://127.0.0.1:{}", proxy.port),
        ca_pem: &format!("{}{}", old.ca_pem(), new.ca_pem()),
        failure_policy: Some("Fail"),
        only_namespace: Some(ns),
        policy: Some(&policy),
    };
    support::apply_webhooks(&client, &render).await;
    support::wait_mutating(&client, ns, "PreferDualStack").await;
    let (to_old, to_new, _) = proxy.counts();
    assert!(
        to_old >= 1 && to_new == 0,
        "the API server should hold connections to instance 1 only: {to_old}, {to_new}"
    );

    let sigterm_at = Arc::new(OnceLock::new());
    let creates = tokio::spawn(creates(api, sigterm_at.clone()));
    tokio::time::sleep(SIGTERM_AT).await;
    // Right after a poll: the proxy learns of the SIGTERM a full poll interval later, the
    // endpoint lag a rollout meets.
    proxy.next_poll().await;
    old.sigterm();
    let signalled = Instant::now();
    sigterm_at.set(signalled).unwrap();
    let mut exited_after = None;
    while signalled.elapsed() < Duration::from_secs(delay + 30) {
        if old.has_exited() {
            exited_after = Some(signalled.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, failures) = creates.await.unwrap();
    let (to_old, to_new, refused) = proxy.counts();
    support::delete_webhooks(&client, ns).await;
    proxy.stop().await;
    let run = Run {
        ok,
        failures,
        exited_after,
        to_old,
        to_new,
        refused,
    };
    eprintln!(
        "rollout --shutdown-delay {delay}: {} creates, {} failed; instance 1 exited {:?} after \
         SIGTERM; proxy: {} connections to instance 1, {} to instance 2, {} refused; first \
         failure: {:?}",
        run.ok + run.failures.len(),
        run.failures.len(),
        run.exited_after,
        run.to_old,
        run.to_new,
        run.refused,
        run.failures.first()
    );
    run
}

/// Creates a Service every [`CREATE_EVERY`] for [`RUN_FOR`]: how many succeeded (and were
/// mutated), and the failures, each with when it happened (from SIGTERM, once `sigterm_at` is
/// set).
async fn creates(api: Api<Service>, sigterm_at: Arc<OnceLock<Instant>>) -> (usize, Vec<String>) {
    let started = Instant::now();
    let (mut ok, mut failures) = (0, Vec::new());
    // A create starts every 100 ms, or as soon as the previous one ends if it took longer.
    let mut tick = tokio::time::interval(CREATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut i = 0;
    while started.elapsed() < RUN_FOR {
        tick.tick().await;
        let svc = support::service(&format!("roll-{i}"), json!({}));
        let result = api.create(&PostParams::default(), &svc).await;
        let at = sigterm_at
            .get()
            .map(|t| format!("{:?} after SIGTERM", t.elapsed()));
        match result {
            Ok(s) if support::policy_of(&s) == "PreferDualStack" => ok += 1,
            Ok(s) => failures.push(format!("roll-{i} ({at:?}) not mutated: {:?}", s.spec)),
            Err(e) => {
                // The API server repeats its message in the details: the first part is enough.
                let e: String = e.to_string().chars().take(240).collect();
                failures.push(format!("roll-{i} ({at:?}): {e}"));
            }
        }
        i += 1;
    }
    (ok, failures)
}

// === the proxy: kube-proxy + the endpoints controller, in miniature ===

/// One webhook instance behind the proxy.
struct Backend {
    https: SocketAddr,
    admin: SocketAddr,
    /// Whether its `/readyz` answered 200 at the last poll.
    ready: AtomicBool,
    /// Connections piped to it.
    connections: AtomicU64,
}

struct Endpoints {
    backends: Vec<Backend>,
    /// Connections forwarded to a backend that refused them.
    refused: AtomicU64,
}

impl Endpoints {
    /// The first backend that was ready at the last poll. In order, not at random as
    /// kube-proxy's iptables mode: the worst case, where every new connection during the lag goes
    /// to the instance that is leaving (at random it is half of them, the same failure).
    fn pick(&self) -> Option<&Backend> {
        self.backends
            .iter()
            .find(|b| b.ready.load(Ordering::SeqCst))
    }
}

/// A TCP proxy on 127.0.0.1 (TLS passes through): each new connection goes to a backend that
/// was ready at the last poll and stays piped to it until either side closes. Its tasks end
/// with [`Proxy::stop`] (or when it is dropped).
struct Proxy {
    port: u16,
    endpoints: Arc<Endpoints>,
    polls: watch::Receiver<u64>,
    tasks: JoinSet<()>,
}

impl Proxy {
    /// Starts it in front of `backends` and returns after the first poll.
    async fn start(backends: &[&Webhook]) -> Self {
        let endpoints = Arc::new(Endpoints {
            backends: backends
                .iter()
                .map(|w| Backend {
                    https: SocketAddr::from(([127, 0, 0, 1], w.port)),
                    admin: w.admin,
                    ready: AtomicBool::new(false),
                    connections: AtomicU64::new(0),
                })
                .collect(),
            refused: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (polled, polls) = watch::channel(0);
        let mut tasks = JoinSet::new();
        tasks.spawn(poll(endpoints.clone(), polled));
        tasks.spawn(accept(listener, endpoints.clone()));
        let mut proxy = Proxy {
            port,
            endpoints,
            polls,
            tasks,
        };
        proxy.next_poll().await;
        proxy
    }

    /// Waits until the next poll has finished.
    async fn next_poll(&mut self) {
        self.polls.mark_unchanged();
        tokio::time::timeout(POLL * 5, self.polls.changed())
            .await
            .expect("the proxy polls")
            .unwrap();
    }

    /// Connections piped to the first and second backends, and connections refused.
    fn counts(&self) -> (u64, u64, u64) {
        let piped = |i: usize| {
            self.endpoints.backends[i]
                .connections
                .load(Ordering::SeqCst)
        };
        (
            piped(0),
            piped(1),
            self.endpoints.refused.load(Ordering::SeqCst),
        )
    }

    /// Stops polling and accepting and closes every piped connection.
    async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Polls every backend's `/readyz` every [`POLL`], as the kubelet's probes and the endpoints
/// controller would, and counts the polls on `polled`.
async fn poll(endpoints: Arc<Endpoints>, polled: watch::Sender<u64>) {
    loop {
        for b in &endpoints.backends {
            b.ready.store(readyz_ok(b.admin).await, Ordering::SeqCst);
        }
        polled.send_modify(|n| *n += 1);
        tokio::time::sleep(POLL).await;
    }
}

/// Whether `GET /readyz` on `admin` answers 200 within 500 ms.
async fn readyz_ok(admin: SocketAddr) -> bool {
    let get = async {
        let mut s = TcpStream::connect(admin).await?;
        s.write_all(b"GET /readyz HTTP/1.0\r\nHost: proxy\r\n\r\n")
            .await?;
        let mut head = [0; 12]; // "HTTP/1.x 200"
        s.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), get).await,
        Ok(Ok(head)) if &head[9..] == b"200"
    )
}

/// Accepts connections and pipes each to a backend, at most [`MAX_CONNECTIONS`] at once; the
/// pipes end with this task.
async fn accept(listener: TcpListener, endpoints: Arc<Endpoints>) {
    let mut pipes = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while pipes.try_join_next().is_some() {}
        if pipes.len() >= MAX_CONNECTIONS {
            continue; // dropped: closed at once
        }
        pipes.spawn(pipe(client, endpoints.clone()));
    }
}

/// Pipes `client` to a ready backend until either side closes. With no ready backend, or one
/// that refuses, the client's connection is closed (kube-proxy would reject it, or the pod would
/// answer the SYN with a reset).
async fn pipe(mut client: TcpStream, endpoints: Arc<Endpoints>) {
    let Some(backend) = endpoints.pick() else {
        return;
    };
    match TcpStream::connect(backend.https).await {
        Ok(mut server) => {
            backend.connections.fetch_add(1, Ordering::SeqCst);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
        Err(_) => {
            endpoints.refused.fetch_add(1, Ordering::SeqCst);
        }
    }
}
