//! What the exported policies cannot do as the webhook does, per rule: named on stderr by
//! `export`, never silently left out.

use crate::cluster::ServiceCidrs;
use crate::domain::policy::{Defaults, Policy, Rule};
use crate::domain::service::IpFamilyPolicy::RequireDualStack;

use super::Gap;

/// What the webhook does with this policy that the exported policies cannot.
pub(super) fn gaps(policy: &Policy, cidrs: Option<&ServiceCidrs>) -> Vec<Gap> {
    let mut out = Vec::new();
    let gap = |rule: Option<&Rule>, what: &str| Gap {
        rule: rule.map(|r| r.name.clone()),
        what: what.to_owned(),
    };
    if cidrs.is_none() {
        if depends_on_cluster(&policy.defaults, None) {
            out.push(gap(None, UNKNOWN_RANGES_DEFAULTS));
        }
        for rule in &policy.rules {
            let defaults = rule.defaults.clone().unwrap_or_default();
            if depends_on_cluster(&defaults, Some(rule)) {
                out.push(gap(Some(rule), UNKNOWN_RANGES_RULE));
            }
        }
    }
    if policy.restore_dropped_fields && cidrs.is_none_or(ServiceCidrs::is_dual) {
        out.push(gap(None, TYPE_CHANGE_WARNING));
    }
    for rule in policy.rules.iter().filter(|r| r.upgrade_existing) {
        out.push(gap(Some(rule), UPGRADE_EXISTING));
    }
    out
}

/// Whether these defaults (and `rule`'s requirements) read the cluster's ranges.
fn depends_on_cluster(defaults: &Defaults, rule: Option<&Rule>) -> bool {
    let require = rule.map(|r| &r.require);
    defaults.ip_families.is_some()
        || defaults.ip_family_policy == Some(RequireDualStack)
        || require.is_some_and(|r| {
            r.primary_family.is_some()
                || r.dual_stack == Some(true)
                || r.ip_family_policies
                    .as_ref()
                    .is_some_and(|p| p.contains(&RequireDualStack))
        })
}

pub(super) const UNKNOWN_RANGES_DEFAULTS: &str = "the cluster's service ranges are not given \
     (--service-cidrs): defaults.ipFamilies is not set and RequireDualStack becomes \
     PreferDualStack, as the webhook does only when it does not watch the ranges";
pub(super) const UNKNOWN_RANGES_RULE: &str = "the cluster's service ranges are not given \
     (--service-cidrs): its defaults and requirements act as on a cluster of unknown ranges, as \
     the webhook does only when it does not watch them";
pub(super) const TYPE_CHANGE_WARNING: &str = "restoreDroppedFields: no warning when a type change lets the \
     API server add a family to a PreferDualStack Service (a mutating admission policy cannot \
     warn, and once allocated the change looks like the client's own)";
pub(super) const UPGRADE_EXISTING: &str = "upgradeExisting is not exported: adding the secondary family on \
     UPDATE, with its warning, is the webhook's alone";
