//! The match conditions skip only requests the webhook would answer with nothing: evaluated with
//! a CEL interpreter on generated policies and requests, and compared with the engine.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

use super::*;
use crate::cluster::{Cluster, ServiceCidrs};
use crate::domain::apiserver_model;
use crate::domain::engine::{self, Decision, Operation, Request};
use crate::domain::service::Service;
use crate::testing::{cluster, labels};

fn policy(yaml: &str) -> Policy {
    Policy::from_yaml(&format!(
        "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n{yaml}"
    ))
    .unwrap()
}

/// Evaluates `cel` on a request, as the API server's match conditions see it.
fn evaluate(cel: &Cel, operation: &str, namespace: &str, object: &Value, old: &Value) -> bool {
    let text = cel.render();
    let program = ::cel::Program::compile(&text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
    let mut context = ::cel::Context::default();
    let request = json!({"operation": operation, "namespace": namespace});
    for (name, value) in [
        ("request", &request),
        ("object", object),
        ("oldObject", old),
    ] {
        context.add_variable(name, value.clone()).unwrap();
    }
    match program.execute(&context) {
        Ok(::cel::Value::Bool(b)) => b,
        other => panic!("{text}\non {object} / {old}: {other:?}"),
    }
}

#[test]
fn an_empty_policy_is_never_sent_a_write() {
    let p = policy("");
    assert_eq!(not_exempt(&p), Cel::Const(true));
    assert_eq!(may_patch(&p), Cel::Const(false));
    assert_eq!(may_find(&p), Cel::Const(false));
}

#[test]
fn defaults_call_mutate_when_a_field_they_set_is_unset() {
    let p = policy("defaults: {ipFamilyPolicy: PreferDualStack}\n");
    assert_eq!(
        may_patch(&p).render(),
        "(!has(object.spec.type) || object.spec.type != 'ExternalName') && \
         (request.operation == 'CREATE' || (request.operation == 'UPDATE' && \
         has(oldObject.spec.type) && oldObject.spec.type == 'ExternalName')) && \
         (!has(object.spec.ipFamilyPolicy) || object.spec.ipFamilyPolicy == '')"
    );
    let svc = |spec: Value| json!({"metadata": {"name": "web"}, "spec": spec});
    let cases = [
        (
            "CREATE",
            svc(json!({"type": "ClusterIP"})),
            Value::Null,
            true,
        ),
        (
            "CREATE",
            svc(json!({"ipFamilyPolicy": "SingleStack"})),
            Value::Null,
            false,
        ),
        (
            "CREATE",
            svc(json!({"ipFamilyPolicy": ""})),
            Value::Null,
            true,
        ),
        (
            "CREATE",
            svc(json!({"type": "ExternalName"})),
            Value::Null,
            false,
        ),
        (
            "UPDATE",
            svc(json!({})),
            svc(json!({"ipFamilyPolicy": "SingleStack"})),
            false,
        ),
        (
            "UPDATE",
            svc(json!({})),
            svc(json!({"type": "ExternalName"})),
            true,
        ),
    ];
    for (operation, object, old, want) in cases {
        let got = evaluate(&may_patch(&p), operation, "shop", &object, &old);
        assert_eq!(got, want, "{operation} {object} (old {old})");
    }
}

#[test]
fn a_rule_is_judged_when_the_new_or_the_stored_service_may_break_it() {
    let p = policy(
        "rules:\n- name: lb\n  match: {namespaces: [prod-*], types: [LoadBalancer]}\n  require: {dualStack: true}\n",
    );
    assert_eq!(
        may_find(&p).render(),
        "(!has(object.spec.type) || object.spec.type != 'ExternalName') && \
         ((request.namespace.matches('^prod-.*$') && has(object.spec.type) && object.spec.type == 'LoadBalancer') || \
         (request.operation == 'UPDATE' && request.namespace.matches('^prod-.*$') && \
         has(oldObject.spec.type) && oldObject.spec.type == 'LoadBalancer')) && \
         !(has(object.spec.ipFamilies) && size(object.spec.ipFamilies) > 1)"
    );
}

#[test]
fn the_example_policy_skips_compliant_creates_and_label_only_updates() {
    let p = Policy::from_yaml(include_str!("../../../../manifests/policy.yaml")).unwrap();
    let (patch, find) = (
        Cel::all([not_exempt(&p), may_patch(&p)]),
        Cel::all([not_exempt(&p), may_find(&p)]),
    );
    let unset = json!({"metadata": {"name": "web"}, "spec": {"type": "ClusterIP"}});
    let stored = json!({"metadata": {"name": "web", "labels": {"v": "1"}}, "spec": {
        "type": "ClusterIP", "ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"],
        "clusterIP": "fd00::1", "clusterIPs": ["fd00::1", "10.0.0.1"]}});
    let relabelled = {
        let mut v = stored.clone();
        v["metadata"]["labels"]["v"] = json!("2");
        v
    };
    let null = Value::Null;
    // A create leaving the fields unset: mutated, and its final object not judged.
    assert!(evaluate(&patch, "CREATE", "shop", &unset, &null));
    assert!(!evaluate(&find, "CREATE", "shop", &stored, &null));
    // A create setting them, and a label-only update: neither webhook.
    assert!(!evaluate(&patch, "CREATE", "shop", &stored, &null));
    assert!(!evaluate(&patch, "UPDATE", "shop", &relabelled, &stored));
    assert!(!evaluate(&find, "UPDATE", "shop", &relabelled, &stored));
    // A LoadBalancer in prod-* given the rule's own default, RequireDualStack: not judged.
    let lb = with(&stored, |s| {
        s["spec"]["type"] = json!("LoadBalancer");
        s["spec"]["ipFamilyPolicy"] = json!("RequireDualStack");
    });
    assert!(!evaluate(&find, "CREATE", "prod-a", &lb, &null));
    // Exempt, or breaking a rule: sent.
    assert!(!evaluate(
        &patch,
        "CREATE",
        "dualstack-webhook",
        &unset,
        &null
    ));
    assert!(evaluate(&find, "CREATE", "legacy", &stored, &null));
}

#[test]
fn match_conditions_are_named_and_the_empty_ones_left_out() {
    use crate::registration::MatchConditions;
    let names = |c: &[k8s_openapi::api::admissionregistration::v1::MatchCondition]| {
        c.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
    };
    let empty = MatchConditions::of(&policy(""));
    assert_eq!(names(&empty.mutate), ["may-patch"]);
    assert_eq!(empty.mutate[0].expression, "false");
    assert_eq!(names(&empty.validate), ["may-find-violation"]);
    let example = MatchConditions::of(&policy("exemptNamespaces: [kube-*]\n"));
    assert_eq!(
        names(&example.mutate),
        ["namespace-not-exempt", "may-patch"]
    );
    assert_eq!(
        example.mutate[0].expression,
        "!(request.namespace.matches('^kube-.*$'))"
    );
}

// === property: skipped means nothing to say ===

const NAMESPACES: [&str; 5] = ["prod-a", "legacy", "dev", "kube-system", "team-x"];

prop_compose! {
    fn arb_match()(
        namespaces in proptest::option::of(proptest::sample::subsequence(
            vec!["prod-*", "legacy", "team-?", "dev"], 1..=2)),
        ns_selector in proptest::option::of(select(vec![
            "{matchLabels: {tier: gold}}",
            "{matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [legacy]}]}",
            "{matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [dev, prod-a]}]}",
            "{matchExpressions: [{key: tier, operator: DoesNotExist}]}",
        ])),
        object_selector in proptest::option::of(select(vec![
            "{matchLabels: {app: web}}",
            "{matchExpressions: [{key: app, operator: NotIn, values: [db]}]}",
            "{matchExpressions: [{key: app, operator: Exists}]}",
        ])),
        types in proptest::option::of(proptest::sample::subsequence(
            vec!["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"], 1..=2)),
    ) -> String {
        let mut parts = Vec::new();
        if let Some(n) = namespaces { parts.push(format!("namespaces: [{}]", n.join(", "))); }
        if let Some(s) = ns_selector { parts.push(format!("namespaceSelector: {s}")); }
        if let Some(s) = object_selector { parts.push(format!("objectSelector: {s}")); }
        if let Some(t) = types { parts.push(format!("types: [{}]", t.join(", "))); }
        format!("{{{}}}", parts.join(", "))
    }
}

prop_compose! {
    fn arb_rule()(
        index in 0..1000u32,
        match_ in arb_match(),
        exclude in proptest::option::of(arb_match()),
        allowed in proptest::option::of(proptest::sample::subsequence(
            vec!["SingleStack", "PreferDualStack", "RequireDualStack"], 1..=2)),
        primary in proptest::option::of(select(vec!["IPv4", "IPv6"])),
        dual in proptest::option::of(any::<bool>()),
        defaults in proptest::option::of(select(vec![
            "{ipFamilyPolicy: RequireDualStack}", "{ipFamilies: [IPv4]}",
            "{ipFamilyPolicy: SingleStack, ipFamilies: [IPv6]}",
        ])),
        upgrade in any::<bool>(),
        action in select(vec!["Deny", "Warn", "Audit"]),
    ) -> String {
        let mut require = Vec::new();
        if let Some(a) = allowed { require.push(format!("ipFamilyPolicies: [{}]", a.join(", "))); }
        if let Some(f) = primary { require.push(format!("primaryFamily: {f}")); }
        if let Some(d) = dual { require.push(format!("dualStack: {d}")); }
        let mut rule = format!(
            "- name: r{index}\n  match: {match_}\n  require: {{{}}}\n  upgradeExisting: {upgrade}\n  action: {action}\n",
            require.join(", ")
        );
        if let Some(e) = exclude { rule.push_str(&format!("  exclude: {e}\n")); }
        if let Some(d) = defaults { rule.push_str(&format!("  defaults: {d}\n")); }
        rule
    }
}

prop_compose! {
    fn arb_policy()(
        exempt in proptest::sample::subsequence(vec!["kube-*", "dev"], 0..=2),
        enforcement in select(vec!["Deny", "Warn", "Audit"]),
        restore in any::<bool>(),
        default_policy in proptest::option::of(select(vec!["SingleStack", "PreferDualStack", "RequireDualStack"])),
        default_families in proptest::option::of(select(vec!["[IPv4]", "[IPv6, IPv4]"])),
        rules in proptest::collection::vec(arb_rule(), 0..=3),
    ) -> Option<Policy> {
        let mut defaults = Vec::new();
        if let Some(p) = default_policy { defaults.push(format!("ipFamilyPolicy: {p}")); }
        if let Some(f) = default_families { defaults.push(format!("ipFamilies: {f}")); }
        let text = format!(
            "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\nenforcement: {enforcement}\n\
             exemptNamespaces: [{}]\nrestoreDroppedFields: {restore}\ndefaults: {{{}}}\nrules:\n{}",
            exempt.join(", "),
            defaults.join(", "),
            if rules.is_empty() { "[]".to_owned() } else { rules.concat() }
        );
        // Policies the loader refuses (contradictions, duplicate names) are never served.
        Policy::from_yaml(&text).ok()
    }
}

prop_compose! {
    /// A Service with valid dual-stack values (the API server refuses others before validating
    /// admission, and /mutate leaves them for it to name).
    fn arb_service()(
        type_ in proptest::option::of(select(vec!["", "ClusterIP", "NodePort", "LoadBalancer", "ExternalName"])),
        policy in proptest::option::of(select(vec!["", "SingleStack", "PreferDualStack", "RequireDualStack"])),
        families in proptest::option::of(select(vec![
            vec![], vec!["IPv4"], vec!["IPv6"], vec!["IPv4", "IPv6"], vec!["IPv6", "IPv4"],
        ])),
        cluster_ip in proptest::option::of(select(vec!["None", "10.96.0.10", "fd00:10:96::a"])),
        selector in any::<bool>(),
        app in proptest::option::of(select(vec!["web", "db"])),
    ) -> Value {
        let mut spec = serde_json::Map::new();
        if let Some(t) = type_ { spec.insert("type".into(), json!(t)); }
        if let Some(p) = policy { spec.insert("ipFamilyPolicy".into(), json!(p)); }
        if let Some(f) = families { spec.insert("ipFamilies".into(), json!(f)); }
        if let Some(ip) = cluster_ip {
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
        }
        if selector { spec.insert("selector".into(), json!({"app": "x"})); }
        let mut metadata = json!({"name": "svc"});
        if let Some(app) = app { metadata["labels"] = json!({"app": app}); }
        json!({"metadata": metadata, "spec": spec})
    }
}

prop_compose! {
    /// A Service as the API server stores it: both dual-stack fields set.
    fn arb_stored()(
        type_ in select(vec!["ClusterIP", "NodePort", "LoadBalancer"]),
        policy in select(vec!["SingleStack", "PreferDualStack", "RequireDualStack"]),
        families in select(vec![vec!["IPv4"], vec!["IPv6"], vec!["IPv4", "IPv6"], vec!["IPv6", "IPv4"]]),
        app in proptest::option::of(select(vec!["web", "db"])),
    ) -> Value {
        let mut metadata = json!({"name": "svc"});
        if let Some(app) = app { metadata["labels"] = json!({"app": app}); }
        json!({"metadata": metadata, "spec": {
            "type": type_, "ipFamilyPolicy": policy, "ipFamilies": families, "selector": {"app": "x"},
        }})
    }
}

fn with(svc: &Value, edit: impl FnOnce(&mut Value)) -> Value {
    let mut out = svc.clone();
    edit(&mut out);
    out
}

/// The cluster the API server runs (its ranges), and what the webhook knows of it: the ranges,
/// or nothing; namespace labels either way.
fn arb_cluster() -> impl Strategy<Value = (ServiceCidrs, Cluster)> {
    (
        select(vec!["v4", "v6", "v4v6", "v6v4"]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(shape, known, gold)| {
            let real = cluster(shape).service_cidrs.unwrap();
            let mut seen = if known {
                cluster(shape)
            } else {
                Cluster::default()
            };
            let tier = if gold { "gold" } else { "silver" };
            seen.namespaces = HashMap::from([("prod-a".to_owned(), labels(&[("tier", tier)]))]);
            (real, seen)
        })
}

/// `svc` as the API server stores it on `cidrs` (what `/validate` sees), or `None` where it
/// refuses the write before validating admission.
pub(in crate::domain::cel) fn stored(
    svc: &Value,
    old: Option<&Value>,
    cidrs: &ServiceCidrs,
) -> Option<Value> {
    let spec = |v: &Value| {
        serde_json::from_value::<Service>(v.clone())
            .unwrap()
            .spec()
            .clone()
    };
    let allocated = match old {
        None => apiserver_model::create(&spec(svc), cidrs),
        Some(old) => apiserver_model::update(&spec(old), &spec(svc), cidrs),
    };
    allocated
        .ok()
        .map(|s| with(svc, |v| v["spec"] = serde_json::to_value(s).unwrap()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    /// The property the conditions are generated for: when one is false, the webhook it guards
    /// would answer allowed, with no patch, warning, finding or audit annotation.
    #[test]
    fn a_skipped_request_would_get_an_empty_answer(
        policy in arb_policy(),
        (real, seen) in arb_cluster(),
        update in any::<bool>(),
        namespace in select(NAMESPACES.to_vec()),
        object in arb_service(),
        old in prop_oneof![arb_service(), arb_stored()],
        edit in 0..5usize,
        new_type in select(vec!["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]),
    ) {
        let Some(policy) = policy else { return Ok(()) };
        // Most updates change one thing of the stored object.
        let object = match (update, edit) {
            (true, 1) => with(&old, |s| s["spec"]["type"] = json!(new_type)),
            (true, 2) => with(&old, |s| s["metadata"]["labels"] = json!({"app": "web"})),
            (true, 3) => with(&old, |s| drop(s["spec"].as_object_mut().unwrap().remove("ipFamilyPolicy"))),
            (true, 4) => with(&old, |s| drop(s["spec"].as_object_mut().unwrap().remove("ipFamilies"))),
            _ => object,
        };
        let (operation, old) = if update { ("UPDATE", old) } else { ("CREATE", Value::Null) };
        let svc: Service = serde_json::from_value(object.clone()).unwrap();
        let old_svc: Option<Service> = update.then(|| serde_json::from_value(old.clone()).unwrap());
        let req = Request {
            operation: if update { Operation::Update } else { Operation::Create },
            namespace,
            object: Some(&svc),
            old_object: old_svc.as_ref(),
        };
        let exempt = not_exempt(&policy);
        // /mutate sees the request as sent.
        let decision = engine::mutate(&policy, &seen, &req);
        let sent = evaluate(&Cel::all([exempt.clone(), may_patch(&policy)]), operation, namespace, &object, &old);
        prop_assert!(
            sent || decision == Decision::default(),
            "/mutate skipped but would answer {:?}\npolicy {:?}\n{} in {}: {} (old {})",
            decision, policy, operation, namespace, object, old
        );
        // /validate sees what the API server stores, the stored object being one it stored too.
        let old_stored = match update {
            true => match stored(&old, None, &real) { Some(o) => Some(o), None => return Ok(()) },
            false => None,
        };
        let Some(final_) = stored(&object, old_stored.as_ref(), &real) else { return Ok(()) };
        let (svc, old_svc): (Service, Option<Service>) = (
            serde_json::from_value(final_.clone()).unwrap(),
            old_stored.as_ref().map(|o| serde_json::from_value(o.clone()).unwrap()),
        );
        let req = Request { object: Some(&svc), old_object: old_svc.as_ref(), ..req };
        let decision = engine::validate(&policy, &seen, &req);
        let old_value = old_stored.unwrap_or(Value::Null);
        let sent = evaluate(&Cel::all([exempt, may_find(&policy)]), operation, namespace, &final_, &old_value);
        prop_assert!(
            sent || decision == Decision::default(),
            "/validate skipped but would answer {:?}\npolicy {:?}\n{} in {}: {} (old {})",
            decision, policy, operation, namespace, final_, old_value
        );
    }
}
