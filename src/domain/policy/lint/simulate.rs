//! The lint's checks that run the real engine and the model of the API server: requirements a
//! cluster cannot judge or meet, and defaults that a rule then flags.

use std::mem::{Discriminant, discriminant};

use crate::cluster::{Cluster, NAMESPACE_NAME_LABEL, ServiceCidrs};
use crate::domain::apiserver_model;
use crate::domain::engine::{self, Mutation, Operation, Request, Violation};
use crate::domain::policy::{Action, LabelSelector, Match, Policy, Require, Rule};
use crate::domain::service::{
    IpFamily, IpFamilyPolicy, Labels, Metadata, Selector, Service, ServiceSpec, ServiceType,
};

use super::{LintFinding, warning};

/// The clusters to simulate: the given one, or every shape.
struct Shapes {
    all: Vec<ServiceCidrs>,
    given: bool,
}

impl Shapes {
    fn of(cidrs: Option<&ServiceCidrs>) -> Self {
        match cidrs {
            Some(c) => Self {
                all: vec![c.clone()],
                given: true,
            },
            None => Self {
                all: ServiceCidrs::every_shape(),
                given: false,
            },
        }
    }

    /// `on this IPv4-only cluster (10.96.0.0/16)`, `on IPv4-only and IPv6-only clusters`, `on
    /// every shape of cluster`.
    fn on(&self, which: &[usize]) -> String {
        if self.given {
            return format!("on {}", this_cluster(&self.all[0]));
        }
        if which.len() == self.all.len() {
            return "on every shape of cluster".to_owned();
        }
        let names: Vec<&str> = which.iter().map(|i| shape_name(&self.all[*i])).collect();
        let list = match names.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        };
        format!("on {list} clusters")
    }
}

fn shape_name(c: &ServiceCidrs) -> &'static str {
    match (c.primary(), c.is_dual()) {
        (IpFamily::IPv4, false) => "IPv4-only",
        (IpFamily::IPv6, false) => "IPv6-only",
        (IpFamily::IPv4, true) => "dual-stack IPv4-primary",
        (IpFamily::IPv6, true) => "dual-stack IPv6-primary",
    }
}

fn this_cluster(c: &ServiceCidrs) -> String {
    let ranges: Vec<String> = c.nets().iter().map(ToString::to_string).collect();
    format!("this {} cluster ({})", shape_name(c), ranges.join(","))
}

/// Requirements the given cluster cannot judge (the engine skips them there), when its ranges are
/// given: a rule that allows only RequireDualStack on a single-stack cluster, a primary family the
/// cluster lacks, `dualStack: true` on a single-stack cluster.
pub(super) fn not_judged(policy: &Policy, cidrs: Option<&ServiceCidrs>) -> Vec<LintFinding> {
    let Some(c) = cidrs else {
        return Vec::new();
    };
    let here = this_cluster(c);
    let mut out = Vec::new();
    for (i, rule) in policy.rules.iter().enumerate() {
        let at = format!("rules[{i}].require");
        let require = &rule.require;
        if let Some(allowed) = &require.ip_family_policies
            && !c.is_dual()
            && allowed
                .iter()
                .all(|p| *p == IpFamilyPolicy::RequireDualStack)
        {
            // R3.13 refuses RequireDualStack on a single-stack cluster.
            out.push(warning(
                format!("{at}.ipFamilyPolicies"),
                format!(
                    "RequireDualStack, the only policy allowed, is refused on {here}: not judged \
                     there"
                ),
            ));
        }
        if let Some(family) = require.primary_family.filter(|f| !c.has(*f)) {
            out.push(warning(
                format!("{at}.primaryFamily"),
                format!("{here} has no {family}: not judged there"),
            ));
        }
        if require.dual_stack == Some(true) && !c.is_dual() {
            out.push(warning(
                format!("{at}.dualStack"),
                format!("{here} has one IP family: not judged there"),
            ));
        }
    }
    out
}

/// Rules that flag every Service the API server would store on a cluster: no choice of
/// `ipFamilyPolicy` and `ipFamilies` meets all of their requirements there.
pub(super) fn unsatisfiable(policy: &Policy, cidrs: Option<&ServiceCidrs>) -> Vec<LintFinding> {
    let shapes = Shapes::of(cidrs);
    let mut out = Vec::new();
    for (i, rule) in policy.rules.iter().enumerate() {
        if rule.require == Require::default() {
            continue;
        }
        let probe = only_requirements_of(rule);
        let failing: Vec<usize> = (0..shapes.all.len())
            .filter(|s| !candidates().any(|spec| meets(&probe, &shapes.all[*s], spec)))
            .collect();
        if !failing.is_empty() {
            out.push(warning(
                format!("rules[{i}].require"),
                format!(
                    "cannot be met {}: the rule flags every Service there",
                    shapes.on(&failing)
                ),
            ));
        }
    }
    out
}

/// A policy of this rule's requirements alone, applying to every Service.
fn only_requirements_of(rule: &Rule) -> Policy {
    Policy {
        api_version: super::API_VERSION.to_owned(),
        kind: super::KIND.to_owned(),
        rules: vec![Rule {
            name: rule.name.clone(),
            match_: Match::default(),
            exclude: None,
            require: rule.require.clone(),
            defaults: None,
            upgrade_existing: false,
            action: Action::Deny,
        }],
        ..Policy::default()
    }
}

/// Every choice of the dual-stack fields a client can make for a plain ClusterIP Service.
fn candidates() -> impl Iterator<Item = ServiceSpec> {
    use IpFamily::{IPv4, IPv6};
    let policies = [
        None,
        Some(IpFamilyPolicy::SingleStack),
        Some(IpFamilyPolicy::PreferDualStack),
        Some(IpFamilyPolicy::RequireDualStack),
    ];
    let families: [Option<&[IpFamily]>; 5] = [
        None,
        Some(&[IPv4]),
        Some(&[IPv6]),
        Some(&[IPv4, IPv6]),
        Some(&[IPv6, IPv4]),
    ];
    policies.into_iter().flat_map(move |p| {
        families.into_iter().map(move |f| {
            Mutation {
                ip_family_policy: p,
                ip_families: f.map(<[_]>::to_vec),
            }
            .apply(&ServiceSpec {
                type_: Some(ServiceType::ClusterIP.as_str().to_owned()),
                selector: Selector::Labels,
                ..ServiceSpec::default()
            })
        })
    })
}

/// Whether the API server stores `spec` on the cluster and the policy then flags nothing.
fn meets(policy: &Policy, cidrs: &ServiceCidrs, spec: ServiceSpec) -> bool {
    let Ok(stored) = apiserver_model::create(&spec, cidrs) else {
        return false;
    };
    let svc = Service {
        metadata: Metadata::default(),
        spec: Some(stored),
    };
    let req = Request {
        operation: Operation::Create,
        namespace: "lint",
        object: Some(&svc),
        old_object: None,
    };
    let cluster = Cluster::with_cidrs(Some(cidrs.clone()));
    engine::validate(policy, &cluster, &req).findings.is_empty()
}

/// A Service in a rule's scope: a namespace its globs match, labels its selectors match, its first
/// type that is judged, and no dual-stack field set.
struct Example {
    namespace: String,
    namespace_labels: Labels,
    labels: Labels,
    type_: ServiceType,
}

impl Example {
    /// The first candidate in the rule's scope (not exempt, not excluded), if one is found.
    fn of(policy: &Policy, rule: &Rule) -> Option<Self> {
        let m = &rule.match_;
        let mut namespace_labels = m
            .namespace_selector
            .as_ref()
            .map(LabelSelector::example)
            .unwrap_or_default();
        // The API server's own label: the name, which the cluster snapshot adds by itself.
        let named = namespace_labels.remove(NAMESPACE_NAME_LABEL);
        let labels = m
            .object_selector
            .as_ref()
            .map(LabelSelector::example)
            .unwrap_or_default();
        let mut names: Vec<String> = named.into_iter().collect();
        for glob in m.namespaces.iter().flatten() {
            for fill in ["x", "y0"] {
                names.push(glob.replace('*', fill).replace('?', "x"));
            }
        }
        names.extend(["default", "x", "apps"].map(str::to_owned));
        let judged = [
            ServiceType::ClusterIP,
            ServiceType::NodePort,
            ServiceType::LoadBalancer,
        ];
        let types: Vec<ServiceType> = m
            .types
            .as_deref()
            .unwrap_or(&judged)
            .iter()
            .copied()
            .filter(|t| *t != ServiceType::ExternalName)
            .collect();
        names
            .into_iter()
            .flat_map(|namespace| types.iter().map(move |t| (namespace.clone(), *t)))
            .map(|(namespace, type_)| Self {
                namespace,
                namespace_labels: namespace_labels.clone(),
                labels: labels.clone(),
                type_,
            })
            .find(|ex| !policy.is_exempt(&ex.namespace) && ex.in_scope_of(rule))
    }

    fn in_scope_of(&self, rule: &Rule) -> bool {
        let cluster = self.cluster(None);
        let ns_labels = cluster.namespace_labels(&self.namespace);
        rule.applies(&self.namespace, &ns_labels, &self.labels, Some(self.type_))
    }

    fn cluster(&self, cidrs: Option<&ServiceCidrs>) -> Cluster {
        let mut cluster = Cluster::with_cidrs(cidrs.cloned());
        cluster
            .namespaces
            .insert(self.namespace.clone(), self.namespace_labels.clone());
        cluster
    }

    fn service(&self) -> Service {
        Service {
            metadata: Metadata {
                name: "lint-example".to_owned(),
                namespace: self.namespace.clone(),
                labels: self.labels.clone(),
                ..Metadata::default()
            },
            spec: Some(ServiceSpec {
                type_: Some(self.type_.as_str().to_owned()),
                selector: Selector::Labels,
                ..ServiceSpec::default()
            }),
        }
    }

    /// The paths of the defaults the engine applies to this Service: the first rule in scope with
    /// defaults overrides `defaults` field by field.
    fn defaults_paths(&self, policy: &Policy) -> [String; 2] {
        let rule = policy
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.defaults.is_some() && self.in_scope_of(r));
        let path = |field: &str, set: &dyn Fn(&Rule) -> bool| match rule {
            Some((k, r)) if set(r) => format!("rules[{k}].defaults.{field}"),
            _ => format!("defaults.{field}"),
        };
        [
            path("ipFamilyPolicy", &|r| {
                r.defaults
                    .as_ref()
                    .is_some_and(|d| d.ip_family_policy.is_some())
            }),
            path("ipFamilies", &|r| {
                r.defaults.as_ref().is_some_and(|d| d.ip_families.is_some())
            }),
        ]
    }
}

/// One rule flagging what one defaults field created, on some shapes of cluster.
struct Flagged {
    field: String,
    rule: String,
    kind: Discriminant<Violation>,
    example: String,
    short: String,
    shapes: Vec<usize>,
}

/// Defaults (the policy's or a rule's) that a rule then flags: for a Service with no dual-stack
/// field in each rule's scope, the engine's patch (`/mutate`), the API server's stored object (the
/// model) and the engine's judgement of it (`/validate`), on each shape of cluster.
pub(super) fn defaults_flagged(policy: &Policy, cidrs: Option<&ServiceCidrs>) -> Vec<LintFinding> {
    let shapes = Shapes::of(cidrs);
    let mut flagged: Vec<Flagged> = Vec::new();
    for rule in &policy.rules {
        let Some(ex) = Example::of(policy, rule) else {
            continue;
        };
        let paths = ex.defaults_paths(policy);
        let svc = ex.service();
        for (s, shape) in shapes.all.iter().enumerate() {
            let cluster = ex.cluster(Some(shape));
            let create = Request {
                operation: Operation::Create,
                namespace: &ex.namespace,
                object: Some(&svc),
                old_object: None,
            };
            let mutation = engine::mutate(policy, &cluster, &create).mutation;
            if mutation.is_empty() {
                continue; // nothing the policy's defaults created
            }
            let Ok(stored) = apiserver_model::create(&mutation.apply(svc.spec()), shape) else {
                continue; // never: the engine asks the model before it patches
            };
            let after = Service {
                spec: Some(stored),
                ..svc.clone()
            };
            let judged = Request {
                object: Some(&after),
                ..create
            };
            for finding in engine::validate(policy, &cluster, &judged).findings {
                let (field, unset) = responsible(&finding.violation, &mutation, &paths);
                let kind = discriminant(&finding.violation);
                match flagged
                    .iter_mut()
                    .find(|f| f.field == field && f.rule == finding.rule && f.kind == kind)
                {
                    Some(f) if !f.shapes.contains(&s) => f.shapes.push(s),
                    Some(_) => {}
                    None => flagged.push(Flagged {
                        field,
                        rule: finding.rule,
                        kind,
                        example: format!("a {} in namespace {:?}", ex.type_, ex.namespace),
                        short: format!("{}{unset}", finding.violation.short()),
                        shapes: vec![s],
                    }),
                }
            }
        }
    }
    flagged
        .into_iter()
        .map(|f| {
            warning(
                f.field,
                format!(
                    "rule {:?} flags the Services these defaults create ({}) {}: {}",
                    f.rule,
                    f.example,
                    shapes.on(&f.shapes),
                    f.short
                ),
            )
        })
        .collect()
}

/// The defaults field behind a violation: `ipFamilies` for a wrong primary family,
/// `ipFamilyPolicy` for the rest; with a note when that field is unset and the API server chose.
fn responsible(
    violation: &Violation,
    mutation: &Mutation,
    paths: &[String; 2],
) -> (String, &'static str) {
    let [policy, families] = paths;
    if matches!(violation, Violation::WrongPrimaryFamily { .. }) {
        let note = match mutation.ip_families {
            Some(_) => "",
            None => " (unset: the API server picks the cluster's primary family)",
        };
        return (families.clone(), note);
    }
    let note = match mutation.ip_family_policy {
        Some(_) => "",
        None => " (unset: the API server sets SingleStack)",
    };
    (policy.clone(), note)
}
