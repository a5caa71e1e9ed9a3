//! The exported objects: which are written for which policy, the engine's answers in their
//! tables, the messages, and the gaps named.

use serde_json::Value;

use super::gaps::{
    TYPE_CHANGE_WARNING, UNKNOWN_RANGES_DEFAULTS, UNKNOWN_RANGES_RULE, UPGRADE_EXISTING,
};
use super::*;
use crate::testing::cidrs;

fn policy(yaml: &str) -> Policy {
    Policy::from_yaml(&format!(
        "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n{yaml}"
    ))
    .unwrap()
}

const DUAL: &str = "10.96.0.0/16,fd00:10:96::/112";

/// `kind/name` of each document.
fn objects(export: &Export) -> Vec<String> {
    export
        .documents
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

/// The expression of the variable `name` of `doc`.
fn variable<'a>(doc: &'a Value, name: &str) -> &'a str {
    doc["spec"]["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no variable {name}"))["expression"]
        .as_str()
        .unwrap()
}

#[test]
fn an_empty_policy_exports_nothing_and_no_gap() {
    let e = export(&policy(""), None);
    assert_eq!(
        e,
        Export {
            documents: vec![],
            gaps: vec![]
        }
    );
}

#[test]
fn each_action_gets_its_own_policy_and_binding_with_that_validation_action() {
    let p = policy(
        "rules:\n\
         - {name: d, require: {ipFamilyPolicies: [SingleStack]}, action: Deny}\n\
         - {name: w, require: {ipFamilyPolicies: [SingleStack]}, action: Warn}\n\
         - {name: a, require: {ipFamilyPolicies: [SingleStack]}, action: Audit}\n",
    );
    let e = export(&p, Some(&cidrs(DUAL)));
    assert_eq!(
        objects(&e),
        [
            "ValidatingAdmissionPolicy/dualstack-webhook-deny",
            "ValidatingAdmissionPolicyBinding/dualstack-webhook-deny",
            "ValidatingAdmissionPolicy/dualstack-webhook-warn",
            "ValidatingAdmissionPolicyBinding/dualstack-webhook-warn",
            "ValidatingAdmissionPolicy/dualstack-webhook-audit",
            "ValidatingAdmissionPolicyBinding/dualstack-webhook-audit",
        ]
    );
    for (i, action) in ["Deny", "Warn", "Audit"].into_iter().enumerate() {
        assert_eq!(
            e.documents[2 * i + 1]["spec"]["validationActions"],
            json!([action])
        );
    }
    // Grandfathered Deny findings are warnings, as the webhook's: the Warn policy has them.
    let warn = &e.documents[2];
    let names: Vec<&str> = warn["spec"]["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"rule0IpFamilyPolicy"), "{names:?}");
    assert!(
        names.contains(&"rule1IpFamilyPolicyGrandfathered"),
        "{names:?}"
    );
    assert!(e.gaps.is_empty());
}

#[test]
fn enforcement_moves_rules_to_the_milder_action() {
    let p = policy(
        "enforcement: Audit\nrules:\n- {name: d, require: {ipFamilyPolicies: [SingleStack]}}\n",
    );
    assert_eq!(
        objects(&export(&p, None)),
        [
            "ValidatingAdmissionPolicy/dualstack-webhook-audit",
            "ValidatingAdmissionPolicyBinding/dualstack-webhook-audit",
        ]
    );
}

#[test]
fn create_defaults_are_the_engines_per_state_cut_to_the_cluster() {
    let p = policy("defaults: {ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv6, IPv4]}\n");
    // state key: policy|families|cluster IPs|headless without selector → [policy, families]
    type Table<'a> = &'a [(&'a str, Option<&'a str>)];
    let cases: [(Option<&str>, Table<'_>); 3] = [
        (
            Some(DUAL),
            &[
                ("|||", Some("['RequireDualStack', 'IPv6,IPv4']")),
                ("SingleStack|||", Some("['', 'IPv6']")),
                // Pinned IPs decide the families (R3.10).
                ("||IPv4|", Some("['RequireDualStack', '']")),
                ("|IPv4||", Some("['RequireDualStack', '']")),
                ("PreferDualStack|IPv4||", None),
            ],
        ),
        (
            // R3.13: RequireDualStack is refused on a single-stack cluster, R3.14: only IPv4.
            Some("10.96.0.0/16"),
            &[
                ("|||", Some("['PreferDualStack', 'IPv4']")),
                ("||None|h", Some("['RequireDualStack', 'IPv6,IPv4']")),
            ],
        ),
        (
            // Unknown ranges: no families, except where the API server never checks them (R3.12).
            None,
            &[
                ("|||", Some("['PreferDualStack', '']")),
                ("||None|h", Some("['RequireDualStack', 'IPv6,IPv4']")),
            ],
        ),
    ];
    for (ranges, states) in cases {
        let ranges = ranges.map(cidrs);
        let fills = states::fills(&p.defaults, ranges.as_ref());
        for (key, want) in states {
            assert_eq!(
                fills.get(*key).map(String::as_str),
                *want,
                "{ranges:?} {key}"
            );
        }
    }
}

#[test]
fn in_process_defaults_read_the_families_from_the_kubernetes_service_cidr() {
    assert_eq!(in_process_defaults(&policy("")), None);
    let p = policy("defaults: {ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv6, IPv4]}\n");
    let spec = in_process_defaults(&p).unwrap();
    assert_eq!(spec["failurePolicy"], "Ignore");
    assert_eq!(
        spec["paramKind"],
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR"})
    );
    assert_eq!(spec["reinvocationPolicy"], "Never");
    // Creates only, and no match condition of its own: they are the first test of createLike.
    assert_eq!(
        spec["matchConstraints"]["resourceRules"][0]["operations"],
        json!(["CREATE"])
    );
    assert_eq!(spec.get("matchConditions"), None);
    let doc = json!({"spec": spec.clone()});
    assert!(
        variable(&doc, "createLike").starts_with("request.operation == 'CREATE' && "),
        "{}",
        variable(&doc, "createLike")
    );
    let names: Vec<&str> = spec["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    // The update protection stays the webhook's.
    assert_eq!(
        names,
        ["shape", "key", "branch", "fills", "fill", "createLike"]
    );
    assert_eq!(
        spec["mutations"][0]["jsonPatch"]["expression"],
        "variables.createLike ? (variables.fill[0] == '' ? [] : [JSONPatch{op: \"add\", path: \
         \"/spec/ipFamilyPolicy\", value: variables.fill[0]}]) + (variables.fill[1] == '' ? [] : \
         [JSONPatch{op: \"add\", path: \"/spec/ipFamilies\", value: variables.fill[1].split(',')}]) : []"
    );
    // One table per shape the param can have, '' (unusable: no assumptions) included.
    let fills = variable(&doc, "fills");
    for shape in [
        "variables.shape == '' ? ",
        "variables.shape == 'IPv4' ? ",
        "variables.shape == 'IPv6' ? ",
        "variables.shape == 'IPv4,IPv6' ? ",
        "variables.shape == 'IPv6,IPv4' ? ",
    ] {
        assert!(fills.contains(shape), "{shape} in {fills}");
    }
}

#[test]
fn create_defaults_depend_on_the_clusters_families_not_its_ranges() {
    // What makes one table per shape exact for every cluster of that shape: the states' IPs are
    // placed inside the ranges, so only the families decide.
    let defaults = [
        policy("defaults: {ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv6, IPv4]}\n").defaults,
        policy("defaults: {ipFamilyPolicy: RequireDualStack}\n").defaults,
        policy("defaults: {ipFamilies: [IPv4]}\n").defaults,
        policy("defaults: {ipFamilyPolicy: SingleStack, ipFamilies: [IPv6]}\n").defaults,
    ];
    let ranges = [
        "10.96.0.0/16",
        "fd00:10:96::/112",
        DUAL,
        "fd00:10:96::/112,10.96.0.0/16",
        "192.168.0.0/24,2001:db8::/64",
    ];
    for d in &defaults {
        for r in ranges {
            let specific = cidrs(r);
            let shape = ServiceCidrs::every_shape()
                .into_iter()
                .find(|s| s.families() == specific.families())
                .unwrap();
            assert_eq!(
                states::fills(d, Some(&specific)),
                states::fills(d, Some(&shape)),
                "{d:?} on {r}"
            );
        }
    }
}

#[test]
fn the_first_matching_rule_with_defaults_picks_the_table() {
    let p = policy(
        "defaults: {ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv6, IPv4]}\n\
         rules:\n\
         - {name: none, match: {namespaces: [a]}}\n\
         - {name: legacy, match: {namespaces: [legacy], types: [NodePort]}, defaults: {ipFamilies: [IPv4]}}\n\
         - {name: lab, match: {namespaceSelector: {matchLabels: {lab: 'yes'}}}, defaults: {ipFamilyPolicy: SingleStack}}\n",
    );
    let e = export(&p, Some(&cidrs(DUAL)));
    let map = &e.documents[0];
    assert_eq!(
        variable(map, "branch"),
        "(request.namespace == 'legacy' && has(object.spec.type) && object.spec.type == 'NodePort') ? 1 : \
         (has(namespaceObject.metadata.labels) && 'lab' in namespaceObject.metadata.labels && \
         namespaceObject.metadata.labels['lab'] == 'yes') ? 2 : 0"
    );
    let fills = variable(map, "fills");
    // Branch 1: the rule's families over the policy's ipFamilyPolicy, field by field.
    assert!(
        fills.contains("'|||': ['PreferDualStack', 'IPv4,IPv6']"),
        "{fills}"
    );
    assert!(fills.contains("'|||': ['SingleStack', 'IPv6']"), "{fills}");
    assert!(e.gaps.is_empty(), "{:?}", e.gaps);
}

#[test]
fn denials_carry_the_webhooks_message_with_the_name_from_the_request() {
    let p = policy(
        "rules:\n- {name: public, require: {ipFamilyPolicies: [RequireDualStack], dualStack: true}}\n",
    );
    let e = export(&p, Some(&cidrs(DUAL)));
    let deny = &e.documents[0];
    let table = variable(deny, "rule0IpFamilyPolicy");
    assert!(
        table.contains(
            "'SingleStack|IPv4|': '\" violates the dual-stack policy: rule \"public\": ipFamilyPolicy \
             is SingleStack, allowed: RequireDualStack; set spec.ipFamilyPolicy: RequireDualStack'"
        ),
        "{table}"
    );
    let validation = &deny["spec"]["validations"][0];
    assert_eq!(
        validation["expression"],
        "!(variables.rule0 && variables.newKey in variables.rule0IpFamilyPolicy && \
         !(variables.oldIPs && variables.oldKey in variables.rule0IpFamilyPolicy))"
    );
    assert_eq!(
        validation["messageExpression"],
        "'Service \"' + variables.name + variables.rule0IpFamilyPolicy[variables.newKey]"
    );
}

#[test]
fn a_rule_reads_the_new_or_the_stored_service_and_its_exclude() {
    let p = policy(
        "rules:\n- name: web\n  match: {objectSelector: {matchLabels: {app: web}}}\n  \
         exclude: {namespaces: ['kube-*']}\n  require: {dualStack: true}\n",
    );
    let e = export(&p, Some(&cidrs(DUAL)));
    assert_eq!(
        variable(&e.documents[0], "rule0"),
        "variables.newIPs && ((has(object.metadata.labels) && 'app' in object.metadata.labels && \
         object.metadata.labels['app'] == 'web' && !(request.namespace.matches('^kube-.*$'))) || \
         (variables.oldIPs && has(oldObject.metadata.labels) && 'app' in oldObject.metadata.labels && \
         oldObject.metadata.labels['app'] == 'web' && !(request.namespace.matches('^kube-.*$'))))"
    );
}

#[test]
fn exempt_namespaces_and_the_webhooks_conditions_are_match_conditions_of_every_policy() {
    let p = policy(
        "exemptNamespaces: [kube-*]\ndefaults: {ipFamilyPolicy: PreferDualStack}\n\
         rules:\n- {name: r, require: {dualStack: true}}\n",
    );
    let e = export(&p, Some(&cidrs(DUAL)));
    let not_exempt =
        json!({"name": "not-exempt", "expression": "!(request.namespace.matches('^kube-.*$'))"});
    // The webhook's own conditions: where they skip a write, the engine does nothing with it.
    let mutating = json!({"name": "may-patch", "expression": crate::domain::cel::conditions::may_patch(&p).render()});
    let validating = json!({"name": "may-find", "expression": crate::domain::cel::conditions::may_find(&p).render()});
    assert_eq!(
        e.documents[0]["spec"]["matchConditions"],
        json!([not_exempt, mutating])
    );
    assert_eq!(
        e.documents[2]["spec"]["matchConditions"],
        json!([not_exempt, validating])
    );
}

#[test]
fn what_admission_policies_cannot_do_is_named_per_rule() {
    let p = policy(
        "defaults: {ipFamilies: [IPv6, IPv4]}\nrestoreDroppedFields: true\nrules:\n\
         - {name: up, upgradeExisting: true}\n\
         - {name: v6, require: {primaryFamily: IPv6}}\n\
         - {name: single, require: {dualStack: false}}\n",
    );
    let lines = |ranges: Option<&str>| -> Vec<String> {
        let ranges = ranges.map(cidrs);
        export(&p, ranges.as_ref())
            .gaps
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(
        lines(None),
        [
            format!("policy: {UNKNOWN_RANGES_DEFAULTS}"),
            format!("rule \"v6\": {UNKNOWN_RANGES_RULE}"),
            format!("policy: {TYPE_CHANGE_WARNING}"),
            format!("rule \"up\": {UPGRADE_EXISTING}"),
        ]
    );
    assert_eq!(
        lines(Some(DUAL)),
        [
            format!("policy: {TYPE_CHANGE_WARNING}"),
            format!("rule \"up\": {UPGRADE_EXISTING}"),
        ]
    );
    // A single-stack cluster: no type change can add a family, so there is nothing to warn of.
    assert_eq!(
        lines(Some("10.96.0.0/16")),
        [format!("rule \"up\": {UPGRADE_EXISTING}")]
    );
}

#[test]
fn restore_reads_the_stored_fields_where_the_request_dropped_them() {
    let p = policy("restoreDroppedFields: true\n");
    let e = export(&p, Some(&cidrs("10.96.0.0/16")));
    assert_eq!(
        objects(&e),
        [
            "MutatingAdmissionPolicy/dualstack-webhook-defaults",
            "MutatingAdmissionPolicyBinding/dualstack-webhook-defaults",
        ]
    );
    let families = variable(&e.documents[0], "restoreFamilies");
    // On a single-stack cluster only the families it has are restored (R3.14), or any for a
    // headless Service without selector (R3.12).
    assert!(
        families.ends_with("oldObject.spec.ipFamilies.all(f, f == 'IPv4'))"),
        "{families}"
    );
    assert!(e.gaps.is_empty());
}

// === the validating policies evaluated, against the engine ===

mod evaluated {
    //! The exported ValidatingAdmissionPolicies evaluated with a CEL interpreter on generated
    //! policies and Services as the API server stores them (the model of it, as the conditions'
    //! tests do: validating admission sees only what it accepts), evaluated as kube-apiserver
    //! does (match conditions, then the variables, then each validation), compared with
    //! `engine::validate`: the same denials, warnings and audit findings, word for word.

    use std::collections::{BTreeSet, HashMap};

    use ::cel::extractors::This;
    use proptest::prelude::*;
    use proptest::sample::select;
    use serde_json::Value;

    use super::super::*;
    use crate::cluster::{Cluster, NAMESPACE_NAME_LABEL};
    use crate::domain::cel::conditions::tests::stored;
    use crate::domain::engine::{self, Denial, DenialMessage, Operation, Request};
    use crate::domain::service::Service;
    use crate::testing::{cidrs, labels};

    /// `list.join(sep)` of Kubernetes' CEL strings library, which the interpreter lacks.
    fn join(This(list): This<::cel::Value>, sep: std::sync::Arc<String>) -> String {
        let ::cel::Value::List(items) = list else {
            return String::new();
        };
        let parts: Vec<String> = items
            .iter()
            .map(|v| match v {
                ::cel::Value::String(s) => s.as_str().to_owned(),
                other => format!("{other:?}"),
            })
            .collect();
        parts.join(sep.as_str())
    }

    fn run(
        text: &str,
        inputs: &[(&str, &Value)],
        vars: &HashMap<String, ::cel::Value>,
    ) -> ::cel::Value {
        let program = ::cel::Program::compile(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        let mut context = ::cel::Context::default();
        context.add_function("join", join).unwrap();
        context.add_function("isIP", is_ip).unwrap();
        context.add_function("ip", ip).unwrap();
        context.add_function("family", family).unwrap();
        for (name, value) in inputs {
            context.add_variable(*name, (*value).clone()).unwrap();
        }
        context.add_variable_from_value("variables", vars.clone());
        program
            .execute(&context)
            .unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    /// The variables of `spec` on this request, evaluated as the API server does (its match
    /// conditions first); `None` when a condition does not hold.
    fn variables(spec: &Value, inputs: &[(&str, &Value)]) -> Option<HashMap<String, ::cel::Value>> {
        let mut vars = HashMap::new();
        let conditions = spec["matchConditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for c in conditions {
            if run(c["expression"].as_str().unwrap(), inputs, &vars) != ::cel::Value::Bool(true) {
                return None;
            }
        }
        for v in spec["variables"].as_array().unwrap() {
            let value = run(v["expression"].as_str().unwrap(), inputs, &vars);
            vars.insert(v["name"].as_str().unwrap().to_owned(), value);
        }
        Some(vars)
    }

    /// The messages of the validations of `doc` that fail on this request.
    fn failures(doc: &Value, inputs: &[(&str, &Value)]) -> BTreeSet<String> {
        let spec = &doc["spec"];
        let Some(vars) = variables(spec, inputs) else {
            return BTreeSet::new();
        };
        let mut out = BTreeSet::new();
        for v in spec["validations"].as_array().unwrap() {
            if run(v["expression"].as_str().unwrap(), inputs, &vars) == ::cel::Value::Bool(false) {
                match run(v["messageExpression"].as_str().unwrap(), inputs, &vars) {
                    ::cel::Value::String(s) => out.insert(s.as_str().to_owned()),
                    other => panic!("message {other:?}"),
                };
            }
        }
        out
    }

    /// The engine's input for a request with this object and stored object: an UPDATE when
    /// there is one, else a CREATE.
    fn engine_input(object: &Value, old: Option<&Value>) -> (Service, Option<Service>, Operation) {
        let service = |v: &Value| serde_json::from_value(v.clone()).unwrap();
        let operation = if old.is_some() {
            Operation::Update
        } else {
            Operation::Create
        };
        (service(object), old.map(service), operation)
    }

    /// The namespace's labels (`tier: web` when `web_tier`) and the cluster the engine sees.
    fn cluster_of(
        namespace: &str,
        web_tier: bool,
        ranges: Option<ServiceCidrs>,
    ) -> (crate::domain::service::Labels, Cluster) {
        let ns_labels = if web_tier {
            labels(&[(NAMESPACE_NAME_LABEL, namespace), ("tier", "web")])
        } else {
            labels(&[(NAMESPACE_NAME_LABEL, namespace)])
        };
        let cluster = Cluster {
            service_cidrs: ranges,
            namespaces: [(namespace.to_owned(), ns_labels.clone())]
                .into_iter()
                .collect(),
        };
        (ns_labels, cluster)
    }

    fn rule() -> impl Strategy<Value = Value> {
        let globs = prop::option::of(select(vec![json!(["a"]), json!(["b-*"]), json!(["*"])]));
        let ns_selector = prop::option::of(Just(json!({"matchLabels": {"tier": "web"}})));
        let obj_selector = prop::option::of(select(vec![
            json!({"matchLabels": {"app": "web"}}),
            json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}),
        ]));
        let types = prop::option::of(select(vec![
            json!(["ClusterIP"]),
            json!(["LoadBalancer", "NodePort"]),
        ]));
        let exclude = prop::option::of(Just(json!({"namespaces": ["b-2"]})));
        let policies = prop::option::of(select(vec![
            json!(["SingleStack"]),
            json!(["PreferDualStack", "RequireDualStack"]),
            json!(["RequireDualStack"]),
        ]));
        let primary = prop::option::of(select(vec!["IPv4", "IPv6"]));
        let dual = prop::option::of(any::<bool>());
        let action = select(vec!["Deny", "Warn", "Audit"]);
        (
            globs,
            ns_selector,
            obj_selector,
            types,
            exclude,
            (policies, primary, dual, action),
        )
            .prop_map(
                |(
                    namespaces,
                    namespace_selector,
                    object_selector,
                    types,
                    exclude,
                    (p, f, d, action),
                )| {
                    let mut m = json!({});
                    for (k, v) in [
                        ("namespaces", namespaces),
                        ("namespaceSelector", namespace_selector),
                        ("objectSelector", object_selector),
                        ("types", types),
                    ] {
                        if let Some(v) = v {
                            m[k] = v;
                        }
                    }
                    let mut require = json!({});
                    if let Some(p) = p {
                        require["ipFamilyPolicies"] = p;
                    }
                    if let Some(f) = f {
                        require["primaryFamily"] = json!(f);
                    }
                    if let Some(d) = d {
                        require["dualStack"] = json!(d);
                    }
                    let mut r =
                        json!({"name": "", "match": m, "require": require, "action": action});
                    if let Some(e) = exclude {
                        r["exclude"] = e;
                    }
                    r
                },
            )
    }

    fn service() -> impl Strategy<Value = Value> {
        let type_ = select(vec![
            "",
            "ClusterIP",
            "NodePort",
            "LoadBalancer",
            "ExternalName",
        ]);
        let policy = select(vec![
            "",
            "SingleStack",
            "PreferDualStack",
            "RequireDualStack",
        ]);
        let families = select(vec![
            json!([]),
            json!(["IPv4"]),
            json!(["IPv6"]),
            json!(["IPv4", "IPv6"]),
            json!(["IPv6", "IPv4"]),
        ]);
        // Mostly left for the API server to allocate: most pinned IPs do not fit every cluster.
        let ips = select(vec![
            json!([]),
            json!([]),
            json!([]),
            json!(["10.96.0.5"]),
            json!(["None"]),
        ]);
        (type_, policy, families, ips, any::<bool>(), any::<bool>()).prop_map(
            |(t, p, f, ips, selector, web)| {
                let mut spec = json!({"ipFamilies": f});
                if let Some(first) = ips.get(0) {
                    spec["clusterIP"] = first.clone();
                    spec["clusterIPs"] = ips.clone();
                }
                if !t.is_empty() {
                    spec["type"] = json!(t);
                }
                if !p.is_empty() {
                    spec["ipFamilyPolicy"] = json!(p);
                }
                if selector {
                    spec["selector"] = json!({"app": "web"});
                }
                let labels = if web {
                    json!({"app": "web"})
                } else {
                    json!({"app": "db"})
                };
                json!({"metadata": {"name": "svc", "labels": labels}, "spec": spec})
            },
        )
    }

    /// `isIP`, `ip(…).family()` of Kubernetes' CEL IP library, which the interpreter lacks.
    fn is_ip(s: std::sync::Arc<String>) -> bool {
        s.parse::<std::net::IpAddr>().is_ok()
    }

    fn ip(s: std::sync::Arc<String>) -> std::sync::Arc<String> {
        s
    }

    fn family(This(s): This<std::sync::Arc<String>>) -> i64 {
        if s.contains(':') { 6 } else { 4 }
    }

    /// The `fill` of the in-process defaults on this request (`None`: not matched), evaluated
    /// as the API server does: match conditions, then the variables.
    fn in_process_fill(spec: &Value, inputs: &[(&str, &Value)]) -> Option<(String, String)> {
        let vars = variables(spec, inputs)?;
        if vars["createLike"] != ::cel::Value::Bool(true) {
            return None;
        }
        let ::cel::Value::List(fill) = &vars["fill"] else {
            panic!("fill {:?}", vars["fill"]);
        };
        let text = |v: &::cel::Value| match v {
            ::cel::Value::String(s) => s.as_str().to_owned(),
            other => panic!("{other:?}"),
        };
        Some((text(&fill[0]), text(&fill[1])))
    }

    fn defaults() -> impl Strategy<Value = Value> {
        let policy = prop::option::of(select(vec![
            "SingleStack",
            "PreferDualStack",
            "RequireDualStack",
        ]));
        let families = prop::option::of(select(vec![
            json!(["IPv4"]),
            json!(["IPv6"]),
            json!(["IPv4", "IPv6"]),
            json!(["IPv6", "IPv4"]),
        ]));
        (policy, families).prop_map(|(p, f)| {
            let mut d = json!({});
            if let Some(p) = p {
                d["ipFamilyPolicy"] = json!(p);
            }
            if let Some(f) = f {
                d["ipFamilies"] = f;
            }
            d
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_536))]

        #[test]
        fn exported_validations_find_what_the_engine_finds(
            rules in prop::collection::vec(rule(), 1..3),
            enforcement in select(vec!["Deny", "Warn", "Audit"]),
            ranges in select(vec![Some(super::DUAL), Some("10.96.0.0/16"), None]),
            namespace in select(vec!["a", "b-1", "b-2", "kube-system"]),
            web_tier in any::<bool>(),
            object in service(),
            old in prop::option::of(service()),
        ) {
            let mut rules = rules;
            for (i, r) in rules.iter_mut().enumerate() {
                r["name"] = json!(format!("r{i}"));
            }
            let policy: Policy = serde_json::from_value(json!({
                "exemptNamespaces": ["kube-*"], "enforcement": enforcement, "rules": rules,
            })).unwrap();
            let ranges = ranges.map(cidrs);
            let (ns_labels, cluster) = cluster_of(namespace, web_tier, ranges.clone());
            // /validate sees what the API server stores, the stored object being one it stored
            // too; on a cluster of a shape (the ranges given, else dual-stack).
            let real = ranges.clone().unwrap_or_else(|| cidrs(super::DUAL));
            let old = match old {
                Some(o) => match stored(&o, None, &real) {
                    Some(s) => Some(s),
                    None => return Ok(()),
                },
                None => None,
            };
            let Some(object) = stored(&object, old.as_ref(), &real) else {
                return Ok(());
            };
            let (svc, old_svc, operation) = engine_input(&object, old.as_ref());
            let decision = engine::validate(&policy, &cluster, &Request {
                operation,
                namespace,
                object: Some(&svc),
                old_object: old_svc.as_ref(),
            });
            let name = svc.display_name(namespace);
            let single = |f: &engine::Finding| DenialMessage { name: &name, denial: &Denial(vec![f.clone()]) }.to_string();
            let engine_denied: BTreeSet<String> = decision.denial.iter().flat_map(|(_, d)| d.0.iter().map(single)).collect();
            let engine_audited: BTreeSet<String> = decision.findings.iter().filter(|f| f.action == Action::Audit).map(single).collect();
            let engine_warned: BTreeSet<String> = decision.warnings.iter().cloned().collect();

            let request = json!({"operation": if old.is_some() { "UPDATE" } else { "CREATE" }, "namespace": namespace});
            let ns_object = json!({"metadata": {"name": namespace, "labels": ns_labels}});
            let old_value = old.unwrap_or(Value::Null);
            let inputs = [("request", &request), ("object", &object), ("oldObject", &old_value), ("namespaceObject", &ns_object)];
            let exported = export(&policy, ranges.as_ref());
            let by_action = |name: &str| {
                exported.documents.iter()
                    .find(|d| d["metadata"]["name"] == format!("{NAME}-{name}") && d["kind"] == "ValidatingAdmissionPolicy")
                    .map(|d| failures(d, &inputs))
                    .unwrap_or_default()
            };
            prop_assert_eq!(by_action("deny"), engine_denied);
            prop_assert_eq!(by_action("warn"), engine_warned);
            prop_assert_eq!(by_action("audit"), engine_audited);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_024))]

        #[test]
        fn in_process_defaults_fill_what_the_webhook_fills_on_create_only(
            global in defaults(),
            rules in prop::collection::vec((rule(), prop::option::of(defaults())), 0..3),
            param in select(vec![
                Some(("10.96.0.0/16", false)),
                Some(("fd00:10:96::/112", false)),
                Some((super::DUAL, false)),
                Some(("fd00:10:96::/112,10.96.0.0/16", false)),
                Some((super::DUAL, true)),
                None,
            ]),
            namespace in select(vec!["a", "b-1", "b-2", "kube-system"]),
            web_tier in any::<bool>(),
            object in service(),
            from_external_name in any::<bool>(),
        ) {
            let rules: Vec<Value> = rules.into_iter().enumerate().map(|(i, (mut r, d))| {
                r["name"] = json!(format!("r{i}"));
                if let Some(d) = d {
                    r["defaults"] = d;
                }
                r
            }).collect();
            let policy: Policy = serde_json::from_value(json!({
                "exemptNamespaces": ["kube-*"], "defaults": global, "rules": rules,
            })).unwrap();
            // The param: the `kubernetes` ServiceCIDR, maybe being deleted, maybe without ranges.
            // The cluster the API server allocates on (when the param says nothing: dual-stack).
            let real = cidrs(param.map_or(super::DUAL, |(list, _)| list));
            let (params, ranges) = match param {
                Some((list, deleting)) => {
                    let mut p = json!({"metadata": {"name": "kubernetes"}, "spec": {"cidrs": list.split(',').collect::<Vec<_>>()}});
                    if deleting {
                        p["metadata"]["deletionTimestamp"] = json!("2026-12-06T00:00:00Z");
                    }
                    (p, (!deleting).then(|| cidrs(list)))
                }
                None => (json!({"metadata": {"name": "kubernetes"}, "spec": {}}), None),
            };
            let (ns_labels, cluster) = cluster_of(namespace, web_tier, ranges.clone());
            // A CREATE, or an ExternalName Service becoming this one (allocated like a create).
            let old: Option<Value> = from_external_name.then(|| json!({"metadata": {"name": "svc"}, "spec": {"type": "ExternalName", "externalName": "x.example"}}));
            let (svc, old_svc, operation) = engine_input(&object, old.as_ref());
            let m = engine::mutate(&policy, &cluster, &Request {
                operation,
                namespace,
                object: Some(&svc),
                old_object: old_svc.as_ref(),
            }).mutation;
            let families: Vec<&str> = m.ip_families.iter().flatten().map(|f| f.as_str()).collect();
            let engine_fill = (m.ip_family_policy.map_or("", |p| p.as_str()).to_owned(), families.join(","));

            let request = json!({"operation": if old.is_some() { "UPDATE" } else { "CREATE" }, "namespace": namespace});
            let ns_object = json!({"metadata": {"name": namespace, "labels": ns_labels}});
            let old_value = old.unwrap_or(Value::Null);
            let inputs = [("request", &request), ("object", &object), ("oldObject", &old_value), ("namespaceObject", &ns_object), ("params", &params)];
            let spec = in_process_defaults(&policy);
            let got = spec
                .as_ref()
                .filter(|s| s["matchConstraints"]["resourceRules"][0]["operations"] == json!([request["operation"]]))
                .and_then(|spec| in_process_fill(spec, &inputs))
                .unwrap_or_default();
            // An UPDATE (from ExternalName) is the webhook's alone: the policy is not called.
            let engine_fill = if old_value.is_null() { engine_fill } else { Default::default() };
            // Where the API server refuses the request whichever is patched (a pinned IP outside
            // the ranges, a headless NodePort, …: the tables' states are valid Services), the
            // outcome is the same; elsewhere the fields must be.
            let patched = |(policy, families): &(String, String)| {
                let mut o = object.clone();
                if !policy.is_empty() {
                    o["spec"]["ipFamilyPolicy"] = json!(policy);
                }
                if !families.is_empty() {
                    o["spec"]["ipFamilies"] = json!(families.split(',').collect::<Vec<_>>());
                }
                stored(&o, old_value.as_object().map(|_| &old_value), &real)
            };
            if patched(&got).is_some() || patched(&engine_fill).is_some() {
                prop_assert_eq!(got, engine_fill);
            }
        }
    }
}
