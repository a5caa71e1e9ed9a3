//! The Helm chart `charts/dualstack-webhook` against the kustomize manifests it mirrors.
//!
//! Objects are compared parsed (YAML → JSON values), never as text. Every test but the first is
//! `#[ignore]`d: it runs `helm` and `kubectl` (for `kubectl kustomize`), which `make helm` builds
//! from Go modules (`tests/helm/build.sh`, `tests/apiserver/build.sh`) and then runs
//! `cargo test --test helm -- --include-ignored`. `HELM` and `KUBECTL` override the binaries
//! (default `/var/cache/dualstack-webhook/bin/{helm,kubectl}`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use serde_json::{Value, json};

const CHART: &str = "charts/dualstack-webhook";
const NS: &str = "dualstack-webhook";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tool(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(
        || Path::new("/var/cache/dualstack-webhook/bin").join(name),
        PathBuf::from,
    )
}

/// Runs a command in the repository; its stdout, or `Err(stderr)`.
fn run(program: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (make helm builds it)", program.display()));
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// `helm template` of the chart in namespace `ns` with extra arguments.
fn try_helm(ns: &str, extra: &[&str]) -> Result<Vec<Value>, String> {
    let args = [&["template", "dualstack-webhook", CHART, "-n", ns], extra].concat();
    run(&tool("HELM", "helm"), &args).map(|out| documents(&out))
}

fn helm(ns: &str, extra: &[&str]) -> Vec<Value> {
    try_helm(ns, extra).unwrap_or_else(|e| panic!("helm template {extra:?}: {e}"))
}

/// `kubectl kustomize DIR`, less the Namespace (a chart does not create its namespace).
fn kustomize(dir: &str) -> Vec<Value> {
    let out = run(&tool("KUBECTL", "kubectl"), &["kustomize", dir])
        .unwrap_or_else(|e| panic!("kubectl kustomize {dir}: {e}"));
    documents(&out)
        .into_iter()
        .filter(|d| d["kind"] != "Namespace")
        .collect()
}

fn key(doc: &Value) -> String {
    let m = &doc["metadata"];
    let ns = m["namespace"].as_str().unwrap_or("-");
    format!("{} {}/{ns}/{}", doc["apiVersion"], doc["kind"], m["name"]).replace('"', "")
}

/// The same objects on both sides, each equal as parsed values.
fn assert_same_objects(what: &str, chart: &[Value], kustomize: &[Value]) {
    let index = |docs: &[Value]| -> BTreeMap<String, Value> {
        let map: BTreeMap<_, _> = docs.iter().map(|d| (key(d), d.clone())).collect();
        assert_eq!(map.len(), docs.len(), "{what}: duplicate objects");
        map
    };
    let (chart, kustomize) = (index(chart), index(kustomize));
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        kustomize.keys().collect::<Vec<_>>(),
        "{what}: chart objects (left) vs kustomize objects (right)"
    );
    for (k, object) in &chart {
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap();
        assert!(
            object == &kustomize[k],
            "{what}: {k} differs\n--- chart:\n{}\n--- kustomize:\n{}",
            pretty(object),
            pretty(&kustomize[k])
        );
    }
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} rendered"))
}

fn container(docs: &[Value]) -> &Value {
    &find(docs, "Deployment", "dualstack-webhook")["spec"]["template"]["spec"]["containers"][0]
}

/// The chart's default policy is the example the binary embeds, byte for byte.
#[test]
fn chart_policy_file_equals_manifests_policy() {
    let read = |p: &str| std::fs::read_to_string(repo().join(p)).unwrap();
    assert!(
        read("charts/dualstack-webhook/files/policy.yaml") == read("manifests/policy.yaml"),
        "charts/dualstack-webhook/files/policy.yaml differs from manifests/policy.yaml: copy it over"
    );
}

/// Default values render exactly the objects of `manifests/base` (its Namespace aside).
#[test]
#[ignore = "needs helm and kubectl: make helm"]
fn chart_defaults_equal_the_kustomize_base() {
    assert_same_objects("defaults", &helm(NS, &[]), &kustomize("manifests/base"));
}

/// `certificates.mode=cert-manager` renders exactly the objects of the cert-manager overlay.
#[test]
#[ignore = "needs helm and kubectl: make helm"]
fn cert_manager_mode_equals_the_cert_manager_overlay() {
    assert_same_objects(
        "cert-manager",
        &helm(NS, &["--set", "certificates.mode=cert-manager"]),
        &kustomize("manifests/overlays/cert-manager"),
    );
}

/// In another namespace, every namespaced object, the ServiceAccount subjects and the serving
/// certificate's names follow the release namespace; nothing else changes.
#[test]
#[ignore = "needs helm and kubectl: make helm"]
fn another_namespace_moves_every_namespaced_reference() {
    let ns = "platform-system";
    let mut expected = kustomize("manifests/overlays/cert-manager");
    for doc in &mut expected {
        if doc["metadata"]["namespace"].is_string() {
            doc["metadata"]["namespace"] = json!(ns);
        }
        // get_mut, pointer_mut: indexing a missing key would insert a null.
        if let Some(subjects) = doc.get_mut("subjects").and_then(Value::as_array_mut) {
            for s in subjects {
                s["namespace"] = json!(ns);
            }
        }
        // The namespaces the in-process defaults leave out: the webhook's own among them.
        if let Some(values) = doc
            .pointer_mut("/spec/matchResources/namespaceSelector/matchExpressions/0/values")
            .and_then(Value::as_array_mut)
        {
            for v in values.iter_mut().filter(|v| *v == "dualstack-webhook") {
                *v = json!(ns);
            }
        }
        if let Some(names) = doc
            .pointer_mut("/spec/dnsNames")
            .and_then(Value::as_array_mut)
        {
            for n in names {
                *n = json!(
                    n.as_str()
                        .unwrap()
                        .replace(".dualstack-webhook", &format!(".{ns}"))
                );
            }
        }
    }
    let chart = helm(ns, &["--set", "certificates.mode=cert-manager"]);
    assert_same_objects(ns, &chart, &expected);
    let serving = find(&chart, "Certificate", "dualstack-webhook-serving");
    assert!(
        serving["spec"]["dnsNames"]
            .as_array()
            .unwrap()
            .contains(&json!("dualstack-webhook.platform-system.svc")),
        "{serving}"
    );
}

/// `--set-file policy=...` becomes the ConfigMap's content byte for byte; the other values reach
/// the objects they configure; the pod template does not change with the policy (no restart).
#[test]
#[ignore = "needs helm and kubectl: make helm"]
fn values_reach_the_objects() {
    let custom = "tests/e2e/policy.yaml";
    let docs = helm(
        NS,
        &[
            "--set-file",
            &format!("policy={custom}"),
            "--set",
            "failurePolicy=Ignore,replicas=2,image.repository=registry.example/dsw,image.tag=v1",
            "--set",
            "imagePullSecrets[0].name=pull,podDisruptionBudget.minAvailable=1",
            "--set",
            "priorityClass.create=false,certificates.secretName=my-tls",
        ],
    );
    let policy = &find(&docs, "ConfigMap", "dualstack-webhook-policy")["data"]["policy.yaml"];
    assert_eq!(
        policy.as_str().unwrap(),
        std::fs::read_to_string(repo().join(custom)).unwrap()
    );
    let c = container(&docs);
    assert!(
        c["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--failure-policy=Ignore"))
    );
    assert_eq!(c["image"], "registry.example/dsw:v1");
    let deployment = find(&docs, "Deployment", "dualstack-webhook");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "pull"}]));
    assert!(pod["priorityClassName"].is_null(), "{pod}");
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "tls", "secret": {"secretName": "my-tls"}}))
    );
    assert!(!docs.iter().any(|d| d["kind"] == "PriorityClass"));
    let pdb = find(&docs, "PodDisruptionBudget", "dualstack-webhook");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let pod_template = |extra: &[&str]| {
        find(&helm(NS, extra), "Deployment", "dualstack-webhook")["spec"]["template"].clone()
    };
    let (default_pod, custom_pod) = (
        pod_template(&[]),
        pod_template(&["--set-file", &format!("policy={custom}")]),
    );
    assert_eq!(
        default_pod, custom_pod,
        "a policy change must not restart the pods"
    );
}

/// values.schema.json refuses what the webhook or the chart cannot use.
#[test]
#[ignore = "needs helm and kubectl: make helm"]
fn schema_refuses_bad_values() {
    for bad in [
        "failurePolicy=Maybe",
        "certificates.mode=vault",
        "replica=3",
        "image.pullPolicy=Sometimes",
        "podDisruptionBudget.minAvailable=most",
    ] {
        let err = try_helm(NS, &["--set", bad]).expect_err(bad);
        assert!(err.contains("schema"), "{bad}: {err}");
    }
}
