//! `/mutate`: fill in the dual-stack fields the client left unset, and keep UPDATEs safe for running Services.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::cluster::{Cluster, ServiceCidrs};
use crate::domain::policy::Policy;
use crate::domain::service::{IpFamily, IpFamilyPolicy, Service, ServiceSpec, ServiceType};

use super::{Decision, Denial, Mutation, matching_rules};

/// A request the API server would refuse on this cluster, with its field path and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// R3.10: a pinned IP of a family the cluster does not allocate.
    IpFamilyNotConfigured {
        /// Index in `clusterIPs`.
        index: usize,
        /// The IP.
        ip: IpAddr,
    },
    /// R3.17: a pinned IP outside the service range of its family.
    NotInRange {
        /// Index in `clusterIPs`.
        index: usize,
        /// The IP.
        ip: IpAddr,
        /// The range it must be in.
        range: String,
    },
    /// R3.14: a requested family the cluster does not allocate.
    FamilyNotConfigured {
        /// Index in `ipFamilies`.
        index: usize,
        /// The family.
        family: IpFamily,
    },
    /// R3.13: RequireDualStack on a single-stack cluster.
    NotDualStackCluster,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IpFamilyNotConfigured { index, ip } => write!(
                f,
                "spec.clusterIPs[{index}]: Invalid value: \"{ip}\": {} is not configured on this cluster; \
                 pin an IP of a configured family or leave spec.clusterIPs unset",
                IpFamily::of(ip)
            ),
            Self::NotInRange { index, ip, range } => write!(
                f,
                "spec.clusterIPs[{index}]: Invalid value: \"{ip}\": failed to allocate IP {ip}: the provided IP \
                 ({ip}) is not in the valid range. The range of valid IPs is {range}; pin an IP inside {range} \
                 or leave it unset"
            ),
            Self::FamilyNotConfigured { index, family } => write!(
                f,
                "spec.ipFamilies[{index}]: Invalid value: \"{family}\": not configured on this cluster; \
                 remove {family} from spec.ipFamilies"
            ),
            Self::NotDualStackCluster => f.write_str(
                "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for \
                 dual-stack services; set spec.ipFamilyPolicy: PreferDualStack or SingleStack",
            ),
        }
    }
}

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
    /// R3.9: two families or IPs under SingleStack are refused; the client asked for both.
    PinnedTwo,
    /// R3.10: the pinned IPs decide the families.
    FollowingPinnedIps,
}

impl Source<'_> {
    /// Appends the text to `out`. Written by hand, like the changes around it: these are built for
    /// every defaulted Service, and `format!` with `Display` costs twice as much.
    fn write_to(self, out: &mut String) {
        match self {
            Self::PolicyDefaults => out.push_str("policy defaults"),
            // As `{name:?}` writes it; a plain name (the usual case) needs no per-character work.
            Self::RuleDefaults(name)
                if name.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
                    && !name.contains(['"', '\\']) =>
            {
                out.push_str("defaults of rule \"");
                out.push_str(name);
                out.push('"');
            }
            Self::RuleDefaults(name) => {
                // Writing into a String cannot fail.
                let _ = write!(out, "defaults of rule {name:?}");
            }
            Self::PinnedTwo => out.push_str("two families or IPs pinned by the client"),
            Self::FollowingPinnedIps => out.push_str("following the pinned clusterIPs"),
        }
    }
}

/// `{field}={value} ({why}{note})`, one entry of the audit annotation's list of changes.
fn change(field: &str, value: &str, why: Source<'_>, note: &str) -> String {
    let mut text = String::with_capacity(96);
    text.push_str(field);
    text.push('=');
    text.push_str(value);
    text.push_str(" (");
    why.write_to(&mut text);
    text.push_str(note);
    text.push(')');
    text
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
    let cidrs = cluster.service_cidrs.as_ref();
    if let Some(rejection) = cidrs.and_then(|c| preflight(spec, None, c)) {
        return denied(object, namespace, rejection);
    }
    let defaults = effective_defaults(policy, cluster, namespace, object);
    let mut decision = Decision::default();
    fill_unset(spec, &defaults, cidrs, &mut decision);
    decision
}

/// UPDATE: absent means inherit (R0.3); restore what a PUT dropped, upgrade only on explicit opt-in.
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
    let cidrs = cluster.service_cidrs.as_ref();
    if let Some(rejection) = cidrs.and_then(|c| preflight(spec, Some(old_spec), c)) {
        return denied(object, namespace, rejection);
    }
    if let Some(upgrade) = upgrade_if_opted_in(policy, cluster, namespace, object, old) {
        return upgrade;
    }
    let mut decision = Decision::default();
    restore_dropped_fields(spec, old_spec, cidrs, &mut decision);
    warn_type_change_unfreezes(spec, old_spec, cidrs, &mut decision);
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
        decision.changes.push(format!(
            "type change unfreezes PreferDualStack (R3.5): the API server adds {other}"
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
            ..Mutation::default()
        },
        ..Decision::default()
    })
}

/// Fill what the client left unset on CREATE. Each step keeps the object acceptable (R1.7–R1.8, R3.9–R3.16).
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
    let m = &mut decision.mutation;
    let changes = &mut decision.changes;
    // R1.8: clusterIPs without clusterIP is refused; R3.1: clusterIP alone means clusterIPs = [clusterIP].
    match (spec.cluster_ip(), spec.cluster_ips()) {
        (None, Some(ips)) => {
            m.cluster_ip = Some(ips[0].clone());
            changes.push(format!("clusterIP={} from clusterIPs[0]", ips[0]));
        }
        (Some(ip), None) => {
            m.cluster_ips = Some(vec![ip.to_owned()]);
            changes.push(format!("clusterIPs=[{ip}] from clusterIP"));
        }
        _ => {}
    }
    // The headless-selectorless case of R3.6/R3.12 reads the singular field, as set by now.
    let headless = spec.is_headless();
    let selectorless_headless = headless && spec.is_selectorless();
    let wants_two = pinned.len() == 2 || client_families.as_ref().is_some_and(|f| f.len() == 2);

    let chosen_policy = match (client_policy, &d.policy) {
        (Some(_), _) | (None, None) => None,
        (None, Some((p, source))) => {
            let (mut p, mut why) = (*p, *source);
            if p == IpFamilyPolicy::SingleStack && wants_two {
                // R3.9 refuses SingleStack with two families or IPs; the client asked for both.
                p = IpFamilyPolicy::RequireDualStack;
                why = Source::PinnedTwo;
            }
            if p == IpFamilyPolicy::RequireDualStack
                && cidrs.is_some_and(|c| !c.is_dual())
                && !selectorless_headless
            {
                // R3.13 refuses RequireDualStack on a single-stack cluster; PreferDualStack is the nearest.
                p = IpFamilyPolicy::PreferDualStack;
                changes.push(change(
                    "ipFamilyPolicy",
                    p.as_str(),
                    why,
                    "; RequireDualStack is refused on this single-stack cluster",
                ));
            } else {
                changes.push(change("ipFamilyPolicy", p.as_str(), why, ""));
            }
            m.ip_family_policy = Some(p);
            Some(p)
        }
    };
    if client_families.is_some() {
        return;
    }
    // R3.6: what the API server does with no policy.
    let effective = client_policy
        .or(chosen_policy)
        .unwrap_or(if selectorless_headless {
            IpFamilyPolicy::RequireDualStack
        } else {
            IpFamilyPolicy::SingleStack
        });
    let families = if !pinned.is_empty() {
        families_of_pinned(&pinned, effective, cidrs).map(|f| (f, Source::FollowingPinnedIps))
    } else {
        d.families.and_then(|(order, source)| {
            families_from_order(order, effective, cidrs, selectorless_headless).map(|f| (f, source))
        })
    };
    if let Some((families, why)) = families {
        // R3.9: never two families under SingleStack.
        if families.len() == 2 && !effective.is_dual() {
            return;
        }
        let mut list = String::with_capacity(11);
        // Writing into a String cannot fail.
        let _ = List(&families).write_to(&mut list);
        changes.push(change("ipFamilies", &list, why, ""));
        m.ip_families = Some(families);
    }
}

/// R3.10: the pinned IPs decide the families and their order; R3.16 adds the other family for a dual policy.
fn families_of_pinned(
    pinned: &[IpAddr],
    effective: IpFamilyPolicy,
    cidrs: Option<&ServiceCidrs>,
) -> Option<Vec<IpFamily>> {
    let mut families: Vec<IpFamily> = pinned.iter().map(IpFamily::of).collect();
    if families.len() == 2 && families[0] == families[1] {
        return None; // R1.14: the API server refuses two IPs of one family
    }
    if let Some(c) = cidrs {
        if families.iter().any(|f| !c.has(*f)) {
            return None; // refused by preflight (R3.10)
        }
        if families.len() == 1 && effective.is_dual() && c.is_dual() {
            families.push(families[0].other());
        }
    }
    Some(families)
}

/// The policy's preferred order, cut to what the cluster has (R3.14) and to the effective policy (R3.9).
/// On an unknown cluster only the primary is set: the API server adds the other where it has it (R3.16).
fn families_from_order(
    order: &[IpFamily],
    effective: IpFamilyPolicy,
    cidrs: Option<&ServiceCidrs>,
    selectorless_headless: bool,
) -> Option<Vec<IpFamily>> {
    let usable: Vec<IpFamily> = match cidrs {
        // R3.12: headless selectorless Services are not checked against the cluster's families.
        Some(c) if !selectorless_headless => order.iter().copied().filter(|f| c.has(*f)).collect(),
        _ => order.to_vec(),
    };
    let primary = *usable.first()?;
    let both = vec![primary, primary.other()];
    Some(match (effective.is_dual(), cidrs) {
        (false, _) | (true, None) => vec![primary],
        (true, Some(c)) if c.is_dual() || selectorless_headless => both,
        (true, Some(_)) => vec![primary], // PreferDualStack on a single-stack cluster: one family (R3.16 needs 2 allocators)
    })
}

/// The API server's refusals that the cluster snapshot lets us name first (R3.10, R3.13, R3.14, R3.17).
/// On UPDATE only what the client newly pinned is checked: stored values were accepted before.
fn preflight(
    spec: &ServiceSpec,
    old: Option<&ServiceSpec>,
    cidrs: &ServiceCidrs,
) -> Option<Rejection> {
    let old_ips = old.and_then(|o| o.pinned_ips().ok()).unwrap_or_default();
    // On UPDATE an empty clusterIP is the stored one (R3.3); R3.12 reads the singular field.
    let cluster_ip = spec.cluster_ip().or(old.and_then(ServiceSpec::cluster_ip));
    let selectorless_headless = cluster_ip == Some("None") && spec.is_selectorless();
    if let Ok(pinned) = spec.pinned_ips() {
        for (index, ip) in pinned.iter().enumerate() {
            if old_ips.contains(ip) {
                continue;
            }
            if !cidrs.has(IpFamily::of(ip)) {
                return Some(Rejection::IpFamilyNotConfigured { index, ip: *ip });
            }
            if !cidrs.contains(ip) {
                let range = cidrs.ranges_of(IpFamily::of(ip));
                return Some(Rejection::NotInRange {
                    index,
                    ip: *ip,
                    range,
                });
            }
        }
    }
    if selectorless_headless {
        return None; // R3.12: exempt from R3.13 and R3.14
    }
    let old_policy = old.and_then(|o| o.ip_family_policy().ok().flatten());
    if let Ok(Some(IpFamilyPolicy::RequireDualStack)) = spec.ip_family_policy()
        && !cidrs.is_dual()
        && old_policy != Some(IpFamilyPolicy::RequireDualStack)
    {
        return Some(Rejection::NotDualStackCluster);
    }
    let old_families = old
        .and_then(|o| o.ip_families().ok().flatten())
        .unwrap_or_default();
    if let Ok(Some(families)) = spec.ip_families() {
        for (index, family) in families.into_iter().enumerate() {
            if !cidrs.has(family) && !old_families.contains(&family) {
                return Some(Rejection::FamilyNotConfigured { index, family });
            }
        }
    }
    None
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

fn denied(object: &Service, namespace: &str, rejection: Rejection) -> Decision {
    Decision {
        denial: Some((object.display_name(namespace), Denial::ApiServer(rejection))),
        ..Decision::default()
    }
}

/// `[IPv6,IPv4]`.
pub(super) struct List<'a>(pub(super) &'a [IpFamily]);

impl List<'_> {
    /// Into a `Formatter` for `Display`, or straight into a `String` where `format!`'s machinery
    /// would cost more than the text.
    fn write_to(&self, out: &mut impl fmt::Write) -> fmt::Result {
        out.write_str("[")?;
        for (i, family) in self.0.iter().enumerate() {
            if i > 0 {
                out.write_str(",")?;
            }
            out.write_str(family.as_str())?;
        }
        out.write_str("]")
    }
}

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

#[cfg(test)]
mod source_tests {
    use super::Source;

    /// The fast form of a rule's name is exactly what `{:?}` writes.
    #[test]
    fn rule_names_are_quoted_as_debug_quotes_them() {
        for name in [
            "lb",
            "public lb-2",
            "a\"b",
            "back\\slash",
            "tab\there",
            "é",
            "",
            "new\nline",
        ] {
            let mut text = String::new();
            Source::RuleDefaults(name).write_to(&mut text);
            assert_eq!(text, format!("defaults of rule {name:?}"));
        }
    }
}
