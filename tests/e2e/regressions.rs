//! Regressions: webhook bugs the e2e suite found, one test each, kept with the diagnosis that led to
//! the fix (a terminating ServiceCIDR is no range; audit shows an exempt Service's stack).

use std::process::Command;

use serde_json::{Value, json};

use crate::support::{self, Harness, create};

/// `audit` prints an exempt Service with empty POLICY, FAMILIES and CLUSTER-IPS columns, although
/// the stored object has them: the operator cannot see what an exempt Service looks like.
///
/// Diagnosis: `src/check.rs`, `judge_stored_service` returns right after setting
/// `row.verdict = "exempt"`, before `judge_stored` copies `ip_family_policy`, `ip_families` and
/// `cluster_ips` into the row. Fix: fill those three fields (the first three lines of
/// `judge_stored`) before the exemption check, e.g. move them into `judge_stored_service` ahead of
/// `if policy.is_exempt(..)`.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn audit_exempt_rows_show_the_stored_stack() {
    let harness = Harness::start("bug-audit-apiserver", "10.96.0.0/16,fd00:10:96::/112");
    let client = support::client_for(&harness.kubeconfig()).await;
    let api = support::namespace(&client, "e2e-exempt").await;
    create(
        &api,
        &support::service("single", json!({"ipFamilyPolicy": "SingleStack"})),
    )
    .await;
    let out = Command::new(support::env("E2E_WEBHOOK_BIN"))
        .args(["audit", "--output", "json", "--policy"])
        .arg(support::main_policy())
        .env("KUBECONFIG", harness.kubeconfig())
        .output()
        .unwrap();
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows
        .iter()
        .find(|r| r["namespace"] == "e2e-exempt" && r["name"] == "single")
        .expect("e2e-exempt/single listed");
    assert_eq!(row["verdict"], "exempt");
    assert_eq!(row["ipFamilyPolicy"], "SingleStack", "{row}");
    assert_eq!(row["ipFamilies"], json!(["IPv4"]), "{row}");
    assert_eq!(row["clusterIPs"].as_array().map(Vec::len), Some(1), "{row}");
}

/// A ServiceCIDR that is being deleted (a finalizer holds it: in a real cluster
/// kube-controller-manager keeps it while IPs in it are allocated, possibly for a long time) is no
/// longer used by the API server's allocator, but the webhook keeps its range: a pinned IP in it
/// passes /mutate and the client gets the API server's 422 ("failed to allocate IP 10.97.0.5: the
/// provided IP (10.97.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/16")
/// instead of the webhook's message (R3.17).
///
/// Diagnosis: `src/cluster_info.rs`, `watch_service_cidrs`: `Event::InitApply(o)` and
/// `Event::Apply(o)` insert `cidrs_of(&o)` for every object, whatever its
/// `metadata.deletionTimestamp`. Fix: when `o.metadata.deletion_timestamp.is_some()`, remove the
/// name from `buffer`/`known` instead of inserting it (and publish). Same in `src/audit.rs`: skip
/// listed ServiceCIDRs with a deletionTimestamp before `from_service_cidr_objects`.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn terminating_service_cidr_is_still_a_valid_range() {
    use k8s_openapi::api::networking::v1::ServiceCIDR;
    use kube::api::{DeleteParams, PostParams};

    use crate::support::{Watching, Webhook};

    let harness = Harness::start("bug-terminating-apiserver", "10.96.0.0/16,fd00:10:96::/112");
    let hook = Webhook::watching(
        "bug-terminating-webhook",
        &Watching {
            kubeconfig: &harness.kubeconfig(),
            cidrs: None,
            policy: &support::isolated_policy(),
            wait_ready: true,
        },
    );
    let client = support::client_for(&harness.kubeconfig()).await;
    let cidrs: kube::Api<ServiceCIDR> = kube::Api::all(client.clone());
    let held: ServiceCIDR = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
        "metadata": {"name": "extra-v4", "finalizers": ["e2e.dualstack-webhook.io/hold"]},
        "spec": {"cidrs": ["10.97.0.0/24"]},
    }))
    .unwrap();
    cidrs.create(&PostParams::default(), &held).await.unwrap();
    let pinned = support::service("pinned", json!({"clusterIP": "10.97.0.5"}));
    // Known ranges show in the patch: the policy's defaults for an IP the API server accepts,
    // nothing for one it refuses anyway.
    let mutate = || {
        support::patched(&support::review(
            &hook.base_url(),
            &hook.dir.join("certs/ca.crt"),
            "/mutate",
            "default",
            &pinned,
        ))
    };
    support::eventually("the extra range is known", || async {
        mutate().then_some(())
    })
    .await;

    cidrs
        .delete("extra-v4", &DeleteParams::default())
        .await
        .unwrap();
    let api = support::namespace(&client, "default").await;
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    // Control: the API server no longer allocates from the terminating range.
    let refusal = support::eventually("the API server drops the range", || async {
        match api.create(&dry, &pinned).await {
            Err(kube::Error::Api(s)) => Some(s.message),
            Ok(_) => None,
            Err(e) => panic!("{e}"),
        }
    })
    .await;
    assert!(
        refusal.contains("failed to allocate IP 10.97.0.5"),
        "{refusal}"
    );
    // The webhook must know it too: it no longer patches the IP.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while mutate() {
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook still accepts an IP in a terminating ServiceCIDR"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
