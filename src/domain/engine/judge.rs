//! `/validate`: judge the final (allocated) object against each matching rule's requirements, with
//! grandfathering for Services that broke a rule before it existed.

use std::fmt;
use std::mem::discriminant;

use crate::cluster::{Cluster, ServiceCidrs};
use crate::domain::policy::{Policy, Require};
use crate::domain::service::{IpFamily, IpFamilyPolicy, Service, ServiceSpec, ServiceType};

use super::{Finding, Mutation, matching_rules};

/// What a Service does wrong against one requirement. Each carries the advice of its rule: the
/// fields to set (as a [`Mutation`]) so that the rule no longer flags the Service on this cluster.
/// The same for every violation of one rule and one Service, and accepted by the API server there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// `require.ipFamilyPolicies` does not list the Service's policy.
    PolicyNotAllowed {
        /// The policy (unset only in manifests judged offline).
        actual: Option<IpFamilyPolicy>,
        /// What the rule allows.
        allowed: Vec<IpFamilyPolicy>,
        /// What to set.
        advice: Mutation,
    },
    /// `require.primaryFamily` differs from `ipFamilies[0]`.
    WrongPrimaryFamily {
        /// `ipFamilies[0]`.
        actual: Option<IpFamily>,
        /// What the rule requires.
        required: IpFamily,
        /// What to set.
        advice: Mutation,
    },
    /// `require.dualStack: true`, but one family.
    NotDualStack {
        /// The dual-stack policies that meet the rule here, RequireDualStack first (for the message).
        policies: Vec<IpFamilyPolicy>,
        /// What to set.
        advice: Mutation,
    },
    /// `require.dualStack: false`, but two families.
    NotSingleStack {
        /// What to set.
        advice: Mutation,
    },
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
                action: policy.action_of(rule),
                written_action: rule.action,
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

/// The requirements a spec breaks, each judged only where the cluster can meet it (unknown
/// cluster: always): `ipFamilyPolicies` among the policies the cluster can store, `primaryFamily`
/// where the cluster has it, `dualStack: true` on a dual-stack cluster.
fn violations(
    require: &Require,
    spec: &ServiceSpec,
    cidrs: Option<&ServiceCidrs>,
) -> Vec<Violation> {
    let here = Judged::new(require, spec, cidrs);
    let policy = spec.ip_family_policy().ok().flatten();
    let families = spec.ip_families().ok().flatten().unwrap_or_default();
    let policy_bad = here
        .policies
        .as_ref()
        .is_some_and(|allowed| !policy.is_some_and(|p| allowed.contains(&p)));
    let primary_bad = here.primary.filter(|f| families.first() != Some(f));
    let dual_bad = here.dual_stack == Some(true) && families.len() < 2;
    let single_bad = here.dual_stack == Some(false) && families.len() > 1;
    if !(policy_bad || primary_bad.is_some() || dual_bad || single_bad) {
        return Vec::new();
    }
    let advice = here.advice(
        policy,
        &families,
        policy_bad,
        primary_bad,
        dual_bad,
        single_bad,
    );
    let mut out = Vec::new();
    if policy_bad {
        out.push(Violation::PolicyNotAllowed {
            actual: policy,
            allowed: require.ip_family_policies.clone().unwrap_or_default(),
            advice: advice.clone(),
        });
    }
    if let Some(required) = primary_bad {
        out.push(Violation::WrongPrimaryFamily {
            actual: families.first().copied(),
            required,
            advice: advice.clone(),
        });
    }
    if dual_bad {
        out.push(Violation::NotDualStack {
            policies: here.first_fitting(&DUAL_POLICIES, usize::MAX),
            advice: advice.clone(),
        });
    }
    if single_bad {
        out.push(Violation::NotSingleStack { advice });
    }
    out
}

/// RequireDualStack first: it is what `dualStack: true` asks for everywhere it is judged.
const DUAL_POLICIES: [IpFamilyPolicy; 2] = [
    IpFamilyPolicy::RequireDualStack,
    IpFamilyPolicy::PreferDualStack,
];

/// What one rule judges on one cluster, for one Service.
struct Judged<'a> {
    /// The allowed policies the cluster can store; `None`: not judged (none can be stored).
    policies: Option<Vec<IpFamilyPolicy>>,
    /// The required primary family, where the cluster has it.
    primary: Option<IpFamily>,
    /// `Some(true)`: two families (judged on dual-stack clusters), `Some(false)`: one.
    dual_stack: Option<bool>,
    cidrs: Option<&'a ServiceCidrs>,
    /// Headless without a selector: dual-stack on any cluster with a dual policy (R3.12).
    selectorless_headless: bool,
}

impl<'a> Judged<'a> {
    fn new(require: &Require, spec: &ServiceSpec, cidrs: Option<&'a ServiceCidrs>) -> Self {
        let policies = require.ip_family_policies.as_ref().map(|allowed| {
            let storable = allowed.iter().copied().filter(|p| storable(*p, cidrs));
            storable.collect::<Vec<_>>()
        });
        Self {
            policies: policies.filter(|p| !p.is_empty()),
            primary: require
                .primary_family
                .filter(|f| cidrs.is_none_or(|c| c.has(*f))),
            dual_stack: require
                .dual_stack
                .filter(|dual| !dual || cidrs.is_none_or(ServiceCidrs::is_dual)),
            cidrs,
            selectorless_headless: spec.cluster_ip() == Some("None") && spec.is_selectorless(),
        }
    }

    /// Whether a Service of policy `p` can meet every requirement judged here.
    fn fits(&self, p: IpFamilyPolicy) -> bool {
        let families_fit = match self.dual_stack {
            Some(true) => p.is_dual(),
            // PreferDualStack has one family only on a single-stack cluster, and R3.12 gives a
            // headless selectorless Service two families wherever its policy is not SingleStack.
            Some(false) => {
                p == IpFamilyPolicy::SingleStack
                    || (p == IpFamilyPolicy::PreferDualStack
                        && self.cidrs.is_some_and(|c| !c.is_dual())
                        && !self.selectorless_headless)
            }
            None => true,
        };
        storable(p, self.cidrs)
            && self.policies.as_ref().is_none_or(|a| a.contains(&p))
            && families_fit
    }

    /// Up to `n` policies of `order` that fit, or (none does) the first of `order`.
    fn first_fitting(&self, order: &[IpFamilyPolicy], n: usize) -> Vec<IpFamilyPolicy> {
        let fitting: Vec<_> = order
            .iter()
            .copied()
            .filter(|p| self.fits(*p))
            .take(n)
            .collect();
        if fitting.is_empty() {
            order.iter().copied().take(1).collect()
        } else {
            fitting
        }
    }

    /// The fields to set so that none of the rule's requirements is broken: the policy the broken
    /// requirement names first among those that fit, and the families where the primary is wrong
    /// or SingleStack would be left with two (R3.9); only families the cluster has (R3.14).
    fn advice(
        &self,
        policy: Option<IpFamilyPolicy>,
        families: &[IpFamily],
        policy_bad: bool,
        primary_bad: Option<IpFamily>,
        dual_bad: bool,
        single_bad: bool,
    ) -> Mutation {
        let order: &[IpFamilyPolicy] = match (policy_bad, dual_bad, single_bad) {
            (true, ..) => self.policies.as_deref().unwrap_or_default(),
            (_, true, _) => &DUAL_POLICIES,
            (_, _, true) => &[IpFamilyPolicy::SingleStack],
            _ => &[],
        };
        let set_policy = self.first_fitting(order, 1).first().copied();
        let effective = set_policy.or(policy).unwrap_or(IpFamilyPolicy::SingleStack);
        let primary = primary_bad.or(families.first().copied());
        let set_families = (primary_bad.is_some()
            || (effective == IpFamilyPolicy::SingleStack && families.len() > 1))
            .then_some(primary)
            .flatten()
            .map(|f| {
                // Both families only where the cluster is known to have both; elsewhere the API
                // server adds the other one itself where it can (R3.16).
                if effective.is_dual() && self.cidrs.is_some_and(ServiceCidrs::is_dual) {
                    vec![f, f.other()]
                } else {
                    vec![f]
                }
            });
        Mutation {
            ip_family_policy: set_policy,
            ip_families: set_families,
        }
    }
}

/// Whether the API server stores a Service of this policy on the cluster: RequireDualStack needs
/// two families (R3.13; unknown cluster: assumed).
fn storable(p: IpFamilyPolicy, cidrs: Option<&ServiceCidrs>) -> bool {
    p != IpFamilyPolicy::RequireDualStack || cidrs.is_none_or(ServiceCidrs::is_dual)
}

// === impl Violation ===

impl Violation {
    /// The fields to set so that the rule no longer flags the Service (see [`Violation`]).
    pub fn advice(&self) -> &Mutation {
        match self {
            Self::PolicyNotAllowed { advice, .. }
            | Self::WrongPrimaryFamily { advice, .. }
            | Self::NotDualStack { advice, .. }
            | Self::NotSingleStack { advice } => advice,
        }
    }

    /// A short form for warnings.
    pub fn short(&self) -> String {
        match self {
            Self::PolicyNotAllowed { actual, advice, .. } => format!(
                "ipFamilyPolicy {} not allowed (set {})",
                actual.map_or("unset", IpFamilyPolicy::as_str),
                advice.ip_family_policy.map_or("", IpFamilyPolicy::as_str)
            ),
            Self::WrongPrimaryFamily {
                actual, required, ..
            } => format!(
                "primary family {} but {required} required",
                actual.map_or("unset", IpFamily::as_str)
            ),
            Self::NotDualStack { .. } => "single-stack but dual-stack required".to_owned(),
            Self::NotSingleStack { .. } => "dual-stack but single-stack required".to_owned(),
        }
    }
}

/// The long form for denials: what is wrong and what to set.
impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PolicyNotAllowed {
                actual,
                allowed,
                advice,
            } => {
                let names: Vec<&str> = allowed.iter().map(|p| p.as_str()).collect();
                write!(
                    f,
                    "ipFamilyPolicy is {}, allowed: {}; set spec.ipFamilyPolicy: {}{}",
                    actual.map_or("unset", IpFamilyPolicy::as_str),
                    names.join(", "),
                    advice.ip_family_policy.map_or("", IpFamilyPolicy::as_str),
                    OneFamily(advice)
                )
            }
            Self::WrongPrimaryFamily {
                actual,
                required,
                advice,
            } => write!(
                f,
                "primary IP family (ipFamilies[0]) is {}, must be {required}; set spec.ipFamilies: {} \
                 (an existing Service's primary family cannot change: recreate it)",
                actual.map_or("unset", IpFamily::as_str),
                Families(advice.ip_families.as_deref().unwrap_or_default())
            ),
            Self::NotDualStack { policies, .. } => {
                let names: Vec<&str> = policies.iter().map(|p| p.as_str()).collect();
                let alternatives = match names.split_first() {
                    Some((first, [])) => (*first).to_owned(),
                    Some((first, rest)) => format!("{first} (or {})", rest.join(", ")),
                    None => String::new(),
                };
                write!(
                    f,
                    "the Service has one IP family, must be dual-stack; set spec.ipFamilyPolicy: \
                     {alternatives} and leave spec.ipFamilies unset or list both families"
                )
            }
            Self::NotSingleStack { advice } => write!(
                f,
                "the Service has two IP families, must be single-stack; set spec.ipFamilyPolicy: \
                 SingleStack{}",
                OneFamily(advice)
            ),
        }
    }
}

/// `[IPv6, IPv4]`, as YAML writes a list.
struct Families<'a>(&'a [IpFamily]);

impl fmt::Display for Families<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|family| family.as_str()).collect();
        write!(f, "[{}]", names.join(", "))
    }
}

/// ` and spec.ipFamilies: [IPv4]` where SingleStack must also drop a family (R3.9), else nothing.
struct OneFamily<'a>(&'a Mutation);

impl fmt::Display for OneFamily<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.0.ip_family_policy, &self.0.ip_families) {
            (Some(IpFamilyPolicy::SingleStack), Some(families)) => {
                write!(f, " and spec.ipFamilies: {}", Families(families))
            }
            _ => Ok(()),
        }
    }
}
