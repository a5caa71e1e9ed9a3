//! `dualstack-webhook audit` against Services seeded through a harness of its own, where no webhook
//! is registered (so Services that violate the policy can be stored, as on a cluster before the
//! webhook is turned on). The binary runs with `KUBECONFIG` and the main e2e policy; the verdicts
//! per Service, the exit code (1 on a Deny violation, 0 without) and the table's columns are
//! checked. On another such harness, `audit` and `migrate` run as users bound to the ClusterRoles of
//! `manifests/extras/commands-rbac.yaml`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::ResourceExt as _;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::migrate::migrate;
use crate::support::{self, Harness, create};

/// Runs `audit --policy POLICY ARGS...` against the cluster of `kubeconfig`.
fn audit(kubeconfig: &Path, policy: &Path, args: &[&str]) -> Output {
    Command::new(support::env("E2E_WEBHOOK_BIN"))
        .arg("audit")
        .arg("--policy")
        .arg(policy)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
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

    let out = audit(
        &harness.kubeconfig(),
        &support::main_policy(),
        &["--output", "json"],
    );
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

    let out = audit(
        &harness.kubeconfig(),
        &support::main_policy(),
        &["--output", "table"],
    );
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
    let out = audit(
        &harness.kubeconfig(),
        &support::isolated_policy(),
        &["--output", "json"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `manifests/extras/commands-rbac.yaml` is enough and no more: a user bound to
/// `dualstack-webhook-audit` audits and plans a migration, one bound to `dualstack-webhook-migrate`
/// applies it, and the auditor's apply is refused by the API server before anything is written.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn audit_and_migrate_run_with_the_extras_roles() {
    let harness = Harness::start("rbac-apiserver", "10.96.0.0/16,fd00:10:96::/112");
    let client = support::client_for(&harness.kubeconfig()).await;
    let manifest = support::manifests_dir().join("extras/commands-rbac.yaml");
    for doc in support::yaml_documents(&manifest) {
        let role: ClusterRole = serde_json::from_value(doc).unwrap();
        let name = role.metadata.name.clone().unwrap();
        let user = name.replace("dualstack-webhook", "e2e");
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": user},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }))
        .unwrap();
        let pp = PostParams::default();
        Api::<ClusterRole>::all(client.clone())
            .create(&pp, &role)
            .await
            .unwrap();
        Api::<ClusterRoleBinding>::all(client.clone())
            .create(&pp, &binding)
            .await
            .unwrap();
    }
    let api = support::namespace(&client, "e2e-rbac").await;
    let stored = create(
        &api,
        &support::service("web", json!({"ipFamilyPolicy": "SingleStack"})),
    )
    .await;
    let policy = harness.kubeconfig().with_file_name("rbac-policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n\
         defaults: {ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv4, IPv6]}\n",
    )
    .unwrap();
    let (auditor, migrator) = (
        kubeconfig_as(&harness, "e2e-audit"),
        kubeconfig_as(&harness, "e2e-migrate"),
    );
    // The API server's authorizer sees a new binding within moments.
    let out = support::eventually("audit as e2e-audit", || {
        let out = audit(&auditor, &policy, &["--output", "json"]);
        async move { out.status.success().then_some(out) }
    })
    .await;
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = support::rows_by_name(&rows);
    assert_eq!(by_name["e2e-rbac/web"]["verdict"], "ok", "{rows:#?}");
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let out = migrate(&auditor, &policy, &["--namespace", "e2e-rbac"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "plan: 1 to change, 0 to skip\n"
    );

    let out = migrate(&auditor, &policy, &["--namespace", "e2e-rbac", "--apply"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().last().unwrap(),
        "dualstack-webhook: e2e-rbac/web: services \"web\" is forbidden: User \"e2e-audit\" cannot \
         patch resource \"services\" in API group \"\" in the namespace \"e2e-rbac\"; stopped after \
         0 of 1 changes (a rerun resumes)"
    );
    let unchanged = api.get("web").await.unwrap();
    assert_eq!(unchanged.resource_version(), stored.resource_version());

    let out = migrate(&migrator, &policy, &["--namespace", "e2e-rbac", "--apply"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let migrated = api.get("web").await.unwrap();
    let (family_policy, families, _, ips) = support::stack(&migrated);
    assert_eq!(family_policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, support::fams(&["IPv4", "IPv6"]));
    assert_eq!(ips.len(), 2, "{ips:?}");
}

/// The harness's kubeconfig, its user impersonating `user` (kubeconfig's `as`).
fn kubeconfig_as(harness: &Harness, user: &str) -> PathBuf {
    let admin = harness.kubeconfig();
    let mut config: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&admin).unwrap()).unwrap();
    for entry in config["users"].as_sequence_mut().unwrap() {
        entry["user"]["as"] = user.into();
    }
    let path = admin.with_file_name(format!("kubeconfig-{user}"));
    std::fs::write(&path, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    path
}
