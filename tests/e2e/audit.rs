//! `dualstack-webhook audit` against Services seeded through a harness of its own, where no webhook
//! is registered (so Services that violate the policy can be stored, as on a cluster before the
//! webhook is turned on). The binary runs with `KUBECONFIG` and the main e2e policy; the verdicts
//! per Service, the exit code (1 on a Deny violation, 0 without) and the table's columns are
//! checked.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::{self, Harness, create};

/// Runs `audit --policy POLICY ARGS...` against the harness.
fn audit(harness: &Harness, policy: &Path, args: &[&str]) -> Output {
    Command::new(support::env("E2E_WEBHOOK_BIN"))
        .arg("audit")
        .arg("--policy")
        .arg(policy)
        .args(args)
        .env("KUBECONFIG", harness.kubeconfig())
        .output()
        .expect("run audit")
}

/// Seeds one Service per verdict of the main policy (`policy.yaml`) and checks what audit says of
/// each, then the exit code of the JSON and table runs.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn audit_judges_stored_services() {
    let harness = Harness::start("audit-apiserver", "10.96.0.0/16,fd00:10:96::/112");
    let client = support::client_for(&harness.kubeconfig()).await;
    let single = json!({"ipFamilyPolicy": "SingleStack"});
    let dual_v4_first =
        json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]});
    let dual_v6_first =
        json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]});
    // (namespace, namespace labels, name, spec) → expected (verdict, rule).
    let seeds = [
        (
            "e2e-deny",
            json!({}),
            "single",
            single.clone(),
            ("deny", "deny-single-stack"),
        ),
        (
            "e2e-deny",
            json!({}),
            "dual",
            dual_v6_first.clone(),
            ("ok", ""),
        ),
        (
            "e2e-warn",
            json!({}),
            "v4-first",
            dual_v4_first.clone(),
            ("warn", "warn-ipv4-primary"),
        ),
        (
            "e2e-audit",
            json!({}),
            "single",
            single.clone(),
            ("audit", "audit-single-stack"),
        ),
        (
            "e2e-exempt",
            json!({}),
            "single",
            single.clone(),
            ("exempt", ""),
        ),
        // Namespace labels matter to audit too (it lists namespaces).
        (
            "e2e-nssel-public",
            json!({"exposure": "public"}),
            "single-v6",
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]}),
            ("deny", "public-must-be-dual"),
        ),
        (
            "e2e-nssel-internal",
            json!({"exposure": "internal"}),
            "v4-first",
            dual_v4_first.clone(),
            ("ok", ""),
        ),
    ];
    for (ns, labels, name, spec, _) in &seeds {
        support::labelled_namespace(&client, ns, labels.clone()).await;
        let api = kube::Api::namespaced(client.clone(), ns);
        create(&api, &support::service(name, spec.clone())).await;
    }

    let out = audit(&harness, &support::main_policy(), &["--output", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {stderr}");
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let by_name = support::rows_by_name(&rows);
    for (ns, _, name, _, (verdict, rule)) in &seeds {
        let row = by_name
            .get(&format!("{ns}/{name}"))
            .unwrap_or_else(|| panic!("{ns}/{name} not in {rows:#?}"));
        assert_eq!(row["verdict"], *verdict, "{ns}/{name}: {row}");
        let rules: Vec<&str> = row["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        if rule.is_empty() {
            assert!(rules.is_empty(), "{ns}/{name}: {row}");
        } else {
            assert!(rules.contains(rule), "{ns}/{name}: {row}");
        }
        assert_eq!(row["type"], "ClusterIP", "{row}");
        // Every row shows the stored stack, exempt ones too (regressions::audit_exempt_rows_show_the_stored_stack).
        assert!(!row["clusterIPs"].as_array().unwrap().is_empty(), "{row}");
    }
    // The deny row says what is wrong and what to set, as the webhook's denial would.
    let deny = by_name["e2e-deny/single"];
    let message = deny["message"].as_str().unwrap();
    assert!(message.contains("rule \"deny-single-stack\""), "{deny}");
    assert!(
        message.contains("set spec.ipFamilyPolicy: RequireDualStack"),
        "{deny}"
    );
    // The API server's own Service is listed too (namespace default: no rule applies).
    assert_eq!(by_name["default/kubernetes"]["verdict"], "ok", "{rows:#?}");
    assert_eq!(rows.len(), seeds.len() + 1, "{rows:#?}");

    let out = audit(&harness, &support::main_policy(), &["--output", "table"]);
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8_lossy(&out.stdout);
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "NAMESPACE",
        "NAME",
        "TYPE",
        "POLICY",
        "FAMILIES",
        "CLUSTER-IPS",
        "VERDICT",
        "RULES",
    ] {
        assert!(header.contains(column), "{column} not in {header:?}");
    }
    for (ns, _, name, _, (verdict, _)) in &seeds {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(ns) && l.contains(name) && l.contains(verdict)),
            "{ns}/{name} {verdict} not in\n{table}"
        );
    }

    // A policy without Deny rules: nothing would be refused, exit 0.
    let out = audit(&harness, &support::isolated_policy(), &["--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
