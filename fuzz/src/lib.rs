//! Oracles shared by the fuzz targets: what must hold for every input, beyond "does not panic".
//!
//! Each check panics with the offending values, so libFuzzer records the input as a crash.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use dualstack_webhook::admission;
use dualstack_webhook::cluster::{Cluster, ServiceCidrs};
use dualstack_webhook::domain::engine::Mutation;
use dualstack_webhook::admission::Endpoint;
use dualstack_webhook::domain::patch;
use dualstack_webhook::domain::policy::Policy;
use dualstack_webhook::domain::service::{Service, ServiceSpec};
use serde_json::Value;

/// Service CIDR sets of the clusters the targets run against: single-stack of each family and
/// dual-stack in either order.
pub const CLUSTERS: [&str; 4] = [
    "10.96.0.0/16",
    "fd00:10:96::/112",
    "10.96.0.0/16,fd00:10:96::/112",
    "fd00:10:96::/112,10.96.0.0/16",
];

/// The example policy shipped with the webhook (every field in use).
pub fn example_policy() -> Policy {
    #[allow(clippy::expect_used)] // a broken embedded policy is a broken build, not an input
    Policy::from_yaml(dualstack_webhook::commands::EXAMPLE_POLICY).expect("embedded example policy")
}

/// A cluster of `CLUSTERS[i % len]`, or one without `--service-cidrs` for `None`.
pub fn cluster(i: Option<u8>) -> (Cluster, Option<ServiceCidrs>) {
    let cidrs = i.and_then(|i| ServiceCidrs::parse(CLUSTERS[usize::from(i) % CLUSTERS.len()]).ok());
    (Cluster::with_cidrs(cidrs.clone()), cidrs)
}

/// Answers `body` on both endpoints and checks the answers: always a JSON AdmissionReview that
/// echoes the uid; `/validate` never patches; a `/mutate` patch applies (RFC 6902) to the request
/// object and leaves it a Service whose spec is what the engine meant.
pub fn check_review(body: &[u8], policy: &Policy, cluster: &Cluster) {
    for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
        let Ok(answer) = admission::review(endpoint, body, policy, cluster) else {
            continue;
        };
        let out: Value = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {:?}", answer.body));
        let response = &out["response"];
        assert_eq!(out["kind"], "AdmissionReview", "{out}");
        assert_eq!(
            response["uid"].as_str(),
            Some(&*answer.summary.uid),
            "{out}"
        );
        assert!(response["allowed"].is_boolean(), "{out}");
        let Some(patch) = response["patch"].as_str() else {
            continue;
        };
        assert_eq!(
            endpoint,
            Endpoint::Mutate,
            "validate returned a patch: {out}"
        );
        assert_eq!(response["patchType"], "JSONPatch", "{out}");
        let ops = BASE64
            .decode(patch)
            .unwrap_or_else(|e| panic!("patch is not base64 ({e}): {out}"));
        let ops: json_patch::Patch = serde_json::from_slice(&ops)
            .unwrap_or_else(|e| panic!("patch is not a JSON Patch ({e}): {out}"));
        // The object as the API server holds it: the `request.object` member. (Not a `Value` of the
        // whole body: serde skips ignored members without checking their UTF-8, so a body that
        // is answered need not be strict JSON everywhere.)
        // A body with an invalid escape (e.g. a lone surrogate) in a member the webhook skips is
        // still answered: the webhook does not validate what it does not read, and the API server
        // only ever sends valid JSON. Such an object cannot be patched as a JSON value here.
        let Some(mut object) = request_object(body) else {
            continue;
        };
        let before = object.clone();
        json_patch::patch(&mut object, &ops)
            .unwrap_or_else(|e| panic!("patch does not apply ({e}): {ops:?} to {before}"));
        serde_json::from_value::<Service>(object.clone())
            .unwrap_or_else(|e| panic!("patched object is no Service ({e}): {object}"));
    }
}

#[derive(serde::Deserialize)]
struct ReviewObject<'a> {
    #[serde(borrow)]
    request: RequestObject<'a>,
}

#[derive(serde::Deserialize)]
struct RequestObject<'a> {
    #[serde(borrow, default)]
    object: Option<&'a serde_json::value::RawValue>,
}

/// `request.object` of an answered review, as JSON; `None` when it is not valid JSON throughout.
fn request_object(body: &[u8]) -> Option<Value> {
    let review: ReviewObject<'_> = serde_json::from_slice(body).ok()?;
    match review.request.object {
        None => Some(Value::Null),
        Some(raw) => serde_json::from_str(raw.get()).ok(),
    }
}

/// Builds the patch for `mutation`, applies it to `object` as the API server would, and checks that
/// it applies, that the result is still a Service whose spec is `mutation.apply(spec)`, and that
/// nothing outside the mutated fields changed.
pub fn check_patch(mutation: &Mutation, object: &Value) -> Value {
    let service: Service = match serde_json::from_value(object.clone()) {
        Ok(s) => s,
        Err(_) => return object.clone(), // not a Service: admission refuses it before patching
    };
    let ops = patch::build(mutation, service.spec.is_some());
    assert_eq!(
        ops.0.is_empty(),
        mutation.is_empty(),
        "{mutation:?}: {ops:?}"
    );
    let mut doc = object.clone();
    json_patch::patch(&mut doc, &ops)
        .unwrap_or_else(|e| panic!("patch does not apply ({e}): {ops:?} to {object}"));
    let patched: Service = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("patched object is no Service ({e}): {doc}"));
    let want = mutation.apply(service.spec());
    if mutation.is_empty() {
        assert_eq!(&doc, object);
    } else {
        assert_eq!(patched.spec.as_ref(), Some(&want), "{ops:?} on {object}");
    }
    assert_eq!(
        patched.metadata, service.metadata,
        "metadata changed: {ops:?}"
    );
    // Members the webhook does not model survive.
    if let (Some(before), Some(after)) = (object.as_object(), doc.as_object()) {
        for (k, v) in before {
            if k != "spec" {
                assert_eq!(after.get(k), Some(v), "{k} changed by {ops:?}");
            }
        }
    }
    doc
}

/// The spec after `patch` of the engine's mutation, as the API server would see it.
pub fn patched_spec(object: &Service, mutation: &Mutation) -> ServiceSpec {
    let Ok(value) = serde_json::to_value(object) else {
        return object.spec().clone();
    };
    let doc = check_patch(mutation, &value);
    serde_json::from_value::<Service>(doc)
        .ok()
        .and_then(|s| s.spec)
        .unwrap_or_default()
}
