//! The fast path agrees with serde_json: wherever it answers, serde_json accepts the same body and
//! decodes the same values; it answers for every review the API server sends.

use std::path::Path;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::super::{ReviewIn, ServiceObject};
use crate::domain::service::Selector;

/// The fast path for a policy that reads labels (it keeps everything it reads).
fn decode(body: &[u8]) -> Option<ReviewIn<'_, ServiceObject>> {
    super::decode(body, true)
}

fn serde(body: &[u8]) -> Result<ReviewIn<'_, ServiceObject>, serde_json::Error> {
    serde_json::from_slice(body)
}

fn json_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json")
            && !path.to_string_lossy().ends_with(".expected.json")
        {
            out.push(path);
        }
    }
}

/// Every review body in the repository: the curl fixtures and the benchmark's.
fn reviews() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    json_files(&root.join("tests/fixtures"), &mut files);
    json_files(&root.join("bench/data"), &mut files);
    assert!(files.len() > 50, "fixtures not found: {files:?}");
    files.sort();
    files
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

/// Every fixture serde_json accepts is answered, with serde_json's values; the malformed ones
/// (`malformed-*`) are left to serde_json.
#[test]
fn answers_every_fixture_exactly_as_serde() {
    let mut answered = 0;
    for (name, body) in reviews() {
        match serde(&body) {
            Ok(slow) => {
                let fast = decode(&body).unwrap_or_else(|| panic!("{name}: the fast path gave up"));
                assert_eq!(fast, slow, "{name}");
                answered += 1;
            }
            Err(_) => assert_eq!(decode(&body), None, "{name}"),
        }
    }
    assert!(answered > 40, "only {answered} fixtures answered");
}

#[test]
fn answers_pretty_printed_bodies_too() {
    for (name, body) in reviews() {
        let Ok(value) = serde_json::from_slice::<Value>(&body) else {
            continue;
        };
        if serde(&body).is_err() {
            continue;
        }
        let pretty = serde_json::to_vec_pretty(&value).unwrap();
        let fast = decode(&pretty).unwrap_or_else(|| panic!("{name}: gave up when pretty"));
        assert_eq!(fast, serde(&pretty).unwrap(), "{name}");
    }
}

fn with_object(object: &str) -> String {
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u","kind":{{"group":"","version":"v1","kind":"Service"}},"namespace":"ns","operation":"CREATE","object":{object}}}}}"#
    )
}

/// Bodies the fast path must leave to serde_json, and whether serde_json accepts them.
#[test]
fn gives_up_on_what_it_is_not_sure_of() {
    let ok = r#"{"metadata":{"name":"web"},"spec":{"type":"ClusterIP"}}"#;
    assert!(
        decode(with_object(ok).as_bytes()).is_some(),
        "the base case answers"
    );
    let cases: &[(&str, String, bool)] = &[
        // (what, body, serde accepts)
        (
            "an escape in a read string",
            with_object(r#"{"metadata":{"name":"w\u0065b"}}"#),
            true,
        ),
        (
            "an escape in a read key",
            with_object(r#"{"metadata":{"n\u0061me":"web"}}"#),
            true,
        ),
        (
            "a duplicate field",
            with_object(r#"{"metadata":{"name":"a","name":"b"}}"#),
            false,
        ),
        (
            "a duplicate object",
            with_object(r#"{"spec":{},"spec":{}}"#),
            false,
        ),
        (
            "null for a string",
            with_object(r#"{"metadata":{"name":null}}"#),
            false,
        ),
        (
            "a number for a string",
            with_object(r#"{"spec":{"type":1}}"#),
            false,
        ),
        (
            "an array for the object",
            with_object(r#"[{"name":"web"}]"#),
            false,
        ),
        ("trailing bytes", format!("{} x", with_object(ok)), false),
        (
            "a trailing comma",
            with_object(r#"{"metadata":{"name":"web",}}"#),
            false,
        ),
        (
            "a trailing comma in a skipped array",
            with_object(r#"{"x":[1,]}"#),
            false,
        ),
        ("a leading zero", with_object(r#"{"x":01}"#), false),
        ("a bare minus", with_object(r#"{"x":-}"#), false),
        (
            "a fraction without digits",
            with_object(r#"{"x":1.}"#),
            false,
        ),
        (
            "an exponent without digits",
            with_object(r#"{"x":1e+}"#),
            false,
        ),
        ("an unknown escape", with_object(r#"{"x":"\q"}"#), false),
        (
            "a short unicode escape",
            with_object(r#"{"x":"\u12"}"#),
            false,
        ),
        (
            "a raw tab in a string",
            with_object("{\"x\":\"a\tb\"}"),
            false,
        ),
        (
            "a key that is not a string",
            with_object(r#"{"x":{1:2}}"#),
            false,
        ),
        ("a missing colon", with_object(r#"{"x":{"a" 2}}"#), false),
        ("a misspelt literal", with_object(r#"{"x":nul}"#), false),
        ("a mismatched bracket", with_object(r#"{"x":[1}"#), false),
        ("a truncated body", with_object(ok)[..60].to_owned(), false),
        (
            "deep nesting",
            with_object(&format!(
                r#"{{"x":{}{}}}"#,
                "[".repeat(200),
                "]".repeat(200)
            )),
            true,
        ),
        (
            "invalid UTF-8 in a label",
            with_object("{\"metadata\":{\"labels\":{\"a\":\"\u{1}\"}}}"),
            false,
        ),
    ];
    for (what, body, serde_accepts) in cases {
        assert!(decode(body.as_bytes()).is_none(), "{what}: answered {body}");
        assert_eq!(
            serde(body.as_bytes()).is_ok(),
            *serde_accepts,
            "{what}: {body}"
        );
    }
}

#[test]
fn invalid_utf8_in_skipped_strings_is_skipped_as_serde_does() {
    let mut body =
        with_object(r#"{"metadata":{"name":"web","annotations":{"a":"XX"}}}"#).into_bytes();
    let at = body.windows(2).position(|w| w == b"XX").unwrap();
    body[at] = 0xff;
    assert!(serde(&body).is_ok());
    assert_eq!(decode(&body), Some(serde(&body).unwrap()));
    // ... but not where serde reads it.
    let mut body = with_object(r#"{"metadata":{"name":"wXX"}}"#).into_bytes();
    let at = body.windows(2).position(|w| w == b"XX").unwrap();
    body[at] = 0xff;
    assert!(serde(&body).is_err());
    assert_eq!(decode(&body), None);
}

/// A policy without object selectors: labels are checked as serde reads them, but not kept.
#[test]
fn leaves_labels_out_when_the_policy_does_not_read_them() {
    for (name, body) in reviews() {
        let Ok(mut slow) = serde(&body) else {
            continue;
        };
        if let Some(req) = &mut slow.request {
            for object in [&mut req.object, &mut req.old_object].into_iter().flatten() {
                object.0.metadata.labels.clear();
            }
        }
        assert_eq!(super::decode(&body, false), Some(slow), "{name}");
    }
    let bad = with_object(r#"{"metadata":{"labels":{"a":1}}}"#);
    assert_eq!(super::decode(bad.as_bytes(), false), None);
    assert!(serde(bad.as_bytes()).is_err());
}

#[test]
fn reads_nulls_where_serde_reads_none() {
    let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "subResource": null, "object": null, "oldObject": null, "dryRun": null,
                    "kind": {"group": "", "version": "v1", "kind": "Service"}}});
    let body = serde_json::to_vec(&body).unwrap();
    assert_eq!(decode(&body), Some(serde(&body).unwrap()));
    let spec = json!({"type": null, "clusterIP": null, "clusterIPs": null, "ipFamilies": null,
                      "ipFamilyPolicy": null, "selector": null});
    let body = with_object(&json!({"metadata": {}, "spec": spec}).to_string());
    assert_eq!(
        decode(body.as_bytes()),
        Some(serde(body.as_bytes()).unwrap())
    );
    assert_eq!(
        decode(with_object("null").as_bytes())
            .unwrap()
            .request
            .unwrap()
            .object,
        None
    );
}

/// Any JSON value, nested a few levels (what a skipped member may hold).
fn any_json() -> impl Strategy<Value = Value> {
    crate::testing::any_json(4, 12)
}

fn a_service() -> impl Strategy<Value = Value> {
    let labels = prop::collection::btree_map("[a-z./-]{1,10}", "[a-z0-9-]{0,8}", 0..4);
    let strings = prop::collection::vec("[0-9a-fA-F.:]{0,10}", 0..3);
    (labels.clone(), strings.clone(), strings, labels, any_json(), any_json()).prop_map(
        |(labels, ips, families, selector, extra, managed)| {
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "web", "namespace": "apps", "labels": labels,
                                "managedFields": [managed], "annotations": {"x": extra.to_string()}},
                   "spec": {"type": "ClusterIP", "clusterIP": ips.first(), "clusterIPs": ips,
                            "ipFamilies": families, "ipFamilyPolicy": "SingleStack",
                            "selector": selector, "ports": [extra]},
                   "status": {"loadBalancer": {}}})
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Reviews as serde_json writes them, with any JSON in the members the policy does not read:
    /// the fast path answers, with serde_json's values.
    #[test]
    fn answers_well_formed_reviews(object in a_service(), old in prop::option::of(a_service()),
                                   extra in any_json(), pretty in any::<bool>()) {
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Service"},
                        "userInfo": extra, "name": "web", "namespace": "apps", "operation": "UPDATE",
                        "object": object, "oldObject": old, "dryRun": true}});
        let body = if pretty { serde_json::to_vec_pretty(&review) } else { serde_json::to_vec(&review) }.unwrap();
        let fast = decode(&body);
        prop_assert!(fast.is_some(), "gave up on {}", String::from_utf8_lossy(&body));
        prop_assert_eq!(fast, Some(serde(&body).unwrap()));
    }

    /// Any corruption of a real review: if the fast path answers, serde_json agrees.
    #[test]
    fn never_answers_what_serde_would_not(
        index in 0..reviews_count(),
        edits in crate::testing::corruptions(),
    ) {
        let mut body = REVIEWS.with(|r| r[index].1.clone());
        crate::testing::corrupt(&mut body, edits);
        let disagreement = super::disagreement(&body);
        prop_assert!(disagreement.is_none(), "{:?}\n{}", disagreement, String::from_utf8_lossy(&body));
    }
}

thread_local! {
    static REVIEWS: Vec<(String, Vec<u8>)> = reviews();
}

fn reviews_count() -> usize {
    REVIEWS.with(Vec::len)
}

/// `spec.selector` is kept as whether it names a label (R3.12), by both paths alike; a value that
/// is not a string is refused by both.
#[test]
fn selector_is_kept_as_whether_it_has_a_label() {
    for (selector, want) in [
        ("null", Some(Selector::Empty)),
        ("{}", Some(Selector::Empty)),
        (r#"{"app":"web"}"#, Some(Selector::Labels)),
        (
            r#"{"app":"web","tier":"front","app":"x"}"#,
            Some(Selector::Labels),
        ),
        (r#"{"app":1}"#, None),
    ] {
        let body = with_object(&format!(r#"{{"spec":{{"selector":{selector}}}}}"#));
        let read = |review: ReviewIn<'_, ServiceObject>| {
            review
                .request
                .unwrap()
                .object
                .unwrap()
                .0
                .spec
                .unwrap()
                .selector
        };
        assert_eq!(decode(body.as_bytes()).map(read), want, "{selector}");
        assert_eq!(serde(body.as_bytes()).ok().map(read), want, "{selector}");
    }
}
