//! The AdmissionReview wire format: decode a review, run the engine, encode the answer.
//!
//! Only what the policy reads is decoded: the object's metadata and dual-stack fields; everything
//! else (managedFields, annotations, ports ...) is skipped by serde without being kept.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::cluster::Cluster;
use crate::engine::{self, Decision, DenialMessage, Operation, Request};
use crate::metrics::{Endpoint, Outcome};
use crate::patch;
use crate::policy::Policy;
use crate::service::Service;

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a> {
    #[serde(default, borrow)]
    api_version: &'a str,
    #[serde(default, borrow)]
    kind: &'a str,
    #[serde(default)]
    request: Option<RequestIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<'a> {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    kind: GroupVersionKind,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    operation: String,
    #[serde(default, borrow)]
    object: Option<&'a RawValue>,
    #[serde(default, borrow)]
    old_object: Option<&'a RawValue>,
    #[serde(default)]
    dry_run: Option<bool>,
}

#[derive(Default, Deserialize)]
struct GroupVersionKind {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    kind: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut {
    uid: String,
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

/// An answered review: the encoded AdmissionReview and a summary for logs and metrics.
#[derive(Debug)]
pub struct Answer {
    /// The response AdmissionReview, JSON.
    pub body: Vec<u8>,
    /// What the webhook did.
    pub outcome: Outcome,
    /// Summary for logs.
    pub summary: Summary,
}

/// What a review was about, for the review's log span.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// `request.uid`.
    pub uid: String,
    /// `request.namespace`.
    pub namespace: String,
    /// `request.name` (empty with generateName).
    pub name: String,
    /// `request.operation`.
    pub operation: String,
    /// `request.dryRun`.
    pub dry_run: bool,
    /// The denial message, if denied.
    pub denied: Option<String>,
}

/// Answers one AdmissionReview body for an endpoint.
pub fn review(
    endpoint: Endpoint,
    body: &[u8],
    policy: &Policy,
    cluster: &Cluster,
) -> Result<Answer, ReviewError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ReviewError::Empty);
    }
    let review: ReviewIn<'_> = serde_json::from_slice(body).map_err(ReviewError::Malformed)?;
    let api_version = VERSIONS
        .iter()
        .find(|v| **v == review.api_version)
        .ok_or_else(|| ReviewError::ApiVersion(review.api_version.to_owned()))?;
    if review.kind != "AdmissionReview" {
        return Err(ReviewError::Kind(review.kind.to_owned()));
    }
    let req = review.request.ok_or(ReviewError::NoRequest)?;
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
    let decision = decide(endpoint, &req, policy, cluster)?;
    Ok(encode(api_version, req, endpoint, decision, summary))
}

/// What the engine says, or a pass-through for what it does not judge.
fn decide(
    endpoint: Endpoint,
    req: &RequestIn<'_>,
    policy: &Policy,
    cluster: &Cluster,
) -> Result<Decided, ReviewError> {
    let is_service =
        req.kind.group.is_empty() && req.kind.version == "v1" && req.kind.kind == "Service";
    if !is_service {
        // A misconfigured webhook must not take a cluster down: allow, and say so.
        let kind = match req.kind.group.as_str() {
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
    let object = parse_service("object", req.object)?;
    let old_object = parse_service("oldObject", req.old_object)?;
    let operation = match req.operation.as_str() {
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

fn parse_service(
    field: &'static str,
    raw: Option<&RawValue>,
) -> Result<Option<Service>, ReviewError> {
    match raw {
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

fn encode(
    api_version: &str,
    req: RequestIn<'_>,
    endpoint: Endpoint,
    decided: Decided,
    mut summary: Summary,
) -> Answer {
    let mut response = ResponseOut {
        uid: req.uid,
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
                let ops = patch::build(&decision.mutation, has_spec);
                let json = serde_json::to_vec(&ops).unwrap_or_default();
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
    // Serialising these plain structs cannot fail.
    let body = serde_json::to_vec(&out).unwrap_or_default();
    Answer {
        body,
        outcome,
        summary,
    }
}

#[cfg(test)]
mod tests;
