//! Property test over the wire format: whatever `/mutate` answers (through `admission::review`, as
//! the router calls it) for a random Service JSON — spec absent, null or partial, members the
//! webhook does not model, any namespace and labels — is a base64 RFC 6902 patch that applies to
//! the request object, leaves everything it does not own untouched, and keeps the object a Service
//! that the API server (its model in `apiserver`) accepts whenever it accepted the original.
//!
//! `tests/properties.rs` checks the engine on typed values; this checks what goes over the wire.
//! Fuzz regressions of the same contract live here too.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use base64::Engine as _;
use dualstack_webhook::admission;
use dualstack_webhook::admission::Endpoint;
use dualstack_webhook::cluster::{Cluster, ServiceCidrs};
use dualstack_webhook::commands::EXAMPLE_POLICY;
use dualstack_webhook::domain::apiserver_model;
use dualstack_webhook::domain::policy::Policy;
use dualstack_webhook::domain::service::Service;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

const CLUSTERS: [&str; 4] = [
    "10.96.0.0/16",
    "fd00:10:96::/112",
    "10.96.0.0/16,fd00:10:96::/112",
    "fd00:10:96::/112,10.96.0.0/16",
];
const IPS: [&str; 7] = [
    "10.96.0.10",
    "fd00:10:96::10",
    "10.96.0.11",
    "fd00:10:96::11",
    "10.200.0.1",
    "None",
    "",
];
const FAMILIES: [&str; 3] = ["IPv4", "IPv6", "IPv5"];
const POLICIES: [&str; 4] = [
    "SingleStack",
    "PreferDualStack",
    "RequireDualStack",
    "Sometimes",
];
const TYPES: [&str; 5] = [
    "ClusterIP",
    "NodePort",
    "LoadBalancer",
    "ExternalName",
    "Headless",
];
const NAMESPACES: [&str; 5] = [
    "apps",
    "prod-a",
    "legacy",
    "kube-system",
    "dualstack-webhook",
];

const POLICY_TEXTS: [&str; 4] = [
    EXAMPLE_POLICY,
    "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n",
    "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n\
     defaults: {ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]}\n",
    "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n\
     defaults: {ipFamilyPolicy: SingleStack, ipFamilies: [IPv6]}\n\
     rules: [{name: lb, match: {types: [LoadBalancer]}, defaults: {ipFamilyPolicy: PreferDualStack}}]\n",
];

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    proptest::option::weighted(0.5, s).boxed()
}

fn strs(pool: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<&'static str>> {
    proptest::collection::vec(select(pool), 0..=max)
}

prop_compose! {
    /// A Service as a client may send it: any subset of the dual-stack fields, members the
    /// webhook does not model, and a spec that may be absent or null.
    fn arb_object()(
        shape in 0..6u8,
        type_ in opt(select(&TYPES[..])),
        cluster_ip in opt(select(&IPS[..])),
        cluster_ips in opt(strs(&IPS, 3)),
        families in opt(strs(&FAMILIES, 3)),
        policy in opt(select(&POLICIES[..])),
        selector in any::<bool>(),
        labelled in any::<bool>(),
        generate_name in any::<bool>(),
    ) -> Value {
        let mut metadata = json!({
            "namespace": "apps",
            "annotations": {"a/b": "c~d", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        });
        if generate_name { metadata["generateName"] = json!("web-"); } else { metadata["name"] = json!("web"); }
        if labelled { metadata["labels"] = json!({"app": "web", "team/x": "y"}); }
        let mut spec = Map::new();
        spec.insert("ports".into(), json!([{"port": 80, "targetPort": 8080}]));
        spec.insert("sessionAffinity".into(), json!("None"));
        if let Some(t) = type_ { spec.insert("type".into(), json!(t)); }
        if type_ == Some("ExternalName") { spec.insert("externalName".into(), json!("example.com")); }
        if let Some(ip) = cluster_ip { spec.insert("clusterIP".into(), json!(ip)); }
        if let Some(ips) = cluster_ips { spec.insert("clusterIPs".into(), json!(ips)); }
        if let Some(f) = families { spec.insert("ipFamilies".into(), json!(f)); }
        if let Some(p) = policy { spec.insert("ipFamilyPolicy".into(), json!(p)); }
        if selector { spec.insert("selector".into(), json!({"app": "web"})); }
        let mut object = json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "status": {"loadBalancer": {}}});
        match shape {
            0 => {}                                          // no spec
            1 => { object["spec"] = Value::Null; }
            2 => { object["spec"] = json!({}); }
            _ => { object["spec"] = Value::Object(spec); }
        }
        object
    }
}

fn review(namespace: &str, object: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Service"},
            "resource": {"group": "", "version": "v1", "resource": "services"},
            "namespace": namespace, "operation": "CREATE", "object": object, "oldObject": null,
            "userInfo": {"username": "u"}, "dryRun": false,
        }
    }))
    .unwrap()
}

/// What `/mutate` answers for `object`, and the object with the answer's patch applied.
fn mutate(
    object: &Value,
    namespace: &str,
    policy: &Policy,
    cluster: &Cluster,
) -> Result<(Value, Value), TestCaseError> {
    let body = review(namespace, object);
    let answer = admission::review(Endpoint::Mutate, &body, policy, cluster)
        .map_err(|e| TestCaseError::fail(format!("not answered: {e}")))?;
    let out: Value = serde_json::from_slice(&answer.body).unwrap();
    let response = out["response"].clone();
    prop_assert_eq!(&response["uid"], "u-1");
    let mut patched = object.clone();
    if let Some(patch) = response["patch"].as_str() {
        prop_assert_eq!(&response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        let ops: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        if let Err(e) = json_patch::patch(&mut patched, &ops) {
            return Err(TestCaseError::fail(format!(
                "patch {ops:?} does not apply to {object}: {e}"
            )));
        }
    }
    Ok((response, patched))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn mutate_patches_apply_and_keep_services_valid(
        object in arb_object(),
        namespace in select(&NAMESPACES[..]),
        policy in select(&POLICY_TEXTS[..]),
        cidrs in select(&CLUSTERS[..]),
        known in any::<bool>(),
    ) {
        let policy = Policy::from_yaml(policy).unwrap();
        let cidrs = ServiceCidrs::parse(cidrs).unwrap();
        // The webhook may or may not have been told the cluster's ranges; the API server has them.
        // Unknown ranges are only safe with a policy the cluster can meet, so then the API server
        // model is dual-stack (the README: without --service-cidrs the webhook assumes nothing).
        let (cluster, cidrs) = if known {
            (Cluster::with_cidrs(Some(cidrs.clone())), cidrs)
        } else {
            (Cluster::with_cidrs(None), ServiceCidrs::parse(CLUSTERS[2]).unwrap())
        };
        let (response, patched) = mutate(&object, namespace, &policy, &cluster)?;

        // Still a Service, and nothing the webhook does not own changed.
        let before: Service = serde_json::from_value(object.clone()).unwrap();
        let after: Service = serde_json::from_value(patched.clone())
            .map_err(|e| TestCaseError::fail(format!("no longer a Service: {e}: {patched}")))?;
        prop_assert_eq!(&after.metadata, &before.metadata);
        for key in ["apiVersion", "kind", "metadata", "status"] {
            prop_assert_eq!(&patched[key], &object[key], "{} changed", key);
        }
        for key in ["ports", "sessionAffinity", "externalName"] {
            prop_assert_eq!(&patched["spec"][key], &object["spec"][key], "spec.{} changed", key);
        }
        if response["allowed"] != true {
            prop_assert!(response.get("patch").is_none(), "a denial with a patch: {}", response);
            return Ok(());
        }
        if apiserver_model::create(before.spec(), &cidrs).is_ok() {
            let result = apiserver_model::create(after.spec(), &cidrs);
            prop_assert!(
                result.is_ok(),
                "accepted as sent, refused after /mutate: {:?}\nsent {}\npatched {}",
                result.err(), object["spec"], patched["spec"]
            );
        }
    }
}

// === regressions ===

/// Found while fuzzing review decoding: serde's derived `Deserialize` accepts a JSON array for a
/// struct, so `request.object = [metadata, spec]` decodes as a Service and `/mutate` answers with
/// a patch on `/spec/...`, which cannot apply to an array (the API server then fails the request
/// as a webhook error). The API server never sends this; it is refused with a 400 like any other
/// malformed object.
#[test]
fn an_array_as_request_object_is_not_a_service() {
    let policy = Policy::from_yaml(EXAMPLE_POLICY).unwrap();
    let cluster = Cluster::with_cidrs(Some(ServiceCidrs::parse(CLUSTERS[2]).unwrap()));
    let object = json!([{"name": "web", "namespace": "apps"}, {"type": "ClusterIP"}]);
    let body = review("apps", &object);
    let result = admission::review(Endpoint::Mutate, &body, &policy, &cluster);
    // Only a JSON object is a Service: the review is refused where the array starts (serde_json
    // counts the `[` it has peeked at but not read: the column before it).
    let text = String::from_utf8(body.clone()).unwrap();
    let column = text.find(r#""object":["#).unwrap() + r#""object":"#.len();
    assert_eq!(
        result
            .map(|a| String::from_utf8_lossy(&a.body).into_owned())
            .unwrap_err()
            .to_string(),
        format!(
            "malformed AdmissionReview: invalid type: sequence, expected a JSON object \
             at line 1 column {column}"
        )
    );
}
