//! `/validate`: judge the final (allocated) object against each matching rule's requirements, with
//! grandfathering for Services that broke a rule before it existed.

use std::fmt;
use std::mem::discriminant;

use crate::cluster::{Cluster, ServiceCidrs};
use crate::domain::policy::{Policy, Require};
use crate::domain::service::{IpFamily, IpFamilyPolicy, Service, ServiceSpec, ServiceType};

use super::{Finding, matching_rules};

/// What a Service does wrong against one requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// `require.ipFamilyPolicies` does not list the Service's policy.
    PolicyNotAllowed {
        /// The policy (unset only in manifests judged offline).
        actual: Option<IpFamilyPolicy>,
        /// What the rule allows.
        allowed: Vec<IpFamilyPolicy>,
    },
    /// `require.primaryFamily` differs from `ipFamilies[0]`.
    WrongPrimaryFamily {
        /// `ipFamilies[0]`.
        actual: Option<IpFamily>,
        /// What the rule requires.
        required: IpFamily,
    },
    /// `require.dualStack: true`, but one family.
    NotDualStack,
    /// `require.dualStack: false`, but two families.
    NotSingleStack,
}

/// Findings of every matching rule. `old` is the stored object on UPDATE.
pub(super) fn judge(
    policy: &Policy,
    cluster: &Cluster,
    namespace: &str,
    object: &Service,
    old: Option<&Service>,
) -> Vec<Finding> {
    if !has_cluster_ips(object) {
        return Vec::new(); // ExternalName has no dual-stack fields (R1.4); unknown types are refused (R1.18)
    }
    let cidrs = cluster.service_cidrs.as_ref();
    // A Service converted from ExternalName is new as far as its IPs go (R4.1): nothing to grandfather.
    let old = old.filter(|o| has_cluster_ips(o));
    let mut findings = Vec::new();
    for rule in matching_rules(policy, cluster, namespace, object, old) {
        let before = old.map(|o| violations(&rule.require, o.spec(), cidrs));
        for violation in violations(&rule.require, object.spec(), cidrs) {
            // Grandfathered: the stored object already broke this requirement, so the change does not
            // move the Service further from the policy (a downgrade does: it adds a violation).
            let grandfathered = before.as_ref().is_some_and(|b| {
                b.iter()
                    .any(|v| discriminant(v) == discriminant(&violation))
            });
            findings.push(Finding {
                rule: rule.name.clone(),
                action: rule.action,
                violation,
                grandfathered,
            });
        }
    }
    findings
}

fn has_cluster_ips(svc: &Service) -> bool {
    matches!(
        svc.service_type(),
        Some(ServiceType::ClusterIP | ServiceType::NodePort | ServiceType::LoadBalancer)
    )
}

/// The requirements a spec breaks. Family requirements apply only where the cluster can meet them
/// (unknown cluster: always).
fn violations(
    require: &Require,
    spec: &ServiceSpec,
    cidrs: Option<&ServiceCidrs>,
) -> Vec<Violation> {
    let policy = spec.ip_family_policy().ok().flatten();
    let families = spec.ip_families().ok().flatten().unwrap_or_default();
    let mut out = Vec::new();
    if let Some(allowed) = &require.ip_family_policies
        && !policy.is_some_and(|p| allowed.contains(&p))
    {
        out.push(Violation::PolicyNotAllowed {
            actual: policy,
            allowed: allowed.clone(),
        });
    }
    if let Some(required) = require.primary_family {
        let can = cidrs.is_none_or(|c| c.has(required));
        if can && families.first() != Some(&required) {
            out.push(Violation::WrongPrimaryFamily {
                actual: families.first().copied(),
                required,
            });
        }
    }
    match require.dual_stack {
        Some(true) if families.len() < 2 && cidrs.is_none_or(ServiceCidrs::is_dual) => {
            out.push(Violation::NotDualStack)
        }
        Some(false) if families.len() > 1 => out.push(Violation::NotSingleStack),
        _ => {}
    }
    out
}

// === impl Violation ===

impl Violation {
    /// A short form for warnings.
    pub fn short(&self) -> String {
        match self {
            Self::PolicyNotAllowed { actual, allowed } => format!(
                "ipFamilyPolicy {} not allowed (set {})",
                actual.map_or("unset", IpFamilyPolicy::as_str),
                allowed.first().map_or("", |p| p.as_str())
            ),
            Self::WrongPrimaryFamily { actual, required } => format!(
                "primary family {} but {required} required",
                actual.map_or("unset", IpFamily::as_str)
            ),
            Self::NotDualStack => "single-stack but dual-stack required".to_owned(),
            Self::NotSingleStack => "dual-stack but single-stack required".to_owned(),
        }
    }
}

/// The long form for denials: what is wrong and what to set.
impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PolicyNotAllowed { actual, allowed } => {
                let names: Vec<&str> = allowed.iter().map(|p| p.as_str()).collect();
                write!(
                    f,
                    "ipFamilyPolicy is {}, allowed: {}; set spec.ipFamilyPolicy: {}",
                    actual.map_or("unset", IpFamilyPolicy::as_str),
                    names.join(", "),
                    names.first().unwrap_or(&"")
                )
            }
            Self::WrongPrimaryFamily { actual, required } => write!(
                f,
                "primary IP family (ipFamilies[0]) is {}, must be {required}; set spec.ipFamilies: [{required}, {}] \
                 (an existing Service's primary family cannot change: recreate it)",
                actual.map_or("unset", IpFamily::as_str),
                required.other()
            ),
            Self::NotDualStack => f.write_str(
                "the Service has one IP family, must be dual-stack; set spec.ipFamilyPolicy: RequireDualStack \
                 (or PreferDualStack) and leave spec.ipFamilies unset or list both families",
            ),
            Self::NotSingleStack => f.write_str(
                "the Service has two IP families, must be single-stack; set spec.ipFamilyPolicy: SingleStack",
            ),
        }
    }
}
