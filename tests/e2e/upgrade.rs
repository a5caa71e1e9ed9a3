//! The PreferDualStack lesson (rules §6, issue #101681 → R3.5), for real: Services created on an
//! IPv4-only API server, which is then restarted with dual-stack ranges on the same etcd.
//!
//! Kubernetes freezes a single-family PreferDualStack Service only while an update carries the
//! stored `ipFamilies` unchanged (R3.5). A label PATCH does; a full PUT that omits `ipFamilies`
//! does not, and the API server then adds the second family (R3.16, R3.18). The webhook restores
//! the stored families on UPDATE, so no Service gains a family unless a rule opts in with
//! `upgradeExisting`.

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::support::{self, Harness, Render, V4_RANGE, V6_RANGE, Webhook, create, fams, stack};

const V4_ONLY: &str = "10.96.0.0/16";
const DUAL: &str = "10.96.0.0/16,fd00:10:96::/112";

/// GET, drop `ipFamilies` (keeping everything else, the policy included), PUT.
async fn put_without_families(api: &Api<Service>, name: &str) -> Service {
    let mut svc = api.get(name).await.unwrap();
    svc.spec.as_mut().unwrap().ip_families = None;
    api.replace(name, &PostParams::default(), &svc)
        .await
        .unwrap_or_else(|e| panic!("PUT {name}: {e}"))
}

async fn label(api: &Api<Service>, name: &str) -> Service {
    support::merge_patch(
        api,
        name,
        json!({"metadata": {"labels": {"touched": "yes"}}}),
    )
    .await
}

#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn prefer_dual_stack_services_gain_a_family_only_on_opt_in() {
    // 1. IPv4-only API server, webhook told the same, configurations from manifests/.
    let harness = Harness::start("upgrade-apiserver", V4_ONLY);
    let mut hook = Webhook::start("upgrade-webhook", V4_ONLY, &support::main_policy());
    let client = support::client_for(&harness.kubeconfig()).await;
    let (ca, url) = (hook.ca_pem(), hook.base_url());
    let r = Render {
        name: "dualstack-webhook",
        base_url: &url,
        ca_pem: &ca,
        failure_policy: None,
        only_namespace: None,
        policy: Some(hook.policy()),
    };
    support::apply_webhooks(&client, &r).await;
    support::wait_mutating(&client, "e2e-keep", "PreferDualStack").await;

    // 2. PreferDualStack (the policy's default) and SingleStack Services: one family on this cluster.
    let keep = support::namespace(&client, "e2e-keep").await;
    let opt_in = support::namespace(&client, "e2e-opt-in").await;
    let control = support::namespace(&client, "e2e-control").await;
    for (api, name, spec) in [
        (&keep, "by-label", json!({})),
        (&keep, "by-put", json!({})),
        (&keep, "single", json!({"ipFamilyPolicy": "SingleStack"})),
        (&opt_in, "opted-in", json!({})),
        (&control, "put-no-webhook", json!({})),
        (&control, "label-no-webhook", json!({})),
    ] {
        let (policy, families, _, ips) =
            stack(&create(api, &support::service(name, spec.clone())).await);
        let want = if spec == json!({}) {
            "PreferDualStack"
        } else {
            "SingleStack"
        };
        assert_eq!(policy.as_deref(), Some(want), "{name}");
        assert_eq!(
            families,
            fams(&["IPv4"]),
            "{name}: one family on an IPv4-only cluster"
        );
        assert_eq!(ips.len(), 1, "{name}");
    }

    // 3. The cluster becomes dual-stack: same etcd, new ranges; the webhook learns them too.
    harness.restart_apiserver(DUAL);
    hook.restart(DUAL);
    let client = support::client_for(&harness.kubeconfig()).await;
    support::wait_mutating(&client, "e2e-keep", "PreferDualStack").await;
    let keep = support::namespace(&client, "e2e-keep").await;
    let opt_in = support::namespace(&client, "e2e-opt-in").await;
    let control = support::namespace(&client, "e2e-control").await;
    // New PreferDualStack Services follow the new ranges (IPv6 first: the policy's order).
    let fresh = stack(&create(&keep, &support::service("fresh", json!({}))).await);
    assert_eq!(fresh.1, fams(&["IPv6", "IPv4"]));

    // 4. With the webhook and no opt-in: neither a label PATCH nor a PUT without ipFamilies adds IPv6.
    for name in ["by-label", "by-put", "single"] {
        let before = stack(&keep.get(name).await.unwrap());
        let after = if name == "by-label" {
            label(&keep, name).await
        } else {
            put_without_families(&keep, name).await
        };
        assert_eq!(stack(&after), before, "{name} changed");
        assert_eq!(stack(&after).1, fams(&["IPv4"]), "{name} gained a family");
    }

    // 5. Opted in (upgradeExisting): the update adds IPv6, primary family and clusterIP unchanged.
    let before = stack(&opt_in.get("opted-in").await.unwrap());
    let after = stack(&put_without_families(&opt_in, "opted-in").await);
    assert_eq!(after.1, fams(&["IPv4", "IPv6"]));
    assert_eq!(after.0.as_deref(), Some("PreferDualStack"));
    assert_eq!(after.2, before.2, "clusterIP unchanged (R2.1)");
    assert_eq!(after.3[0], before.3[0]);
    assert!(support::in_range(&after.3[0], V4_RANGE) && support::in_range(&after.3[1], V6_RANGE));

    // 6. Control, without the webhook: the same PUT upgrades (the Kubernetes behaviour the webhook
    // protects against, rules §6), while a label PATCH keeps the freeze (R3.5).
    support::delete_webhooks(&client, "dualstack-webhook").await;
    support::eventually("webhook no longer called", || async {
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let s = control
            .create(&dry, &support::service("probe", json!({})))
            .await
            .ok()?;
        (support::policy_of(&s) == "SingleStack").then_some(())
    })
    .await;
    let labelled = stack(&label(&control, "label-no-webhook").await);
    assert_eq!(
        labelled.1,
        fams(&["IPv4"]),
        "a label PATCH keeps the freeze (R3.5)"
    );
    let before = stack(&control.get("put-no-webhook").await.unwrap());
    let after = stack(&put_without_families(&control, "put-no-webhook").await);
    assert_eq!(
        after.1,
        fams(&["IPv4", "IPv6"]),
        "without the webhook a PUT omitting ipFamilies upgrades the Service (rules §6)"
    );
    assert_eq!(after.3[0], before.3[0]);
    drop(hook);
    drop(harness);
}
