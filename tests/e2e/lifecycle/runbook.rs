//! The emergency runbook on a running install: the configurations deleted (writes no longer reach
//! the webhook at once, the pods keep running and never re-create them; the in-process defaults,
//! which cannot fail a write, stay), then re-created empty by the installer's apply and filled
//! again by the same running pod, without a restart.

use std::time::{Duration, Instant};

use serde_json::json;

use super::endpoints::EndpointsController;
use super::installer::{self, Installer};
use super::kubelet::Pod;
use super::observer::{Observer, State};
use super::{BOUND, CONFIGURATIONS, cluster, wait_ready};
use crate::support;

/// The registrar checks every 10 s that its configurations were not re-created empty
/// (`REFILL_CHECK` in `src/registration/registrar.rs`); a margin for its tick and the observer.
const REFILL_BOUND: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e harness: make e2e"]
async fn configurations_re_created_empty_are_filled_again_without_a_restart() {
    let harness = cluster::start_harness("lifecycle-runbook");
    let work = support::workdir().join("lifecycle-runbook-work");
    let admin = support::client_for(&harness.kubeconfig()).await;
    let installer = Installer::Kustomize;
    let ns = installer.namespace();
    let apps = support::namespace(&admin, "apps").await;
    let start = Instant::now();
    tokio::task::block_in_place(|| installer.install(&harness, &work));
    let observer = Observer::start(admin.clone(), CONFIGURATIONS);
    let endpoints = EndpointsController::start(admin.clone(), ns, cluster::node_ipv4());
    let mut pod = Pod::start(&admin, &harness, ns, "pod-1").await;
    endpoints.add(&pod).await;
    wait_ready(&mut pod).await;
    observer
        .wait("registered", start, BOUND, |s| s.both(State::Filled))
        .await;
    assert_eq!(created_policy(&apps, "registered").await, "PreferDualStack");
    assert!(validated(&apps, &pod, "registered-v4").await);

    // 1. Unregister: writes no longer reach the webhook; the running pod does not re-create the
    //    configurations.
    let unregistered = Instant::now();
    tokio::task::block_in_place(|| {
        installer::run_kustomize_dir(&harness, &work, installer::EMERGENCY_UNREGISTER);
    });
    observer
        .wait("unregistered", unregistered, BOUND, |s| {
            s.both(State::Absent)
        })
        .await;
    tokio::time::sleep(REFILL_BOUND).await;
    let since: Vec<_> = observer
        .samples()
        .into_iter()
        .filter(|s| s.at > unregistered + Duration::from_secs(2) && !s.unknown())
        .collect();
    assert!(
        since.iter().all(|s| s.both(State::Absent)),
        "a running pod re-created a deleted configuration: {:?}",
        since.iter().find(|s| !s.both(State::Absent))
    );
    assert!(!validated(&apps, &pod, "unregistered-v4").await);
    // The in-process defaults stay (their policy runs in the API server, `failurePolicy: Ignore`).
    assert_eq!(
        created_policy(&apps, "unregistered").await,
        "PreferDualStack"
    );

    // 3. Re-create them empty: the same running pod fills them again.
    let reapplied = Instant::now();
    tokio::task::block_in_place(|| {
        installer::run_kustomize_dir(&harness, &work, installer::KUSTOMIZE_APPLY);
    });
    let (filled, _) = observer
        .wait("filled again", reapplied, REFILL_BOUND, |s| {
            s.both(State::Filled)
        })
        .await;
    eprintln!(
        "runbook: filled again {:.1}s after the apply",
        filled.at.duration_since(reapplied).as_secs_f64()
    );
    assert!(pod.is_running(), "pod-1 exited:\n{}", pod.log());
    assert!(
        pod.log()
            .contains("the webhook configurations are empty: registering again"),
        "{}",
        pod.log()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(validated(&apps, &pod, "re-registered-v4").await);
    assert_eq!(
        created_policy(&apps, "re-registered").await,
        "PreferDualStack"
    );
    observer.stop();
}

/// Whether a create that sets its fields IPv4 first (which the shipped policy's
/// `prefer-ipv6-first` rule flags) reached the pod's `/validate`.
async fn validated(
    api: &kube::Api<k8s_openapi::api::core::v1::Service>,
    pod: &Pod,
    name: &str,
) -> bool {
    let before = pod.validate_reviews().await;
    let spec = json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]});
    support::create(api, &support::service(name, spec)).await;
    pod.validate_reviews().await > before
}

/// The `ipFamilyPolicy` a Service created with no dual-stack fields is stored with.
async fn created_policy(
    api: &kube::Api<k8s_openapi::api::core::v1::Service>,
    name: &str,
) -> String {
    support::policy_of(&support::create(api, &support::service(name, json!({}))).await)
}
