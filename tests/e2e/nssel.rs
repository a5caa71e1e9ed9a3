//! `match.namespaceSelector` rules through the driver's webhook, which learns namespace labels from
//! its Namespace watch (`--watch-cluster`). The two rules of `policy.yaml` are scoped to
//! `e2e-nssel-*`: `public-must-be-dual` (`matchLabels {exposure: public}`, Deny unless dual-stack)
//! and `not-internal-ipv6-first` (`exposure NotIn [internal]`, Deny unless IPv6 is primary).
//!
//! Without the watch the webhook only knows `kubernetes.io/metadata.name`: the first rule never
//! fires and the second fires everywhere (`tests/e2e/repro/namespace-selector.sh`, now these tests).
//!
//! A label change reaches the webhook through a watch event, a moment after the API server
//! stored it, so each test first waits (bounded) for the decision it expects, using dry-run creates
//! (judged like real ones, never stored), and then asserts with a real create.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use crate::support::{self, create, create_refused, fams, stack};

/// The longest a relabel may take to change decisions (the watch delivers it in milliseconds).
const RELABEL_BOUND: Duration = Duration::from_secs(5);

const PUBLIC_RULE: &str = "rule \"public-must-be-dual\"";
const NOT_INTERNAL_RULE: &str = "rule \"not-internal-ipv6-first\"";

/// A Service that is dual-stack but IPv4 first: compliant with `public-must-be-dual`, violating
/// `not-internal-ipv6-first`.
fn ipv4_first(name: &str) -> Service {
    support::service(name, json!({"ipFamilies": ["IPv4", "IPv6"]}))
}

/// Whether a dry-run create of `svc` is refused with a message containing `rule`, or `None` when
/// it is accepted.
async fn dry_run_refusal(api: &Api<Service>, svc: &Service) -> Option<String> {
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match api.create(&dry, svc).await {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => Some(status.message.clone()),
        Err(e) => panic!("dry-run create: {e}"),
    }
}

/// Waits until a dry-run create of `svc` is refused by `rule` (`Some`) or accepted (`None`);
/// returns how long that took.
async fn wait_decision(api: &Api<Service>, svc: &Service, rule: Option<&str>) -> Duration {
    let start = Instant::now();
    support::eventually(&format!("dry-run decision {rule:?}"), || async {
        let refusal = dry_run_refusal(api, svc).await;
        let done = match (rule, &refusal) {
            (None, None) => true,
            (Some(rule), Some(message)) => message.contains(rule),
            _ => false,
        };
        done.then_some(())
    })
    .await;
    start.elapsed()
}

async fn labelled(ns: &str, labels: Value) -> Api<Service> {
    let client = support::client().await;
    support::labelled_namespace(&client, ns, labels).await;
    Api::namespaced(client, ns)
}

/// `matchLabels {exposure: public}` fires on a namespace labelled so: a SingleStack Service is
/// denied by `public-must-be-dual`, a Service left to the defaults (dual-stack, IPv6 first) passes.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn match_labels_rule_fires_on_a_labelled_namespace() {
    let api = labelled("e2e-nssel-public", json!({"exposure": "public"})).await;
    let single = support::service("single", json!({"ipFamilyPolicy": "SingleStack"}));
    wait_decision(&api, &single, Some(PUBLIC_RULE)).await;
    let status = create_refused(&api, &single).await;
    assert_eq!(status.code, 403, "{status:?}");
    for part in [
        "admission webhook \"validate.dualstack-webhook.io\" denied the request",
        "Service \"e2e-nssel-public/single\"",
        PUBLIC_RULE,
    ] {
        assert!(
            status.message.contains(part),
            "{part:?} not in {}",
            status.message
        );
    }
    assert!(api.get_opt("single").await.unwrap().is_none());

    let (policy, families, _, ips) =
        stack(&create(&api, &support::service("dual", json!({}))).await);
    assert_eq!(policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(families, fams(&["IPv6", "IPv4"]));
    assert_eq!(ips.len(), 2);
}

/// `exposure NotIn [internal]` does not fire on a namespace labelled `exposure=internal` (an
/// IPv4-first Service is created), and does fire on an unlabelled namespace (the control: the same
/// Service is denied there).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn not_in_rule_skips_a_namespace_with_the_excluded_label() {
    let internal = labelled("e2e-nssel-internal", json!({"exposure": "internal"})).await;
    wait_decision(&internal, &ipv4_first("v4-first"), None).await;
    let (_, families, _, _) = stack(&create(&internal, &ipv4_first("v4-first")).await);
    assert_eq!(families, fams(&["IPv4", "IPv6"]));

    let plain = labelled("e2e-nssel-plain", json!({})).await;
    let status = create_refused(&plain, &ipv4_first("v4-first")).await;
    assert!(
        status.message.contains(NOT_INTERNAL_RULE),
        "{}",
        status.message
    );
    assert!(!status.message.contains(PUBLIC_RULE), "{}", status.message);
}

/// Relabelling a namespace changes the decisions within seconds, each step flipping the decision:
/// internal → public (the NotIn rule now fires), → internal again (it no longer fires), → label
/// removed (it fires again: an absent key is "not in").
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn relabelling_a_namespace_takes_effect_within_seconds() {
    let ns = "e2e-nssel-relabel";
    let client = support::client().await;
    let api = labelled(ns, json!({"exposure": "internal"})).await;
    let svc = ipv4_first("probe");
    wait_decision(&api, &svc, None).await;

    let steps: [(Value, Option<&str>); 3] = [
        (json!({"exposure": "public"}), Some(NOT_INTERNAL_RULE)),
        (json!({"exposure": "internal"}), None),
        (json!({"exposure": null}), Some(NOT_INTERNAL_RULE)),
    ];
    for (labels, expected) in steps {
        support::labelled_namespace(&client, ns, labels.clone()).await;
        let took = wait_decision(&api, &svc, expected).await;
        eprintln!("relabel {labels} -> {expected:?} after {took:?}");
        assert!(took < RELABEL_BOUND, "relabel {labels} took {took:?}");
    }
    // And a real create agrees with the last dry-run.
    let status = create_refused(&api, &ipv4_first("after-relabel")).await;
    assert!(
        status.message.contains(NOT_INTERNAL_RULE),
        "{}",
        status.message
    );
}
