//! The driver's registration step: `run.sh` calls this one (by exact name) before the suite, and
//! skips it in the suite itself. Kept in Rust so that the driver and the tests render the
//! configurations the same way: what `serve --register-webhooks` registers
//! (`dualstack-webhook webhook-configurations --policy`, with the `matchConditions` generated from
//! the driver's `policy.yaml`), sent to the driver's webhook on loopback.

use kube::api::PostParams;
use serde_json::json;

use crate::support::{self, Render};

/// Registers the main Mutating and Validating configurations for the driver's webhook and waits
/// until the API server calls both.
#[tokio::test]
#[ignore = "driver step of tests/e2e/run.sh"]
async fn register_webhooks() {
    let client = support::client().await;
    let ca =
        std::fs::read_to_string(format!("{}/ca.crt", support::env("E2E_WEBHOOK_CERTS"))).unwrap();
    let failure_policy = std::env::var("E2E_FAILURE_POLICY").ok();
    let mut docs = support::render_webhooks(&Render {
        name: "dualstack-webhook",
        base_url: &support::env("E2E_WEBHOOK_URL"),
        ca_pem: &ca,
        failure_policy: failure_policy.as_deref(),
        only_namespace: None,
        // run.sh's webhook serves this policy: the conditions `serve --register-webhooks`
        // registers with it.
        policy: Some(&support::main_policy()),
    });
    // One addition to what the webhook registers: namespaces labelled for a test's own webhook on
    // this harness (conditions.rs) are not sent to this one.
    for doc in &mut docs {
        for hook in doc["webhooks"].as_array_mut().into_iter().flatten() {
            support::restrict_namespaces(
                hook,
                json!({"key": support::OWN_WEBHOOK_LABEL, "operator": "DoesNotExist"}),
            );
        }
    }
    support::apply_webhook_documents(&client, docs).await;
    support::wait_mutating(&client, "e2e-probe", "PreferDualStack").await;
    // /validate: a dry-run single-stack Service in the Deny namespace is refused.
    let api = support::namespace(&client, "e2e-deny").await;
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    support::eventually("/validate called for e2e-deny", || async {
        let svc = support::service("probe", json!({"ipFamilyPolicy": "SingleStack"}));
        api.create(&dry, &svc).await.is_err().then_some(())
    })
    .await;
}
