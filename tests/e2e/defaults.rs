//! Defaulting on CREATE, end to end: the webhook fills only what the client left unset, per the
//! policy (global defaults, or the first matching rule's), and the API server allocates around it.
//! The main harness is dual-stack with IPv4 primary (`10.96.0.0/16,fd00:10:96::/112`), so the
//! policy's `[IPv6, IPv4]` order is visible: without the webhook every one of these would be
//! SingleStack IPv4 (R3.6, R3.15).

use serde_json::json;

use crate::support::{self, V4_RANGE, V6_RANGE, create, fams, in_range, stack};

/// Nothing set: PreferDualStack with IPv6 first, two IPs allocated in that order (R3.16, R3.17).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn unset_fields_get_prefer_dual_stack_ipv6_first() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-defaults").await;
    let svc = create(&api, &support::service("plain", json!({}))).await;
    let (policy, families, ip, ips) = stack(&svc);
    assert_eq!(policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, fams(&["IPv6", "IPv4"]));
    assert_eq!(ips.len(), 2, "{ips:?}");
    assert_eq!(ip.as_deref(), Some(ips[0].as_str()), "R1.7");
    assert!(
        in_range(&ips[0], V6_RANGE) && in_range(&ips[1], V4_RANGE),
        "{ips:?}"
    );
    // What the API server stores is what a later GET returns.
    let got = api.get("plain").await.unwrap();
    assert_eq!(stack(&got), stack(&svc));
}

/// The client's policy is kept; only the families are filled, cut to one for SingleStack (R3.9).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn client_single_stack_is_kept_and_gets_the_preferred_family() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-defaults").await;
    let svc = support::service("single", json!({"ipFamilyPolicy": "SingleStack"}));
    let (policy, families, _, ips) = stack(&create(&api, &svc).await);
    assert_eq!(policy.as_deref(), Some("SingleStack"));
    assert_eq!(families, fams(&["IPv6"]));
    assert_eq!(ips.len(), 1);
    assert!(in_range(&ips[0], V6_RANGE), "{ips:?}");
}

/// The client's families are kept (IPv4 stays primary); the policy is filled, and the API server
/// adds the other family (R3.16).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn client_families_are_kept_and_get_the_default_policy() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-defaults").await;
    let svc = support::service("v4-first", json!({"ipFamilies": ["IPv4"]}));
    let (policy, families, _, ips) = stack(&create(&api, &svc).await);
    assert_eq!(policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, fams(&["IPv4", "IPv6"]));
    assert!(
        in_range(&ips[0], V4_RANGE) && in_range(&ips[1], V6_RANGE),
        "{ips:?}"
    );
}

/// A rule's defaults override the global ones for its namespace (legacy: SingleStack IPv4).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn rule_defaults_override_global_defaults() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-legacy").await;
    let (policy, families, _, ips) =
        stack(&create(&api, &support::service("old", json!({}))).await);
    assert_eq!(policy.as_deref(), Some("SingleStack"));
    assert_eq!(families, fams(&["IPv4"]));
    assert_eq!(ips.len(), 1);
    assert!(in_range(&ips[0], V4_RANGE));
}

/// A rule scoped by type: LoadBalancers get RequireDualStack (with the global family order),
/// a ClusterIP Service in the same namespace gets the global PreferDualStack.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn type_scoped_rule_defaults_apply_only_to_that_type() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-lb").await;
    let lb = support::service("public", json!({"type": "LoadBalancer"}));
    let (policy, families, _, ips) = stack(&create(&api, &lb).await);
    assert_eq!(policy.as_deref(), Some("RequireDualStack"));
    assert_eq!(families, fams(&["IPv6", "IPv4"]));
    assert_eq!(ips.len(), 2);
    let internal = support::service("internal", json!({}));
    let (policy, families, _, _) = stack(&create(&api, &internal).await);
    assert_eq!(policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, fams(&["IPv6", "IPv4"]));
}
