//! Deny, Warn and Audit as a client sees them through the API server (R8.4, R8.5), exempt
//! namespaces, and server-side dry-run (judged exactly like a real request, never stored).

use std::io::Write as _;
use std::process::{Command, Stdio};

use kube::api::PostParams;
use serde_json::{Value, json};

use crate::support::{self, create, create_refused, fams, stack};

const DENIED_BY_VALIDATE: &str =
    "admission webhook \"validate.dualstack-webhook.io\" denied the request";

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..PostParams::default()
    }
}

/// A Deny rule's violation comes back as the API server's 403 carrying the webhook's message: the
/// Service, the rule, what is wrong and what to set (R8.4). Nothing is stored.
///
/// Observed on v1.37.2: the status message starts with `admission webhook "..." denied the
/// request: ...`; the `services "<name>" is forbidden: ` prefix R8.4 mentions is not there.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn deny_message_reaches_the_client() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-deny").await;
    let svc = support::service("single", json!({"ipFamilyPolicy": "SingleStack"}));
    let status = create_refused(&api, &svc).await;
    assert_eq!(
        (status.code, status.reason.as_str()),
        (403, "Forbidden"),
        "{status:?}"
    );
    for part in [
        DENIED_BY_VALIDATE,
        "Service \"e2e-deny/single\" violates the dual-stack policy",
        "rule \"deny-single-stack\"",
        "set spec.ipFamilyPolicy: RequireDualStack",
    ] {
        assert!(
            status.message.contains(part),
            "{part:?} not in {}",
            status.message
        );
    }
    assert!(api.get_opt("single").await.unwrap().is_none());
}

/// The same Deny rule lets a compliant Service through: the defaults make it dual-stack.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn deny_rule_admits_a_compliant_service() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-deny").await;
    let (policy, families, _, ips) = stack(&create(&api, &support::service("ok", json!({}))).await);
    assert_eq!(policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, fams(&["IPv6", "IPv4"]));
    assert_eq!(ips.len(), 2);
}

/// A downgrade to SingleStack on UPDATE adds a violation (not grandfathered): refused, and the
/// stored Service keeps both families (the API server would have trimmed them, R3.8).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn deny_rule_refuses_a_downgrade_on_update() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-deny").await;
    let before = stack(&create(&api, &support::service("keep-dual", json!({}))).await);
    let patch = json!({"spec": {"ipFamilyPolicy": "SingleStack"}});
    let err = api
        .patch(
            "keep-dual",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect_err("downgrade must be refused");
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert!(
        status.message.contains(DENIED_BY_VALIDATE),
        "{}",
        status.message
    );
    assert_eq!(stack(&api.get("keep-dual").await.unwrap()), before);
}

/// A Warn rule: allowed, and the warning reaches the client as a `Warning` header (R8.5) — read
/// here from the raw response, and shown by kubectl on stderr as users see it.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn warn_reaches_the_client() {
    let client = support::client().await;
    support::namespace(&client, "e2e-warn").await;
    let svc = support::service("v4-primary", json!({"ipFamilies": ["IPv4"]}));
    let (code, warnings, body) = support::create_with_warnings(&client, "e2e-warn", &svc).await;
    assert_eq!(code, 201, "{body}");
    assert!(
        warnings.iter().any(|w| w
            .contains("Service \\\"e2e-warn/v4-primary\\\": rule \\\"warn-ipv4-primary\\\"")
            || w.contains("Service \"e2e-warn/v4-primary\": rule \"warn-ipv4-primary\"")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.starts_with("299 ")),
        "{warnings:?}"
    );
    assert_eq!(body["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));

    let manifest = serde_json::to_string(&support::service(
        "v4-kubectl",
        json!({"ipFamilies": ["IPv4"]}),
    ))
    .unwrap();
    let mut child = Command::new(support::env("E2E_KUBECTL"))
        .args([
            "--kubeconfig",
            &support::env("E2E_KUBECONFIG"),
            "-n",
            "e2e-warn",
        ])
        .args(["create", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("Warning: Service \"e2e-warn/v4-kubectl\": rule \"warn-ipv4-primary\": primary family IPv4 but IPv6 required"),
        "{stderr}"
    );
}

/// An Audit rule: allowed silently, and the finding lands in the API server's audit log as the
/// webhook's audit annotation (keys prefixed with the webhook name, R8.2).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn audit_finding_is_in_the_audit_log() {
    let client = support::client().await;
    support::namespace(&client, "e2e-audit").await;
    let svc = support::service("audited", json!({"ipFamilyPolicy": "SingleStack"}));
    let (code, warnings, body) = support::create_with_warnings(&client, "e2e-audit", &svc).await;
    assert_eq!(code, 201, "{body}");
    assert!(warnings.is_empty(), "Audit must not warn: {warnings:?}");
    let log = support::env("E2E_AUDIT_LOG");
    let annotations = support::eventually("audit event for e2e-audit/audited", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| {
                e["verb"] == "create"
                    && e["stage"] == "ResponseComplete"
                    && e["objectRef"]["namespace"] == "e2e-audit"
                    && e["objectRef"]["name"] == "audited"
            })
            .map(|e| e["annotations"].clone())
    })
    .await;
    let findings = annotations["validate.dualstack-webhook.io/findings"]
        .as_str()
        .unwrap_or_else(|| panic!("no findings annotation in {annotations}"));
    assert!(
        findings.contains("audit-single-stack(Audit): single-stack but dual-stack required"),
        "{findings}"
    );
    let mutation = annotations["mutate.dualstack-webhook.io/mutation"]
        .as_str()
        .unwrap_or_else(|| panic!("no mutation annotation in {annotations}"));
    assert!(mutation.contains("ipFamilies=[IPv6]"), "{mutation}");
}

/// An exempt namespace is neither mutated nor judged: the API server's own defaults (SingleStack
/// on the primary family, R3.6, R3.15), and what a Deny rule elsewhere would refuse is accepted.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn exempt_namespace_is_untouched() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-exempt").await;
    let (policy, families, _, ips) =
        stack(&create(&api, &support::service("plain", json!({}))).await);
    assert_eq!(policy.as_deref(), Some("SingleStack"));
    assert_eq!(families, fams(&["IPv4"]));
    assert_eq!(ips.len(), 1);
    let svc = support::service(
        "pinned",
        // In the range's lower band, which the allocator leaves to pinned IPs (see pinned.rs).
        json!({"clusterIPs": ["10.96.0.210"], "clusterIP": "10.96.0.210"}),
    );
    let (policy, families, _, _) = stack(&create(&api, &svc).await);
    assert_eq!(policy.as_deref(), Some("SingleStack"));
    assert_eq!(families, fams(&["IPv4"]));
}

/// `dryRun=All` is judged like a real request (same denial, same defaults and allocation, R3.17
/// dry-run allocator) and nothing is stored (`sideEffects: None`).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn server_side_dry_run_is_judged_like_real_and_not_stored() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-deny").await;
    let bad = support::service("dry-single", json!({"ipFamilyPolicy": "SingleStack"}));
    let err = api.create(&dry_run(), &bad).await.expect_err("denied");
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert!(
        status.message.contains(DENIED_BY_VALIDATE),
        "{}",
        status.message
    );
    assert!(status.message.contains("rule \"deny-single-stack\""));

    let good = support::service("dry-ok", json!({}));
    let answered = api.create(&dry_run(), &good).await.unwrap();
    let (policy, families, _, ips) = stack(&answered);
    assert_eq!(policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, fams(&["IPv6", "IPv4"]));
    assert_eq!(ips.len(), 2);
    assert!(api.get_opt("dry-ok").await.unwrap().is_none());
    assert!(api.get_opt("dry-single").await.unwrap().is_none());
    // And a dry-run UPDATE does not change the stored object.
    let before = stack(&create(&api, &support::service("dry-upd", json!({}))).await);
    let pp = kube::api::PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let patch = json!({"metadata": {"labels": {"dry": "run"}}});
    api.patch("dry-upd", &pp, &kube::api::Patch::Merge(&patch))
        .await
        .unwrap();
    let stored = api.get("dry-upd").await.unwrap();
    assert_eq!(stack(&stored), before);
    assert!(
        !stored
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("dry")
    );
}
