//! Failure modes, each with its own webhook process and configurations restricted to its own
//! `e2e-iso-*` namespace (which the main webhook's policy exempts): the webhook stopped under
//! `failurePolicy: Fail` and `Ignore` (R8.3, rules §9), and a certificate + CA rotation while the
//! API server keeps calling.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};
use serde_json::json;

use crate::support::{self, Render, Webhook, create, create_refused, fams, stack};

/// Starts an isolated webhook for `ns` and registers configurations for it with `failure_policy`.
async fn isolated(ns: &str, failure_policy: &str) -> (Webhook, Client, Api<Service>) {
    let hook = Webhook::start(
        &format!("{ns}-webhook"),
        &support::env("E2E_SERVICE_CIDRS"),
        &support::isolated_policy(),
    );
    let client = support::client().await;
    let api = support::namespace(&client, ns).await;
    register(&client, ns, &hook, &hook.ca_pem(), failure_policy).await;
    support::wait_mutating(&client, ns, "PreferDualStack").await;
    (hook, client, api)
}

async fn register(client: &Client, ns: &str, hook: &Webhook, ca_pem: &str, failure_policy: &str) {
    let render = Render {
        name: ns,
        base_url: &hook.base_url(),
        ca_pem,
        failure_policy: Some(failure_policy),
        only_namespace: Some(ns),
        policy: Some(hook.policy()),
    };
    support::apply_webhooks(client, &render).await;
}

/// `failurePolicy: Fail` with the webhook down: creates are refused with the API server's
/// "failed calling webhook" error, and nothing is stored.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn webhook_down_with_fail_refuses_creates() {
    let ns = "e2e-iso-fail";
    let (mut hook, client, api) = isolated(ns, "Fail").await;
    let up = create(&api, &support::service("while-up", json!({}))).await;
    assert_eq!(support::policy_of(&up), "PreferDualStack");
    hook.stop();
    let status = create_refused(&api, &support::service("while-down", json!({}))).await;
    assert!(
        status
            .message
            .contains("failed calling webhook \"mutate.dualstack-webhook.io\""),
        "{status:?}"
    );
    assert!(api.get_opt("while-down").await.unwrap().is_none());
    support::delete_webhooks(&client, ns).await;
}

/// `failurePolicy: Ignore` with the webhook down: creates pass, unmodified (the API server's own
/// defaults: SingleStack on the primary family, R3.6, R3.15).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn webhook_down_with_ignore_passes_creates_unmodified() {
    let ns = "e2e-iso-ignore";
    let (mut hook, client, api) = isolated(ns, "Ignore").await;
    let up = create(&api, &support::service("while-up", json!({}))).await;
    assert_eq!(support::policy_of(&up), "PreferDualStack");
    hook.stop();
    let down = create(&api, &support::service("while-down", json!({}))).await;
    let (policy, families, _, ips) = stack(&down);
    assert_eq!(policy.as_deref(), Some("SingleStack"));
    assert_eq!(families, fams(&["IPv4"]));
    assert_eq!(ips.len(), 1);
    support::delete_webhooks(&client, ns).await;
}

/// Whether a TLS handshake with the webhook verifies against exactly this CA file.
fn handshake_ok(hook: &Webhook, ca: &Path) -> bool {
    Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "5", "--cacert"])
        .arg(ca)
        .arg(format!("{}/healthz", hook.base_url()))
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Copies `from` over `to` atomically (write aside, rename), as a Secret volume's symlink swap
/// would appear to the webhook.
fn swap(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// A new serving certificate from a new CA, rolled out while a loop of creates runs: caBundle
/// with both CAs → files swapped (the webhook polls them every second) → caBundle with the new
/// CA only. Every create must succeed and be mutated.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn certificate_rotation_fails_no_request() {
    let ns = "e2e-iso-rot";
    let (hook, client, api) = isolated(ns, "Fail").await;
    let old_ca = hook.ca_pem();
    let certs = hook.dir.join("certs");
    let new = hook.dir.join("certs-new");
    let out = Command::new(support::env("E2E_WEBHOOK_BIN"))
        .args(["certs", "--out"])
        .arg(&new)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let new_ca = std::fs::read_to_string(new.join("ca.crt")).unwrap();
    assert_ne!(new_ca, old_ca);

    let stop = Arc::new(AtomicBool::new(false));
    let creates = tokio::spawn({
        let (api, stop) = (api.clone(), stop.clone());
        async move {
            let (mut ok, mut failures) = (0_u32, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && i < 3000 {
                let svc = support::service(&format!("rot-{i}"), json!({}));
                match api.create(&Default::default(), &svc).await {
                    Ok(s) if support::policy_of(&s) == "PreferDualStack" => ok += 1,
                    Ok(s) => failures.push(format!("rot-{i} not mutated: {:?}", s.spec)),
                    Err(e) => failures.push(format!("rot-{i}: {e}")),
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failures)
        }
    });
    // The informer that feeds the API server's webhook clients is fast; 3 s is ample margin.
    let settle = || tokio::time::sleep(Duration::from_secs(3));
    tokio::time::sleep(Duration::from_secs(1)).await;
    register(&client, ns, &hook, &format!("{old_ca}{new_ca}"), "Fail").await;
    settle().await;
    swap(&new.join("tls.key"), &certs.join("tls.key"));
    swap(&new.join("tls.crt"), &certs.join("tls.crt"));
    support::eventually("the webhook reloads the new certificate", || async {
        let m = hook.metrics();
        (support::metric(
            &m,
            "dualstack_webhook_certificate_reloads_total",
            &["success"],
        ) >= 1.0)
            .then_some(())
    })
    .await;
    assert!(
        handshake_ok(&hook, &new.join("ca.crt")),
        "new certificate served"
    );
    let old_ca_file = hook.dir.join("old-ca.crt");
    std::fs::write(&old_ca_file, &old_ca).unwrap();
    assert!(
        !handshake_ok(&hook, &old_ca_file),
        "old certificate no longer served"
    );
    settle().await;
    register(&client, ns, &hook, &new_ca, "Fail").await;
    settle().await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failures) = creates.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
    assert!(ok >= 20, "only {ok} creates ran");
    eprintln!("certificate rotation: {ok} creates, 0 failed");
    support::delete_webhooks(&client, ns).await;
}
