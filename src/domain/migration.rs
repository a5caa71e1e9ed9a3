//! What `migrate` does with one stored Service: bring it to the policy's dual-stack defaults
//! ([`plan`]) or back to where it came from ([`rollback`]). Pure: plain values in, an [`Outcome`]
//! out; no I/O, no async, no clock, no logging.
//!
//! A change only ever sets `ipFamilyPolicy` and `ipFamilies`: the primary family and the primary IP
//! stay (R2.1, R2.2), the API server allocates the secondary IP itself (R3.16, R3.18) and releases
//! it on the way back (R3.8). Every change is checked with the model of the API server
//! ([`apiserver_model::update`]) and judged by the policy as `/validate` would judge the update.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::domain::apiserver_model;
use crate::domain::engine::{self, DenialMessage, FamilyList as List, Operation, Request};
use crate::domain::policy::Policy;
use crate::domain::service::{IpFamily, IpFamilyPolicy, Service, ServiceSpec, ServiceType};

mod skip;

pub use skip::Skip;

/// The field manager of `migrate`'s writes: its own entries in `managedFields` are not a reason
/// to leave a Service alone.
pub const FIELD_MANAGER: &str = "dualstack-webhook-migrate";

/// The annotation `migrate` leaves on each Service it changed: the stack before (a [`Stack`] as
/// JSON). A rerun skips Services that carry it; `--rollback` reads it. The key follows the
/// webhook's audit annotations (`mutate.dualstack-webhook.io/…`, `validate.dualstack-webhook.io/…`).
pub const RECORD_ANNOTATION: &str = "migrate.dualstack-webhook.io/migrated-from";

/// Labels and annotations GitOps controllers put on the objects they own (Argo CD, Flux): such a
/// Service's fields come from a repository, and a change here would be reverted there.
pub const GITOPS_MARKERS: [&str; 3] = [
    "argocd.argoproj.io/tracking-id",
    "kustomize.toolkit.fluxcd.io/name",
    "helm.toolkit.fluxcd.io/name",
];

/// The dual-stack fields `migrate` changes, as `managedFields` names them.
pub const STACK_FIELDS: [&str; 2] = ["f:ipFamilyPolicy", "f:ipFamilies"];

/// `clusterIPs`, as `managedFields` names it: a manager that applies it pins the list.
pub const CLUSTER_IPS_FIELD: [&str; 1] = ["f:clusterIPs"];

/// `ipFamilyPolicy` and `ipFamilies` of a Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stack {
    /// `spec.ipFamilyPolicy`.
    pub ip_family_policy: IpFamilyPolicy,
    /// `spec.ipFamilies`, primary first.
    pub ip_families: Vec<IpFamily>,
}

/// A stored Service with what `migrate` reads beside the engine's input.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    /// The Service as the engine sees it.
    pub service: Service,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// Managers other than [`FIELD_MANAGER`] that own `ipFamilyPolicy` or `ipFamilies` through
    /// server-side apply (see [`appliers`]).
    pub appliers: Vec<String>,
    /// Managers other than [`FIELD_MANAGER`] that apply `clusterIPs` (server-side apply).
    pub pinners: Vec<String>,
}

/// What to do with one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Set the dual-stack fields to `to`.
    Change(Change),
    /// Leave it alone, for this reason.
    Skip(Skip),
}

/// A change of the dual-stack fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The stack stored now.
    pub from: Stack,
    /// The stack to set.
    pub to: Stack,
    /// Why `to`: `policy defaults`, `defaults of rule "x"`, or the record (rollback).
    pub because: String,
}

// === decisions ===

/// What `migrate` does with `stored`: the policy's dual-stack defaults with the secondary family
/// added, or why not.
pub fn plan(policy: &Policy, cluster: &Cluster, stored: &Stored) -> Outcome {
    match target(policy, cluster, stored) {
        Ok(change) => Outcome::Change(change),
        Err(skip) => Outcome::Skip(skip),
    }
}

fn target(policy: &Policy, cluster: &Cluster, stored: &Stored) -> Result<Change, Skip> {
    let svc = &stored.service;
    let namespace = svc.metadata.namespace.as_str();
    if policy.is_exempt(namespace) {
        return Err(Skip::Exempt);
    }
    if (namespace, svc.metadata.name.as_str()) == ("default", "kubernetes") {
        return Err(Skip::ApiServer);
    }
    let from = stack_of(svc)?;
    let cidrs = cluster.service_cidrs.as_ref().filter(|c| c.is_dual());
    let cidrs = cidrs.ok_or(Skip::ClusterNotDualStack)?;
    if stored.annotations.contains_key(RECORD_ANNOTATION) && from.ip_families.len() == 2 {
        return Err(Skip::Migrated);
    }
    if from.ip_families.len() == 2 {
        return Err(Skip::AlreadyDualStack);
    }
    if let Some(marker) = gitops_marker(stored) {
        return Err(Skip::GitOps(marker.to_owned()));
    }
    if let Some(manager) = stored.appliers.first() {
        return Err(Skip::ManagedBy(manager.clone()));
    }
    // R3.8: the applier's next apply of one IP would release the secondary, which the API server
    // refuses under a dual-stack policy. A headless Service's `["None"]` stays as it is.
    if let Some(manager) = stored.pinners.first()
        && !svc.spec().is_headless()
    {
        return Err(Skip::Pinned(manager.clone()));
    }
    let (p, because) = engine::default_policy(policy, cluster, namespace, svc)
        .filter(|(p, _)| p.is_dual())
        .ok_or(Skip::NoDefault)?;
    // R2.2: the primary stays first; R3.9: two families need Prefer or Require.
    let primary = from.ip_families[0];
    let to = Stack {
        ip_family_policy: p,
        ip_families: vec![primary, primary.other()],
    };
    let new = to.apply(svc.spec());
    let allocated = apiserver_model::update(svc.spec(), &new, cidrs)
        .map_err(|e| Skip::Refused(e.to_string()))?;
    if let Some(message) = denial(policy, cluster, svc, &allocated) {
        return Err(Skip::Denied(message));
    }
    Ok(Change { from, to, because })
}

/// What `migrate --rollback` does with `stored`: back to the recorded family, single-stack (a
/// PreferDualStack Service cannot keep one family on a dual-stack cluster: R3.16 adds the other),
/// or why not.
pub fn rollback(cluster: &Cluster, stored: &Stored) -> Outcome {
    let restore = || -> Result<Change, Skip> {
        let record = stored
            .annotations
            .get(RECORD_ANNOTATION)
            .ok_or(Skip::NotMigrated)?;
        let was: Stack =
            serde_json::from_str(record).map_err(|e| Skip::BadRecord(e.to_string()))?;
        let svc = &stored.service;
        let from = stack_of(svc)?;
        let primary = *was
            .ip_families
            .first()
            .ok_or_else(|| Skip::BadRecord("no ipFamilies".to_owned()))?;
        if from.ip_families.first() != Some(&primary) {
            // R2.2: the primary family cannot change; someone else moved it.
            return Err(Skip::BadRecord(format!(
                "records {primary} first, the Service has {}",
                List(&from.ip_families)
            )));
        }
        let to = Stack {
            ip_family_policy: IpFamilyPolicy::SingleStack,
            ip_families: vec![primary],
        };
        if let Some(cidrs) = &cluster.service_cidrs {
            // R3.8: SingleStack trims clusterIPs and ipFamilies to the primary.
            apiserver_model::update(svc.spec(), &to.apply(svc.spec()), cidrs)
                .map_err(|e| Skip::Refused(e.to_string()))?;
        }
        Ok(Change {
            from,
            to,
            because: format!("recorded {was}"),
        })
    };
    match restore() {
        Ok(change) => Outcome::Change(change),
        Err(skip) => Outcome::Skip(skip),
    }
}

/// The stored stack; ExternalName and what the API server would not have stored are skipped.
fn stack_of(svc: &Service) -> Result<Stack, Skip> {
    let spec = svc.spec();
    match spec.service_type() {
        Some(ServiceType::ExternalName) => return Err(Skip::ExternalName),
        None => return Err(Skip::Unreadable),
        Some(_) => {}
    }
    let (Ok(Some(p)), Ok(Some(families))) = (spec.ip_family_policy(), spec.ip_families()) else {
        return Err(Skip::Unreadable);
    };
    if families.is_empty() || families.len() > 2 {
        return Err(Skip::Unreadable);
    }
    Ok(Stack {
        ip_family_policy: p,
        ip_families: families,
    })
}

/// The webhook's denial of the update `migrate` would send, as `/validate` judges it (a violation
/// the stored Service had already and the change does not worsen is grandfathered).
fn denial(
    policy: &Policy,
    cluster: &Cluster,
    old: &Service,
    allocated: &ServiceSpec,
) -> Option<String> {
    let new = Service {
        metadata: old.metadata.clone(),
        spec: Some(allocated.clone()),
    };
    let req = Request {
        operation: Operation::Update,
        namespace: &old.metadata.namespace,
        object: Some(&new),
        old_object: Some(old),
    };
    let decision = engine::validate(policy, cluster, &req);
    let (name, denial) = decision.denial.as_ref()?;
    Some(DenialMessage { name, denial }.to_string())
}

fn gitops_marker(stored: &Stored) -> Option<&'static str> {
    let labels = &stored.service.metadata.labels;
    GITOPS_MARKERS
        .into_iter()
        .find(|k| stored.annotations.contains_key(*k) || labels.contains_key(*k))
}

/// The managers other than [`FIELD_MANAGER`] that own one of `fields` of the spec (e.g.
/// [`STACK_FIELDS`]) through server-side apply: their next apply would set them back (or
/// conflict), so `migrate` leaves their Services to them. Managers of `Update` operations
/// (kubectl create, client-side apply, controllers that PUT) do not re-assert fields they did not
/// send, so they do not count.
pub fn appliers(entries: &[ManagedFieldsEntry], fields: &[&str]) -> Vec<String> {
    let mut managers: Vec<String> = entries
        .iter()
        .filter(|e| e.operation.as_deref() == Some("Apply"))
        .filter(|e| e.manager.as_deref() != Some(FIELD_MANAGER))
        .filter(|e| {
            let spec = e.fields_v1.as_ref().and_then(|f| f.0.get("f:spec"));
            spec.is_some_and(|s| fields.iter().any(|f| s.get(*f).is_some()))
        })
        .map(|e| e.manager.clone().unwrap_or_default())
        .collect();
    managers.dedup();
    managers
}

// === impl Stored ===

impl From<&k8s_openapi::api::core::v1::Service> for Stored {
    fn from(svc: &k8s_openapi::api::core::v1::Service) -> Self {
        let meta = &svc.metadata;
        let managed = meta.managed_fields.as_deref().unwrap_or_default();
        Self {
            service: Service::from(svc),
            annotations: meta.annotations.clone().unwrap_or_default(),
            appliers: appliers(managed, &STACK_FIELDS),
            pinners: appliers(managed, &CLUSTER_IPS_FIELD),
        }
    }
}

// === impl Stack ===

impl Stack {
    /// The record `migrate` leaves on a Service it changed.
    pub fn record(&self) -> String {
        // Two enums and a list of enums: encoding into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// `spec` with these dual-stack fields.
    pub fn apply(&self, spec: &ServiceSpec) -> ServiceSpec {
        ServiceSpec {
            ip_family_policy: Some(self.ip_family_policy.as_str().to_owned()),
            ip_families: Some(
                self.ip_families
                    .iter()
                    .map(|f| f.as_str().to_owned())
                    .collect(),
            ),
            ..spec.clone()
        }
    }
}

impl fmt::Display for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.ip_family_policy, List(&self.ip_families))
    }
}

#[cfg(test)]
mod tests;
