//! What every e2e test needs: the driver's environment, a kube client, Service builders, the
//! rendered webhook configurations, webhook processes and harnesses the tests start themselves, and
//! small bounded-wait helpers.
//!
//! Everything that could hang is bounded ([`eventually`], the harness's READY_TIMEOUT, socket
//! timeouts); every process a test starts is stopped by a guard's `Drop` and is also recorded in
//! `$E2E_WORKDIR/pids/`, so the driver's trap can stop it if the test binary itself dies.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::BodyExt as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::{Api, Client, Config};
use serde_json::{Value, json};

/// Field manager for everything the tests write.
pub(crate) const MANAGER: &str = "dualstack-webhook-e2e";
/// The dual-stack, IPv4-primary ranges of the main harness (the driver's default).
pub(crate) const V4_RANGE: &str = "10.96.0.0/16";
/// The IPv6 range of the main harness.
pub(crate) const V6_RANGE: &str = "fd00:10:96::/112";
/// Upper bound for every "wait until" in the tests.
pub(crate) const WAIT: Duration = Duration::from_secs(30);
/// A namespace label: namespaces that carry it are served by a webhook of the test's own,
/// registered on the main harness; the driver's configurations skip them
/// (`setup::register_webhooks`).
pub(crate) const OWN_WEBHOOK_LABEL: &str = "e2e.dualstack-webhook.io/own-webhook";

// === environment ===

/// Reads a variable the driver (`tests/e2e/run.sh`) exports; a clear panic otherwise.
pub(crate) fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the e2e tests through tests/e2e/run.sh (make e2e)")
    })
}

/// The driver's work directory (per run, deleted by the driver).
pub(crate) fn workdir() -> PathBuf {
    PathBuf::from(env("E2E_WORKDIR"))
}

/// The repository's `manifests/` directory.
pub(crate) fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

/// The policy of the driver's webhook (`tests/e2e/policy.yaml`).
pub(crate) fn main_policy() -> PathBuf {
    PathBuf::from(env("E2E_POLICY"))
}

/// `tests/e2e/policy-isolated.yaml`: defaults only, for the failure-mode tests' own webhooks.
pub(crate) fn isolated_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/policy-isolated.yaml")
}

/// `tests/apiserver` (start.sh, stop.sh, restart-apiserver.sh).
pub(crate) fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apiserver")
}

fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    // kube's rustls client and the webhook library agree on ring; exactly one provider per process.
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A kube client for the main harness.
pub(crate) async fn client() -> Client {
    client_for(Path::new(&env("E2E_KUBECONFIG"))).await
}

/// A kube client for the harness whose kubeconfig is at `path`.
pub(crate) async fn client_for(path: &Path) -> Client {
    install_crypto_provider();
    let kubeconfig = Kubeconfig::read_from(path).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("kube client")
}

/// Creates the namespace if it does not exist yet and returns an `Api<Service>` in it.
pub(crate) async fn namespace(client: &Client, name: &str) -> Api<Service> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => panic!("create namespace {name}: {error}"),
    }
    Api::namespaced(client.clone(), name)
}

/// Creates the namespace with these labels, or sets them on the existing one (merge patch: other
/// labels stay).
pub(crate) async fn labelled_namespace(client: &Client, name: &str, labels: Value) {
    namespace(client, name).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let patch = json!({"metadata": {"labels": labels}});
    namespaces
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("label namespace {name}: {e}"));
}

// === Services ===

/// A ClusterIP Service with a selector and one port; `spec` is merged over that.
pub(crate) fn service(name: &str, spec: Value) -> Service {
    let mut base = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"e2e": "true"}},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]},
    });
    merge(&mut base["spec"], spec);
    serde_json::from_value(base).expect("service json")
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Creates a Service and returns what the API server stored.
pub(crate) async fn create(api: &Api<Service>, svc: &Service) -> Service {
    api.create(&PostParams::default(), svc)
        .await
        .unwrap_or_else(|e| panic!("create {:?}: {e}", svc.metadata.name))
}

/// Creates a Service that must be refused; returns the API server's status.
pub(crate) async fn create_refused(api: &Api<Service>, svc: &Service) -> kube::core::Status {
    match api.create(&PostParams::default(), svc).await {
        Ok(s) => panic!("{:?} was accepted: {:?}", svc.metadata.name, s.spec),
        Err(kube::Error::Api(status)) => *status,
        Err(e) => panic!("create {:?}: unexpected error {e}", svc.metadata.name),
    }
}

/// A JSON merge patch.
pub(crate) async fn merge_patch(api: &Api<Service>, name: &str, patch: Value) -> Service {
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patch {name}: {e}"))
}

/// The dual-stack fields of a stored Service: (policy, families, clusterIP, clusterIPs).
pub(crate) fn stack(svc: &Service) -> (Option<String>, Vec<String>, Option<String>, Vec<String>) {
    let spec = svc.spec.clone().unwrap_or_default();
    (
        spec.ip_family_policy,
        spec.ip_families.unwrap_or_default(),
        spec.cluster_ip,
        spec.cluster_ips.unwrap_or_default(),
    )
}

/// The rows of a JSON report (`audit`, `migrate`) by `namespace/name`.
pub(crate) fn rows_by_name(rows: &[Value]) -> std::collections::BTreeMap<String, &Value> {
    rows.iter()
        .map(|r| {
            let (ns, name) = (r["namespace"].as_str(), r["name"].as_str());
            (format!("{}/{}", ns.unwrap(), name.unwrap()), r)
        })
        .collect()
}

/// The `ipFamilyPolicy` of a stored Service.
pub(crate) fn policy_of(svc: &Service) -> String {
    stack(svc).0.unwrap_or_default()
}

/// `["IPv6", "IPv4"]` from `&["IPv6", "IPv4"]`.
pub(crate) fn fams(f: &[&str]) -> Vec<String> {
    f.iter().map(|s| (*s).to_owned()).collect()
}

/// Whether `ip` is inside `cidr` (both parsed with ipnet).
pub(crate) fn in_range(ip: &str, cidr: &str) -> bool {
    let net: ipnet::IpNet = cidr.parse().unwrap();
    net.contains(&ip.parse::<std::net::IpAddr>().unwrap())
}

/// Creates a Service with a raw request, to read the `Warning` headers (kube-rs does not surface
/// them). Returns (HTTP status, warnings, body).
pub(crate) async fn create_with_warnings(
    client: &Client,
    namespace: &str,
    svc: &Service,
) -> (u16, Vec<String>, Value) {
    let req = kube::core::Request::new(format!("/api/v1/namespaces/{namespace}/services"))
        .create(&PostParams::default(), serde_json::to_vec(svc).unwrap())
        .unwrap();
    let reply = send_raw(client, req).await;
    (reply.status, reply.warnings, reply.body)
}

/// What the API server answered a raw request: what kube-rs does not surface.
#[derive(Debug)]
pub(crate) struct RawReply {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The `Warning` headers, in order.
    pub(crate) warnings: Vec<String>,
    /// The `Audit-Id` header: the `auditID` of the request's audit events.
    pub(crate) audit_id: Option<String>,
    /// The body as JSON (`Null` when it is not JSON).
    pub(crate) body: Value,
}

/// Sends a request built with `kube::core::Request` and returns the status, the `Warning` and
/// `Audit-Id` headers and the body.
pub(crate) async fn send_raw(client: &Client, req: http::Request<Vec<u8>>) -> RawReply {
    let what = format!("{} {}", req.method(), req.uri());
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get_all(name)
            .iter()
            // Warnings are UTF-8 (a cut one ends with `…`), which `to_str` refuses.
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
    };
    let warnings = header(http::header::WARNING.as_str());
    let audit_id = header("audit-id").into_iter().next();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    RawReply {
        status,
        warnings,
        audit_id,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

// === waiting ===

/// Polls `f` until it returns `Some`, at most [`WAIT`]; panics with `what` otherwise.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// === webhook configurations ===

/// How to render the configurations `serve --register-webhooks` registers for a webhook on
/// loopback (`dualstack-webhook webhook-configurations --url`).
///
/// `policy` is the policy file the registered webhook serves: the configurations then carry the
/// `matchConditions` generated from it (`--policy`), as `serve --register-webhooks` registers
/// them, so the API server skips the calls whose answer the policy already gives. `None` renders
/// them without conditions: every Service write is sent.
pub(crate) struct Render<'a> {
    /// `metadata.name` of both configurations.
    pub(crate) name: &'a str,
    /// `https://127.0.0.1:PORT`; the webhook's path is appended.
    pub(crate) base_url: &'a str,
    /// PEM of the CA(s) to trust (concatenated during a CA rotation).
    pub(crate) ca_pem: &'a str,
    /// Overrides `failurePolicy` when set.
    pub(crate) failure_policy: Option<&'a str>,
    /// Restricts the configurations to this one namespace (isolated tests) when set.
    pub(crate) only_namespace: Option<&'a str>,
    /// The policy the webhook serves: `--policy`, the generated `matchConditions`; `None`, none.
    pub(crate) policy: Option<&'a Path>,
}

/// The documents of a YAML file, as JSON values (empty documents skipped).
pub(crate) fn yaml_documents(path: &Path) -> Vec<Value> {
    yaml_documents_of(
        &std::fs::read_to_string(path).unwrap(),
        &path.display().to_string(),
    )
}

fn yaml_documents_of(text: &str, source: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{source}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// What `dualstack-webhook webhook-configurations --url [--policy]` prints (the configurations the
/// webhook registers, sent to a URL, with the policy's `matchConditions`), with [`Render`]'s
/// overrides; without the in-process defaults that follow them ([`render_in_process_defaults`]):
/// the suite tests the webhook itself.
pub(crate) fn render_webhooks(r: &Render<'_>) -> Vec<Value> {
    rendered_of_kind(r, |kind| kind.ends_with("WebhookConfiguration"))
}

/// The in-process defaults `webhook-configurations --policy` prints after the configurations (a
/// MutatingAdmissionPolicy and its binding), named `<Render::name>-defaults`; restricted to
/// [`Render::only_namespace`] when set.
pub(crate) fn render_in_process_defaults(r: &Render<'_>) -> Vec<Value> {
    assert!(r.policy.is_some(), "the in-process defaults need --policy");
    let name = json!(format!("{}-defaults", r.name));
    let mut docs = rendered_of_kind(r, |kind| kind.starts_with("MutatingAdmissionPolicy"));
    assert_eq!(
        docs.len(),
        2,
        "MutatingAdmissionPolicy and binding: {docs:#?}"
    );
    for doc in &mut docs {
        doc["metadata"]["name"] = name.clone();
        if doc["kind"] == "MutatingAdmissionPolicyBinding" {
            doc["spec"]["policyName"] = name.clone();
            if let Some(ns) = r.only_namespace {
                restrict_namespaces(
                    &mut doc["spec"]["matchResources"],
                    json!({"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns]}),
                );
            }
        }
    }
    docs
}

/// The documents `webhook-configurations` prints for `r` whose kind `keep` accepts.
fn rendered_of_kind(r: &Render<'_>, keep: impl Fn(&str) -> bool) -> Vec<Value> {
    let mut docs = rendered(r);
    docs.retain(|d| keep(d["kind"].as_str().unwrap_or_default()));
    docs
}

fn rendered(r: &Render<'_>) -> Vec<Value> {
    let dir = workdir().join("rendered-webhooks");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join(format!("{}-{}.crt", r.name, std::process::id()));
    std::fs::write(&ca, r.ca_pem).unwrap();
    let mut cmd = Command::new(env("E2E_WEBHOOK_BIN"));
    cmd.args([
        "webhook-configurations",
        "--name",
        r.name,
        "--url",
        r.base_url,
    ])
    .arg("--ca-bundle")
    .arg(&ca);
    if let Some(fp) = r.failure_policy {
        cmd.args(["--failure-policy", fp]);
    }
    if let Some(policy) = r.policy {
        cmd.arg("--policy").arg(policy);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "webhook-configurations: {out:?}");
    let mut docs = yaml_documents_of(
        &String::from_utf8(out.stdout).unwrap(),
        "webhook-configurations",
    );
    for doc in &mut docs {
        render_one(doc, r);
    }
    docs
}

/// Renders one webhook configuration document in place for [`Render`] (other kinds, and
/// configurations without webhooks, keep everything but the name).
pub(crate) fn render_one(doc: &mut Value, r: &Render<'_>) {
    let kind = doc["kind"].as_str().unwrap_or_default();
    if !kind.ends_with("WebhookConfiguration") {
        return;
    }
    doc["metadata"]["name"] = json!(r.name);
    let Some(hooks) = doc["webhooks"].as_array_mut() else {
        return;
    };
    let bundle = base64::engine::general_purpose::STANDARD.encode(r.ca_pem);
    for hook in hooks {
        if let Some(path) = hook["clientConfig"]["service"]["path"].as_str() {
            let url = format!("{}{path}", r.base_url);
            hook["clientConfig"] = json!({"url": url, "caBundle": bundle});
        }
        if let Some(fp) = r.failure_policy {
            hook["failurePolicy"] = json!(fp);
        }
        if let Some(ns) = r.only_namespace {
            restrict_namespaces(
                hook,
                json!({"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns]}),
            );
        }
    }
}

/// Adds `requirement` to a webhook's `namespaceSelector` (ANDed with what is there: the
/// generated exclusions stay).
pub(crate) fn restrict_namespaces(hook: &mut Value, requirement: Value) {
    let selector = &mut hook["namespaceSelector"];
    if !selector.is_object() {
        *selector = json!({});
    }
    let expressions = &mut selector["matchExpressions"];
    if !expressions.is_array() {
        *expressions = json!([]);
    }
    expressions.as_array_mut().unwrap().push(requirement);
}

/// Creates or replaces (server-side apply) the rendered configurations.
pub(crate) async fn apply_webhooks(client: &Client, r: &Render<'_>) {
    apply_webhook_documents(client, render_webhooks(r)).await;
}

/// Creates or replaces (server-side apply) rendered configuration documents, each under its own
/// `metadata.name`.
pub(crate) async fn apply_webhook_documents(client: &Client, docs: Vec<Value>) {
    let params = PatchParams::apply(MANAGER).force();
    for doc in docs {
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match doc["kind"].as_str() {
            Some("MutatingWebhookConfiguration") => {
                let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
                let obj: MutatingWebhookConfiguration = serde_json::from_value(doc).unwrap();
                api.patch(&name, &params, &Patch::Apply(&obj))
                    .await
                    .expect("apply MutatingWebhookConfiguration");
            }
            Some("ValidatingWebhookConfiguration") => {
                let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
                let obj: ValidatingWebhookConfiguration = serde_json::from_value(doc).unwrap();
                api.patch(&name, &params, &Patch::Apply(&obj))
                    .await
                    .expect("apply ValidatingWebhookConfiguration");
            }
            Some("MutatingAdmissionPolicy" | "MutatingAdmissionPolicyBinding") => {
                let api = admission_policy_api(client, doc["kind"].as_str().unwrap()).await;
                let obj: DynamicObject = serde_json::from_value(doc).unwrap();
                api.patch(&name, &params, &Patch::Apply(&obj))
                    .await
                    .unwrap_or_else(|e| panic!("apply {name}: {e}"));
            }
            other => panic!("unexpected kind {other:?} from webhook-configurations"),
        }
    }
}

/// The API of an admissionregistration.k8s.io/v1 kind, through discovery.
async fn admission_policy_api(client: &Client, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("discover {gvk:?}: {e}"));
    Api::all_with(client.clone(), &resource)
}

/// Deletes both configurations named `name` and the in-process defaults `<name>-defaults`
/// (absent is fine).
pub(crate) async fn delete_webhooks(client: &Client, name: &str) {
    let dp = kube::api::DeleteParams::default();
    let m: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let v: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let defaults = format!("{name}-defaults");
    let policy = admission_policy_api(client, "MutatingAdmissionPolicy").await;
    let binding = admission_policy_api(client, "MutatingAdmissionPolicyBinding").await;
    for r in [
        m.delete(name, &dp).await.map(|_| ()),
        v.delete(name, &dp).await.map(|_| ()),
        binding.delete(&defaults, &dp).await.map(|_| ()),
        policy.delete(&defaults, &dp).await.map(|_| ()),
    ] {
        match r {
            Ok(()) | Err(kube::Error::Api(_)) => {}
            Err(e) => panic!("delete webhook configuration {name}: {e}"),
        }
    }
}

/// Waits until the API server calls `/mutate` for `ns` (a dry-run create comes back with the
/// policy's defaults): configuration changes reach the API server through an informer.
pub(crate) async fn wait_mutating(client: &Client, ns: &str, expected_policy: &str) {
    let api = namespace(client, ns).await;
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually(&format!("/mutate called for namespace {ns}"), || async {
        let svc = service("probe", json!({}));
        match api.create(&dry, &svc).await {
            Ok(s) if policy_of(&s) == expected_policy => Some(()),
            _ => None,
        }
    })
    .await;
}

// === processes ===

/// A TCP port on 127.0.0.1 that is free now, below the kernel's ephemeral range where there is
/// room (as `tests/apiserver/lib.sh` does): a port from that range (what binding port 0 returns)
/// can be taken by an outgoing connection before the webhook binds it.
pub(crate) fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|&low| low > 12_000);
    let Some(high) = ephemeral_low else {
        return TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    };
    let random = RandomState::new();
    for i in 0..200_u32 {
        let port = 10_000 + (random.hash_one(i) % u64::from(high - 10_000)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below {high}");
}

/// A minimal HTTP/1.0 GET for the webhook's plain-HTTP admin port: (status, body).
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}

/// Sum of the samples of a metric whose line starts with `prefix` and contains every `labels` item.
pub(crate) fn metric(text: &str, prefix: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Whether a `/mutate` answer carries a patch. Where the webhook knows the service ranges, what it
/// knows shows here: it patches a Service pinning an IP the API server accepts, and sends no patch
/// where the API server refuses the IP anyway (the policy's defaults cannot help it).
pub(crate) fn patched(response: &Value) -> bool {
    response.get("patch").is_some_and(|p| p.is_string())
}

/// POSTs an AdmissionReview v1 for creating `svc` in `namespace` straight to the webhook's
/// `endpoint` (`/mutate` or `/validate`) over HTTPS (curl, verifying against `ca`), not through an
/// API server; returns the review's `response`.
pub(crate) fn review(
    base_url: &str,
    ca: &Path,
    endpoint: &str,
    namespace: &str,
    svc: &Service,
) -> Value {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "e2e-direct",
            "kind": {"group": "", "version": "v1", "kind": "Service"},
            "resource": {"group": "", "version": "v1", "resource": "services"},
            "name": svc.metadata.name,
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "e2e"},
            "object": svc,
            "dryRun": false,
        },
    });
    let mut child = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", "--cacert"])
        .arg(ca)
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
        ])
        .arg(format!("{base_url}{endpoint}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(&review).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "POST {endpoint}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("AdmissionReview JSON");
    answer["response"].clone()
}

/// Records `pid` for the driver's cleanup trap.
pub(crate) fn record_pid(name: &str, pid: u32) -> PathBuf {
    let dir = workdir().join("pids");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.pid"));
    std::fs::write(&file, pid.to_string()).unwrap();
    file
}

/// Sends SIGTERM to a process a test started and returns at once.
pub(crate) fn sigterm_process(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM {}", child.id());
}

/// Stops a process a test started: TERM, up to 10 s, then KILL; waits for it and removes its
/// pid file.
pub(crate) fn stop_process(mut child: Child, pid_file: &Path) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(pid_file);
}

/// A webhook process started by a test; stopped (TERM, then KILL) when dropped.
pub(crate) struct Webhook {
    child: Option<Child>,
    pid_file: PathBuf,
    /// Where it keeps certificates, its policy and its log.
    pub(crate) dir: PathBuf,
    /// HTTPS port (127.0.0.1).
    pub(crate) port: u16,
    /// Admin (plain HTTP) address.
    pub(crate) admin: SocketAddr,
    cidrs: Option<String>,
    policy: PathBuf,
    /// `--watch-cluster` with `KUBECONFIG` set to this file.
    watch: Option<PathBuf>,
}

/// How [`Webhook::watching`] starts a webhook.
pub(crate) struct Watching<'a> {
    /// The kubeconfig of the harness to watch.
    pub(crate) kubeconfig: &'a Path,
    /// `--service-cidrs` as well (it wins over the ServiceCIDR watch).
    pub(crate) cidrs: Option<&'a str>,
    /// The policy file.
    pub(crate) policy: &'a Path,
    /// Wait for `/readyz` (otherwise only for the admin port).
    pub(crate) wait_ready: bool,
}

impl Webhook {
    /// Makes certificates in `$E2E_WORKDIR/<name>/certs` and starts the release webhook there with
    /// `policy`, a 1 s reload interval and `--service-cidrs cidrs`.
    pub(crate) fn start(name: &str, cidrs: &str, policy: &Path) -> Self {
        let mut hook = Self::prepare(name, Some(cidrs), policy, None);
        hook.spawn(true);
        hook
    }

    /// As [`Webhook::start`], but with `--watch-cluster` on the harness of `w.kubeconfig`.
    pub(crate) fn watching(name: &str, w: &Watching<'_>) -> Self {
        let mut hook = Self::prepare(name, w.cidrs, w.policy, Some(w.kubeconfig));
        hook.spawn(w.wait_ready);
        hook
    }

    fn prepare(name: &str, cidrs: Option<&str>, policy: &Path, watch: Option<&Path>) -> Self {
        let dir = workdir().join(name);
        let certs = dir.join("certs");
        let out = Command::new(env("E2E_WEBHOOK_BIN"))
            .args(["certs", "--out"])
            .arg(&certs)
            .output()
            .unwrap();
        assert!(out.status.success(), "certs: {out:?}");
        Webhook {
            child: None,
            pid_file: PathBuf::new(),
            dir,
            port: free_port(),
            admin: SocketAddr::from(([127, 0, 0, 1], free_port())),
            cidrs: cidrs.map(str::to_owned),
            policy: policy.to_owned(),
            watch: watch.map(Path::to_owned),
        }
    }

    /// Starts the process with `serve_args` added; waits for `/readyz` with `wait_ready`, else
    /// only for `/healthz`.
    fn spawn_with(&mut self, wait_ready: bool, serve_args: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("webhook.log"))
            .unwrap();
        let certs = self.dir.join("certs");
        let mut cmd = Command::new(env("E2E_WEBHOOK_BIN"));
        cmd.arg("serve");
        if let Some(cidrs) = &self.cidrs {
            cmd.arg("--service-cidrs").arg(cidrs);
        }
        // Only what this webhook is told: never a KUBECONFIG inherited from the caller.
        cmd.env_remove("KUBECONFIG");
        if let Some(kubeconfig) = &self.watch {
            cmd.arg("--watch-cluster").env("KUBECONFIG", kubeconfig);
        }
        let child = cmd
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--admin-listen")
            .arg(self.admin.to_string())
            .arg("--tls-cert")
            .arg(certs.join("tls.crt"))
            .arg("--tls-key")
            .arg(certs.join("tls.key"))
            .arg("--policy")
            .arg(&self.policy)
            .arg("--reload-interval")
            .arg("1")
            .args(serve_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start webhook");
        let name = self.dir.file_name().unwrap().to_string_lossy().into_owned();
        self.pid_file = record_pid(&format!("webhook-{name}"), child.id());
        self.child = Some(child);
        let path = if wait_ready { "/readyz" } else { "/healthz" };
        let deadline = Instant::now() + WAIT;
        while !matches!(http_get(self.admin, path), Ok((200, _))) {
            assert!(
                self.is_running(),
                "webhook exited; see {}",
                self.dir.display()
            );
            assert!(Instant::now() < deadline, "webhook: no 200 from {path}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The HTTP status of its `/readyz` (0 when the admin port does not answer).
    pub(crate) fn readyz(&self) -> u16 {
        http_get(self.admin, "/readyz").map_or(0, |(status, _)| status)
    }

    /// `https://127.0.0.1:PORT`.
    pub(crate) fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The policy file it serves.
    pub(crate) fn policy(&self) -> &Path {
        &self.policy
    }

    /// The PEM of the CA that signed its current certificate.
    pub(crate) fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.join("certs/ca.crt")).unwrap()
    }

    /// Its `/metrics` text.
    pub(crate) fn metrics(&self) -> String {
        http_get(self.admin, "/metrics").expect("metrics").1
    }

    /// Stops the process (TERM, 10 s, then KILL) and waits for it.
    pub(crate) fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_process(child, &self.pid_file);
        }
    }

    /// Restarts on the same ports with new service CIDRs.
    pub(crate) fn restart(&mut self, cidrs: &str) {
        self.stop();
        self.cidrs = Some(cidrs.to_owned());
        self.spawn(true);
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A second etcd + kube-apiserver started by a test with `tests/apiserver/start.sh`; stopped when
/// dropped.
pub(crate) struct Harness {
    /// Its work dir (kubeconfig, env, logs).
    pub(crate) dir: PathBuf,
}

impl Harness {
    /// Starts one with these service CIDRs in `$E2E_WORKDIR/<name>` (the driver built the binaries).
    pub(crate) fn start(name: &str, cidrs: &str) -> Self {
        Self::start_with(name, cidrs, "")
    }

    /// As [`Harness::start`], with `apiserver_args` added to kube-apiserver's command line
    /// (`start.sh` passes `APISERVER_EXTRA_ARGS` on).
    pub(crate) fn start_with(name: &str, cidrs: &str, apiserver_args: &str) -> Self {
        let dir = workdir().join(name);
        // The guard first: its Drop stops whatever a start that fails part way left running.
        let harness = Harness { dir: dir.clone() };
        let out = Command::new(harness_dir().join("start.sh"))
            .arg("--workdir")
            .arg(&dir)
            .args(["--service-cidrs", cidrs])
            .env("SKIP_BUILD", "1")
            .env("APISERVER_EXTRA_ARGS", apiserver_args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "start.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        harness
    }

    /// Its kubeconfig.
    pub(crate) fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// Stops only its kube-apiserver (etcd keeps running), much as `tests/apiserver/lib.sh`'s
    /// `stop_pidfile` does: TERM to the pid in `kube-apiserver.pid` after checking that the
    /// process's command line names this work dir, then KILL after 5 s (with watch clients
    /// attached it was seen to take over 20 s to exit; for an outage a crash is as good).
    /// `restart_apiserver` starts it again.
    pub(crate) fn stop_apiserver(&self) {
        let pid_file = self.dir.join("kube-apiserver.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .to_owned();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&cmdline).contains(&*self.dir.to_string_lossy()),
            "pid {pid} is not this harness's kube-apiserver"
        );
        let gone = || {
            // Exited: no /proc entry, or a zombie its (re)parent has not reaped yet.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
        };
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if !gone() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while !gone() {
                assert!(
                    Instant::now() < deadline,
                    "kube-apiserver {pid} did not stop"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// `restart-apiserver.sh`: same etcd, new service ranges.
    pub(crate) fn restart_apiserver(&self, cidrs: &str) {
        let out = Command::new(harness_dir().join("restart-apiserver.sh"))
            .arg(&self.dir)
            .arg(cidrs)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restart-apiserver.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = Command::new(harness_dir().join("stop.sh"))
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
    }
}

// === shutdown delay (rollout.rs) ===

impl Webhook {
    /// Starts the process with `--shutdown-delay 0`: the tests that stop a webhook want it gone
    /// at once (a webhook outage, a restart on the same ports), not after the default delay that
    /// a rollout needs.
    fn spawn(&mut self, wait_ready: bool) {
        self.spawn_with(wait_ready, &["--shutdown-delay", "0"]);
    }

    /// As [`Webhook::start`], with `--shutdown-delay secs` (see `rollout.rs`).
    pub(crate) fn start_with_shutdown_delay(
        name: &str,
        cidrs: &str,
        policy: &Path,
        secs: u64,
    ) -> Self {
        let mut hook = Self::prepare(name, Some(cidrs), policy, None);
        hook.spawn_with(true, &["--shutdown-delay", &secs.to_string()]);
        hook
    }

    /// Sends SIGTERM and returns at once, as the kubelet does at the start of a pod's termination;
    /// [`Webhook::has_exited`] tells when it has exited. Does nothing once it has exited.
    pub(crate) fn sigterm(&mut self) {
        if self.is_running()
            && let Some(child) = &self.child
        {
            sigterm_process(child);
        }
    }

    /// Whether the process has exited (after [`Webhook::sigterm`]). Once it has, the guard lets
    /// go of it: dropping it then signals nobody (its pid may be reused).
    pub(crate) fn has_exited(&mut self) -> bool {
        let exited = self
            .child
            .as_mut()
            .is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
        if exited && self.child.take().is_some() {
            let _ = std::fs::remove_file(&self.pid_file);
        }
        exited
    }
}
