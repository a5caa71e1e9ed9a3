//! `--output policyreport` applied to a real API server: on a harness of its own (no webhook, so
//! Services that violate the policy can be stored), the vendored PolicyReport CRD
//! (`tests/schemas/wgpolicyk8s.io_policyreports.yaml`, Kyverno's `wgpolicyk8s.io/v1alpha2`) is
//! installed, `audit --output policyreport` is piped into `kubectl apply -f -`, and what the API
//! server stores is read back: every report, result and summary exactly as written (nothing
//! refused by strict field validation, nothing pruned). A second run applies as `unchanged` (the
//! output is deterministic), and a `check` run over a file with an unreadable document replaces
//! the reports of its namespaces.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::support::{self, Harness, create};

/// The CRD, as vendored for `tests/outputs.rs`.
fn crd() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemas/wgpolicyk8s.io_policyreports.yaml")
}

/// `kubectl --kubeconfig HARNESS ARGS...`, with `stdin` piped in.
fn kubectl(harness: &Harness, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(support::env("E2E_KUBECTL"))
        .arg("--kubeconfig")
        .arg(harness.kubeconfig())
        .args(["--request-timeout", "30s"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin)
        .expect("write kubectl's stdin");
    child.wait_with_output().expect("wait for kubectl")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the binary's `SUBCOMMAND --policy MAIN --output policyreport ARGS...` against the harness.
fn reports_of(harness: &Harness, subcommand: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(support::env("E2E_WEBHOOK_BIN"))
        .arg(subcommand)
        .arg("--policy")
        .arg(support::main_policy())
        .args(["--output", "policyreport"])
        .args(args)
        .env("KUBECONFIG", harness.kubeconfig())
        .stdin(Stdio::null())
        .output()
        .expect("run dualstack-webhook");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    assert!(
        stdout.starts_with("---\n"),
        "{subcommand}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), stdout)
}

/// The YAML documents of an output, by namespace.
fn by_namespace(text: &str) -> BTreeMap<String, Value> {
    text.split("---\n")
        .filter(|doc| !doc.trim().is_empty())
        .map(|doc| {
            let report: Value = serde_yaml_ng::from_str(doc).unwrap();
            let ns = report["metadata"]["namespace"].as_str().unwrap().to_owned();
            (ns, report)
        })
        .collect()
}

/// The PolicyReports the API server stores, by namespace.
fn stored(harness: &Harness) -> BTreeMap<String, Value> {
    let out = kubectl(harness, &["get", "policyreports", "-A", "-o", "json"], b"");
    let list: Value = serde_json::from_str(&ok(&out, "kubectl get policyreports")).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metadata"]["namespace"].as_str().unwrap().to_owned(),
                r.clone(),
            )
        })
        .collect()
}

/// Each written report is stored with its name, label, results and summary unchanged.
fn assert_stored(stored: &BTreeMap<String, Value>, written: &BTreeMap<String, Value>) {
    for (ns, report) in written {
        let kept = stored
            .get(ns)
            .unwrap_or_else(|| panic!("no PolicyReport stored in {ns}: {stored:#?}"));
        assert_eq!(kept["metadata"]["name"], "dualstack-webhook", "{kept:#}");
        assert_eq!(
            kept["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "dualstack-webhook"
        );
        assert_eq!(kept["results"], report["results"], "{ns}: results");
        assert_eq!(kept["summary"], report["summary"], "{ns}: summary");
    }
}

/// `(rule, result)` of the results about one Service.
fn results_of(report: &Value, name: &str) -> Vec<(String, String)> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resources"][0]["name"] == name)
        .map(|r| {
            (
                r["rule"].as_str().unwrap_or_default().to_owned(),
                r["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn policy_reports_are_stored_by_the_api_server() {
    let cidrs = format!("{},{}", support::V4_RANGE, support::V6_RANGE);
    let harness = Harness::start("reports-apiserver", &cidrs);
    let crd = crd();
    let crd = crd.to_string_lossy();
    ok(
        &kubectl(&harness, &["apply", "-f", &crd], b""),
        "apply the CRD",
    );
    ok(
        &kubectl(
            &harness,
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=30s",
                "crd/policyreports.wgpolicyk8s.io",
            ],
            b"",
        ),
        "wait for the CRD",
    );

    let client = support::client_for(&harness.kubeconfig()).await;
    let single = json!({"ipFamilyPolicy": "SingleStack"});
    let seeds = [
        ("e2e-deny", "single", single.clone()),
        (
            "e2e-deny",
            "dual",
            json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}),
        ),
        (
            "e2e-warn",
            "v4-first",
            json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]}),
        ),
        ("e2e-audit", "single", single.clone()),
        ("e2e-exempt", "single", single.clone()),
    ];
    for (ns, name, spec) in &seeds {
        let api = support::namespace(&client, ns).await;
        create(&api, &support::service(name, spec.clone())).await;
    }

    // audit: a Deny violation, so exit 1; one report per namespace with a Service.
    let (code, text) = reports_of(&harness, "audit", &[]);
    assert_eq!(code, Some(1), "{text}");
    let written = by_namespace(&text);
    let namespaces: Vec<&str> = written.keys().map(String::as_str).collect();
    assert_eq!(
        namespaces,
        ["default", "e2e-audit", "e2e-deny", "e2e-exempt", "e2e-warn"]
    );
    let applied = ok(
        &kubectl(&harness, &["apply", "-f", "-"], text.as_bytes()),
        "apply",
    );
    assert_eq!(
        applied.lines().filter(|l| l.ends_with(" created")).count(),
        written.len(),
        "{applied}"
    );
    let kept = stored(&harness);
    assert_eq!(kept.len(), written.len(), "{kept:#?}");
    assert_stored(&kept, &written);
    let pair = |rule: &str, result: &str| vec![(rule.to_owned(), result.to_owned())];
    assert_eq!(
        results_of(&kept["e2e-deny"], "single"),
        pair("deny-single-stack", "fail")
    );
    assert_eq!(results_of(&kept["e2e-deny"], "dual"), pair("", "pass"));
    assert_eq!(
        results_of(&kept["e2e-warn"], "v4-first"),
        pair("warn-ipv4-primary", "warn")
    );
    assert_eq!(
        results_of(&kept["e2e-audit"], "single"),
        pair("audit-single-stack", "fail")
    );
    assert_eq!(results_of(&kept["e2e-exempt"], "single"), pair("", "skip"));
    assert_eq!(results_of(&kept["default"], "kubernetes"), pair("", "pass"));
    assert_eq!(
        kept["e2e-deny"]["summary"],
        json!({"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0})
    );

    // A second run writes the same bytes: nothing to change.
    let (_, again) = reports_of(&harness, "audit", &[]);
    assert_eq!(again, text);
    let applied = ok(
        &kubectl(&harness, &["apply", "-f", "-"], again.as_bytes()),
        "apply again",
    );
    assert!(
        applied.lines().all(|l| l.ends_with(" unchanged")),
        "{applied}"
    );

    // check: a file with a Service and an unreadable document; its reports replace audit's in
    // e2e-deny, and the unreadable document's result goes to `default`, with no resource.
    let file = support::workdir().join("reports-check.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Service\nmetadata: {name: from-file, namespace: e2e-deny}\n\
         spec: {ipFamilyPolicy: SingleStack, ports: [{port: 80}]}\n---\n: not [yaml\n",
    )
    .unwrap();
    let (code, text) = reports_of(
        &harness,
        "check",
        &["--service-cidrs", &cidrs, &file.to_string_lossy()],
    );
    assert_eq!(code, Some(1), "{text}");
    let written = by_namespace(&text);
    assert_eq!(written.keys().collect::<Vec<_>>(), ["default", "e2e-deny"]);
    ok(
        &kubectl(&harness, &["apply", "-f", "-"], text.as_bytes()),
        "apply check's reports",
    );
    let kept = stored(&harness);
    assert_stored(&kept, &written);
    assert_eq!(
        results_of(&kept["e2e-deny"], "from-file"),
        pair("deny-single-stack", "fail")
    );
    assert_eq!(kept["e2e-deny"]["results"].as_array().unwrap().len(), 1);
    let default = kept["default"]["results"].as_array().unwrap();
    assert_eq!(default.len(), 1, "{default:#?}");
    assert_eq!(default[0]["result"], "error");
    assert_eq!(default[0]["rule"], "unreadable-document");
    assert!(default[0].get("resources").is_none(), "{default:#?}");
    assert_eq!(default[0]["properties"]["documentIndex"], "1");
    // Reports of other namespaces are left as audit wrote them.
    assert_eq!(kept.len(), 5, "{kept:#?}");
}
