//! `/mutate`: fill in the dual-stack fields the client left unset, and keep UPDATEs safe for running
//! Services. Everything here follows a field the policy asks for; whether the API server accepts
//! the result is the model's to say (`engine::mutate` asks it before answering).

use std::fmt;

use crate::cluster::{Cluster, ServiceCidrs};
use crate::domain::policy::Policy;
use crate::domain::service::{IpFamily, IpFamilyPolicy, Service, ServiceSpec, ServiceType};

use super::{Decision, Mutation, matching_rules};

/// The defaults that apply to one Service, with where each came from.
struct Defaults<'p> {
    policy: Option<(IpFamilyPolicy, Source<'p>)>,
    families: Option<(&'p [IpFamily], Source<'p>)>,
}

/// Why a field got its value, as the audit annotation says it.
#[derive(Clone, Copy)]
enum Source<'p> {
    PolicyDefaults,
    RuleDefaults(&'p str),
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PolicyDefaults => f.write_str("policy defaults"),
            Self::RuleDefaults(name) => write!(f, "defaults of rule {name:?}"),
        }
    }
}

/// CREATE (and ExternalName → another type, which the API server allocates like a create, R4.1).
pub(super) fn create(
    policy: &Policy,
    cluster: &Cluster,
    namespace: &str,
    object: &Service,
) -> Decision {
    let spec = object.spec();
    if !matches!(
        spec.service_type(),
        Some(ServiceType::ClusterIP | ServiceType::NodePort | ServiceType::LoadBalancer)
    ) {
        // ExternalName takes no dual-stack fields at all (R1.4); an unknown type is the API server's to refuse.
        return Decision::default();
    }
    let defaults = effective_defaults(policy, cluster, namespace, object);
    let mut decision = Decision::default();
    fill_unset(
        spec,
        &defaults,
        cluster.service_cidrs.as_ref(),
        &mut decision,
    );
    decision
}

/// UPDATE: absent means inherit (R0.3); restore what a PUT dropped and upgrade only where the
/// policy asks for it.
pub(super) fn update(
    policy: &Policy,
    cluster: &Cluster,
    namespace: &str,
    object: &Service,
    old: &Service,
) -> Decision {
    let (spec, old_spec) = (object.spec(), old.spec());
    match (spec.service_type(), old_spec.service_type()) {
        // To ExternalName: the API server drops the fields itself (R3.19, R4.2); unknown types are refused (R1.18).
        (Some(ServiceType::ExternalName) | None, _) => return Decision::default(),
        // From ExternalName: allocated like a create (R4.1), so defaults apply as on CREATE.
        (_, Some(ServiceType::ExternalName)) => return create(policy, cluster, namespace, object),
        _ => {}
    }
    if let Some(upgrade) = upgrade_if_opted_in(policy, cluster, namespace, object, old) {
        return upgrade;
    }
    let mut decision = Decision::default();
    if policy.restore_dropped_fields {
        let cidrs = cluster.service_cidrs.as_ref();
        restore_dropped_fields(spec, old_spec, cidrs, &mut decision);
        warn_type_change_unfreezes(spec, old_spec, cidrs, &mut decision);
    }
    decision
}

/// §6: a PUT that omits ipFamilies or ipFamilyPolicy is "not matching" for the PreferDualStack freeze
/// (R3.5), so R3.16 would quietly add a family. Restoring them keeps the stored values (R3.6 inherits
/// the policy anyway; families are otherwise re-inferred from clusterIPs, R3.3, R3.10).
fn restore_dropped_fields(
    spec: &ServiceSpec,
    old_spec: &ServiceSpec,
    cidrs: Option<&ServiceCidrs>,
    decision: &mut Decision,
) {
    let m = &mut decision.mutation;
    let same_headlessness =
        spec.is_headless() == old_spec.is_headless() || spec.cluster_ip().is_none();
    // Families are restored only where the cluster still has them (R3.14), except for headless
    // selectorless Services, whose families the API server never checks (R3.12). An empty clusterIP
    // on UPDATE is the stored one (R3.3).
    let headless_after = spec.cluster_ip().or(old_spec.cluster_ip()) == Some("None");
    let unchecked_families = headless_after && spec.is_selectorless();
    if spec.ip_families_raw().is_none()
        && same_headlessness
        && let Ok(Some(families)) = old_spec.ip_families()
        && cidrs.is_none_or(|c| unchecked_families || families.iter().all(|f| c.has(*f)))
    {
        decision.changes.push(format!(
            "ipFamilies={} restored from the stored Service (absent on UPDATE means unchanged)",
            List(&families)
        ));
        m.ip_families = Some(families);
    }
    if matches!(spec.ip_family_policy(), Ok(None))
        && let Ok(Some(p)) = old_spec.ip_family_policy()
    {
        decision.changes.push(format!(
            "ipFamilyPolicy={p} restored from the stored Service (absent on UPDATE means unchanged)"
        ));
        m.ip_family_policy = Some(p);
    }
}

/// R3.5: the PreferDualStack freeze holds only while the type is unchanged. A type change of a
/// single-family PreferDualStack Service on a dual-stack cluster lets the API server add the other
/// family (R3.16). That is Kubernetes' meaning of PreferDualStack and the client's own change, so it
/// is not undone (pinning SingleStack would change the policy behind the client's back), but it is
/// said, in kubectl and in the audit log.
fn warn_type_change_unfreezes(
    spec: &ServiceSpec,
    old_spec: &ServiceSpec,
    cidrs: Option<&ServiceCidrs>,
    decision: &mut Decision,
) {
    let prefer = Ok(Some(IpFamilyPolicy::PreferDualStack));
    let Ok(Some(old_families)) = old_spec.ip_families() else {
        return;
    };
    let new_families_same = spec
        .ip_families()
        .is_ok_and(|f| f.is_none_or(|f| f == old_families));
    if cidrs.is_some_and(ServiceCidrs::is_dual)
        && spec.service_type() != old_spec.service_type()
        && old_spec.ip_family_policy() == prefer
        && matches!(
            spec.ip_family_policy(),
            Ok(None) | Ok(Some(IpFamilyPolicy::PreferDualStack))
        )
        && old_families.len() == 1
        && new_families_same
    {
        let other = old_families[0].other();
        decision.warnings.push(format!(
            "changing the type lets the API server add {other} to this PreferDualStack Service"
        ));
        // The freeze is R3.5's; users read the audit annotation, not the rule numbers.
        decision.changes.push(format!(
            "type change unfreezes PreferDualStack: the API server adds {other}"
        ));
    }
}

/// `upgradeExisting: true` on a matching rule: add the missing secondary family, primary unchanged.
fn upgrade_if_opted_in(
    policy: &Policy,
    cluster: &Cluster,
    namespace: &str,
    object: &Service,
    old: &Service,
) -> Option<Decision> {
    // Only a cluster known to have both families can allocate the secondary (R3.13, R3.14).
    let cidrs = cluster.service_cidrs.as_ref().filter(|c| c.is_dual())?;
    let rules = matching_rules(policy, cluster, namespace, object, Some(old));
    let rule = rules.iter().find(|r| r.upgrade_existing)?;
    let (spec, old_spec) = (object.spec(), old.spec());
    let old_families = old_spec.ip_families().ok().flatten()?;
    let old_policy = old_spec.ip_family_policy().ok()?;
    // Only when the client left the dual-stack fields as stored: a client that changes them (e.g. a
    // deliberate downgrade to SingleStack) gets what it asked for, judged by /validate.
    let families_untouched = matches!(spec.ip_families(), Ok(None))
        || spec.ip_families() == Ok(Some(old_families.clone()));
    let policy_untouched =
        matches!(spec.ip_family_policy(), Ok(None)) || spec.ip_family_policy() == Ok(old_policy);
    let primary = *old_families.first()?;
    if old_families.len() != 1 || !families_untouched || !policy_untouched || !cidrs.has(primary) {
        return None;
    }
    let secondary = primary.other();
    let target = effective_defaults(policy, cluster, namespace, object)
        .policy
        .map(|(p, _)| p)
        .filter(|p| p.is_dual())
        .unwrap_or(IpFamilyPolicy::PreferDualStack);
    let p = old_policy.filter(|p| p.is_dual()).unwrap_or(target);
    // R2.2: growing keeps ipFamilies[0]; R3.9: two families need Prefer/Require; R3.18 allocates the
    // secondary IP; clusterIPs[0] is untouched (R2.1). Setting the families explicitly also defeats the
    // PreferDualStack freeze (R3.5), which is the point of the opt-in.
    let families = vec![primary, secondary];
    Some(Decision {
        changes: vec![format!(
            "upgraded to dual-stack by rule {:?} (upgradeExisting): ipFamilyPolicy={p}, ipFamilies={}",
            rule.name,
            List(&families)
        )],
        warnings: vec![format!(
            "rule {:?} added {secondary} to this Service (upgradeExisting)",
            rule.name
        )],
        mutation: Mutation {
            ip_family_policy: Some(p),
            ip_families: Some(families),
        },
        ..Decision::default()
    })
}

/// Fill what the client left unset on CREATE, from the policy's defaults (R3.6–R3.16 say what the
/// API server then does with them).
fn fill_unset(
    spec: &ServiceSpec,
    d: &Defaults<'_>,
    cidrs: Option<&ServiceCidrs>,
    decision: &mut Decision,
) {
    // Values the API server will refuse anyway (R1.9, R1.11, R1.12) are left for it to name.
    let (Ok(client_policy), Ok(client_families), Ok(pinned)) = (
        spec.ip_family_policy(),
        spec.ip_families(),
        spec.pinned_ips(),
    ) else {
        return;
    };
    // R3.12 reads the singular field: a headless Service without selector may be dual-stack on any
    // cluster, and its families are never checked against the cluster's.
    let selectorless_headless = spec.cluster_ip() == Some("None") && spec.is_selectorless();
    let m = &mut decision.mutation;
    let changes = &mut decision.changes;
    let chosen_policy = match (client_policy, &d.policy) {
        (Some(_), _) | (None, None) => None,
        (None, Some((p, why))) => {
            let single_stack_possible = cidrs.is_none_or(|c| !c.is_dual());
            let p = if *p == IpFamilyPolicy::RequireDualStack
                && single_stack_possible
                && !selectorless_headless
            {
                // R3.13 refuses RequireDualStack on a single-stack cluster; PreferDualStack is the
                // nearest policy every cluster accepts, and gives two families where there are two.
                let note = match cidrs {
                    Some(_) => "RequireDualStack is refused on this single-stack cluster",
                    None => {
                        "RequireDualStack is refused on single-stack clusters, and this one is unknown"
                    }
                };
                changes.push(format!("ipFamilyPolicy=PreferDualStack ({why}; {note})"));
                IpFamilyPolicy::PreferDualStack
            } else {
                changes.push(format!("ipFamilyPolicy={p} ({why})"));
                *p
            };
            m.ip_family_policy = Some(p);
            Some(p)
        }
    };
    // Pinned IPs decide the families and their order (R3.10); the API server infers them itself.
    if client_families.is_some() || !pinned.is_empty() {
        return;
    }
    let Some((order, why)) = d.families else {
        return;
    };
    // R3.6: what the API server does with no policy.
    let effective = client_policy
        .or(chosen_policy)
        .unwrap_or(if selectorless_headless {
            IpFamilyPolicy::RequireDualStack
        } else {
            IpFamilyPolicy::SingleStack
        });
    if let Some(families) = families_from_order(order, effective, cidrs, selectorless_headless) {
        changes.push(format!("ipFamilies={} ({why})", List(&families)));
        m.ip_families = Some(families);
    }
}

/// The policy's preferred order, cut to what the cluster has (R3.14) and to the effective policy
/// (R3.9, R3.16). On a cluster whose families are unknown nothing is set: the API server picks its
/// primary family and adds the other where it has it (R3.15, R3.16). Headless Services without
/// selector are not checked against the cluster's families (R3.12).
fn families_from_order(
    order: &[IpFamily],
    effective: IpFamilyPolicy,
    cidrs: Option<&ServiceCidrs>,
    selectorless_headless: bool,
) -> Option<Vec<IpFamily>> {
    let (usable, dual): (Vec<IpFamily>, bool) = match cidrs {
        _ if selectorless_headless => (order.to_vec(), true),
        Some(c) => (
            order.iter().copied().filter(|f| c.has(*f)).collect(),
            c.is_dual(),
        ),
        None => return None,
    };
    let primary = *usable.first()?;
    Some(if effective.is_dual() && dual {
        vec![primary, primary.other()]
    } else {
        vec![primary]
    })
}

/// The `ipFamilyPolicy` the policy's defaults give this Service (the first matching rule with
/// defaults, else `spec.defaults`), with where it came from (`policy defaults`, `defaults of rule
/// "x"`): what `migrate` brings a stored Service to.
pub fn default_policy(
    policy: &Policy,
    cluster: &Cluster,
    namespace: &str,
    object: &Service,
) -> Option<(IpFamilyPolicy, String)> {
    effective_defaults(policy, cluster, namespace, object)
        .policy
        .map(|(p, why)| (p, why.to_string()))
}

/// `spec.defaults`, overridden field by field by the first matching rule that has defaults.
fn effective_defaults<'p>(
    policy: &'p Policy,
    cluster: &Cluster,
    namespace: &str,
    object: &Service,
) -> Defaults<'p> {
    let rules = matching_rules(policy, cluster, namespace, object, None);
    let rule = rules
        .iter()
        .find_map(|r| r.defaults.as_ref().map(|d| (r, d)));
    let global = &policy.defaults;
    Defaults {
        policy: match rule {
            Some((r, d)) if d.ip_family_policy.is_some() => d
                .ip_family_policy
                .map(|p| (p, Source::RuleDefaults(&r.name))),
            _ => global.ip_family_policy.map(|p| (p, Source::PolicyDefaults)),
        },
        families: match rule {
            Some((r, d)) if d.ip_families.is_some() => d
                .ip_families
                .as_deref()
                .map(|f| (f, Source::RuleDefaults(&r.name))),
            _ => global
                .ip_families
                .as_deref()
                .map(|f| (f, Source::PolicyDefaults)),
        },
    }
}

/// `[IPv6,IPv4]`.
pub struct List<'a>(pub &'a [IpFamily]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|family| family.as_str()).collect();
        write!(f, "[{}]", names.join(","))
    }
}
