//! The binary's subcommands as users and scripts call them: exit codes, output, messages.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_dualstack-webhook");
const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/policy.yaml");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child may exit before reading (e.g. on a bad flag): a broken pipe is not the test's failure.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: prod-a, labels: {exposure: public}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod-a}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 443}]
---
apiVersion: v1
kind: Service
metadata: {name: legacy-lb, namespace: prod-a}
spec:
  type: LoadBalancer
  ipFamilyPolicy: SingleStack
  selector: {app: old}
  ports: [{port: 80}]
---
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Service
    metadata: {name: db, namespace: apps}
    spec: {type: ExternalName, externalName: db.example.com}
  - apiVersion: v1
    kind: Service
    metadata: {name: pinned, namespace: apps}
    spec: {clusterIP: 10.200.0.1, selector: {app: p}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ignored}
"#;

#[test]
fn check_judges_manifests_as_the_cluster_would() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("services.yaml"), MANIFESTS).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run(
        &[
            "check",
            "--policy",
            POLICY,
            "--service-cidrs",
            "10.96.0.0/16,fd00:10:96::/112",
            "--output",
            "json",
            d,
        ],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a Deny violation fails the check"
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    // Mutated to the rule's RequireDualStack, allocated IPv6 first: compliant.
    assert_eq!(row("web")["verdict"], "ok");
    assert_eq!(row("web")["policy"], "RequireDualStack");
    assert_eq!(row("web")["families"], serde_json::json!(["IPv6", "IPv4"]));
    assert_eq!(row("legacy-lb")["verdict"], "deny");
    assert!(
        row("legacy-lb")["message"]
            .as_str()
            .unwrap()
            .contains("public-lb-dual-stack")
    );
    assert_eq!(row("db")["verdict"], "ok");
    assert_eq!(row("pinned")["verdict"], "refused");
    assert_eq!(
        rows.as_array().unwrap().len(),
        4,
        "Deployments and non-manifests are skipped"
    );

    let table = run(
        &[
            "check",
            "--policy",
            POLICY,
            "--service-cidrs",
            "10.96.0.0/16,fd00:10:96::/112",
            d,
        ],
        b"",
    );
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.starts_with("NAMESPACE  NAME"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("legacy-lb") && l.contains("deny")),
        "{text}"
    );
}

#[test]
fn check_passes_compliant_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ok.yaml");
    std::fs::write(&file, "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: apps}\nspec: {selector: {a: b}, ports: [{port: 80}]}\n").unwrap();
    let out = run(&["check", "--policy", POLICY, file.to_str().unwrap()], b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn review_answers_on_stdout_and_refuses_non_reviews_with_one_line() {
    let request = std::fs::read(format!(
        "{FIXTURES}/dual-v4/validate/create-deny-single-stack-lb.json"
    ))
    .unwrap();
    let out = run(
        &["review", "--policy", POLICY, "--endpoint", "validate"],
        &request,
    );
    assert_eq!(out.status.code(), Some(0), "a denial is still an answer");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["response"]["allowed"], false);

    let out = run(&["review", "--policy", POLICY], b"{not json");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("malformed AdmissionReview"), "{err}");
}

#[test]
fn a_broken_policy_names_the_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\nrules:\n  - name: a\n    acton: Deny\n").unwrap();
    let out = run(&["review", "--policy", policy.to_str().unwrap()], b"{}");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("unknown field `acton`") && err.contains("line 5"),
        "{err}"
    );
    // serve refuses to start on it, before binding anything.
    let out = run(
        &[
            "serve",
            "--policy",
            policy.to_str().unwrap(),
            "--tls-cert",
            "x",
            "--tls-key",
            "y",
            "--listen",
            "127.0.0.1:1",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("unknown field `acton`")
    );
}

#[test]
fn certs_writes_a_ca_and_a_san_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "certs",
            "--out",
            dir.path().to_str().unwrap(),
            "--dns",
            "webhook.example",
            "--ip",
            "10.0.0.1",
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
}

#[test]
fn serve_refuses_missing_certificates_with_the_path() {
    let out = run(
        &[
            "serve",
            "--policy",
            POLICY,
            "--tls-cert",
            "/nonexistent/tls.crt",
            "--tls-key",
            "/nonexistent/tls.key",
            "--listen",
            "127.0.0.1:1",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("/nonexistent/tls.crt")
    );
}
