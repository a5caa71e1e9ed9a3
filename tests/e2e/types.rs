//! Headless, ExternalName and type changes: the Services whose dual-stack fields the API server
//! treats specially (R1.4, R3.12, R3.17, R3.19, §4).

use serde_json::json;

use crate::support::{self, create, fams, merge_patch, stack};

/// Headless with a selector: no IPs allocated (`["None"]`, R3.17); the policy's defaults still set
/// the families.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn headless_with_selector() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-types").await;
    let svc = support::service("headless", json!({"clusterIP": "None"}));
    let (policy, families, ip, ips) = stack(&create(&api, &svc).await);
    assert_eq!(ip.as_deref(), Some("None"));
    assert_eq!(ips, fams(&["None"]));
    assert_eq!(policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, fams(&["IPv6", "IPv4"]));
}

/// Headless without a selector: the API server's R3.12 case; with the webhook it is dual-stack
/// IPv6-first (without it: RequireDualStack [IPv4, IPv6], R3.6).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn headless_without_selector() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-types").await;
    let svc = support::service(
        "headless-nosel",
        json!({"clusterIP": "None", "selector": null}),
    );
    let (policy, families, _, ips) = stack(&create(&api, &svc).await);
    assert_eq!(ips, fams(&["None"]));
    assert_eq!(policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, fams(&["IPv6", "IPv4"]));
}

/// ExternalName takes no dual-stack field at all (R1.4): the webhook leaves it untouched.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn external_name_is_untouched() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-types").await;
    let svc = support::service(
        "alias",
        json!({"type": "ExternalName", "externalName": "db.example.com", "selector": null}),
    );
    let stored = create(&api, &svc).await;
    assert_eq!(stack(&stored), (None, vec![], None, vec![]));
    assert_eq!(
        stored.spec.unwrap().external_name.as_deref(),
        Some("db.example.com")
    );
}

/// ClusterIP → NodePort → LoadBalancer → ClusterIP keeps the clusterIPs and families (R4.4).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn type_changes_keep_ips_and_families() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-types").await;
    let before = stack(&create(&api, &support::service("retype", json!({}))).await);
    assert_eq!(before.1, fams(&["IPv6", "IPv4"]));
    for type_ in ["NodePort", "LoadBalancer", "ClusterIP"] {
        // Back to ClusterIP the unchanged node ports are dropped by the API server (R3.19), not
        // refused (R1.17).
        let after = merge_patch(&api, "retype", json!({"spec": {"type": type_}})).await;
        assert_eq!(after.spec.as_ref().unwrap().type_.as_deref(), Some(type_));
        assert_eq!(stack(&after), before, "after changing to {type_}");
    }
}

/// ClusterIP → ExternalName releases the IPs and drops the fields (R3.19, R4.2); back to ClusterIP
/// is allocated like a create (R4.1), so the policy's defaults apply again.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn type_change_to_external_name_and_back() {
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-types").await;
    create(&api, &support::service("flip", json!({}))).await;
    let alias = merge_patch(
        &api,
        "flip",
        json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
    )
    .await;
    assert_eq!(stack(&alias), (None, vec![], None, vec![]));
    let back = merge_patch(
        &api,
        "flip",
        json!({"spec": {"type": "ClusterIP", "externalName": null}}),
    )
    .await;
    let (policy, families, _, ips) = stack(&back);
    assert_eq!(policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, fams(&["IPv6", "IPv4"]));
    assert_eq!(ips.len(), 2);
}
