//! The engine's answers as CEL tables. What `/mutate` sets on CREATE and what `/validate` finds
//! depend, beyond a rule's scope, on a few dual-stack fields of one object only: the policy, the
//! families, the shape of the cluster IPs and whether there is a selector. Those fields take few
//! values, so each combination (a [`State`]) is given to the engine itself, and its answers become
//! CEL maps keyed by the state, which an expression ([`key`]) computes from the object. The
//! exported policies do what the engine does, because the engine decided every entry.

use std::collections::BTreeMap;

use serde_json::json;

use crate::cluster::{Cluster, ServiceCidrs};
use crate::domain::engine::{self, Denial, DenialMessage, Finding, Operation, Request, Violation};
use crate::domain::policy::{Action, Defaults, Match, Policy, Rule};
use crate::domain::service::{IpFamily, Service};

use super::super::{Object, quote};

/// `ipFamilyPolicy` as stored; `''` is unset (values the API server refuses are not states: no
/// entry, so nothing is patched or found, as the engine leaves them to the API server).
const POLICIES: [&str; 4] = ["", "SingleStack", "PreferDualStack", "RequireDualStack"];
/// `ipFamilies`, joined by `,`.
const FAMILIES: [&str; 5] = ["", "IPv4", "IPv6", "IPv4,IPv6", "IPv6,IPv4"];
/// `clusterIPs` (else `[clusterIP]`), each as `None` or its family, joined by `,`.
const IPS: [&str; 6] = ["", "None", "IPv4", "IPv6", "IPv4,IPv6", "IPv6,IPv4"];

/// One combination of the fields the engine's decisions read.
#[derive(Clone, Copy, Debug)]
pub(super) struct State {
    policy: &'static str,
    families: &'static str,
    ips: &'static str,
    selector: bool,
}

impl State {
    /// Every state.
    fn all() -> impl Iterator<Item = State> {
        POLICIES.into_iter().flat_map(|policy| {
            FAMILIES.into_iter().flat_map(move |families| {
                IPS.into_iter().flat_map(move |ips| {
                    [false, true].into_iter().map(move |selector| State {
                        policy,
                        families,
                        ips,
                        selector,
                    })
                })
            })
        })
    }

    /// The state's key, as [`key`] computes it from an object: with the shape of the cluster IPs
    /// (`Long`) or without (`Short`, what judging reads).
    fn key(self, form: Key) -> String {
        // The selector matters only to a headless Service (R3.6, R3.12).
        let headless = self.ips.starts_with("None") && !self.selector;
        let h = if headless { "h" } else { "" };
        match form {
            Key::Long => format!("{}|{}|{}|{h}", self.policy, self.families, self.ips),
            Key::Short => format!("{}|{}|{h}", self.policy, self.families),
        }
    }

    /// A ClusterIP Service in this state, its IPs inside the cluster's ranges where it has them.
    fn service(self, cidrs: Option<&ServiceCidrs>) -> Service {
        let ip = |family: &str| match family {
            "IPv4" => ip_of(IpFamily::IPv4, cidrs, "10.0.0.10"),
            "IPv6" => ip_of(IpFamily::IPv6, cidrs, "fd00::10"),
            other => other.to_owned(),
        };
        let split = |s: &str| -> Vec<String> {
            s.split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let mut spec = json!({"type": "ClusterIP"});
        if !self.policy.is_empty() {
            spec["ipFamilyPolicy"] = json!(self.policy);
        }
        if !self.families.is_empty() {
            spec["ipFamilies"] = json!(split(self.families));
        }
        let ips: Vec<String> = split(self.ips).iter().map(|f| ip(f)).collect();
        if let Some(first) = ips.first() {
            spec["clusterIP"] = json!(first);
            spec["clusterIPs"] = json!(ips);
        }
        if self.selector {
            spec["selector"] = json!({"app": "a"});
        }
        let object = json!({"metadata": {"name": "a", "namespace": "a"}, "spec": spec});
        // The value is built above from the fields' own types: reading it back cannot fail.
        serde_json::from_value(object).unwrap_or_default()
    }
}

/// The CREATE of `service` in namespace `a` (the scope is the expressions', not the engine's).
fn create(service: &Service) -> Request<'_> {
    Request {
        operation: Operation::Create,
        namespace: "a",
        object: Some(service),
        old_object: None,
    }
}

/// An address of `family` inside the cluster's range (where it has one), else `fallback`.
fn ip_of(family: IpFamily, cidrs: Option<&ServiceCidrs>, fallback: &str) -> String {
    cidrs
        .and_then(|c| c.range_of(family))
        .and_then(|net| net.hosts().nth(10))
        .map_or_else(|| fallback.to_owned(), |ip| ip.to_string())
}

/// How much of a [`State`] a key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Key {
    /// Everything: what `/mutate` reads.
    Long,
    /// Without the shape of the cluster IPs: what `/validate` reads.
    Short,
}

/// The CEL that computes `object`'s [`State`] key (every read guarded: `has()` first).
pub(super) fn key(object: Object, form: Key) -> String {
    let spec = |field: &str| object.spec(field);
    let (policy, families) = (spec("ipFamilyPolicy"), spec("ipFamilies"));
    let (ip, ips, selector) = (spec("clusterIP"), spec("clusterIPs"), spec("selector"));
    let shape = match form {
        Key::Long => format!(
            "(has({ips}) && size({ips}) > 0 ? {ips} : has({ip}) && {ip} != '' ? [{ip}] : [])\
             .map(a, a == 'None' ? 'None' : !isIP(a) ? '?' : ip(a).family() == 4 ? 'IPv4' : 'IPv6')\
             .join(',') + '|' + "
        ),
        Key::Short => String::new(),
    };
    format!(
        "(has({policy}) ? {policy} : '') + '|' + (has({families}) ? {families}.join(',') : '') + '|' + \
         {shape}(has({ip}) && {ip} == 'None' && !(has({selector}) && size({selector}) > 0) ? 'h' : '')"
    )
}

/// A CEL map literal.
pub(super) fn map_literal<V: AsRef<str>>(entries: &BTreeMap<String, V>) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}: {}", quote(k), v.as_ref()))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// What `/mutate` sets on CREATE with these defaults, per state: `[ipFamilyPolicy, ipFamilies]`
/// (CEL strings, `''` where it sets nothing; the families joined by `,`). States it leaves alone
/// are not listed.
pub(super) fn fills(defaults: &Defaults, cidrs: Option<&ServiceCidrs>) -> BTreeMap<String, String> {
    let policy = Policy {
        defaults: defaults.clone(),
        ..Policy::default()
    };
    let cluster = Cluster::with_cidrs(cidrs.cloned());
    let mut out = BTreeMap::new();
    for state in State::all() {
        let service = state.service(cidrs);
        let request = create(&service);
        let m = engine::mutate(&policy, &cluster, &request).mutation;
        if m.is_empty() {
            continue;
        }
        let families: Vec<&str> = m.ip_families.iter().flatten().map(|f| f.as_str()).collect();
        let value = format!(
            "[{}, {}]",
            quote(m.ip_family_policy.map_or("", |p| p.as_str())),
            quote(&families.join(","))
        );
        out.insert(state.key(Key::Long), value);
    }
    out
}

/// The four kinds of [`Violation`], in their order of declaration.
pub(super) const KINDS: [&str; 4] = [
    "ip-family-policy",
    "primary-family",
    "dual-stack",
    "single-stack",
];

fn kind(v: &Violation) -> usize {
    match v {
        Violation::PolicyNotAllowed { .. } => 0,
        Violation::WrongPrimaryFamily { .. } => 1,
        Violation::NotDualStack { .. } => 2,
        Violation::NotSingleStack { .. } => 3,
    }
}

/// What the Service's name stands in for in a rendered denial.
const NAME_MARK: &str = "NAME";

/// The findings of `rule` per kind: for each state in which the engine finds a violation of that
/// kind, the text that follows the Service's name in the denial (`" violates … rule "r": …`), and
/// the warning after `Service "…": ` (as a grandfathered finding where `grandfathered`).
pub(super) struct Findings {
    /// The denial's text before the Service's name (`Service "`).
    pub(super) before_name: String,
    /// Per kind: state key → denial text after the name.
    pub(super) denials: [BTreeMap<String, String>; 4],
    /// Per kind: state key → warning, as a Warn finding.
    pub(super) warnings: [BTreeMap<String, String>; 4],
    /// Per kind: state key → warning, as a grandfathered finding.
    pub(super) grandfathered: [BTreeMap<String, String>; 4],
}

/// The engine's [`Findings`] for `rule` on this cluster.
pub(super) fn findings(rule: &Rule, cidrs: Option<&ServiceCidrs>) -> Findings {
    // The rule alone, scoped to every Service (the scope is the expressions'), acting as Deny.
    let policy = Policy {
        rules: vec![Rule {
            match_: Match::default(),
            exclude: None,
            defaults: None,
            upgrade_existing: false,
            action: Action::Deny,
            ..rule.clone()
        }],
        ..Policy::default()
    };
    let cluster = Cluster::with_cidrs(cidrs.cloned());
    let mut out = Findings {
        before_name: String::new(),
        denials: Default::default(),
        warnings: Default::default(),
        grandfathered: Default::default(),
    };
    for state in State::all() {
        let service = state.service(cidrs);
        let request = create(&service);
        for finding in engine::validate(&policy, &cluster, &request).findings {
            let k = kind(&finding.violation);
            let denial = Denial(vec![finding.clone()]);
            let text = DenialMessage {
                name: NAME_MARK,
                denial: &denial,
            }
            .to_string();
            let mark = format!("{NAME_MARK:?}");
            if let Some((before, after)) = text.split_once(&mark) {
                out.before_name = format!("{before}\"");
                out.denials[k].insert(state.key(Key::Short), format!("\"{after}"));
            }
            let as_warning = |action: Action, grandfathered: bool| {
                Finding {
                    action,
                    grandfathered,
                    ..finding.clone()
                }
                .warning()
                .unwrap_or_default()
            };
            out.warnings[k].insert(state.key(Key::Short), as_warning(Action::Warn, false));
            out.grandfathered[k].insert(state.key(Key::Short), as_warning(Action::Warn, true));
        }
    }
    out
}
