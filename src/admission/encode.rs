//! The response AdmissionReview as JSON text, written straight into one buffer: the bytes
//! `serde_json::to_vec` would write for [`ReviewOut`] (same members, order and escapes; the tests
//! compare the two), without serde's per-value machinery.

use super::{ResponseOut, ReviewOut, StatusOut};
use crate::json_text::{string, string_list};

/// The JSON text of `review`.
pub(super) fn to_json(review: &ReviewOut<'_>) -> Vec<u8> {
    let r = &review.response;
    // Room for everything but escapes, so that the buffer is allocated once: the envelope, the
    // patch, and the audit annotations and warnings, which are longer than the rest together.
    let annotations: usize = (r.audit_annotations.iter())
        .map(|(key, value)| key.len() + value.len() + 6)
        .sum();
    let warnings: usize = r.warnings.iter().map(|w| w.len() + 3).sum();
    let patch = r.patch.as_ref().map_or(0, String::len);
    let mut out = Vec::with_capacity(256 + patch + annotations + warnings);
    out.extend_from_slice(b"{\"apiVersion\":");
    string(&mut out, review.api_version);
    out.extend_from_slice(b",\"kind\":");
    string(&mut out, review.kind);
    out.extend_from_slice(b",\"response\":");
    response(&mut out, r);
    out.push(b'}');
    out
}

fn response(out: &mut Vec<u8>, r: &ResponseOut<'_>) {
    out.extend_from_slice(b"{\"uid\":");
    string(out, r.uid);
    out.extend_from_slice(if r.allowed {
        b",\"allowed\":true"
    } else {
        b",\"allowed\":false"
    });
    if let Some(status) = &r.status {
        out.extend_from_slice(b",\"status\":");
        status_json(out, status);
    }
    if let Some(patch_type) = r.patch_type {
        out.extend_from_slice(b",\"patchType\":");
        string(out, patch_type);
    }
    if let Some(patch) = &r.patch {
        // Base64: its alphabet never needs an escape.
        out.extend_from_slice(b",\"patch\":\"");
        out.extend_from_slice(patch.as_bytes());
        out.push(b'"');
    }
    if !r.warnings.is_empty() {
        out.extend_from_slice(b",\"warnings\":");
        string_list(out, r.warnings.iter().map(String::as_str));
    }
    if !r.audit_annotations.is_empty() {
        out.extend_from_slice(b",\"auditAnnotations\":{");
        for (i, (key, value)) in r.audit_annotations.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, key);
            out.push(b':');
            string(out, value);
        }
        out.push(b'}');
    }
    out.push(b'}');
}

fn status_json(out: &mut Vec<u8>, status: &StatusOut) {
    out.extend_from_slice(b"{\"code\":");
    out.extend_from_slice(status.code.to_string().as_bytes());
    out.extend_from_slice(b",\"reason\":");
    string(out, status.reason);
    out.extend_from_slice(b",\"message\":");
    string(out, &status.message);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn review<'a>(uid: &'a str, text: &str, denied: bool) -> ReviewOut<'a> {
        ReviewOut {
            api_version: "admission.k8s.io/v1",
            kind: "AdmissionReview",
            response: ResponseOut {
                uid,
                allowed: !denied,
                status: denied.then(|| StatusOut {
                    code: 403,
                    reason: "Forbidden",
                    message: text.to_owned(),
                }),
                patch_type: (!denied).then_some("JSONPatch"),
                patch: (!denied).then(|| "W10=".to_owned()),
                warnings: vec![text.to_owned(), "w2".to_owned()],
                audit_annotations: BTreeMap::from([
                    ("mutation".to_owned(), text.to_owned()),
                    ("findings".to_owned(), "x".to_owned()),
                ]),
            },
        }
    }

    #[test]
    fn writes_what_serde_writes() {
        for text in [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            "\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
            "é…✓",
        ] {
            for denied in [false, true] {
                let r = review("uid-1", text, denied);
                assert_eq!(
                    String::from_utf8(to_json(&r)).unwrap(),
                    serde_json::to_string(&r).unwrap()
                );
            }
        }
        let mut bare = review("u", "", false);
        bare.response.patch = None;
        bare.response.patch_type = None;
        bare.response.warnings.clear();
        bare.response.audit_annotations.clear();
        assert_eq!(to_json(&bare), serde_json::to_vec(&bare).unwrap());
    }

    proptest! {
        #[test]
        fn writes_what_serde_writes_for_any_text(uid in "\\PC*", text in any::<String>(), denied in any::<bool>()) {
            let r = review(&uid, &text, denied);
            prop_assert_eq!(to_json(&r), serde_json::to_vec(&r).unwrap());
        }
    }
}
