//! Pinned cluster IPs: the webhook fills the policy and lets the pinned IPs decide the family order
//! (R3.10); a request the API server refuses anyway (`clusterIPs` without `clusterIP`, R1.8; an IP
//! outside the service range, R3.17) is not patched and not denied by the webhook: the API server
//! names the client's own fault.
//!
//! The IPs pinned inside the ranges are in their lower 256 addresses (`10.96.0.0/24`,
//! `fd00:10:96::/120`), which the API server keeps for pinned IPs while the rest of the range has
//! room: a Service another test leaves to the allocator cannot hold them. (`10.96.100.12` was
//! once taken by `failure::certificate_rotation_fails_no_request`'s `rot-279`.)

use serde_json::json;

use crate::support::{self, V6_RANGE, create, create_refused, fams, stack};

/// `clusterIP` only (IPv4): `clusterIPs` follows, IPv4 stays primary despite the policy's IPv6-first
/// order, and the policy's PreferDualStack adds IPv6 (R3.1, R3.10, R3.16).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn pinned_cluster_ip_only() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-pinned").await;
    let svc = support::service("ip-only", json!({"clusterIP": "10.96.0.200"}));
    let (policy, families, ip, ips) = stack(&create(&api, &svc).await);
    assert_eq!(policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, fams(&["IPv4", "IPv6"]));
    assert_eq!(ip.as_deref(), Some("10.96.0.200"));
    assert_eq!(ips[0], "10.96.0.200");
    assert!(support::in_range(&ips[1], V6_RANGE), "{ips:?}");
}

/// `clusterIPs` only: the API server refuses it (R1.8); the webhook leaves it alone, so the refusal
/// is the API server's own.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn pinned_cluster_ips_only_is_the_api_servers_to_refuse() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-pinned").await;
    let svc = support::service("ips-only", json!({"clusterIPs": ["fd00:10:96::a1"]}));
    let status = create_refused(&api, &svc).await;
    assert_eq!(status.code, 422, "{status:?}");
    assert_eq!(
        status.message,
        "Service \"ips-only\" is invalid: spec.clusterIPs: Invalid value: [\"fd00:10:96::a1\"]: must be empty when `clusterIP` is not specified"
    );
}

/// Both families pinned, IPv6 first: kept as given (R3.10).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn pinned_both_families_ipv6_first() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-pinned").await;
    let pinned = ["fd00:10:96::a2", "10.96.0.202"];
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

/// Both families pinned, IPv4 first: order kept (R3.10).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn pinned_both_families_ipv4_first() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-pinned").await;
    let pinned = ["10.96.0.203", "fd00:10:96::a3"];
    let svc = support::service(
        "both-v4",
        json!({"clusterIP": pinned[0], "clusterIPs": pinned}),
    );
    let (policy, families, ip, ips) = stack(&create(&api, &svc).await);
    assert_eq!(policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, fams(&["IPv4", "IPv6"]));
    assert_eq!(ip.as_deref(), Some(pinned[0]));
    assert_eq!(ips, fams(&pinned));
}

/// An IP outside the service range (primary or secondary) is refused by the API server with its
/// own reason (R3.17); the webhook neither patches nor denies it, and nothing is stored.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn pinned_ip_outside_the_range_is_refused_by_the_api_server() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-pinned").await;
    let svc = support::service("outside", json!({"clusterIP": "10.97.0.5"}));
    let status = create_refused(&api, &svc).await;
    assert_eq!(status.code, 422, "{status:?}");
    assert_eq!(
        status.message,
        "Service \"outside\" is invalid: spec.clusterIPs: Invalid value: [\"10.97.0.5\"]: failed to allocate IP 10.97.0.5: the provided network does not match the current range"
    );
    assert!(api.get_opt("outside").await.unwrap().is_none());

    let pinned = ["10.96.0.204", "fd00:11::1"];
    let svc = support::service(
        "outside-v6",
        json!({"clusterIP": pinned[0], "clusterIPs": pinned, "ipFamilyPolicy": "RequireDualStack"}),
    );
    let status = create_refused(&api, &svc).await;
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains("failed to allocate IP fd00:11::1")
            && !status.message.contains("admission webhook"),
        "{}",
        status.message
    );
}
