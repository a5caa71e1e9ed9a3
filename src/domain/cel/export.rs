//! `export`: the policy as admission policies kube-apiserver runs in-process
//! (admissionregistration.k8s.io/v1, Kubernetes 1.36+): a MutatingAdmissionPolicy for the CREATE
//! defaults and the update protection, one ValidatingAdmissionPolicy per action (`Deny`, `Warn`,
//! `Audit`, its binding's `validationActions`) for the rules' requirements, and their bindings.
//! Pure: the objects as JSON values, and the [`Gap`]s, what they cannot do as the webhook does.
//!
//! The scope (exemptions, rule matching, types) is written with the predicates the webhook's match
//! conditions use ([`super`]), exactly: admission policies have `namespaceObject`, so a namespace
//! selector reads every label. What the engine decides within the scope is taken from the engine
//! itself, state by state (`states`). Two things are written directly, as the engine says
//! them: the update protection (`restore`) and grandfathering (here). What cannot be exported
//! is named per rule (`gaps`).

mod gaps;
mod restore;
mod states;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Not as _;

use serde_json::{Value, json};

use crate::cluster::ServiceCidrs;
use crate::domain::policy::{Action, Defaults, Policy, Rule};
use crate::domain::service::ServiceType;
use crate::registration::configuration::CONTROL_PLANE_NAMESPACE;

use super::conditions::{may_find, may_patch, not_exempt};
use super::{Cel, Object, matches, quote};
use states::Key;

/// The prefix of every exported object's name.
pub const NAME: &str = "dualstack-webhook";
const API_VERSION: &str = "admissionregistration.k8s.io/v1";
/// The types that have cluster IPs: the only ones the engine patches or judges (R1.4, R1.18).
const WITH_IPS: [ServiceType; 3] = [
    ServiceType::ClusterIP,
    ServiceType::NodePort,
    ServiceType::LoadBalancer,
];

/// The admission policies and bindings of a policy, and what they leave out.
#[derive(Clone, Debug, PartialEq)]
pub struct Export {
    /// The objects, in the order to apply them (a policy before its binding).
    pub documents: Vec<Value>,
    /// What the webhook does that they do not; empty: they implement the whole policy.
    pub gaps: Vec<Gap>,
}

/// Something the webhook does that the exported policies cannot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The rule it concerns (`None`: the policy as a whole).
    pub rule: Option<String>,
    /// What is left out, and why.
    pub what: String,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(rule) => write!(f, "rule {rule:?}: {}", self.what),
            None => write!(f, "policy: {}", self.what),
        }
    }
}

/// The policy as admission policies, for a cluster of these service ranges (`None`: as the
/// webhook decides without them: no families defaulted, every requirement judged).
pub fn export(policy: &Policy, cidrs: Option<&ServiceCidrs>) -> Export {
    let mut documents = Vec::new();
    if let Some(spec) = mutating(policy, Ranges::Given(cidrs)) {
        let name = format!("{NAME}-defaults");
        documents.push(object("MutatingAdmissionPolicy", &name, spec));
        documents.push(binding("MutatingAdmissionPolicyBinding", &name, None));
    }
    let findings: Vec<states::Findings> = policy
        .rules
        .iter()
        .map(|r| states::findings(r, cidrs))
        .collect();
    for action in [Action::Deny, Action::Warn, Action::Audit] {
        if let Some(spec) = validating(policy, &findings, action) {
            let name = format!("{NAME}-{}", action_name(action).to_lowercase());
            documents.push(object("ValidatingAdmissionPolicy", &name, spec));
            let actions = Some(action_name(action));
            documents.push(binding("ValidatingAdmissionPolicyBinding", &name, actions));
        }
    }
    Export {
        documents,
        gaps: gaps::gaps(policy, cidrs),
    }
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Deny => "Deny",
        Action::Warn => "Warn",
        Action::Audit => "Audit",
    }
}

fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec})
}

/// A binding of the policy `name` to every namespace the webhook's configurations send (all but
/// kube-system), with these `validationActions` (validating policies).
fn binding(kind: &str, name: &str, action: Option<&str>) -> Value {
    let mut spec = json!({
        "policyName": name,
        "matchResources": {"namespaceSelector": {"matchExpressions": [{
            "key": crate::cluster::NAMESPACE_NAME_LABEL,
            "operator": "NotIn",
            "values": [CONTROL_PLANE_NAMESPACE],
        }]}},
    });
    if let Some(action) = action {
        spec["validationActions"] = json!([action]);
    }
    object(kind, name, spec)
}

/// What both kinds of policy share: Service writes of these `operations`, and only where the
/// policy may act: the webhook's own match conditions (`conditions`: outside the exempt
/// namespaces, and a superset of the requests the engine acts on, so leaving the others out
/// changes no answer and spares the API server the variables and tables of every other write).
fn common_spec(
    operations: &[&str],
    conditions: Vec<(&str, Cel)>,
    variables: Vec<(String, String)>,
) -> Value {
    let variables: Vec<Value> = variables
        .into_iter()
        .map(|(name, expression)| json!({"name": name, "expression": expression}))
        .collect();
    let mut spec = json!({
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": [{
            "apiGroups": [""], "apiVersions": ["v1"],
            "operations": operations, "resources": ["services"],
        }]},
        "variables": variables,
    });
    let conditions: Vec<Value> = conditions
        .into_iter()
        .filter(|(_, c)| *c != Cel::Const(true))
        .map(|(name, c)| json!({"name": name, "expression": c.render()}))
        .collect();
    if !conditions.is_empty() {
        spec["matchConditions"] = json!(conditions);
    }
    spec
}

/// `rule` covers the Service `object` names: `match` and not `exclude`.
fn applies(rule: &Rule, object: Object) -> Cel {
    Cel::all([
        matches(&rule.match_, object),
        rule.exclude
            .as_ref()
            .map_or(Cel::Const(true), |e| matches(e, object).not()),
    ])
}

fn update() -> Cel {
    Cel::atom("request.operation == 'UPDATE'")
}

// === the mutating policy ===

/// Where the mutating policy learns the cluster's families.
#[derive(Clone, Copy)]
enum Ranges<'a> {
    /// Fixed when exported (`None`: unknown, as the webhook decides without them).
    Given(Option<&'a ServiceCidrs>),
    /// Read at admission from the binding's param, the `kubernetes` ServiceCIDR (rules §7).
    Param,
}

/// The CREATE defaults alone as a MutatingAdmissionPolicy spec whose tables are chosen at
/// admission by the families of its param, the `kubernetes` ServiceCIDR (rules §7): what `serve
/// --register-webhooks` registers beside the webhook, so that a create the defaults complete
/// needs no call (the webhook's `may-patch` condition then no longer holds). Creates only; the
/// webhook's conditions are the first test of `createLike`. `failurePolicy:
/// Ignore`: a policy that cannot run leaves the fields unset, and the webhook, called for them,
/// sets them. `None` when the policy sets no defaults.
pub fn in_process_defaults(policy: &Policy) -> Option<Value> {
    let mut spec = mutating(policy, Ranges::Param)?;
    spec["failurePolicy"] = json!("Ignore");
    spec["paramKind"] = json!({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR"});
    Some(spec)
}

/// The clusters the `Param` tables are made for, by the key the CEL computes from the param's
/// CIDRs (their families, primary first; `''` where it is unusable: the webhook's unknown ranges).
fn shapes() -> Vec<(String, Option<ServiceCidrs>)> {
    let known = ServiceCidrs::every_shape().into_iter().map(|c| {
        let families: Vec<&str> = c.families().iter().map(|f| f.as_str()).collect();
        (families.join(","), Some(c))
    });
    std::iter::once((String::new(), None))
        .chain(known)
        .collect()
}

/// The param's shape key: its CIDRs' families, `''` while it is being deleted (the allocator no
/// longer uses it) or has none.
const PARAM_SHAPE: &str = "has(params.spec) && has(params.spec.cidrs) && \
     !has(params.metadata.deletionTimestamp) ? \
     params.spec.cidrs.map(c, c.contains(':') ? 'IPv6' : 'IPv4').join(',') : ''";

/// The MutatingAdmissionPolicy's spec: CREATE defaults (the engine's, per state, for the defaults
/// that apply: those of the first matching rule with defaults, field by field over the policy's)
/// and, for given ranges, the update protection; `None` when the policy has neither.
fn mutating(policy: &Policy, ranges: Ranges<'_>) -> Option<Value> {
    let (new, old) = (Object::New, Object::Old);
    let global = &policy.defaults;
    let with_defaults: Vec<(&Rule, Defaults)> = policy
        .rules
        .iter()
        .filter_map(|r| {
            let d = r.defaults.as_ref()?;
            let effective = Defaults {
                ip_family_policy: d.ip_family_policy.or(global.ip_family_policy),
                ip_families: d.ip_families.clone().or(global.ip_families.clone()),
            };
            Some((r, effective))
        })
        .collect();
    let defaults: Vec<&Defaults> = std::iter::once(global)
        .chain(with_defaults.iter().map(|(_, d)| d))
        .collect();
    // Per branch, the fills for one cluster.
    let tables = |cidrs: Option<&ServiceCidrs>| -> Vec<BTreeMap<String, String>> {
        defaults.iter().map(|d| states::fills(d, cidrs)).collect()
    };
    // The table of the branch taken: a conditional builds only the map it picks (a list or a map
    // of them would build every table on every request).
    let pick = |fills: &[BTreeMap<String, String>]| {
        let maps: Vec<String> = fills.iter().map(states::map_literal).collect();
        // Branch 0 (the policy's own defaults) is always there; the last one is the fallback.
        let Some((last, others)) = maps.split_last() else {
            return String::from("{}");
        };
        others
            .iter()
            .enumerate()
            .rev()
            .fold(last.clone(), |other, (i, map)| {
                format!("variables.branch == {i} ? {map} : {other}")
            })
    };
    let (fills, restore) = match ranges {
        Ranges::Given(cidrs) => {
            let fills = tables(cidrs);
            let restore = policy.restore_dropped_fields;
            if fills.iter().all(BTreeMap::is_empty) && !restore {
                return None;
            }
            (
                pick(&fills),
                restore.then(|| restore::restore(policy, cidrs)),
            )
        }
        Ranges::Param => {
            let by_shape: Vec<(String, String)> = shapes()
                .into_iter()
                .map(|(key, cidrs)| (key, tables(cidrs.as_ref())))
                .filter(|(_, fills)| !fills.iter().all(BTreeMap::is_empty))
                .map(|(key, fills)| (key, pick(&fills)))
                .collect();
            if by_shape.is_empty() {
                return None;
            }
            let fills = by_shape
                .iter()
                .rev()
                .fold("{}".to_owned(), |other, (key, fills)| {
                    format!("variables.shape == {} ? ({fills}) : {other}", quote(key))
                });
            (fills, None)
        }
    };
    // The first matching rule with defaults, else the policy's (branch 0).
    let mut branch = String::from("0");
    for (i, (rule, _)) in with_defaults.iter().enumerate().rev() {
        let test = applies(rule, new).render();
        branch = format!("({test}) ? {} : {branch}", i + 1);
    }
    let (create_like, operations, conditions) = match ranges {
        Ranges::Given(_) => (
            Cel::all([
                new.type_in(&WITH_IPS),
                Cel::any([
                    Cel::atom("request.operation == 'CREATE'"),
                    // An ExternalName Service becoming another type is allocated like a create
                    // (R4.1).
                    Cel::all([update(), old.type_in(&[ServiceType::ExternalName])]),
                ]),
            ]),
            &["CREATE", "UPDATE"][..],
            vec![
                ("not-exempt", not_exempt(policy)),
                ("may-patch", may_patch(policy)),
            ],
        ),
        // Beside the webhook: creates only (the rare conversion from ExternalName is the
        // webhook's), and the match conditions as the first test of the one expression, where
        // they cost no evaluation of their own (each match condition costs the API server about
        // 0.05 ms, measured by `make bench-e2e`).
        Ranges::Param => (
            Cel::all([
                Cel::atom("request.operation == 'CREATE'"),
                not_exempt(policy),
                may_patch(policy),
                new.type_in(&WITH_IPS),
            ]),
            &["CREATE"][..],
            Vec::new(),
        ),
    };
    let mut variables = Vec::new();
    if let Ranges::Param = ranges {
        variables.push(("shape".to_owned(), PARAM_SHAPE.to_owned()));
    }
    variables.extend([
        ("key".to_owned(), states::key(new, Key::Long)),
        ("branch".to_owned(), branch),
        ("fills".to_owned(), fills),
        (
            "fill".to_owned(),
            "variables.key in variables.fills ? variables.fills[variables.key] : ['', '']"
                .to_owned(),
        ),
        ("createLike".to_owned(), create_like.render()),
    ]);
    let add = |path: &str, value: &str| {
        format!("[JSONPatch{{op: \"add\", path: \"/spec/{path}\", value: {value}}}]")
    };
    let defaults = format!(
        "(variables.fill[0] == '' ? [] : {}) + (variables.fill[1] == '' ? [] : {})",
        add("ipFamilyPolicy", "variables.fill[0]"),
        add("ipFamilies", "variables.fill[1].split(',')"),
    );
    let expression = match restore {
        None => format!("variables.createLike ? {defaults} : []"),
        Some((restore_policy, restore_families)) => {
            variables.extend([
                ("restorePolicy".to_owned(), restore_policy.render()),
                ("restoreFamilies".to_owned(), restore_families.render()),
            ]);
            format!(
                "variables.createLike ? ({defaults}) \
                 : ((variables.restorePolicy ? {} : []) + (variables.restoreFamilies ? {} : []))",
                add("ipFamilyPolicy", "string(oldObject.spec.ipFamilyPolicy)"),
                // A list read from `oldObject` is `list(dyn)`, which a JSONPatch value cannot take.
                add(
                    "ipFamilies",
                    "oldObject.spec.ipFamilies.join(',').split(',')"
                ),
            )
        }
    };
    let mut spec = common_spec(operations, conditions, variables);
    spec["reinvocationPolicy"] = json!("Never");
    spec["mutations"] =
        json!([{"patchType": "JSONPatch", "jsonPatch": {"expression": expression}}]);
    Some(spec)
}

// === the validating policies ===

/// The ValidatingAdmissionPolicy whose binding takes `action`: every rule's findings that act so
/// (grandfathered Deny and Warn findings are warnings, as the webhook's); `None` if there are none.
fn validating(policy: &Policy, findings: &[states::Findings], action: Action) -> Option<Value> {
    let (new, old) = (Object::New, Object::Old);
    let mut variables = vec![
        ("newIPs".to_owned(), new.type_in(&WITH_IPS).render()),
        (
            "oldIPs".to_owned(),
            Cel::all([update(), old.type_in(&WITH_IPS)]).render(),
        ),
        ("newKey".to_owned(), states::key(new, Key::Short)),
        (
            "oldKey".to_owned(),
            format!("variables.oldIPs ? {} : ''", states::key(old, Key::Short)),
        ),
        ("name".to_owned(), display_name()),
    ];
    let mut validations = Vec::new();
    for (i, (rule, found)) in policy.rules.iter().zip(findings).enumerate() {
        let acts = policy.action_of(rule);
        let scope = format!("rule{i}");
        let mut used = false;
        for (k, kind) in states::KINDS.iter().enumerate() {
            if found.denials[k].is_empty() {
                continue;
            }
            let checks = checks(acts, action, found, k);
            for (suffix, texts, grandfathered) in checks {
                let map = format!("rule{i}{}{suffix}", camel(kind));
                variables.push((map.clone(), states::map_literal(&quoted(texts))));
                let old_too = match grandfathered {
                    None => String::new(),
                    Some(true) => {
                        format!(" && variables.oldIPs && variables.oldKey in variables.{map}")
                    }
                    Some(false) => {
                        format!(" && !(variables.oldIPs && variables.oldKey in variables.{map})")
                    }
                };
                let text = format!("variables.{map}[variables.newKey]");
                validations.push(json!({
                    "expression": format!("!(variables.{scope} && variables.newKey in variables.{map}{old_too})"),
                    "messageExpression": message(action, &found.before_name, &text),
                    // The webhook's denials are 403 Forbidden; a policy's default would be 422.
                    "reason": "Forbidden",
                }));
                used = true;
            }
        }
        if used {
            let test = Cel::any([
                applies(rule, new),
                Cel::all([Cel::atom("variables.oldIPs"), applies(rule, old)]),
            ]);
            let test = Cel::all([Cel::atom("variables.newIPs"), test]);
            variables.push((scope, test.render()));
        }
    }
    if validations.is_empty() {
        return None;
    }
    let conditions = vec![
        ("not-exempt", not_exempt(policy)),
        ("may-find", may_find(policy)),
    ];
    let mut spec = common_spec(&["CREATE", "UPDATE"], conditions, variables);
    spec["validations"] = json!(validations);
    Some(spec)
}

/// The checks of one rule's kind of violation in the policy of `action`, when the rule acts as
/// `acts`: (variable suffix, texts by state, grandfathered: `None` either way, `Some(b)` only
/// where the stored object broke it too (`b`) or not).
type Check<'a> = (&'static str, &'a BTreeMap<String, String>, Option<bool>);

fn checks(acts: Action, action: Action, found: &states::Findings, k: usize) -> Vec<Check<'_>> {
    match (acts, action) {
        (Action::Deny, Action::Deny) => vec![("", &found.denials[k], Some(false))],
        (Action::Deny, Action::Warn) => vec![("", &found.grandfathered[k], Some(true))],
        (Action::Warn, Action::Warn) => vec![
            ("", &found.warnings[k], Some(false)),
            ("Grandfathered", &found.grandfathered[k], Some(true)),
        ],
        (Action::Audit, Action::Audit) => vec![("", &found.denials[k], None)],
        _ => Vec::new(),
    }
}

fn quoted(texts: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    texts.iter().map(|(k, v)| (k.clone(), quote(v))).collect()
}

/// `ip-family-policy` → `IpFamilyPolicy`.
fn camel(kind: &str) -> String {
    kind.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The message: a denial's or an audit's, as the webhook's denial reads; a warning as its
/// warnings read, cut to the same length.
fn message(action: Action, before_name: &str, text: &str) -> String {
    match action {
        Action::Deny | Action::Audit => {
            format!("{} + variables.name + {text}", quote(before_name))
        }
        Action::Warn => {
            let full = format!("('Service \"' + variables.name + '\": ' + {text})");
            let max = crate::domain::engine::MAX_WARNING_CHARS;
            format!(
                "size({full}) <= {max} ? {full} : {full}.substring(0, {}) + '…'",
                max - 1
            )
        }
    }
}

/// `namespace/name`, as the webhook names a Service (`generateName*` before it has a name).
fn display_name() -> String {
    let (name, generate) = ("object.metadata.name", "object.metadata.generateName");
    format!(
        "request.namespace + '/' + (has({name}) && {name} != '' ? {name} : \
         has({generate}) && {generate} != '' ? {generate} + '*' : '')"
    )
}

#[cfg(test)]
mod tests;
