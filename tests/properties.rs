//! Property tests: for random Services, clusters and policies, what `/mutate` emits is accepted by the
//! API server's rules (as modelled in `dualstack_webhook::domain::apiserver_model`, itself checked against
//! Kubernetes' test tables), fills only what the client left unset, and never changes a running
//! Service's primary IP or family, nor adds a family without the explicit opt-in.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use dualstack_webhook::cluster::{Cluster, ServiceCidrs};
use dualstack_webhook::domain::apiserver_model;
use dualstack_webhook::domain::engine::{self, Decision, Operation, Request};
use dualstack_webhook::domain::patch;
use dualstack_webhook::domain::policy::Policy;
use dualstack_webhook::domain::service::{Metadata, Selector, Service, ServiceSpec};
use proptest::prelude::*;
use proptest::sample::select;

const CLUSTERS: [&str; 4] = [
    "10.96.0.0/16",
    "fd00:10:96::/112",
    "10.96.0.0/16,fd00:10:96::/112",
    "fd00:10:96::/112,10.96.0.0/16",
];
const IPS: [&str; 6] = [
    "10.96.0.10",
    "10.96.0.11",
    "fd00:10:96::10",
    "fd00:10:96::11",
    "10.200.0.1",
    "None",
];
const FAMILIES: [&str; 2] = ["IPv4", "IPv6"];
const POLICIES: [&str; 3] = ["SingleStack", "PreferDualStack", "RequireDualStack"];
const TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];

fn strings(
    max: usize,
    pool: &'static [&'static str],
) -> impl Strategy<Value = Option<Vec<String>>> {
    proptest::option::of(proptest::collection::vec(
        select(pool).prop_map(str::to_owned),
        1..=max,
    ))
}

fn one(pool: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    proptest::option::of(select(pool).prop_map(str::to_owned))
}

prop_compose! {
    fn arb_spec()(
        type_ in one(&TYPES),
        cluster_ip in one(&IPS),
        cluster_ips in strings(2, &IPS),
        ip_families in strings(2, &FAMILIES),
        ip_family_policy in one(&POLICIES),
        selector in any::<bool>(),
    ) -> ServiceSpec {
        ServiceSpec {
            type_,
            cluster_ip,
            cluster_ips,
            ip_families,
            ip_family_policy,
            selector: if selector { Selector::Labels } else { Selector::Empty },
        }
    }
}

prop_compose! {
    fn arb_policy()(
        policy in one(&POLICIES),
        families in proptest::option::of(select(vec!["[IPv4]", "[IPv6]", "[IPv4, IPv6]", "[IPv6, IPv4]"])),
        upgrade in any::<bool>(),
        restore in any::<bool>(),
    ) -> Policy {
        let mut text = String::from("apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\ndefaults:\n");
        if let Some(p) = policy { text += &format!("  ipFamilyPolicy: {p}\n"); }
        if let Some(f) = families { text += &format!("  ipFamilies: {f}\n"); }
        if upgrade { text += "rules: [{name: upgrade, upgradeExisting: true}]\n"; }
        if restore { text += "restoreDroppedFields: true\n"; }
        Policy::from_yaml(&text).expect("generated policy")
    }
}

fn service(spec: ServiceSpec) -> Service {
    Service {
        metadata: Metadata {
            name: "web".into(),
            namespace: "apps".into(),
            ..Metadata::default()
        },
        spec: Some(spec),
    }
}

fn cluster(cidrs: &str) -> (Cluster, ServiceCidrs) {
    let c = ServiceCidrs::parse(cidrs).expect("cidrs");
    (Cluster::with_cidrs(Some(c.clone())), c)
}

/// Applies the patch exactly as the API server would: RFC 6902 on the JSON of the object.
fn patched(object: &Service, decision: &Decision) -> ServiceSpec {
    let mut doc = serde_json::to_value(object).expect("encode");
    let ops = patch::build(&decision.mutation, object.spec.is_some());
    json_patch::patch(&mut doc, &ops).expect("patch applies");
    let out: Service = serde_json::from_value(doc).expect("still a Service");
    out.spec.unwrap_or_default()
}

fn set<T: PartialEq>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn create_patches_are_accepted(spec in arb_spec(), policy in arb_policy(), cidrs in select(&CLUSTERS[..])) {
        let (cluster, cidrs) = cluster(cidrs);
        let object = service(spec.clone());
        let req = Request { operation: Operation::Create, namespace: "apps", object: Some(&object), old_object: None };
        let decision = engine::mutate(&policy, &cluster, &req);
        let before = apiserver_model::create(&spec, &cidrs);
        // `/mutate` denies nothing, and sends no patch that leaves the request refused.
        prop_assert!(decision.denial.is_none());
        let after_spec = patched(&object, &decision);
        let after = apiserver_model::create(&after_spec, &cidrs);
        if !decision.mutation.is_empty() {
            prop_assert!(after.is_ok(), "a patch that leaves {spec:?} refused: {after_spec:?}");
        }
        if before.is_ok() {
            prop_assert!(after.is_ok(), "accepted {spec:?} but the patched {after_spec:?} is refused: {:?}", after.err());
        }
        // Only what the client left unset is filled.
        if spec.ip_family_policy.is_some() { prop_assert_eq!(&after_spec.ip_family_policy, &spec.ip_family_policy); }
        if set(&spec.ip_families) { prop_assert_eq!(&after_spec.ip_families, &spec.ip_families); }
        if set(&spec.cluster_ips) { prop_assert_eq!(&after_spec.cluster_ips, &spec.cluster_ips); }
        if spec.cluster_ip.as_deref().is_some_and(|ip| !ip.is_empty()) { prop_assert_eq!(&after_spec.cluster_ip, &spec.cluster_ip); }
        // The policy takes effect where the client said nothing and the cluster can do it.
        let untouched = spec.ip_family_policy.is_none() && !set(&spec.ip_families) && !set(&spec.cluster_ips)
            && spec.cluster_ip.is_none() && spec.type_.as_deref() != Some("ExternalName");
        if let (true, Ok(stored)) = (untouched, &after) {
            let families = stored.ip_families.clone().unwrap_or_default();
            if policy.defaults.ip_family_policy.is_some_and(|p| p.is_dual()) && cidrs.is_dual() {
                prop_assert_eq!(families.len(), 2, "dual-stack default on a dual-stack cluster");
            }
            let preferred = policy.defaults.ip_families.iter().flatten().find(|f| cidrs.has(**f));
            if let Some(first) = preferred {
                prop_assert_eq!(families[0].as_str(), first.as_str(), "the policy's preferred family comes first");
            }
        }
    }

    #[test]
    fn updates_keep_running_services_safe(
        created in arb_spec(),
        policy in arb_policy(),
        before_cidrs in select(&CLUSTERS[..]),
        after_cidrs in select(&CLUSTERS[..]),
        drop_families in any::<bool>(),
        drop_policy in any::<bool>(),
        drop_ips in any::<bool>(),
        new_type in one(&TYPES[..3]),
        new_policy in one(&POLICIES),
    ) {
        let (_, before) = cluster(before_cidrs);
        let Ok(old) = apiserver_model::create(&created, &before) else { return Ok(()) };
        // The cluster may have been reconfigured since: a secondary family added or removed (rules §6);
        // its primary family stays, as Kubernetes requires.
        let (cluster, cidrs) = cluster(after_cidrs);
        if !cidrs.has(before.primary()) {
            return Ok(());
        }
        let mut new = old.clone();
        if drop_families { new.ip_families = None; }
        if drop_policy { new.ip_family_policy = None; }
        if drop_ips { new.cluster_ips = None; new.cluster_ip = None; }
        if new_type.is_some() && old.type_.as_deref() != Some("ExternalName") { new.type_ = new_type; }
        if new_policy.is_some() && !drop_policy { new.ip_family_policy = new_policy; }
        let (old_svc, new_svc) = (service(old.clone()), service(new.clone()));
        let req = Request { operation: Operation::Update, namespace: "apps", object: Some(&new_svc), old_object: Some(&old_svc) };
        let decision = engine::mutate(&policy, &cluster, &req);
        let without = apiserver_model::update(&old, &new, &cidrs);
        prop_assert!(decision.denial.is_none());
        let new_spec = patched(&new_svc, &decision);
        let with = apiserver_model::update(&old, &new_spec, &cidrs);
        if !decision.mutation.is_empty() {
            prop_assert!(with.is_ok(), "a patch that leaves the update refused: {new_spec:?}");
        }
        if without.is_ok() {
            prop_assert!(with.is_ok(), "accepted without the patch, refused with it: {:?}\nold {old:?}\nnew {new_spec:?}", with.as_ref().err());
        }
        let Ok(stored) = with else { return Ok(()) };
        if old.type_.as_deref() == Some("ExternalName") || stored.type_.as_deref() == Some("ExternalName") {
            return Ok(());
        }
        let first = |v: &Option<Vec<String>>| v.as_ref().and_then(|v| v.first().cloned());
        let count = |v: &Option<Vec<String>>| v.as_ref().map_or(0, Vec::len);
        prop_assert_eq!(first(&stored.cluster_ips), first(&old.cluster_ips), "primary clusterIP changed");
        // (A headless Service whose family the cluster dropped cannot keep it: R3.14 / R3.15.)
        let family_still_there = first(&old.ip_families).is_some_and(|f| cidrs.has(f.parse().expect("family")));
        // (A headless Service may change families, R2.2: a PUT that drops them lets the API server
        // default them again, unless the policy restores them.)
        let protected = policy.restore_dropped_fields || (!drop_families && !drop_policy);
        if family_still_there && protected {
            prop_assert_eq!(first(&stored.ip_families), first(&old.ip_families), "primary family changed");
        }
        // A type change ends the PreferDualStack freeze in Kubernetes itself (R3.5); the webhook warns.
        let type_changed = new.service_type() != old.service_type();
        let fields_changed = (new.ip_family_policy.is_some() && new.ip_family_policy != old.ip_family_policy)
            || (set(&new.ip_families) && new.ip_families != old.ip_families);
        let opted_in = !policy.rules.is_empty();
        let restore = policy.restore_dropped_fields;
        if restore && type_changed && !opted_in && !fields_changed && count(&stored.ip_families) > count(&old.ip_families) {
            prop_assert!(decision.warnings.iter().any(|w| w.contains("changing the type")), "{:?}", decision.warnings);
        }
        let client_changed = fields_changed || type_changed;
        // Without `restoreDroppedFields`, a PUT that drops the fields is the client's own change.
        if !client_changed && !opted_in && protected {
            prop_assert!(count(&stored.ip_families) <= count(&old.ip_families), "a family was added without opt-in: {old:?} -> {stored:?}");
        }
        if opted_in && !client_changed && cidrs.is_dual() && count(&old.ip_families) == 1 {
            prop_assert_eq!(count(&stored.ip_families), 2, "upgradeExisting adds the secondary family");
        }
    }

    /// Where the cluster's ranges are unknown, a patch must be accepted on every cluster that accepts
    /// the request as sent (IPv4, IPv6, dual-stack of either primary).
    #[test]
    fn patches_for_an_unknown_cluster_are_accepted_by_every_cluster(spec in arb_spec(), policy in arb_policy()) {
        let object = service(spec.clone());
        let req = Request { operation: Operation::Create, namespace: "apps", object: Some(&object), old_object: None };
        let decision = engine::mutate(&policy, &Cluster::default(), &req);
        let after_spec = patched(&object, &decision);
        for cidrs in CLUSTERS {
            let (_, cidrs) = cluster(cidrs);
            if apiserver_model::create(&spec, &cidrs).is_ok() {
                let after = apiserver_model::create(&after_spec, &cidrs);
                prop_assert!(after.is_ok(), "{cidrs:?} accepts {spec:?} but refuses the patched {after_spec:?}: {:?}", after.err());
            }
        }
    }

    /// An empty policy changes nothing and denies nothing, on every cluster, for every request.
    #[test]
    fn an_empty_policy_is_a_no_op(spec in arb_spec(), old in arb_spec(), cidrs in proptest::option::of(select(&CLUSTERS[..])), update in any::<bool>()) {
        let policy = Policy::from_yaml("apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n").unwrap();
        let cluster = cidrs.map_or_else(Cluster::default, |c| cluster(c).0);
        let (object, old) = (service(spec), service(old));
        let operation = if update { Operation::Update } else { Operation::Create };
        let req = Request { operation, namespace: "apps", object: Some(&object), old_object: update.then_some(&old) };
        prop_assert_eq!(engine::mutate(&policy, &cluster, &req), Decision::default());
        prop_assert_eq!(engine::validate(&policy, &cluster, &req), Decision::default());
    }
}
