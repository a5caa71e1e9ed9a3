//! When the webhook's answer is known without asking it: the `matchConditions` of its two
//! configurations, generated from the policy, so that the API server calls `/mutate` only when the
//! webhook may patch, and `/validate` only when a rule may find a violation.
//!
//! Each condition is a superset of the requests the engine acts on (patches, warns, denies or
//! records a finding): where the request alone cannot tell (a namespace label other than its
//! name, the cluster's service ranges, a rule's `exclude`), the condition holds and the webhook,
//! called, decides as before. A request the conditions skip gets from the webhook an answer with
//! nothing in it: allowed, no patch, no warning, no audit annotation (the property tests check
//! this against the engine).

use std::ops::Not as _;

use crate::domain::policy::{LabelSelector, Match, Policy, Require, Rule};
use crate::domain::service::{IpFamilyPolicy, ServiceType};

use super::{Cel, Object, may_match, namespace_in};

/// The namespace is not one of `exemptNamespaces`.
pub fn not_exempt(policy: &Policy) -> Cel {
    namespace_in(&policy.exempt_namespaces).not()
}

/// `/mutate` may patch this request (engine::mutate, exemptions aside).
pub fn may_patch(policy: &Policy) -> Cel {
    let (new, old) = (Object::New, Object::Old);
    let create = Cel::atom("request.operation == 'CREATE'");
    let update = Cel::atom("request.operation == 'UPDATE'");
    // An ExternalName Service becoming another type is allocated like a create (R4.1).
    let from_external_name = old.type_in(&[ServiceType::ExternalName]);
    let upgrades = Cel::any(
        policy
            .rules
            .iter()
            .filter(|r| r.upgrade_existing)
            .map(|r| may_match_either(&r.match_))
            .collect::<Vec<_>>(),
    );
    let restores = if policy.restore_dropped_fields {
        Cel::any([
            Cel::all([new.families_unset(), old.families_unset().not()]),
            Cel::all([new.policy_unset(), old.policy_unset().not()]),
            // A type change that unfreezes PreferDualStack is said in a warning.
            new.type_differs_from(old),
        ])
    } else {
        Cel::Const(false)
    };
    Cel::all([
        // The dual-stack fields do not apply to ExternalName (R1.4).
        new.not_external_name(),
        Cel::any([
            Cel::all([
                Cel::any([create, Cel::all([update.clone(), from_external_name])]),
                fills_unset(policy),
            ]),
            Cel::all([
                update,
                Cel::any([Cel::all([upgrades, old.family_count_is(1)]), restores]),
            ]),
        ]),
    ])
}

/// The policy's defaults may fill a field the request left unset (mutate::fill_unset): a default
/// from `spec.defaults`, or from a rule that may match.
fn fills_unset(policy: &Policy) -> Cel {
    let new = Object::New;
    let default_from = |has: fn(&Rule) -> bool, global: bool| {
        Cel::any(
            std::iter::once(Cel::Const(global))
                .chain(
                    policy
                        .rules
                        .iter()
                        .filter(|r| has(r))
                        .map(|r| may_match(&r.match_, new)),
                )
                .collect::<Vec<_>>(),
        )
    };
    let policy_default = default_from(
        |r| {
            r.defaults
                .as_ref()
                .is_some_and(|d| d.ip_family_policy.is_some())
        },
        policy.defaults.ip_family_policy.is_some(),
    );
    let families_default = default_from(
        |r| r.defaults.as_ref().is_some_and(|d| d.ip_families.is_some()),
        policy.defaults.ip_families.is_some(),
    );
    Cel::any([
        Cel::all([policy_default, new.policy_unset()]),
        Cel::all([families_default, new.families_unset()]),
    ])
}

/// `/validate` may find a violation (engine::validate, exemptions aside): a rule that may match
/// the new or the stored Service, whose requirements the new one may break.
pub fn may_find(policy: &Policy) -> Cel {
    let new = Object::New;
    let rules = policy
        .rules
        .iter()
        .map(|r| Cel::all([may_match_either(&r.match_), may_break(&r.require, new)]));
    Cel::all([
        // ExternalName has no dual-stack fields to judge (R1.4).
        new.not_external_name(),
        Cel::any(rules.collect::<Vec<_>>()),
    ])
}

/// `match_` may cover the new Service or, on UPDATE, the stored one (relabelling a Service out of
/// a rule's scope does not escape it); one test where the match reads only the namespace.
fn may_match_either(match_: &Match) -> Cel {
    let new = may_match(match_, Object::New);
    // Only labels and type tell the two objects apart (`{}` selects every Service).
    let reads_object = match_.types.is_some()
        || match_
            .object_selector
            .as_ref()
            .is_some_and(|s| *s != LabelSelector::default());
    if !reads_object {
        return new;
    }
    let update = Cel::atom("request.operation == 'UPDATE'");
    Cel::any([new, Cel::all([update, may_match(match_, Object::Old)])])
}

/// The Service may break `require` (judge::violations) on some cluster: a requirement the
/// cluster's ranges may lift is kept. On a single-stack cluster RequireDualStack is not among the
/// allowed policies (the API server stores it there only for a headless Service without selector,
/// R3.12, R3.13), so for such a Service it does not count as allowed.
fn may_break(require: &Require, object: Object) -> Cel {
    let policy_bad = require.ip_family_policies.as_deref().map(|allowed| {
        let listed = object.policy_in(allowed);
        if allowed.contains(&IpFamilyPolicy::RequireDualStack) {
            let require_dual = object.policy_in(&[IpFamilyPolicy::RequireDualStack]);
            Cel::any([
                listed.not(),
                Cel::all([require_dual, object.selectorless_headless()]),
            ])
        } else {
            listed.not()
        }
    });
    let primary_bad = require.primary_family.map(|f| object.primary_is(f).not());
    let stack_bad = require.dual_stack.map(|dual| {
        if dual {
            object.family_count_over(1).not()
        } else {
            object.family_count_over(1)
        }
    });
    Cel::any(
        [policy_bad, primary_bad, stack_bad]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>(),
    )
}

#[cfg(test)]
pub(super) mod tests;
