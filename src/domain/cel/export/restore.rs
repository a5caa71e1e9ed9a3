//! The update protection (`restoreDroppedFields`) in CEL, as `engine::mutate::update` decides it.

use std::ops::Not as _;

use crate::cluster::ServiceCidrs;
use crate::domain::policy::Policy;
use crate::domain::service::IpFamilyPolicy::{PreferDualStack, RequireDualStack, SingleStack};

use super::super::{Cel, Object, quote};
use super::{WITH_IPS, update};

/// When an UPDATE gets its dropped `ipFamilyPolicy` and `ipFamilies` back (mutate::update,
/// `restoreDroppedFields`): a PUT that omits them is "not matching" for the PreferDualStack
/// freeze (R3.5). Families are restored only where the cluster has them (R3.14), except for a
/// headless Service without selector (R3.12), and not across a change of headlessness; an empty
/// clusterIP on UPDATE is the stored one (R3.3).
pub(super) fn restore(policy: &Policy, cidrs: Option<&ServiceCidrs>) -> (Cel, Cel) {
    if !policy.restore_dropped_fields {
        return (Cel::Const(false), Cel::Const(false));
    }
    let (new, old) = (Object::New, Object::Old);
    let base = Cel::all([update(), new.type_in(&WITH_IPS), old.type_in(&WITH_IPS)]);
    let ip_set = |o: Object| {
        Cel::all([
            o.has("clusterIP"),
            Cel::atom(format!("{} != ''", o.spec("clusterIP"))),
        ])
    };
    let headless = |o: Object| {
        let (ip, ips) = (o.spec("clusterIP"), o.spec("clusterIPs"));
        Cel::any([
            Cel::all([o.has("clusterIP"), Cel::atom(format!("{ip} == 'None'"))]),
            Cel::all([
                o.has("clusterIPs"),
                Cel::atom(format!("size({ips}) == 1")),
                Cel::atom(format!("{ips}[0] == 'None'")),
            ]),
        ])
    };
    let same_headlessness = Cel::any([
        Cel::atom(format!(
            "({}) == ({})",
            headless(new).render(),
            headless(old).render()
        )),
        ip_set(new).not(),
    ]);
    let old_families = old.spec("ipFamilies");
    let old_families_valid = Cel::all([
        old.family_count_over(0),
        Cel::atom(format!("{old_families}.all(f, f == 'IPv4' || f == 'IPv6')")),
    ]);
    let in_cluster = match cidrs {
        None => Cel::Const(true),
        Some(c) if c.is_dual() => Cel::Const(true),
        Some(c) => {
            let only = quote(c.primary().as_str());
            let headless_after = format!(
                "(({}) ? {} : {old_ip}) == 'None'",
                ip_set(new).render(),
                new.spec("clusterIP"),
                old_ip = format_args!("(has({ip}) ? {ip} : '')", ip = old.spec("clusterIP")),
            );
            let selectorless = Cel::any([
                new.has("selector").not(),
                Cel::atom(format!("size({}) == 0", new.spec("selector"))),
            ]);
            Cel::any([
                Cel::all([Cel::atom(headless_after), selectorless]),
                Cel::atom(format!("{old_families}.all(f, f == {only})")),
            ])
        }
    };
    let families = Cel::all([
        base.clone(),
        new.families_unset(),
        same_headlessness,
        old_families_valid,
        in_cluster,
    ]);
    let policies = [SingleStack, PreferDualStack, RequireDualStack];
    let policy_restored = Cel::all([base, new.policy_unset(), old.policy_in(&policies)]);
    (policy_restored, families)
}
