//! `serve --watch-cluster` against a real API server: readiness, service ranges from ServiceCIDR
//! objects (rules §7), `--service-cidrs` winning, an API server outage, and the 404 fallback.
//!
//! Each test has a harness and a webhook of its own (the watches must see exactly what the test
//! does to the cluster). Decisions are read either through that API server (the webhook registered
//! on it) or by POSTing an AdmissionReview straight to the webhook ([`support::review`]), which also
//! works while the API server is down. What the webhook knows of the ranges shows in whether it
//! patches a Service that pins an IP ([`support::patched`]): it sends the policy's defaults where the
//! API server accepts the IP, and nothing where the API server refuses it anyway.
//!
//! Readiness policy, as implemented and asserted here: `/readyz` is 503 until the first complete
//! list of each watch, then 200 for good. A lost API server does not make the webhook unready: its
//! snapshot (ranges and labels as last seen) stays valid, it keeps answering from it, and an
//! unready webhook would only turn an API-server outage into refused Services (`failurePolicy:
//! Fail`) once the API server is back and before the watch catches up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::support::{self, Harness, Render, Watching, Webhook, patched};

/// The harness's default ranges (start.sh): dual-stack, IPv4 primary.
const CIDRS: &str = "10.96.0.0/16,fd00:10:96::/112";
/// An extra IPv4 ServiceCIDR, outside the `kubernetes` one.
const EXTRA: &str = "10.97.0.0/24";
/// An IP in [`EXTRA`].
const IN_EXTRA: &str = "10.97.0.5";
/// After the API server comes back, the watcher reconnects on its backoff schedule (kube-runtime's
/// default: 0.8 s doubling with jitter, capped at 30 s), so catching up may take a while longer
/// than [`support::WAIT`].
const RECONNECT: Duration = Duration::from_secs(75);

fn watching(harness: &Harness, name: &str, cidrs: Option<&str>, wait_ready: bool) -> Webhook {
    Webhook::watching(
        name,
        &Watching {
            kubeconfig: &harness.kubeconfig(),
            cidrs,
            policy: &support::main_policy(),
            wait_ready,
        },
    )
}

/// `/mutate` straight to the webhook for a Service pinning `ip` in `ns`.
fn mutate_pinned(hook: &Webhook, ns: &str, ip: &str) -> Value {
    let svc = support::service("pinned", json!({"clusterIP": ip}));
    support::review(
        &hook.base_url(),
        &hook.dir.join("certs/ca.crt"),
        "/mutate",
        ns,
        &svc,
    )
}

/// `/validate` straight to the webhook for a stored-looking SingleStack IPv6 Service in `ns`.
fn validate_single_stack(hook: &Webhook, ns: &str) -> Value {
    let svc = support::service(
        "single",
        json!({
            "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"],
            "clusterIP": "fd00:10:96::5", "clusterIPs": ["fd00:10:96::5"],
        }),
    );
    support::review(
        &hook.base_url(),
        &hook.dir.join("certs/ca.crt"),
        "/validate",
        ns,
        &svc,
    )
}

fn allowed(response: &Value) -> bool {
    response["allowed"].as_bool().expect("response.allowed")
}

fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits up to `bound` for `f` to hold; returns how long it took.
fn wait_for(what: &str, bound: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < bound, "timed out after {bound:?}: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
    start.elapsed()
}

fn watch_errors(hook: &Webhook, resource: &str) -> f64 {
    support::metric(
        &hook.metrics(),
        "dualstack_webhook_watch_errors_total",
        &[&format!("resource=\"{resource}\"")],
    )
}

async fn create_service_cidr(client: &Client, name: &str, cidr: &str) {
    let api: Api<ServiceCIDR> = Api::all(client.clone());
    let obj: ServiceCIDR = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
        "metadata": {"name": name}, "spec": {"cidrs": [cidr]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create ServiceCIDR {name}: {e}"));
}

async fn delete_service_cidr(client: &Client, name: &str) {
    let api: Api<ServiceCIDR> = Api::all(client.clone());
    api.delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete ServiceCIDR {name}: {e}"));
    // No kube-controller-manager here: nothing holds a finalizer, the object goes at once.
    support::eventually("ServiceCIDR gone", || async {
        api.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await;
}

/// Readiness stays 503 while the watches cannot list (the API server is down when the webhook
/// starts), while `/healthz` is 200 and reviews are answered without cluster assumptions (a
/// review never waits for the API server); the failed lists show in the watch error metric.
/// Once the API server is up, `/readyz` turns 200.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn readiness_waits_for_the_first_lists() {
    let harness = Harness::start("watch-ready-apiserver", CIDRS);
    harness.stop_apiserver();
    let mut hook = watching(&harness, "watch-ready-webhook", None, false);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(hook.readyz(), 503, "ready before any list");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(hook.is_running());
    assert_eq!(support::http_get(hook.admin, "/healthz").unwrap().0, 200);
    // No snapshot yet: no range is known, so a pinned IP anywhere may be the cluster's: patched.
    let response = mutate_pinned(&hook, "e2e-watch", "10.200.0.1");
    assert!(allowed(&response) && patched(&response), "{response}");
    wait_for("list failures counted", support::WAIT, || {
        watch_errors(&hook, "servicecidrs") >= 1.0 && watch_errors(&hook, "namespaces") >= 1.0
    });

    harness.restart_apiserver(CIDRS);
    let took = wait_for("ready after the API server came up", RECONNECT, || {
        hook.readyz() == 200
    });
    eprintln!("ready {took:?} after the API server was up");
    // Now the ranges are known: 10.200.0.1 is refused by the API server anyway, so no patch.
    let response = mutate_pinned(&hook, "e2e-watch", "10.200.0.1");
    assert!(allowed(&response) && !patched(&response), "{response}");
}

/// The service ranges come from ServiceCIDR objects: an IP outside the `kubernetes` ServiceCIDR is
/// refused by the API server itself and not patched by the webhook; an extra ServiceCIDR of the same
/// family makes the IP acceptable, and the webhook then fills the policy's defaults (through the API
/// server: the stored Service is PreferDualStack, both families); deleting it makes the webhook
/// leave the IP alone again.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn service_ranges_follow_service_cidr_objects() {
    let harness = Harness::start("watch-cidrs-apiserver", CIDRS);
    let hook = watching(&harness, "watch-cidrs-webhook", None, true);
    let client = support::client_for(&harness.kubeconfig()).await;
    let (ca, url) = (hook.ca_pem(), hook.base_url());
    let render = Render {
        name: "dualstack-webhook",
        base_url: &url,
        ca_pem: &ca,
        failure_policy: None,
        only_namespace: None,
        policy: Some(hook.policy()),
    };
    support::apply_webhooks(&client, &render).await;
    support::wait_mutating(&client, "e2e-watch", "PreferDualStack").await;
    let api = support::namespace(&client, "e2e-watch").await;
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let pinned = |name: &str| support::service(name, json!({"clusterIP": IN_EXTRA}));

    let status = support::create_refused(&api, &pinned("before")).await;
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        !status.message.contains("admission webhook"),
        "{}",
        status.message
    );
    assert!(!patched(&mutate_pinned(&hook, "e2e-watch", IN_EXTRA)));

    create_service_cidr(&client, "extra-v4", EXTRA).await;
    let took = Instant::now();
    support::eventually("an IP in the new ServiceCIDR gets the defaults", || async {
        let stored = api.create(&dry, &pinned("probe")).await.ok()?;
        let (policy, _, _, _) = support::stack(&stored);
        (policy.as_deref() == Some("PreferDualStack")).then_some(())
    })
    .await;
    eprintln!("extra ServiceCIDR honoured after {:?}", took.elapsed());
    let stored = support::create(&api, &pinned("inside")).await;
    let (policy, families, ip, _) = support::stack(&stored);
    assert_eq!(ip.as_deref(), Some(IN_EXTRA));
    assert_eq!(policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, support::fams(&["IPv4", "IPv6"]));
    api.delete("inside", &DeleteParams::default())
        .await
        .unwrap();

    delete_service_cidr(&client, "extra-v4").await;
    wait_for(
        "the webhook leaves the IP alone again",
        support::WAIT,
        || !patched(&mutate_pinned(&hook, "e2e-watch", IN_EXTRA)),
    );
    support::delete_webhooks(&client, "dualstack-webhook").await;
}

/// `--service-cidrs` wins over the watch: ranges come from the flag (narrower than the cluster's
/// here), ServiceCIDR objects change nothing; the Namespace watch still runs.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn service_cidrs_flag_wins_over_the_watch() {
    let harness = Harness::start("watch-flag-apiserver", CIDRS);
    let flag = "10.96.0.0/24,fd00:10:96::/112";
    let hook = watching(&harness, "watch-flag-webhook", Some(flag), true);
    let client = support::client_for(&harness.kubeconfig()).await;

    // Inside the cluster's 10.96.0.0/16, outside the flag's 10.96.0.0/24: not patched.
    let response = mutate_pinned(&hook, "e2e-watch", "10.96.100.10");
    assert!(allowed(&response) && !patched(&response), "{response}");
    assert!(patched(&mutate_pinned(&hook, "e2e-watch", "10.96.0.10")));
    create_service_cidr(&client, "extra-v4", EXTRA).await;
    std::thread::sleep(Duration::from_secs(2));
    let response = mutate_pinned(&hook, "e2e-watch", IN_EXTRA);
    assert!(allowed(&response) && !patched(&response), "{response}");

    support::labelled_namespace(&client, "e2e-nssel-flag", json!({"exposure": "public"})).await;
    wait_for("namespace labels seen", support::WAIT, || {
        !allowed(&validate_single_stack(&hook, "e2e-nssel-flag"))
    });
    let response = validate_single_stack(&hook, "e2e-nssel-flag");
    assert!(
        message(&response).contains("public-must-be-dual"),
        "{response}"
    );
}

/// API server stopped: the webhook keeps answering from its last snapshot (an extra range and a
/// namespace label learnt before), stays ready, and counts watch errors. API server restarted:
/// changes made afterwards are picked up again.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn api_server_outage_keeps_the_last_snapshot() {
    let harness = Harness::start("watch-outage-apiserver", CIDRS);
    let hook = watching(&harness, "watch-outage-webhook", None, true);
    let client = support::client_for(&harness.kubeconfig()).await;
    let ns = "e2e-nssel-outage";
    create_service_cidr(&client, "extra-v4", EXTRA).await;
    support::labelled_namespace(&client, ns, json!({"exposure": "public"})).await;
    wait_for("extra range and label seen", support::WAIT, || {
        patched(&mutate_pinned(&hook, ns, IN_EXTRA)) && !allowed(&validate_single_stack(&hook, ns))
    });
    let errors_before = watch_errors(&hook, "servicecidrs") + watch_errors(&hook, "namespaces");

    harness.stop_apiserver();
    wait_for("watch errors counted", support::WAIT, || {
        watch_errors(&hook, "servicecidrs") + watch_errors(&hook, "namespaces") > errors_before
    });
    let response = mutate_pinned(&hook, ns, IN_EXTRA);
    assert!(
        patched(&response),
        "last snapshot's extra range: {response}"
    );
    let response = mutate_pinned(&hook, ns, "10.98.0.5");
    assert!(allowed(&response) && !patched(&response), "{response}");
    let response = validate_single_stack(&hook, ns);
    assert!(
        message(&response).contains("public-must-be-dual"),
        "{response}"
    );
    assert_eq!(hook.readyz(), 200, "ready on the last snapshot");
    let metrics = hook.metrics();
    eprintln!(
        "while down: watch errors servicecidrs={} namespaces={}",
        watch_errors(&hook, "servicecidrs"),
        watch_errors(&hook, "namespaces")
    );
    assert!(
        metrics.contains("dualstack_webhook_watch_errors_total"),
        "{metrics}"
    );

    harness.restart_apiserver(CIDRS);
    let client = support::client_for(&harness.kubeconfig()).await;
    delete_service_cidr(&client, "extra-v4").await;
    support::labelled_namespace(&client, ns, json!({"exposure": "internal"})).await;
    let took = wait_for("changes after the restart picked up", RECONNECT, || {
        !patched(&mutate_pinned(&hook, ns, IN_EXTRA)) && allowed(&validate_single_stack(&hook, ns))
    });
    eprintln!("changes picked up {took:?} after the API server restart");
    assert_eq!(hook.readyz(), 200);
}

// === the 404 fallback ===
//
// `--runtime-config=networking.k8s.io/v1/servicecidrs=false` cannot produce it: a v1.37.2
// kube-apiserver with that flag never becomes ready (its own ServiceCIDR informers need the API:
// "failed to list *v1.ServiceCIDR: the server could not find the requested resource", /readyz
// stays unready). So the webhook reaches the API server through `kubectl proxy` (plain HTTP,
// authenticated upstream) behind a small filter that answers 404 NotFound for the ServiceCIDR
// resource and passes everything else through, watches included.

/// Answers 404 (a Kubernetes `Status`) for ServiceCIDR paths, forwards the rest to `upstream`.
async fn filter(
    req: http::Request<hyper::body::Incoming>,
    upstream: SocketAddr,
) -> Result<http::Response<Either<Full<Bytes>, hyper::body::Incoming>>, hyper::Error> {
    if req
        .uri()
        .path()
        .starts_with("/apis/networking.k8s.io/v1/servicecidrs")
    {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "the server could not find the requested resource",
            "reason": "NotFound", "details": {}, "code": 404,
        });
        let body = Full::new(Bytes::from(status.to_string()));
        let resp = http::Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .body(Either::Left(body))
            .unwrap();
        return Ok(resp);
    }
    let stream = tokio::net::TcpStream::connect(upstream).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(req).await?.map(Either::Right))
}

/// Starts the filter on a free loopback port in front of `upstream`; stops with the runtime.
async fn start_filter(upstream: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(move |req| filter(req, upstream));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// `kubectl proxy` for a harness, stopped when dropped.
struct KubectlProxy(std::process::Child, std::path::PathBuf);

impl KubectlProxy {
    fn start(harness: &Harness) -> (Self, SocketAddr) {
        let port = support::free_port();
        let child = std::process::Command::new(support::env("E2E_KUBECTL"))
            .arg("--kubeconfig")
            .arg(harness.kubeconfig())
            .args(["proxy", "--address=127.0.0.1", &format!("--port={port}")])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("kubectl proxy");
        let pid_file = support::record_pid("kubectl-proxy", child.id());
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for("kubectl proxy listening", support::WAIT, || {
            matches!(support::http_get(addr, "/version"), Ok((200, _)))
        });
        (Self(child, pid_file), addr)
    }
}

impl Drop for KubectlProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_file(&self.1);
    }
}

/// The ServiceCIDR API answering 404 (an API server before 1.33, or with the API off): the
/// webhook becomes ready anyway, makes no range assumptions (a pinned IP anywhere is not judged),
/// logs why, counts no watch error for it, and still learns namespace labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e harness: make e2e"]
async fn service_cidr_api_missing_falls_back() {
    let harness = Harness::start("watch-404-apiserver", CIDRS);
    let (_proxy, upstream) = KubectlProxy::start(&harness);
    let filtered = start_filter(upstream).await;
    let kubeconfig = support::workdir().join("watch-404-kubeconfig");
    let config = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: filtered\n\
         clusters: [{{name: filtered, cluster: {{server: \"http://{filtered}\"}}}}]\n\
         users: [{{name: anonymous, user: {{}}}}]\n\
         contexts: [{{name: filtered, context: {{cluster: filtered, user: anonymous}}}}]\n"
    );
    std::fs::write(&kubeconfig, config).unwrap();
    let (status, _) = tokio::task::block_in_place(|| {
        support::http_get(filtered, "/apis/networking.k8s.io/v1/servicecidrs").unwrap()
    });
    assert_eq!(status, 404);

    let hook = tokio::task::block_in_place(|| {
        Webhook::watching(
            "watch-404-webhook",
            &Watching {
                kubeconfig: &kubeconfig,
                cidrs: None,
                policy: &support::main_policy(),
                wait_ready: true,
            },
        )
    });
    let response = mutate_pinned(&hook, "e2e-watch", "10.200.0.1");
    assert!(allowed(&response), "no range assumptions: {response}");
    // Log lines reach the file in batches (every 50 ms): wait for the line rather than read once.
    let log = || std::fs::read_to_string(hook.dir.join("webhook.log")).unwrap_or_default();
    wait_for("the missing API logged", Duration::from_secs(5), || {
        log().contains("the ServiceCIDR API is not served")
    });
    assert_eq!(watch_errors(&hook, "servicecidrs"), 0.0);

    let client = support::client_for(&harness.kubeconfig()).await;
    support::labelled_namespace(&client, "e2e-nssel-404", json!({"exposure": "public"})).await;
    tokio::task::block_in_place(|| {
        wait_for(
            "namespace labels seen through the proxy",
            support::WAIT,
            || !allowed(&validate_single_stack(&hook, "e2e-nssel-404")),
        );
    });
}
