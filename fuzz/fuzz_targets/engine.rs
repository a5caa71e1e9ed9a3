//! The policy engine: a policy built from arbitrary choices (or arbitrary YAML text) and arbitrary
//! Services, through `engine::mutate` and `engine::validate`.
//!
//! Beyond "no panic": `/validate` never mutates; a mutation's patch applies; on a cluster whose
//! ranges are known, a Service the API server (its model in `apiserver`) accepts is still accepted
//! after the patch, no patch leaves a request refused, and `/mutate` never denies.
#![no_main]

use arbitrary::Arbitrary;
use dualstack_webhook::domain::apiserver_model;
use dualstack_webhook::domain::engine::{self, MAX_WARNING_CHARS, Operation, Request};
use dualstack_webhook::domain::policy::Policy;
use dualstack_webhook::domain::service::{Metadata, Selector, Service, ServiceSpec};
use dualstack_webhook_fuzz::{cluster, patched_spec};
use libfuzzer_sys::fuzz_target;

const IPS: [&str; 8] = [
    "10.96.0.10",
    "10.96.0.11",
    "fd00:10:96::10",
    "fd00:10:96::11",
    "10.200.0.1",
    "None",
    "",
    "::ffff:10.96.0.12",
];
const FAMILIES: [&str; 3] = ["IPv4", "IPv6", "ipv4"];
const POLICIES: [&str; 4] = ["SingleStack", "PreferDualStack", "RequireDualStack", "Dual"];
const TYPES: [&str; 5] = [
    "ClusterIP",
    "NodePort",
    "LoadBalancer",
    "ExternalName",
    "Bogus",
];
const NAMESPACES: [&str; 5] = ["apps", "prod-a", "legacy", "kube-system", ""];

/// A value from a pool, or (rarely useful, always allowed) any string.
#[derive(Arbitrary, Debug)]
enum Pick {
    Pool(u8),
    Any(String),
}

impl Pick {
    fn get(&self, pool: &[&str]) -> String {
        match self {
            Pick::Pool(i) => pool[usize::from(*i) % pool.len()].to_owned(),
            Pick::Any(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Spec {
    type_: Option<Pick>,
    cluster_ip: Option<Pick>,
    cluster_ips: Option<Vec<Pick>>,
    ip_families: Option<Vec<Pick>>,
    ip_family_policy: Option<Pick>,
    selector: bool,
    labelled: bool,
}

impl Spec {
    fn service(&self, namespace: &str) -> Service {
        let list = |v: &Option<Vec<Pick>>, pool: &[&str]| {
            v.as_ref()
                .map(|v| v.iter().take(3).map(|p| p.get(pool)).collect())
        };
        let spec = ServiceSpec {
            type_: self.type_.as_ref().map(|p| p.get(&TYPES)),
            cluster_ip: self.cluster_ip.as_ref().map(|p| p.get(&IPS)),
            cluster_ips: list(&self.cluster_ips, &IPS),
            ip_families: list(&self.ip_families, &FAMILIES),
            ip_family_policy: self.ip_family_policy.as_ref().map(|p| p.get(&POLICIES)),
            selector: if self.selector {
                Selector::Labels
            } else {
                Selector::Empty
            },
        };
        let mut metadata = Metadata {
            name: "web".into(),
            namespace: namespace.into(),
            ..Metadata::default()
        };
        if self.labelled {
            metadata.labels.insert("app".into(), "web".into());
        }
        Service {
            metadata,
            spec: Some(spec),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct RuleChoice {
    namespaces: Option<Vec<Pick>>,
    ns_selector: Option<(Pick, u8, Vec<Pick>)>,
    object_selector: bool,
    types: Option<Vec<Pick>>,
    require_policies: Option<Vec<Pick>>,
    primary: Option<Pick>,
    dual: Option<bool>,
    defaults: Option<(Option<Pick>, Option<Vec<Pick>>)>,
    upgrade: bool,
    action: u8,
}

#[derive(Arbitrary, Debug)]
enum PolicyChoice {
    Built {
        exempt: Vec<Pick>,
        defaults: (Option<Pick>, Option<Vec<Pick>>),
        rules: Vec<RuleChoice>,
    },
    Yaml(String),
}

fn yaml_list(v: &[Pick], pool: &[&str]) -> String {
    let items: Vec<String> = v
        .iter()
        .take(4)
        .map(|p| format!("{:?}", p.get(pool)))
        .collect();
    format!("[{}]", items.join(", "))
}

fn yaml_defaults((policy, families): &(Option<Pick>, Option<Vec<Pick>>)) -> String {
    let mut out = Vec::new();
    if let Some(p) = policy {
        out.push(format!("ipFamilyPolicy: {:?}", p.get(&POLICIES)));
    }
    if let Some(f) = families {
        out.push(format!("ipFamilies: {}", yaml_list(f, &FAMILIES)));
    }
    format!("{{{}}}", out.join(", "))
}

impl PolicyChoice {
    fn yaml(&self) -> String {
        let (exempt, defaults, rules) = match self {
            PolicyChoice::Yaml(text) => return text.clone(),
            PolicyChoice::Built {
                exempt,
                defaults,
                rules,
            } => (exempt, defaults, rules),
        };
        let mut y = String::from("apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n");
        y += &format!(
            "exemptNamespaces: {}\n",
            yaml_list(exempt, &["kube-system", "prod-*", "?egacy"])
        );
        y += &format!("defaults: {}\nrules:\n", yaml_defaults(defaults));
        for (i, r) in rules.iter().take(4).enumerate() {
            y += &format!("- name: r{i}\n  match:\n");
            if let Some(ns) = &r.namespaces {
                y += &format!(
                    "    namespaces: {}\n",
                    yaml_list(ns, &["prod-*", "apps", "*", "legacy"])
                );
            }
            if let Some((key, op, values)) = &r.ns_selector {
                let op = ["In", "NotIn", "Exists", "DoesNotExist"][usize::from(*op) % 4];
                let key = key.get(&["kubernetes.io/metadata.name", "exposure"]);
                let values = if op.ends_with("Exist") {
                    "[]".to_owned()
                } else {
                    yaml_list(values, &NAMESPACES)
                };
                y += &format!(
                    "    namespaceSelector: {{matchExpressions: [{{key: {key:?}, operator: {op}, values: {values}}}]}}\n"
                );
            }
            if r.object_selector {
                y += "    objectSelector: {matchLabels: {app: web}}\n";
            }
            if let Some(t) = &r.types {
                y += &format!("    types: {}\n", yaml_list(t, &TYPES[..4]));
            }
            y += "  require:\n";
            if let Some(p) = &r.require_policies {
                y += &format!("    ipFamilyPolicies: {}\n", yaml_list(p, &POLICIES[..3]));
            }
            if let Some(p) = &r.primary {
                y += &format!("    primaryFamily: {:?}\n", p.get(&FAMILIES[..2]));
            }
            if let Some(d) = r.dual {
                y += &format!("    dualStack: {d}\n");
            }
            if let Some(d) = &r.defaults {
                y += &format!("  defaults: {}\n", yaml_defaults(d));
            }
            y += &format!("  upgradeExisting: {}\n", r.upgrade);
            y += &format!(
                "  action: {}\n",
                ["Deny", "Warn", "Audit"][usize::from(r.action) % 3]
            );
        }
        y
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    policy: PolicyChoice,
    cluster: Option<u8>,
    operation: u8,
    namespace: Pick,
    object: Option<Spec>,
    old: Option<Spec>,
}

fuzz_target!(|input: Input| {
    let Ok(policy) = Policy::from_yaml(&input.policy.yaml()) else {
        return;
    };
    let (cluster, cidrs) = cluster(input.cluster);
    let namespace = input.namespace.get(&NAMESPACES);
    let operation = [
        Operation::Create,
        Operation::Update,
        Operation::Delete,
        Operation::Connect,
    ][usize::from(input.operation) % 4];
    let object = input.object.as_ref().map(|s| s.service(&namespace));
    // On UPDATE the stored object is what the API server made of the old one. Where it would
    // have refused the old one, the request is still fed to the engine (it must not panic), but
    // the acceptance property is not judged: no such object is ever stored.
    let mut stored_old = true;
    let old = input.old.as_ref().map(|s| {
        let mut svc = s.service(&namespace);
        if let (Some(cidrs), Some(spec)) = (&cidrs, &svc.spec) {
            match apiserver_model::create(spec, cidrs) {
                Ok(stored) => svc.spec = Some(stored),
                Err(_) => stored_old = false,
            }
        }
        svc
    });
    let req = Request {
        operation,
        namespace: &namespace,
        object: object.as_ref(),
        old_object: old.as_ref(),
    };

    let validated = engine::validate(&policy, &cluster, &req);
    assert!(
        validated.mutation.is_empty(),
        "validate mutated: {validated:?}"
    );
    let decision = engine::mutate(&policy, &cluster, &req);
    for w in decision.warnings.iter().chain(&validated.warnings) {
        assert!(
            w.chars().count() <= MAX_WARNING_CHARS,
            "warning too long: {w:?}"
        );
    }
    let Some(object) = &object else {
        assert!(decision.mutation.is_empty());
        return;
    };
    let after = patched_spec(object, &decision.mutation);
    let Some(cidrs) = &cidrs else { return };
    let spec = object.spec();
    let (without, with) = match (operation, &old) {
        (Operation::Create, _) => (
            apiserver_model::create(spec, cidrs),
            apiserver_model::create(&after, cidrs),
        ),
        (Operation::Update, Some(old)) if stored_old => (
            apiserver_model::update(old.spec(), spec, cidrs),
            apiserver_model::update(old.spec(), &after, cidrs),
        ),
        _ => return,
    };
    assert!(decision.denial.is_none(), "mutate denied: {decision:?}");
    if !decision.mutation.is_empty() {
        assert!(
            with.is_ok(),
            "a patch that leaves the request refused: {spec:?} -> {after:?}"
        );
    }
    if without.is_ok() {
        assert!(
            with.is_ok(),
            "{operation:?} accepted as sent but refused after the patch: {:?}\nsent {spec:?}\npatched {after:?}\nold {:?}",
            with.err(),
            old.as_ref().map(Service::spec),
        );
    }
});
