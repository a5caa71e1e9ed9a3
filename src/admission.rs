//! The AdmissionReview wire format: decode a review, run the engine, encode the answer.
//!
//! Only what the policy reads is decoded: the object's metadata and dual-stack fields; everything
//! else (managedFields, annotations, ports ...) is skipped without being kept, by a one-pass reader
//! (`fast_path`) that leaves anything unusual to serde_json. The answer is written by hand
//! (`encode`), byte for byte as serde_json would write it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::cluster::Cluster;
use crate::domain::engine::{self, Decision, DenialMessage, Operation, Request};
use crate::domain::patch;
use crate::domain::policy::Policy;
use crate::domain::service::Service;
use crate::metrics::{Endpoint, Outcome};

mod encode;
mod fast_path;

/// The AdmissionReview versions this webhook answers (in the version received, R8.5).
pub const VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// Why a body is not an AdmissionReview we can answer (answered with HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Nothing was sent.
    #[error("empty body: expected an admission.k8s.io/v1 AdmissionReview")]
    Empty,
    /// Not JSON, or not of the AdmissionReview shape.
    #[error("malformed AdmissionReview: {0}")]
    Malformed(#[source] serde_json::Error),
    /// Another `apiVersion`.
    #[error("unsupported apiVersion {0:?}: expected admission.k8s.io/v1")]
    ApiVersion(String),
    /// Another `kind`.
    #[error("unsupported kind {0:?}: expected AdmissionReview")]
    Kind(String),
    /// `request` is missing.
    #[error("AdmissionReview has no request")]
    NoRequest,
    /// `request.uid` is missing.
    #[error("AdmissionReview request has no uid")]
    NoUid,
    /// The object or oldObject is a Service of the wrong shape.
    #[error("request.{0} is not a valid Service: {1}")]
    Object(&'static str, #[source] serde_json::Error),
}

/// The envelope, generic over how `object` and `oldObject` are decoded: straight into [`Service`] by
/// the one-pass fast path, or kept as raw JSON by serde_json, which reports errors (see [`review`]).
/// Strings borrow from the body unless they hold escapes.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "O: Deserialize<'de>"))]
struct ReviewIn<'a, O> {
    #[serde(default, borrow)]
    api_version: &'a str,
    #[serde(default, borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    request: Option<RequestIn<'a, O>>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "O: Deserialize<'de>"))]
struct RequestIn<'a, O> {
    #[serde(default, borrow)]
    uid: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: GroupVersionKind<'a>,
    #[serde(default, borrow)]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    namespace: Cow<'a, str>,
    #[serde(default, borrow)]
    operation: Cow<'a, str>,
    #[serde(default = "none")]
    object: Option<O>,
    #[serde(default = "none")]
    old_object: Option<O>,
    #[serde(default)]
    dry_run: Option<bool>,
}

/// `#[serde(default)]` on an `Option<O>` would require `O: Default`.
fn none<O>() -> Option<O> {
    None
}

#[derive(Debug, Default, PartialEq, Deserialize)]
struct GroupVersionKind<'a> {
    #[serde(default, borrow)]
    group: Cow<'a, str>,
    #[serde(default, borrow)]
    version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
}

/// How an `object` / `oldObject` of the envelope becomes a [`Service`].
trait ObjectIn: Sized {
    fn into_service(
        object: Option<Self>,
        field: &'static str,
    ) -> Result<Option<Service>, ReviewError>;
}

/// A Service decoded in the envelope's pass, from a JSON object only (serde would also read a
/// struct from an array, fields in order). The fast path builds these; serde_json's decoding of
/// the same type is the oracle it is checked against (`fast_path::disagreement`).
#[derive(Debug, PartialEq)]
struct ServiceObject(Service);

impl<'de> Deserialize<'de> for ServiceObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ServiceObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a Service object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let map = serde::de::value::MapAccessDeserializer::new(map);
                Service::deserialize(map).map(ServiceObject)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Decoded already, in the same pass as the envelope.
impl ObjectIn for ServiceObject {
    fn into_service(object: Option<Self>, _: &'static str) -> Result<Option<Service>, ReviewError> {
        Ok(object.map(|o| o.0))
    }
}

/// Raw JSON, decoded now (only for a Service review), so that a malformed object is reported as
/// `request.object is not a valid Service` after the envelope's own checks.
impl ObjectIn for &RawValue {
    fn into_service(
        object: Option<Self>,
        field: &'static str,
    ) -> Result<Option<Service>, ReviewError> {
        match object {
            None => Ok(None),
            Some(raw) if raw.get() == "null" => Ok(None),
            // serde reads a JSON array as a struct (fields in order); only an object is a Service, and a
            // patch for `/spec/...` could never apply to anything else.
            Some(raw) if !raw.get().starts_with('{') => Err(ReviewError::Object(
                field,
                serde::de::Error::custom("expected a JSON object"),
            )),
            Some(raw) => serde_json::from_str(raw.get())
                .map(Some)
                .map_err(|e| ReviewError::Object(field, e)),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    /// base64 of the JSON Patch (kube's own type would write an array of integers).
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct StatusOut {
    code: u16,
    reason: &'static str,
    message: String,
}

/// An answered review: the encoded AdmissionReview and a summary for logs and metrics (borrowing
/// from the request body).
#[derive(Debug)]
pub struct Answer<'a> {
    /// The response AdmissionReview, JSON.
    pub body: Vec<u8>,
    /// What the webhook did.
    pub outcome: Outcome,
    /// Summary for logs.
    pub summary: Summary<'a>,
}

/// What a review was about, for the review's log line.
#[derive(Debug, Default, Clone)]
pub struct Summary<'a> {
    /// `request.uid`.
    pub uid: Cow<'a, str>,
    /// `request.namespace`.
    pub namespace: Cow<'a, str>,
    /// `request.name` (empty with generateName).
    pub name: Cow<'a, str>,
    /// `request.operation`.
    pub operation: Cow<'a, str>,
    /// `request.dryRun`.
    pub dry_run: bool,
    /// The denial message, if denied.
    pub denied: Option<String>,
}

/// For the fuzz target: where the one-pass reader of [`review`] would decode `body` differently
/// from serde_json (a bug), what differs.
#[doc(hidden)]
pub fn fast_path_disagreement(body: &[u8]) -> Option<String> {
    fast_path::disagreement(body)
}

/// Answers one AdmissionReview body for an endpoint.
pub fn review<'a>(
    endpoint: Endpoint,
    body: &'a [u8],
    policy: &Policy,
    cluster: &Cluster,
) -> Result<Answer<'a>, ReviewError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ReviewError::Empty);
    }
    // Fast path: a one-pass reader of just the fields the policy uses (see `fast_path`). It gives
    // up on anything unusual, and serde_json decides instead: the envelope first, the objects kept
    // as raw JSON and decoded afterwards, so that each error names what is wrong.
    if let Some(review) = fast_path::decode(body, policy.reads_object_labels()) {
        return answer(endpoint, review, policy, cluster);
    }
    let review: ReviewIn<'_, &RawValue> =
        serde_json::from_slice(body).map_err(ReviewError::Malformed)?;
    answer(endpoint, review, policy, cluster)
}

fn answer<'a, O: ObjectIn>(
    endpoint: Endpoint,
    review: ReviewIn<'a, O>,
    policy: &Policy,
    cluster: &Cluster,
) -> Result<Answer<'a>, ReviewError> {
    let api_version = VERSIONS
        .iter()
        .find(|v| **v == review.api_version)
        .ok_or_else(|| ReviewError::ApiVersion(review.api_version.to_owned()))?;
    if review.kind != "AdmissionReview" {
        return Err(ReviewError::Kind(review.kind.to_owned()));
    }
    let mut req = review.request.ok_or(ReviewError::NoRequest)?;
    if req.uid.is_empty() {
        return Err(ReviewError::NoUid);
    }
    let summary = Summary {
        uid: req.uid.clone(),
        namespace: req.namespace.clone(),
        name: req.name.clone(),
        operation: req.operation.clone(),
        dry_run: req.dry_run.unwrap_or(false),
        denied: None,
    };
    let decision = decide(endpoint, &mut req, policy, cluster)?;
    Ok(encode(api_version, &req.uid, endpoint, decision, summary))
}

/// What the engine says, or a pass-through for what it does not judge.
fn decide<O: ObjectIn>(
    endpoint: Endpoint,
    req: &mut RequestIn<'_, O>,
    policy: &Policy,
    cluster: &Cluster,
) -> Result<Decided, ReviewError> {
    let is_service =
        req.kind.group.is_empty() && req.kind.version == "v1" && req.kind.kind == "Service";
    if !is_service {
        // A misconfigured webhook must not take a cluster down: allow, and say so.
        let kind = match &*req.kind.group {
            "" => format!("{}/{}", req.kind.version, req.kind.kind),
            g => format!("{g}/{}/{}", req.kind.version, req.kind.kind),
        };
        let warning = format!(
            "dualstack-webhook reviews only v1 Services, got {kind}: check its webhook rules"
        );
        return Ok(Decided::PassThrough(vec![engine::truncate_warning(
            &warning,
        )]));
    }
    if req.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
        return Ok(Decided::PassThrough(vec![])); // e.g. services/status: no spec changes
    }
    let object = O::into_service(req.object.take(), "object")?;
    let old_object = O::into_service(req.old_object.take(), "oldObject")?;
    let operation = match &*req.operation {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        _ => Operation::Connect,
    };
    let request = Request {
        operation,
        namespace: &req.namespace,
        object: object.as_ref(),
        old_object: old_object.as_ref(),
    };
    let decision = match endpoint {
        Endpoint::mutate => engine::mutate(policy, cluster, &request),
        Endpoint::validate => engine::validate(policy, cluster, &request),
    };
    let has_spec = object.as_ref().is_some_and(|o| o.spec.is_some());
    Ok(Decided::Engine {
        decision: Box::new(decision),
        has_spec,
    })
}

enum Decided {
    PassThrough(Vec<String>),
    Engine {
        decision: Box<Decision>,
        has_spec: bool,
    },
}

fn encode<'a>(
    api_version: &str,
    uid: &str,
    endpoint: Endpoint,
    decided: Decided,
    mut summary: Summary<'a>,
) -> Answer<'a> {
    let mut response = ResponseOut {
        uid,
        allowed: true,
        status: None,
        patch_type: None,
        patch: None,
        warnings: Vec::new(),
        audit_annotations: BTreeMap::new(),
    };
    let outcome = match decided {
        Decided::PassThrough(warnings) => {
            let outcome = if warnings.is_empty() {
                Outcome::allowed
            } else {
                Outcome::warned
            };
            response.warnings = warnings;
            outcome
        }
        Decided::Engine { decision, has_spec } => {
            response.warnings = decision.warnings;
            response.audit_annotations = decision.audit;
            if let Some((name, denial)) = &decision.denial {
                let message = DenialMessage { name, denial }.to_string();
                summary.denied = Some(message.clone());
                response.allowed = false;
                response.status = Some(StatusOut {
                    code: 403,
                    reason: "Forbidden",
                    message,
                });
                Outcome::denied
            } else if endpoint == Endpoint::mutate && !decision.mutation.is_empty() {
                // R8.3: a validating webhook may never return a patch; only /mutate gets here.
                let json = patch::to_json(&decision.mutation, has_spec);
                response.patch = Some(BASE64.encode(json));
                response.patch_type = Some("JSONPatch");
                Outcome::patched
            } else if !response.warnings.is_empty() {
                Outcome::warned
            } else {
                Outcome::allowed
            }
        }
    };
    let out = ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response,
    };
    let body = encode::to_json(&out);
    Answer {
        body,
        outcome,
        summary,
    }
}

#[cfg(test)]
mod tests;
