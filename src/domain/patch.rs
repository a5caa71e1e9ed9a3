//! The patch builder: a [`Mutation`] as an RFC 6902 JSON Patch. Pure; pointers are built from tokens.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::{Value, json};

use crate::domain::engine::Mutation;

/// The JSON Patch that applies `mutation` to a Service. `has_spec`: the object has a `spec` map (when
/// it has none, the patch adds an empty one first, since `add` needs the parent to exist).
///
/// Every operation is `add`, which sets a member whether or not it exists (RFC 6902 §4.1), so the
/// patch applies to the object the API server holds at admission time (R8.6).
pub fn build(mutation: &Mutation, has_spec: bool) -> Patch {
    let mut ops = Vec::new();
    if mutation.is_empty() {
        return Patch(ops);
    }
    if !has_spec {
        ops.push(add(&["spec"], json!({})));
    }
    if let Some(policy) = mutation.ip_family_policy {
        ops.push(add(&["spec", "ipFamilyPolicy"], json!(policy.as_str())));
    }
    if let Some(families) = &mutation.ip_families {
        let names: Vec<&str> = families.iter().map(|f| f.as_str()).collect();
        ops.push(add(&["spec", "ipFamilies"], json!(names)));
    }
    Patch(ops)
}

fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(tokens.iter().copied()),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::service::IpFamily::{IPv4, IPv6};
    use crate::domain::service::IpFamilyPolicy::PreferDualStack;

    fn apply(doc: Value, patch: &Patch) -> Value {
        let mut doc = doc;
        json_patch::patch(&mut doc, patch).unwrap();
        doc
    }

    #[test]
    fn empty_mutation_is_an_empty_patch() {
        assert!(build(&Mutation::default(), true).0.is_empty());
        assert!(build(&Mutation::default(), false).0.is_empty());
    }

    #[test]
    fn sets_and_replaces_fields() {
        let m = Mutation {
            ip_family_policy: Some(PreferDualStack),
            ip_families: Some(vec![IPv6, IPv4]),
        };
        let doc =
            json!({"kind": "Service", "spec": {"ipFamilies": ["IPv4"], "ports": [{"port": 80}]}});
        let out = apply(doc, &build(&m, true));
        assert_eq!(
            out,
            json!({"kind": "Service", "spec": {
                "ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"], "ports": [{"port": 80}]}})
        );
    }

    #[test]
    fn adds_a_missing_spec() {
        let m = Mutation {
            ip_family_policy: Some(PreferDualStack),
            ..Mutation::default()
        };
        let out = apply(json!({"kind": "Service"}), &build(&m, false));
        assert_eq!(out["spec"]["ipFamilyPolicy"], "PreferDualStack");
    }

    #[test]
    fn wire_form_is_rfc6902() {
        let m = Mutation {
            ip_families: Some(vec![IPv4]),
            ..Mutation::default()
        };
        let wire = serde_json::to_value(build(&m, true)).unwrap();
        assert_eq!(
            wire,
            json!([{"op": "add", "path": "/spec/ipFamilies", "value": ["IPv4"]}])
        );
    }
}
