//! The AdmissionReview wire format: decode a review with kube's admission types, run the engine,
//! encode the answer (R8.1–R8.5).
//!
//! One decoding path: serde_json into kube's `AdmissionReview`, each object's metadata read in the
//! same pass and its `spec` kept as JSON text ([`object`]) until the review's kind is known; a
//! Service's spec is then read into the engine's input type.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kube::core::TypeMeta;
use kube::core::admission::{self, AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde::Serialize;

use object::ReviewObject;

use crate::cluster::Cluster;
use crate::domain::engine::{self, Decision, DenialMessage, Finding, Operation, Request};
use crate::domain::patch;
use crate::domain::policy::Policy;
use crate::domain::service::Service;

/// The AdmissionReview versions this webhook answers, in the version received (R8.5).
pub const VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// Which webhook endpoint a review came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /mutate`: may patch.
    Mutate,
    /// `POST /validate`: judges the final object, never patches (R8.3).
    Validate,
}

/// What the webhook did with a review.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed, nothing changed or flagged.
    Allowed,
    /// Allowed with a JSON patch.
    Patched,
    /// Allowed with warnings.
    Warned,
    /// Denied.
    Denied,
}

/// Why a body is not an AdmissionReview this webhook can answer (answered with HTTP 400).
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
    /// `request.uid` is empty.
    #[error("AdmissionReview request has no uid")]
    NoUid,
    /// The spec of the object or oldObject is not a valid Service spec (the position is the spec's).
    #[error("request.{0}.spec is not a valid Service spec: {1}")]
    Object(&'static str, #[source] serde_json::Error),
}

/// An answered review: the encoded AdmissionReview and what logs and metrics need of it.
#[derive(Debug)]
pub struct Answer {
    /// The response AdmissionReview, JSON.
    pub body: Vec<u8>,
    /// What the webhook did.
    pub outcome: Outcome,
    /// The request's operation.
    pub operation: admission::Operation,
    /// What the review was about, for the log line.
    pub summary: Summary,
}

/// What a review was about, for its log line.
#[derive(Debug, Clone)]
pub struct Summary {
    /// `request.uid`.
    pub uid: String,
    /// `request.namespace`.
    pub namespace: String,
    /// `request.name` (empty with generateName).
    pub name: String,
    /// `request.dryRun`.
    pub dry_run: bool,
    /// The denial message, if denied.
    pub denied: Option<String>,
    /// The rules' findings (Deny, Warn and Audit, grandfathered or not), for metrics and logs.
    pub findings: Vec<Finding>,
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
    let review: AdmissionReview<ReviewObject> =
        serde_json::from_slice(body).map_err(ReviewError::Malformed)?;
    if !VERSIONS.contains(&review.types.api_version.as_str()) {
        return Err(ReviewError::ApiVersion(review.types.api_version));
    }
    if review.types.kind != "AdmissionReview" {
        return Err(ReviewError::Kind(review.types.kind));
    }
    let request: AdmissionRequest<ReviewObject> =
        review.try_into().map_err(|_| ReviewError::NoRequest)?;
    if request.uid.is_empty() {
        return Err(ReviewError::NoUid);
    }
    let response = AdmissionResponse::from(&request);
    let summary = Summary {
        uid: request.uid.clone(),
        namespace: request.namespace.clone().unwrap_or_default(),
        name: request.name.clone(),
        dry_run: request.dry_run,
        denied: None,
        findings: Vec::new(),
    };
    let operation = request.operation.clone();
    let (response, outcome, summary) = match decide(endpoint, request, policy, cluster)? {
        Decided::PassThrough(warnings) => pass_through(response, warnings, summary),
        Decided::Engine { decision, has_spec } => {
            respond(endpoint, response, *decision, has_spec, summary)
        }
    };
    Ok(Answer {
        body: encode(response),
        outcome,
        operation,
        summary,
    })
}

/// What the engine decided, or a pass-through for what it does not judge.
enum Decided {
    PassThrough(Vec<String>),
    Engine {
        decision: Box<Decision>,
        has_spec: bool,
    },
}

fn decide(
    endpoint: Endpoint,
    request: AdmissionRequest<ReviewObject>,
    policy: &Policy,
    cluster: &Cluster,
) -> Result<Decided, ReviewError> {
    let kind = &request.kind;
    if !(kind.group.is_empty() && kind.version == "v1" && kind.kind == "Service") {
        // A misconfigured webhook must not take a cluster down: allow, and say so.
        let name = [&*kind.group, &kind.version, &kind.kind]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        let warning = format!(
            "dualstack-webhook reviews only v1 Services, got {name}: check its webhook rules"
        );
        return Ok(Decided::PassThrough(vec![engine::truncate_warning(
            &warning,
        )]));
    }
    if request
        .sub_resource
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        return Ok(Decided::PassThrough(vec![])); // e.g. services/status: no spec changes
    }
    let object = service(request.object, "object")?;
    let old_object = service(request.old_object, "oldObject")?;
    let namespace = request.namespace.unwrap_or_default();
    let request = Request {
        operation: match request.operation {
            admission::Operation::Create => Operation::Create,
            admission::Operation::Update => Operation::Update,
            admission::Operation::Delete => Operation::Delete,
            admission::Operation::Connect => Operation::Connect,
        },
        namespace: &namespace,
        object: object.as_ref(),
        old_object: old_object.as_ref(),
    };
    let decision = match endpoint {
        Endpoint::Mutate => engine::mutate(policy, cluster, &request),
        Endpoint::Validate => engine::validate(policy, cluster, &request),
    };
    Ok(Decided::Engine {
        decision: Box::new(decision),
        has_spec: object.as_ref().is_some_and(|o| o.spec.is_some()),
    })
}

/// A review's `object` or `oldObject` as the engine's input: its spec is read now, the fields the
/// rules read, every other member skipped unread. Read as k8s-openapi's whole `Service` instead, a
/// typical review's object costs 90 k instructions (managedFields, annotations), more than the TLS
/// and HTTP/2 work of the request.
fn service(
    object: Option<ReviewObject>,
    field: &'static str,
) -> Result<Option<Service>, ReviewError> {
    object
        .map(ReviewObject::into_service)
        .transpose()
        .map_err(|e| ReviewError::Object(field, e))
}

fn pass_through(
    mut response: AdmissionResponse,
    warnings: Vec<String>,
    summary: Summary,
) -> (AdmissionResponse, Outcome, Summary) {
    let outcome = if warnings.is_empty() {
        Outcome::Allowed
    } else {
        response.warnings = Some(warnings);
        Outcome::Warned
    };
    (response, outcome, summary)
}

fn respond(
    endpoint: Endpoint,
    mut response: AdmissionResponse,
    decision: Decision,
    has_spec: bool,
    mut summary: Summary,
) -> (AdmissionResponse, Outcome, Summary) {
    if !decision.warnings.is_empty() {
        response.warnings = Some(decision.warnings);
    }
    response.audit_annotations = decision.audit.into_iter().collect();
    summary.findings = decision.findings;
    if let Some((name, denial)) = &decision.denial {
        let message = DenialMessage { name, denial }.to_string();
        let mut response = response.deny(&message);
        response.result.code = 403;
        response.result.reason = "Forbidden".to_owned();
        summary.denied = Some(message);
        return (response, Outcome::Denied, summary);
    }
    // R8.3: a validating webhook may never return a patch.
    if endpoint == Endpoint::Mutate && !decision.mutation.is_empty() {
        let patch = patch::build(&decision.mutation, has_spec);
        // Serialising a JSON Patch of strings cannot fail.
        if let Ok(patched) = response.clone().with_patch(patch) {
            return (patched, Outcome::Patched, summary);
        }
    }
    let outcome = if response.warnings.is_some() {
        Outcome::Warned
    } else {
        Outcome::Allowed
    };
    (response, outcome, summary)
}

/// The response AdmissionReview in the version received (kube copies it from the request), with
/// the patch as base64 text, as Go's `[]byte` is written (kube's type writes an array of numbers).
fn encode(mut response: AdmissionResponse) -> Vec<u8> {
    /// The AdmissionReview around the response, in the request's version.
    #[derive(Serialize)]
    struct Review<'a> {
        #[serde(flatten)]
        types: &'a TypeMeta,
        response: Response<'a>,
    }
    /// kube's response, its `patch` taken out and written beside it as base64.
    #[derive(Serialize)]
    struct Response<'a> {
        #[serde(flatten)]
        kube: &'a AdmissionResponse,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
    }
    let patch = response.patch.take().map(|patch| BASE64.encode(patch));
    let review = Review {
        types: &response.types,
        response: Response {
            kube: &response,
            patch,
        },
    };
    // Serialising strings, booleans and kube's own types cannot fail.
    serde_json::to_vec(&review).unwrap_or_default()
}

mod object;

#[cfg(test)]
mod tests;
