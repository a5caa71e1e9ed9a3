//! The patch builder: a [`Mutation`] as an RFC 6902 JSON Patch. Pure; pointers are built from tokens.

use json_patch::{AddOperation, Patch, PatchOperation};
use jsonptr::PointerBuf;
use serde_json::{Value, json};

use crate::domain::engine::Mutation;
use crate::json_text::{string, string_list};

/// The JSON Patch that applies `mutation` to a Service. `has_spec`: the object has a `spec` map (when
/// it has none, the patch adds an empty one first, since `add` needs the parent to exist).
///
/// Every operation is `add`, which sets a member whether or not it exists (RFC 6902 §4.1), so the
/// patch applies to the object the API server holds at admission time. `clusterIP` and `clusterIPs`
/// are written together where both change (R1.7, R1.8, R8.6).
pub fn build(mutation: &Mutation, has_spec: bool) -> Patch {
    let mut ops = Vec::new();
    if mutation.is_empty() {
        return Patch(ops);
    }
    if !has_spec {
        ops.push(add(&["spec"], json!({})));
    }
    if let Some(ip) = &mutation.cluster_ip {
        ops.push(add(&["spec", "clusterIP"], json!(ip)));
    }
    if let Some(ips) = &mutation.cluster_ips {
        ops.push(add(&["spec", "clusterIPs"], json!(ips)));
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

/// The JSON text of [`build`]'s patch, byte for byte, written straight from the mutation: no
/// `serde_json::Value` and no pointer buffers per request. The paths are fixed tokens without `~` or
/// `/`, so they need no escaping (the tests compare this with `serde_json::to_vec(&build(..))`).
pub fn to_json(mutation: &Mutation, has_spec: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(b'[');
    if !mutation.is_empty() {
        let mut first = true;
        if !has_spec {
            write_add(&mut out, &mut first, "/spec", |out| {
                out.extend_from_slice(b"{}")
            });
        }
        if let Some(ip) = &mutation.cluster_ip {
            write_add(&mut out, &mut first, "/spec/clusterIP", |out| {
                string(out, ip)
            });
        }
        if let Some(ips) = &mutation.cluster_ips {
            write_add(&mut out, &mut first, "/spec/clusterIPs", |out| {
                string_list(out, ips.iter().map(String::as_str));
            });
        }
        if let Some(policy) = mutation.ip_family_policy {
            write_add(&mut out, &mut first, "/spec/ipFamilyPolicy", |out| {
                string(out, policy.as_str());
            });
        }
        if let Some(families) = &mutation.ip_families {
            write_add(&mut out, &mut first, "/spec/ipFamilies", |out| {
                string_list(out, families.iter().map(|f| f.as_str()));
            });
        }
    }
    out.push(b']');
    out
}

/// One `add` operation, in json_patch's field order.
fn write_add(out: &mut Vec<u8>, first: &mut bool, path: &str, value: impl FnOnce(&mut Vec<u8>)) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    out.extend_from_slice(b"{\"op\":\"add\",\"path\":");
    string(out, path);
    out.extend_from_slice(b",\"value\":");
    value(out);
    out.push(b'}');
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
            cluster_ip: Some("10.96.0.10".into()),
            cluster_ips: None,
            ip_family_policy: Some(PreferDualStack),
            ip_families: Some(vec![IPv6, IPv4]),
        };
        let doc = json!({"kind": "Service", "spec": {"clusterIPs": ["10.96.0.10"], "ipFamilies": ["IPv4"], "ports": [{"port": 80}]}});
        let out = apply(doc, &build(&m, true));
        assert_eq!(
            out,
            json!({"kind": "Service", "spec": {
                "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ipFamilyPolicy": "PreferDualStack",
                "ipFamilies": ["IPv6", "IPv4"], "ports": [{"port": 80}]}})
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
    fn to_json_is_build_serialised() {
        // Every combination of fields, with and without a spec, and a value that needs escaping.
        for bits in 0u8..16 {
            let m = Mutation {
                cluster_ip: (bits & 1 != 0).then(|| "fd00:10:96::a\"\u{1}".to_owned()),
                cluster_ips: (bits & 2 != 0).then(|| vec!["10.96.0.10".into(), "None".into()]),
                ip_family_policy: (bits & 4 != 0).then_some(PreferDualStack),
                ip_families: (bits & 8 != 0).then(|| vec![IPv6, IPv4]),
            };
            for has_spec in [true, false] {
                let want = serde_json::to_vec(&build(&m, has_spec)).unwrap();
                let got = to_json(&m, has_spec);
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    String::from_utf8(want).unwrap(),
                    "{m:?} has_spec={has_spec}"
                );
            }
        }
    }

    #[test]
    fn wire_form_is_rfc6902() {
        let m = Mutation {
            cluster_ips: Some(vec!["None".into()]),
            ..Mutation::default()
        };
        let wire = serde_json::to_value(build(&m, true)).unwrap();
        assert_eq!(
            wire,
            json!([{"op": "add", "path": "/spec/clusterIPs", "value": ["None"]}])
        );
    }
}
