//! Pinned cluster IPs: the webhook completes `clusterIP`/`clusterIPs` so the API server accepts them
//! (R1.7, R1.8, R3.1), lets the pinned IPs decide the family order (R3.10), and refuses an IP
//! outside the service range with the API server's own reason before allocation does (R3.17).

use serde_json::json;

use crate::support::{self, V4_RANGE, V6_RANGE, create, create_refused, fams, stack};

/// `clusterIP` only (IPv4): `clusterIPs` follows, IPv4 stays primary despite the policy's IPv6-first
/// order, and the policy's PreferDualStack adds IPv6 (R3.1, R3.10, R3.16).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn pinned_cluster_ip_only() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-pinned").await;
    let svc = support::service("ip-only", json!({"clusterIP": "10.96.100.10"}));
    let (policy, families, ip, ips) = stack(&create(&api, &svc).await);
    assert_eq!(policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, fams(&["IPv4", "IPv6"]));
    assert_eq!(ip.as_deref(), Some("10.96.100.10"));
    assert_eq!(ips[0], "10.96.100.10");
    assert!(support::in_range(&ips[1], V6_RANGE), "{ips:?}");
}

/// `clusterIPs` only: without the webhook the API server refuses it (R1.8, "must be empty when
/// `clusterIP` is not specified"); the webhook sets `clusterIP = clusterIPs[0]`.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn pinned_cluster_ips_only() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-pinned").await;
    let svc = support::service("ips-only", json!({"clusterIPs": ["fd00:10:96::a1"]}));
    let (_, families, ip, ips) = stack(&create(&api, &svc).await);
    assert_eq!(ip.as_deref(), Some("fd00:10:96::a1"));
    assert_eq!(ips[0], "fd00:10:96::a1");
    assert_eq!(families, fams(&["IPv6", "IPv4"]));
    assert!(support::in_range(&ips[1], V4_RANGE), "{ips:?}");
}

/// Both families pinned, IPv6 first: kept as given (R3.10).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn pinned_both_families_ipv6_first() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-pinned").await;
    let pinned = ["fd00:10:96::a2", "10.96.100.12"];
    let svc = support::service(
        "both-v6",
        json!({"clusterIP": pinned[0], "clusterIPs": pinned}),
    );
    let (policy, families, ip, ips) = stack(&create(&api, &svc).await);
    assert_eq!(policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, fams(&["IPv6", "IPv4"]));
    assert_eq!(ip.as_deref(), Some(pinned[0]));
    assert_eq!(ips, fams(&pinned));
}

/// Both families pinned, IPv4 first and only the plural field: order kept, `clusterIP` filled.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn pinned_both_families_ipv4_first() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-pinned").await;
    let pinned = ["10.96.100.13", "fd00:10:96::a3"];
    let svc = support::service("both-v4", json!({"clusterIPs": pinned}));
    let (policy, families, ip, ips) = stack(&create(&api, &svc).await);
    assert_eq!(policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, fams(&["IPv4", "IPv6"]));
    assert_eq!(ip.as_deref(), Some(pinned[0]));
    assert_eq!(ips, fams(&pinned));
}

/// An IP outside `--service-cidrs` (primary or secondary) is denied by /mutate with the API
/// server's reason and what to do (R3.17), and nothing is stored.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn pinned_ip_outside_the_range_is_denied_with_the_webhooks_message() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-pinned").await;
    let svc = support::service("outside", json!({"clusterIP": "10.97.0.5"}));
    let status = create_refused(&api, &svc).await;
    assert_eq!(status.code, 403, "{status:?}");
    for part in [
        "admission webhook \"mutate.dualstack-webhook.io\" denied the request",
        "would be refused by the API server",
        "spec.clusterIPs[0]",
        "is not in the valid range",
        V4_RANGE,
    ] {
        assert!(
            status.message.contains(part),
            "{part:?} not in {}",
            status.message
        );
    }
    assert!(api.get_opt("outside").await.unwrap().is_none());

    let svc = support::service(
        "outside-v6",
        json!({"clusterIPs": ["10.96.100.14", "fd00:11::1"], "ipFamilyPolicy": "RequireDualStack"}),
    );
    let status = create_refused(&api, &svc).await;
    assert!(
        status.message.contains("spec.clusterIPs[1]") && status.message.contains(V6_RANGE),
        "{}",
        status.message
    );
}
