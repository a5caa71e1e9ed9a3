//! The same policy on an IPv6-primary dual-stack API server (`fd00:10:96::/112,10.96.0.0/16`),
//! on a harness of its own. (The IPv4-only variant is the first half of [`crate::upgrade`].)

use serde_json::json;

use crate::support::{self, Harness, Render, Webhook, create, fams, in_range, stack};

const V6_PRIMARY: &str = "fd00:10:96::/112,10.96.0.0/16";

/// Defaults, a rule's IPv4-only defaults (a non-primary single family is fine, §3d) and an exempt
/// namespace (the API server's default is now IPv6, R3.15).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn ipv6_primary_cluster() {
    let harness = Harness::start("v6-primary-apiserver", V6_PRIMARY);
    let hook = Webhook::start("v6-primary-webhook", V6_PRIMARY, &support::main_policy());
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
    support::wait_mutating(&client, "e2e-defaults", "PreferDualStack").await;

    let api = support::namespace(&client, "e2e-defaults").await;
    let (policy, families, _, ips) =
        stack(&create(&api, &support::service("plain", json!({}))).await);
    assert_eq!(policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, fams(&["IPv6", "IPv4"]));
    assert!(in_range(&ips[0], "fd00:10:96::/112") && in_range(&ips[1], "10.96.0.0/16"));

    let api = support::namespace(&client, "e2e-legacy").await;
    let (policy, families, _, ips) =
        stack(&create(&api, &support::service("old", json!({}))).await);
    assert_eq!(policy.as_deref(), Some("SingleStack"));
    assert_eq!(families, fams(&["IPv4"]));
    assert!(in_range(&ips[0], "10.96.0.0/16"));

    let api = support::namespace(&client, "e2e-exempt").await;
    let (policy, families, _, _) =
        stack(&create(&api, &support::service("plain", json!({}))).await);
    assert_eq!(policy.as_deref(), Some("SingleStack"));
    assert_eq!(families, fams(&["IPv6"]));
}
