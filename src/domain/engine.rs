//! The policy engine: what `/mutate` changes and what `/validate` judges. Pure: plain values in, a
//! [`Decision`] out; no I/O, no async, no clock, no logging.
//!
//! Every choice follows kube-apiserver's own rules (`docs/k8s-service-rules.md`, cited as R-numbers),
//! and before `/mutate` answers, the model of the API server ([`apiserver_model`]) is asked whether it
//! accepts the patched request: a patch from here is never the reason the API server rejects a Service,
//! and a request that stays refused is left for the API server to name.

mod judge;
mod mutate;
mod report;

pub use report::{DenialMessage, MAX_WARNING_CHARS, truncate_warning};

use std::collections::BTreeMap;

use crate::cluster::{Cluster, ServiceCidrs};
use crate::domain::apiserver_model;
use crate::domain::policy::{Action, Policy, Rule};
use crate::domain::service::{IpFamily, IpFamilyPolicy, Service, ServiceSpec};

pub use judge::Violation;
pub use mutate::{List as FamilyList, default_policy};

/// The admission operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A new object.
    Create,
    /// A change to a stored object (`oldObject` is set).
    Update,
    /// A deletion: never judged.
    Delete,
    /// A connect: never judged.
    Connect,
}

/// One review, as the engine sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The operation.
    pub operation: Operation,
    /// The request's namespace.
    pub namespace: &'a str,
    /// The object (absent for DELETE).
    pub object: Option<&'a Service>,
    /// The stored object (UPDATE).
    pub old_object: Option<&'a Service>,
}

/// Fields `/mutate` sets; `None` leaves a field as the client sent it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mutation {
    /// `spec.ipFamilyPolicy`.
    pub ip_family_policy: Option<IpFamilyPolicy>,
    /// `spec.ipFamilies`.
    pub ip_families: Option<Vec<IpFamily>>,
}

/// A finding of one rule on one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The rule's name.
    pub rule: String,
    /// What the violation does: the rule's action under the policy's `enforcement`.
    pub action: Action,
    /// The rule's action as written (stricter than `action` under a milder `enforcement`).
    pub written_action: Action,
    /// What is wrong.
    pub violation: Violation,
    /// The stored object broke the rule already and the change does not move it further away.
    pub grandfathered: bool,
}

/// Why a request is refused: Deny rules are violated (each finding is a non-grandfathered `Deny`,
/// as enforced).
/// The webhook denies only what the policy asks it to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial(pub Vec<Finding>);

/// What the engine decided for one review.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Fields to set (`/mutate` only).
    pub mutation: Mutation,
    /// Refusal, with the Service's display name for the message.
    pub denial: Option<(String, Denial)>,
    /// Rule findings (Deny, Warn and Audit, grandfathered or not).
    pub findings: Vec<Finding>,
    /// What was changed and why, one line each (for audit annotations).
    pub changes: Vec<String>,
    /// Short messages for kubectl, each starting with the Service's name (under 120 characters).
    pub warnings: Vec<String>,
    /// Audit annotations (keys are prefixed with the webhook name by the API server).
    pub audit: BTreeMap<String, String>,
}

// === impl Mutation ===

impl Mutation {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The spec with this mutation applied (what the API server receives).
    pub fn apply(&self, spec: &ServiceSpec) -> ServiceSpec {
        let mut out = spec.clone();
        if let Some(p) = self.ip_family_policy {
            out.ip_family_policy = Some(p.as_str().to_owned());
        }
        if let Some(f) = &self.ip_families {
            out.ip_families = Some(f.iter().map(|f| f.as_str().to_owned()).collect());
        }
        out
    }
}

// === impl Decision ===

impl Decision {
    /// Whether the request is allowed.
    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }
}

/// What `/mutate` does with a review.
pub fn mutate(policy: &Policy, cluster: &Cluster, req: &Request<'_>) -> Decision {
    if policy.is_exempt(req.namespace) {
        return Decision::default();
    }
    let Some(object) = req.object else {
        return Decision::default();
    };
    let old = match (req.operation, req.old_object) {
        (Operation::Create, _) => None,
        (Operation::Update, Some(old)) => Some(old),
        _ => return Decision::default(),
    };
    let mut decision = match old {
        None => mutate::create(policy, cluster, req.namespace, object),
        Some(old) => mutate::update(policy, cluster, req.namespace, object, old),
    };
    if !decision.mutation.is_empty()
        && !accepted(
            &decision.mutation,
            object,
            old,
            cluster.service_cidrs.as_ref(),
        )
    {
        decision = Decision::default();
    }
    report::finish(&mut decision, object, req.namespace);
    decision
}

/// Whether the patch is safe and of use, as the model of the API server judges it on every cluster
/// the snapshot allows (the one whose ranges are known, else every shape of cluster): wherever the
/// request as sent is accepted, the patched one is too; and the patched one is accepted somewhere.
/// A patch that leaves a request refused is not sent, so that the API server's refusal names the
/// client's own fault.
fn accepted(
    mutation: &Mutation,
    object: &Service,
    old: Option<&Service>,
    cidrs: Option<&ServiceCidrs>,
) -> bool {
    let shapes = match cidrs {
        Some(c) => vec![c.clone()],
        None => ServiceCidrs::every_shape(),
    };
    let (sent, patched) = (object.spec(), mutation.apply(object.spec()));
    let stored = |spec: &ServiceSpec, cidrs: &ServiceCidrs| match old {
        None => apiserver_model::create(spec, cidrs).is_ok(),
        Some(old) => apiserver_model::update(old.spec(), spec, cidrs).is_ok(),
    };
    let mut of_use = false;
    for cidrs in &shapes {
        let patched_ok = stored(&patched, cidrs);
        if !patched_ok && stored(sent, cidrs) {
            return false;
        }
        of_use |= patched_ok;
    }
    of_use
}

/// What `/validate` decides for a review of the final (allocated) object.
pub fn validate(policy: &Policy, cluster: &Cluster, req: &Request<'_>) -> Decision {
    if policy.is_exempt(req.namespace) {
        return Decision::default();
    }
    let Some(object) = req.object else {
        return Decision::default();
    };
    let old = match (req.operation, req.old_object) {
        (Operation::Create, _) => None,
        (Operation::Update, old) => old,
        _ => return Decision::default(),
    };
    let mut decision = Decision {
        findings: judge::judge(policy, cluster, req.namespace, object, old),
        ..Decision::default()
    };
    report::finish(&mut decision, object, req.namespace);
    decision
}

/// The rules that apply to this Service: `match` covers it and `exclude` does not (on UPDATE, to the
/// old or the new object: relabelling a Service out of a rule's scope, or into its `exclude`, does
/// not escape it).
fn matching_rules<'p>(
    policy: &'p Policy,
    cluster: &Cluster,
    namespace: &str,
    object: &Service,
    old: Option<&Service>,
) -> Vec<&'p Rule> {
    // A view, not a copy: free unless a rule's namespace selector looks a label up.
    let ns_labels = cluster.namespace_labels(namespace);
    let in_scope = |rule: &Rule, svc: &Service| {
        let labels = &svc.metadata.labels;
        rule.applies(namespace, &ns_labels, labels, svc.service_type())
    };
    policy
        .rules
        .iter()
        .filter(|r| in_scope(r, object) || old.is_some_and(|o| in_scope(r, o)))
        .collect()
}

#[cfg(test)]
mod tests;
