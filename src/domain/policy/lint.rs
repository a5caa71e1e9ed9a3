//! The policy lint: the errors that make a policy refused, and warnings about rules that cannot
//! work as written (unreachable, flagging what the policy's own defaults create, unsatisfiable on
//! a cluster). Pure: a policy, the lines of its text and the cluster's ranges (if known) in,
//! findings out.
//!
//! [`Policy::from_yaml`](super::Policy::from_yaml) refuses a policy with the first of its
//! [`errors`]; `dualstack-webhook lint` prints every finding, and `serve` logs the warnings.

mod simulate;

use std::collections::HashSet;
use std::fmt;

use crate::cluster::ServiceCidrs;
use crate::domain::service::{IpFamilyPolicy, ServiceType};
use crate::domain::yaml_lines::Lines;

use super::selector::{check_glob, check_label_key, check_label_value, glob_covers};
use super::{API_VERSION, Defaults, KIND, LabelSelector, Match, Policy, Rule};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The policy is refused.
    Error,
    /// The policy loads, but part of it cannot work as written.
    Warning,
}

/// One finding of the lint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LintFinding {
    /// Error or warning.
    pub severity: Severity,
    /// Path of the field, e.g. `rules[2].match.namespaces[0]`.
    pub field: String,
    /// The line of the field (or of its nearest parent the text has).
    pub line: Option<usize>,
    /// What is wrong, as a whole sentence without the field.
    pub message: String,
}

/// Above this many rules the checks that run the engine (on every rule, for every rule) are
/// skipped: they cost rules² engine calls, and a reload must stay quick.
pub const SIMULATED_RULES_MAX: usize = 200;

/// Every finding on `policy`: its errors, then its warnings. The warnings that run the engine
/// (defaults against rules, requirements against clusters) need an error-free policy. `cidrs` is
/// the cluster's ranges; without them every shape of cluster is considered.
pub fn lint(policy: &Policy, lines: &Lines, cidrs: Option<&ServiceCidrs>) -> Vec<LintFinding> {
    let mut out = errors(policy);
    let error_free = out.is_empty();
    out.extend(unreachable(policy));
    if error_free {
        if policy.rules.len() > SIMULATED_RULES_MAX {
            out.push(warning(
                "rules",
                format!(
                    "more than {SIMULATED_RULES_MAX} rules: the defaults were not checked against \
                     the rules, nor the requirements against the cluster"
                ),
            ));
        } else {
            out.extend(simulate::not_judged(policy, cidrs));
            out.extend(simulate::unsatisfiable(policy, cidrs));
            out.extend(simulate::defaults_flagged(policy, cidrs));
        }
    }
    for finding in &mut out {
        finding.line = lines.line(0, &finding.field);
    }
    out
}

/// The errors of `policy`, in the order of the document, without lines.
pub fn errors(policy: &Policy) -> Vec<LintFinding> {
    let mut out = Vec::new();
    if policy.api_version != API_VERSION {
        let got = &policy.api_version;
        out.push(error(
            "apiVersion",
            format!("must be {API_VERSION}, got {got:?}"),
        ));
    }
    if policy.kind != KIND {
        out.push(error(
            "kind",
            format!("must be {KIND}, got {:?}", policy.kind),
        ));
    }
    for (j, glob) in policy.exempt_namespaces.iter().enumerate() {
        if let Err(why) = check_glob(glob) {
            out.push(error(format!("exemptNamespaces[{j}]"), why));
        }
    }
    check_defaults("defaults", &policy.defaults, &mut out);
    let mut seen = HashSet::new();
    for (i, rule) in policy.rules.iter().enumerate() {
        let at = format!("rules[{i}]");
        if rule.name.trim().is_empty() {
            out.push(error(format!("{at}.name"), "must be set"));
        } else if !seen.insert(rule.name.as_str()) {
            out.push(error(
                format!("{at}.name"),
                format!("{:?} is used by an earlier rule", rule.name),
            ));
        }
        if let Some(d) = &rule.defaults {
            check_defaults(&format!("{at}.defaults"), d, &mut out);
        }
        check_match(&format!("{at}.match"), &rule.match_, &mut out);
        if let Some(exclude) = &rule.exclude {
            if exclude.is_empty() {
                out.push(error(
                    format!("{at}.exclude"),
                    "must give at least one condition: an empty exclude would exclude every Service",
                ));
            }
            check_match(&format!("{at}.exclude"), exclude, &mut out);
        }
        if rule
            .require
            .ip_family_policies
            .as_ref()
            .is_some_and(Vec::is_empty)
        {
            let path = format!("{at}.require.ipFamilyPolicies");
            out.push(error(path, "must list at least one policy"));
        }
        contradictions(&at, rule, &mut out);
    }
    out
}

fn check_defaults(at: &str, d: &Defaults, out: &mut Vec<LintFinding>) {
    if let Some(families) = &d.ip_families {
        if families.is_empty() || families.len() > 2 {
            out.push(error(
                format!("{at}.ipFamilies"),
                "must list one or two families, primary first",
            ));
        } else if families.len() == 2 && families[0] == families[1] {
            out.push(error(
                format!("{at}.ipFamilies[1]"),
                format!("duplicate family {}", families[1]),
            ));
        }
    }
}

/// Globs, label keys and values, and selector expressions of a `match` or an `exclude`.
fn check_match(at: &str, m: &Match, out: &mut Vec<LintFinding>) {
    for (j, glob) in m.namespaces.iter().flatten().enumerate() {
        if let Err(why) = check_glob(glob) {
            out.push(error(format!("{at}.namespaces[{j}]"), why));
        }
    }
    for (field, selector) in [
        ("namespaceSelector", &m.namespace_selector),
        ("objectSelector", &m.object_selector),
    ] {
        if let Some(selector) = selector {
            check_selector(&format!("{at}.{field}"), selector, out);
        }
    }
}

fn check_selector(at: &str, selector: &LabelSelector, out: &mut Vec<LintFinding>) {
    for (key, value) in &selector.match_labels {
        let path = format!("{at}.matchLabels.{key}");
        if let Err(why) = check_label_key(key).and_then(|()| check_label_value(value)) {
            out.push(error(path, why));
        }
    }
    for (j, e) in selector.match_expressions.iter().enumerate() {
        if let Err(why) = check_label_key(&e.key) {
            out.push(error(format!("{at}.matchExpressions[{j}].key"), why));
        }
        for (n, value) in e.values.iter().enumerate() {
            if let Err(why) = check_label_value(value) {
                out.push(error(
                    format!("{at}.matchExpressions[{j}].values[{n}]"),
                    why,
                ));
            }
        }
    }
    if let Err((j, reason)) = selector.check() {
        out.push(error(format!("{at}.matchExpressions[{j}]"), reason));
    }
}

/// Requirements that contradict each other, and rule defaults that the same rule would flag (on a
/// dual-stack cluster, where every requirement is judged).
fn contradictions(at: &str, rule: &Rule, out: &mut Vec<LintFinding>) {
    use IpFamilyPolicy::{RequireDualStack, SingleStack};
    let require = &rule.require;
    let allowed = require.ip_family_policies.as_deref().unwrap_or_default();
    let only = |p: IpFamilyPolicy| !allowed.is_empty() && allowed.iter().all(|a| *a == p);
    let dual_stack = format!("{at}.require.dualStack");
    if require.dual_stack == Some(true) && only(SingleStack) {
        out.push(error(
            dual_stack,
            "true contradicts ipFamilyPolicies, which allows only SingleStack (one family): every \
             Service on a dual-stack cluster would be flagged",
        ));
    } else if require.dual_stack == Some(false) && only(RequireDualStack) {
        out.push(error(
            dual_stack,
            "false contradicts ipFamilyPolicies, which allows only RequireDualStack (two \
             families): every Service on a dual-stack cluster would be flagged",
        ));
    }
    let Some(defaults) = &rule.defaults else {
        return;
    };
    let flagged = "the rule would flag the Services it defaults on a dual-stack cluster";
    if let Some(p) = defaults.ip_family_policy {
        let path = format!("{at}.defaults.ipFamilyPolicy");
        if !allowed.is_empty() && !allowed.contains(&p) {
            let names: Vec<&str> = allowed.iter().map(|a| a.as_str()).collect();
            out.push(error(
                path,
                format!(
                    "{p} is not in this rule's require.ipFamilyPolicies ({}): {flagged}",
                    names.join(", ")
                ),
            ));
        } else if let Some(dual) = require.dual_stack.filter(|dual| *dual != p.is_dual()) {
            out.push(error(
                path,
                format!("{p} contradicts this rule's require.dualStack: {dual}: {flagged}"),
            ));
        }
    }
    if let (Some(families), Some(primary)) = (&defaults.ip_families, require.primary_family)
        && let Some(first) = families.first().filter(|f| **f != primary)
    {
        out.push(error(
            format!("{at}.defaults.ipFamilies[0]"),
            format!("{first} contradicts this rule's require.primaryFamily: {primary}: {flagged}"),
        ));
    }
}

/// Rules that can never apply, and exemptions that cover everything.
fn unreachable(policy: &Policy) -> Vec<LintFinding> {
    let mut out = Vec::new();
    for (j, glob) in policy.exempt_namespaces.iter().enumerate() {
        if glob_covers(glob, "*") {
            out.push(warning(
                format!("exemptNamespaces[{j}]"),
                format!("{glob:?} exempts every namespace: nothing is mutated or judged"),
            ));
        }
    }
    let never = "the rule never applies";
    for (i, rule) in policy.rules.iter().enumerate() {
        let at = format!("rules[{i}]");
        let m = &rule.match_;
        match m.types.as_deref() {
            Some([]) => out.push(warning(
                format!("{at}.match.types"),
                format!("is empty: {never}"),
            )),
            Some(types) if types.iter().all(|t| *t == ServiceType::ExternalName) => {
                out.push(warning(
                    format!("{at}.match.types"),
                    format!(
                        "lists only ExternalName, whose Services have no dual-stack fields and \
                         are never mutated or judged: {never}"
                    ),
                ));
            }
            _ => {}
        }
        match m.namespaces.as_deref() {
            Some([]) => out.push(warning(
                format!("{at}.match.namespaces"),
                format!("is empty: {never}"),
            )),
            Some(globs) if globs.iter().all(|g| covered(&policy.exempt_namespaces, g)) => {
                out.push(warning(
                    format!("{at}.match.namespaces"),
                    format!("every namespace it matches is exempt (exemptNamespaces): {never}"),
                ));
            }
            _ => {}
        }
        let Some(exclude) = rule.exclude.as_ref().filter(|e| !e.is_empty()) else {
            continue;
        };
        let mut empty = false;
        for (field, list_empty) in [
            ("namespaces", exclude.namespaces.as_ref().map(Vec::is_empty)),
            ("types", exclude.types.as_ref().map(Vec::is_empty)),
        ] {
            if list_empty == Some(true) {
                empty = true;
                out.push(warning(
                    format!("{at}.exclude.{field}"),
                    "is empty: the exclude never applies",
                ));
            }
        }
        if !empty && excludes_everything(m, exclude) {
            out.push(warning(
                format!("{at}.exclude"),
                format!("excludes every Service the rule's match covers: {never}"),
            ));
        }
    }
    out
}

/// Whether some glob of `globs` covers every name `glob` matches.
fn covered(globs: &[String], glob: &str) -> bool {
    globs.iter().any(|g| glob_covers(g, glob))
}

/// Whether every condition `exclude` gives holds for every Service `m` matches, where that can be
/// told from the conditions themselves (sound, not complete).
fn excludes_everything(m: &Match, exclude: &Match) -> bool {
    let namespaces = match (&exclude.namespaces, &m.namespaces) {
        (None, _) => true,
        (Some(ex), Some(globs)) => globs.iter().all(|g| covered(ex, g)),
        (Some(ex), None) => covered(ex, "*"),
    };
    let selector = |ex: &Option<LabelSelector>, matched: &Option<LabelSelector>| match (ex, matched)
    {
        (None, _) => true,
        (Some(ex), Some(matched)) => matched.implies(ex),
        (Some(ex), None) => LabelSelector::default().implies(ex),
    };
    let judged = [
        ServiceType::ClusterIP,
        ServiceType::NodePort,
        ServiceType::LoadBalancer,
    ];
    let types = match (&exclude.types, &m.types) {
        (None, _) => true,
        (Some(ex), matched) => matched
            .as_deref()
            .unwrap_or(&judged)
            .iter()
            .filter(|t| **t != ServiceType::ExternalName)
            .all(|t| ex.contains(t)),
    };
    namespaces
        && selector(&exclude.namespace_selector, &m.namespace_selector)
        && selector(&exclude.object_selector, &m.object_selector)
        && types
}

fn error(field: impl Into<String>, message: impl Into<String>) -> LintFinding {
    finding(Severity::Error, field, message)
}

fn warning(field: impl Into<String>, message: impl Into<String>) -> LintFinding {
    finding(Severity::Warning, field, message)
}

fn finding(
    severity: Severity,
    field: impl Into<String>,
    message: impl Into<String>,
) -> LintFinding {
    LintFinding {
        severity,
        field: field.into(),
        line: None,
        message: message.into(),
    }
}

// === impl Severity ===

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
        })
    }
}

// === impl LintFinding ===

/// `error: rules[2].name: must be set` (the line is the caller's to add, with the file).
impl fmt::Display for LintFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.severity, self.field, self.message)
    }
}
