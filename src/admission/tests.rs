//! The wire format: uid and version echoed, base64 patches, no patch from /validate, clear errors.

use serde_json::{Value, json};

use super::*;
use crate::testing::cluster;

fn policy() -> Policy {
    Policy::from_yaml(
        "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n\
         defaults: {ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv6, IPv4]}\n\
         rules: [{name: dual, require: {dualStack: true}}]\n",
    )
    .unwrap()
}

fn review_of(version: &str, operation: &str, object: Value, old: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": version,
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Service"},
            "resource": {"group": "", "version": "v1", "resource": "services"},
            "name": "web", "namespace": "apps", "operation": operation,
            "userInfo": {"username": "admin"},
            "object": object, "oldObject": old, "dryRun": false,
        }
    }))
    .unwrap()
}

fn svc(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "apps", "managedFields": [{"manager": "kubectl"}],
                        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
           "spec": spec})
}

fn answer(endpoint: Endpoint, body: &[u8]) -> (Value, Outcome) {
    let a = review(endpoint, body, &policy(), &cluster("v4v6")).unwrap();
    (serde_json::from_slice(&a.body).unwrap(), a.outcome)
}

#[test]
fn mutate_answers_with_a_base64_json_patch() {
    let body = review_of(
        "admission.k8s.io/v1",
        "CREATE",
        svc(json!({"type": "ClusterIP", "selector": {"a": "b"}, "ports": [{"port": 80}]})),
        Value::Null,
    );
    let (out, outcome) = answer(Endpoint::Mutate, &body);
    assert_eq!(outcome, Outcome::Patched);
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out["kind"], "AdmissionReview");
    let r = &out["response"];
    assert_eq!(r["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    let patch = r["patch"]
        .as_str()
        .expect("patch is a base64 string on the wire, not an array");
    let ops: Value = serde_json::from_slice(&BASE64.decode(patch).unwrap()).unwrap();
    assert_eq!(
        ops,
        json!([{"op": "add", "path": "/spec/ipFamilyPolicy", "value": "PreferDualStack"},
               {"op": "add", "path": "/spec/ipFamilies", "value": ["IPv6", "IPv4"]}])
    );
    assert!(
        r["auditAnnotations"]["mutation"]
            .as_str()
            .unwrap()
            .contains("PreferDualStack")
    );
}

#[test]
fn validate_never_returns_a_patch_r8_3() {
    let body = review_of(
        "admission.k8s.io/v1",
        "CREATE",
        svc(
            json!({"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}),
        ),
        Value::Null,
    );
    let (out, outcome) = answer(Endpoint::Validate, &body);
    assert_eq!(outcome, Outcome::Denied);
    let r = &out["response"];
    assert_eq!(r["allowed"], false);
    assert!(r.get("patch").is_none() && r.get("patchType").is_none());
    assert_eq!(r["status"]["code"], 403);
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("apps/web") && msg.contains("rule \"dual\""),
        "{msg}"
    );
}

#[test]
fn answers_in_the_version_received() {
    let body = review_of(
        "admission.k8s.io/v1beta1",
        "CREATE",
        svc(json!({"type": "ExternalName"})),
        Value::Null,
    );
    let (out, outcome) = answer(Endpoint::Mutate, &body);
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(outcome, Outcome::Allowed);
    assert_eq!(
        out["response"],
        // kube's AdmissionResponse always writes `status`; the API server reads it only on a denial.
        json!({"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true, "status": {}})
    );
}

#[test]
fn other_kinds_are_allowed_with_a_warning() {
    let mut v: Value = serde_json::from_slice(&review_of(
        "admission.k8s.io/v1",
        "CREATE",
        json!({"kind": "Deployment"}),
        Value::Null,
    ))
    .unwrap();
    v["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let (out, outcome) = answer(Endpoint::Mutate, &serde_json::to_vec(&v).unwrap());
    assert_eq!(outcome, Outcome::Warned);
    assert_eq!(out["response"]["allowed"], true);
    assert!(
        out["response"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("apps/v1/Deployment")
    );
    assert!(out["response"].get("patch").is_none());
}

#[test]
fn status_subresource_and_delete_pass_through() {
    let mut v: Value = serde_json::from_slice(&review_of(
        "admission.k8s.io/v1",
        "UPDATE",
        svc(json!({})),
        svc(json!({})),
    ))
    .unwrap();
    v["request"]["subResource"] = json!("status");
    let (out, outcome) = answer(Endpoint::Mutate, &serde_json::to_vec(&v).unwrap());
    assert_eq!(
        (outcome, out["response"]["allowed"].clone()),
        (Outcome::Allowed, json!(true))
    );
    let body = review_of("admission.k8s.io/v1", "DELETE", Value::Null, svc(json!({})));
    assert_eq!(answer(Endpoint::Validate, &body).1, Outcome::Allowed);
}

#[test]
fn bodies_that_are_not_reviews_get_a_reason() {
    let p = policy();
    let c = cluster("v4v6");
    let err = |body: &[u8]| review(Endpoint::Mutate, body, &p, &c).unwrap_err();
    assert!(matches!(err(b""), ReviewError::Empty));
    assert!(matches!(err(b"  \n"), ReviewError::Empty));
    assert!(matches!(err(b"{not json"), ReviewError::Malformed(_)));
    assert!(matches!(err(b"[1,2]"), ReviewError::Malformed(_)));
    assert!(matches!(
        err(br#"{"apiVersion":"v1","kind":"AdmissionReview"}"#),
        ReviewError::ApiVersion(_)
    ));
    assert!(matches!(
        err(br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#),
        ReviewError::Kind(_)
    ));
    assert!(matches!(
        err(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
        ReviewError::NoRequest
    ));
    // kube's AdmissionRequest needs its fields; an empty request is not one.
    assert!(matches!(
        err(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#),
        ReviewError::Malformed(_)
    ));
    let mut no_uid: Value = serde_json::from_slice(&review_of(
        "admission.k8s.io/v1",
        "CREATE",
        svc(json!({})),
        Value::Null,
    ))
    .unwrap();
    no_uid["request"]["uid"] = json!("");
    assert!(matches!(
        err(&serde_json::to_vec(&no_uid).unwrap()),
        ReviewError::NoUid
    ));
    let mut bad: Value = serde_json::from_slice(&review_of(
        "admission.k8s.io/v1",
        "CREATE",
        svc(json!({"ipFamilies": "IPv4"})),
        Value::Null,
    ))
    .unwrap();
    assert_eq!(
        err(&serde_json::to_vec(&bad).unwrap()).to_string(),
        "request.object.spec is not a valid Service spec: \
         invalid type: string \"IPv4\", expected a sequence at line 1 column 20"
    );
    bad["request"]["object"] = json!(42);
    let body = serde_json::to_string(&bad).unwrap();
    // serde_json's column is the last character read: the `2` of `42`.
    let column = body.find(r#""object":42"#).unwrap() + r#""object":42"#.len();
    assert_eq!(
        err(body.as_bytes()).to_string(),
        format!(
            "malformed AdmissionReview: invalid type: integer `42`, expected a JSON object \
             at line 1 column {column}"
        )
    );
    // Deeply nested JSON is refused by the parser's recursion limit, not by a stack overflow.
    let deep = "[".repeat(100_000);
    assert!(matches!(err(deep.as_bytes()), ReviewError::Malformed(_)));
}

#[test]
fn dry_run_is_judged_like_a_real_request() {
    let body = review_of(
        "admission.k8s.io/v1",
        "CREATE",
        svc(json!({"type": "ClusterIP"})),
        Value::Null,
    );
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    let (real, _) = answer(Endpoint::Mutate, &body);
    v["request"]["dryRun"] = json!(true);
    let dry_body = serde_json::to_vec(&v).unwrap();
    let a = review(Endpoint::Mutate, &dry_body, &policy(), &cluster("v4v6")).unwrap();
    assert!(a.summary.dry_run);
    let dry: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(real, dry);
}

#[test]
fn an_object_and_its_spec_must_be_json_objects() {
    let p = policy();
    let c = cluster("v4v6");
    let mut body: Value = serde_json::from_slice(&review_of(
        "admission.k8s.io/v1",
        "CREATE",
        Value::Null,
        Value::Null,
    ))
    .unwrap();
    let mut err = |object: Value| {
        body["request"]["object"] = object;
        let text = serde_json::to_string(&body).unwrap();
        let error = review(Endpoint::Mutate, text.as_bytes(), &p, &c).unwrap_err();
        (error.to_string(), text)
    };
    // serde would read a struct from an array (members in order), and a patch on `/spec/...` cannot
    // apply to one. (An object of another kind than `request.kind` says is never sent: the API
    // server fills both.)
    // serde_json's column is the last character it read: the whole string or boolean, or none of
    // the array (it peeked at the `[`).
    for (object, kind, read) in [
        (json!([{"name": "web"}, {}]), "sequence", 0),
        (json!("web"), r#"string "web""#, 5),
        (json!(true), "boolean `true`", 4),
    ] {
        let (error, text) = err(object.clone());
        let column = text.find(r#""object":"#).unwrap() + r#""object":"#.len() + read;
        let want = format!(
            "malformed AdmissionReview: invalid type: {kind}, expected a JSON object \
             at line 1 column {column}"
        );
        assert_eq!(error, want, "{object}");
    }
    for (spec, want) in [
        (
            json!([]),
            "invalid type: sequence, expected a JSON object at line 1 column 0",
        ),
        (
            json!("ClusterIP"),
            r#"invalid type: string "ClusterIP", expected a JSON object at line 1 column 11"#,
        ),
    ] {
        let (error, _) = err(svc(spec));
        assert_eq!(
            error,
            format!("request.object.spec is not a valid Service spec: {want}")
        );
    }
}
