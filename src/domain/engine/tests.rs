//! Table tests: one per engine rule, citing the API server rule it relies on.

use super::*;
use crate::domain::policy::Policy;
use crate::domain::service::IpFamily::{IPv4, IPv6};
use crate::domain::service::IpFamilyPolicy::{PreferDualStack, RequireDualStack, SingleStack};
use crate::testing::*;

fn policy(body: &str) -> Policy {
    Policy::from_yaml(&format!(
        "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n{body}"
    ))
    .unwrap()
}

const PREFER_V6: &str = "defaults: {ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv6, IPv4]}\n";

fn create(p: &Policy, cluster_name: &str, s: ServiceSpec) -> Decision {
    let svc = service("apps", "web", &[("app", "web")], s);
    let req = Request {
        operation: Operation::Create,
        namespace: "apps",
        object: Some(&svc),
        old_object: None,
    };
    mutate(p, &cluster(cluster_name), &req)
}

fn update(p: &Policy, cluster_name: &str, old: ServiceSpec, new: ServiceSpec) -> Decision {
    let old = service("apps", "web", &[("app", "web")], old);
    let new = service("apps", "web", &[("app", "web")], new);
    let req = Request {
        operation: Operation::Update,
        namespace: "apps",
        object: Some(&new),
        old_object: Some(&old),
    };
    mutate(p, &cluster(cluster_name), &req)
}

fn m(policy: Option<IpFamilyPolicy>, families: Option<&[IpFamily]>) -> Mutation {
    Mutation {
        ip_family_policy: policy,
        ip_families: families.map(<[_]>::to_vec),
    }
}

/// What an empty policy asks for: nothing, in every mode and for every kind of request (the
/// contract: allowed, no patch, no warning, no annotation).
#[test]
fn empty_policy_changes_nothing() {
    let p = policy("");
    let requests = [
        spec(),
        spec().headless(),
        spec().headless().selectorless(),
        spec().ips(&["10.96.0.10"]),
        spec().ip("10.96.0.10"),
        spec().ip("10.200.0.1"),
        spec().policy("RequireDualStack"),
        spec().families(&["IPv6"]),
    ];
    for c in ["v4", "v6", "v4v6", "v6v4", "unknown"] {
        for s in &requests {
            assert_eq!(create(&p, c, s.clone()), Decision::default(), "{c} {s:?}");
        }
        if c == "unknown" {
            continue;
        }
        let old = stored(c, spec().policy("PreferDualStack"));
        let put = old.clone().with(|s| {
            s.ip_families = None;
            s.ip_family_policy = None;
        });
        assert_eq!(update(&p, c, old, put), Decision::default(), "{c} PUT");
    }
}

#[test]
fn defaults_follow_the_cluster() {
    let p = policy(PREFER_V6);
    let cases: [(&str, Mutation); 5] = [
        // Dual-stack cluster: both families, in the policy's order, whatever the cluster's primary (R3.14 ok).
        ("v4v6", m(Some(PreferDualStack), Some(&[IPv6, IPv4]))),
        ("v6v4", m(Some(PreferDualStack), Some(&[IPv6, IPv4]))),
        // Single-stack cluster: only the family it has (R3.14), one family (R3.16 needs two allocators).
        ("v4", m(Some(PreferDualStack), Some(&[IPv4]))),
        ("v6", m(Some(PreferDualStack), Some(&[IPv6]))),
        // Unknown cluster: no families (IPv6 would be refused on an IPv4-only cluster, R3.14); the
        // API server picks its primary and adds the other where it has it (R3.15, R3.16).
        ("unknown", m(Some(PreferDualStack), None)),
    ];
    for (c, want) in cases {
        let d = create(&p, c, spec());
        assert_eq!(d.mutation, want, "cluster {c}");
        assert!(d.allowed());
        assert!(d.audit["mutation"].contains("ipFamilyPolicy=PreferDualStack (policy defaults)"));
    }
}

#[test]
fn require_dual_stack_default_is_softened_where_a_cluster_may_be_single_stack_r3_13() {
    let p = policy("defaults: {ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]}\n");
    assert_eq!(
        create(&p, "v4v6", spec()).mutation,
        m(Some(RequireDualStack), Some(&[IPv4, IPv6]))
    );
    let d = create(&p, "v4", spec());
    assert_eq!(d.mutation, m(Some(PreferDualStack), Some(&[IPv4])));
    assert_eq!(
        d.changes[0],
        "ipFamilyPolicy=PreferDualStack (policy defaults; RequireDualStack is refused on this single-stack cluster)"
    );
    let d = create(&p, "unknown", spec());
    assert_eq!(d.mutation, m(Some(PreferDualStack), None));
    assert_eq!(
        d.changes[0],
        "ipFamilyPolicy=PreferDualStack (policy defaults; RequireDualStack is refused on single-stack clusters, and this one is unknown)"
    );
    // R3.12: headless selectorless Services may be RequireDualStack anywhere, families unchecked.
    for c in ["v4", "unknown"] {
        let d = create(&p, c, spec().headless().selectorless());
        assert_eq!(
            d.mutation,
            m(Some(RequireDualStack), Some(&[IPv4, IPv6])),
            "{c}"
        );
    }
}

#[test]
fn client_values_are_never_overridden() {
    let p = policy(PREFER_V6);
    // Client policy kept; families follow the policy's order under the client's policy (R3.9: one family).
    let d = create(&p, "v4v6", spec().policy("SingleStack"));
    assert_eq!(d.mutation, m(None, Some(&[IPv6])));
    // Client families kept; policy filled.
    let d = create(&p, "v4v6", spec().families(&["IPv4"]));
    assert_eq!(d.mutation, m(Some(PreferDualStack), None));
    // Both set: nothing to do.
    assert!(
        create(&p, "v4v6", spec().families(&["IPv4"]).policy("SingleStack"))
            .mutation
            .is_empty()
    );
}

/// A patch that leaves the request refused is not sent, so that the API server's refusal names the
/// client's own fault: two families under a SingleStack default (R3.9), clusterIPs without
/// clusterIP (R1.8), three IPs (R1.13), a pinned IP outside the range (R3.17) or of a family the
/// cluster lacks (R3.10).
#[test]
fn requests_that_stay_refused_are_not_patched() {
    let single = policy("defaults: {ipFamilyPolicy: SingleStack, ipFamilies: [IPv4]}\n");
    assert_eq!(
        create(&single, "v4v6", spec().families(&["IPv6", "IPv4"])),
        Decision::default(),
        "R3.9"
    );
    let p = policy(PREFER_V6);
    let refused = [
        (
            "v4v6",
            spec().ips(&["10.96.0.10", "fd00:10:96::10"]),
            "R1.8",
        ),
        (
            "v4v6",
            spec()
                .ip("10.96.0.10")
                .ips(&["10.96.0.10", "fd00:10:96::10", "10.96.0.11"]),
            "R1.13",
        ),
        ("v4v6", spec().ip("10.97.0.1"), "R3.17"),
        ("v4", spec().ip("fd00:10:96::1"), "R3.10"),
        ("v4", spec().policy("RequireDualStack"), "R3.13"),
        ("v4", spec().families(&["IPv6"]), "R3.14"),
    ];
    for (c, s, rule) in refused {
        assert_eq!(create(&p, c, s), Decision::default(), "{rule}");
    }
}

/// A default the policy asks for may turn a refused request into an accepted one: two families
/// without a policy are refused (R3.9), and the policy's PreferDualStack is what they lacked.
#[test]
fn a_default_may_complete_a_request() {
    let p = policy(PREFER_V6);
    for c in ["v4v6", "unknown"] {
        let d = create(&p, c, spec().families(&["IPv4", "IPv6"]));
        assert_eq!(d.mutation, m(Some(PreferDualStack), None), "{c}");
    }
}

#[test]
fn pinned_ips_decide_the_families_r3_10() {
    let p = policy(PREFER_V6);
    // The policy is filled; the families are the API server's to infer from the IPs.
    for c in ["v4v6", "unknown"] {
        let d = create(&p, c, spec().ip("10.96.0.10"));
        assert_eq!(d.mutation, m(Some(PreferDualStack), None), "{c}");
        let two = spec()
            .ip("10.96.0.10")
            .ips(&["10.96.0.10", "fd00:10:96::10"]);
        let two_with_policy = two.clone().policy("PreferDualStack");
        assert!(create(&p, c, two_with_policy).mutation.is_empty(), "{c}");
        // Two IPs without a policy are refused (R3.9): the default completes them.
        assert_eq!(
            create(&p, c, two).mutation,
            m(Some(PreferDualStack), None),
            "{c}"
        );
    }
}

#[test]
fn external_name_is_never_touched_r1_4() {
    let p = policy(PREFER_V6);
    for c in ["v4", "v4v6", "unknown"] {
        let d = create(&p, c, spec().type_("ExternalName").selectorless());
        assert_eq!(d, Decision::default());
    }
}

#[test]
fn invalid_client_values_are_left_to_the_api_server() {
    let p = policy(PREFER_V6);
    for (s, rule) in [
        (spec().families(&["IPv5"]), "R1.9"),
        (spec().policy("DualStack"), "R1.11"),
        (spec().ip("not-an-ip"), "R1.12"),
        (spec().type_("Weird"), "R1.18"),
    ] {
        assert_eq!(create(&p, "v4v6", s), Decision::default(), "{rule}");
    }
}

#[test]
fn exempt_namespaces_are_untouched() {
    let p = policy(&format!(
        "exemptNamespaces: [apps]\n{PREFER_V6}rules: [{{name: r, require: {{dualStack: true}}}}]"
    ));
    let d = create(&p, "v4v6", spec());
    assert_eq!(d, Decision::default());
}

#[test]
fn rule_defaults_override_field_by_field() {
    let p = policy(&format!(
        "{PREFER_V6}rules:\n  - name: lb\n    match: {{types: [LoadBalancer]}}\n    defaults: {{ipFamilyPolicy: RequireDualStack}}\n  - name: later\n    defaults: {{ipFamilyPolicy: SingleStack}}\n"
    ));
    let d = create(&p, "v4v6", spec().type_("LoadBalancer"));
    assert_eq!(d.mutation, m(Some(RequireDualStack), Some(&[IPv6, IPv4])));
    assert!(d.audit["mutation"].contains("defaults of rule \"lb\""));
    // A ClusterIP Service matches only "later" (first matching rule with defaults).
    let d = create(&p, "v4v6", spec());
    assert_eq!(d.mutation, m(Some(SingleStack), Some(&[IPv6])));
}

#[test]
fn headless_services_get_families_per_policy() {
    let p = policy(PREFER_V6);
    let d = create(&p, "v4v6", spec().headless());
    assert_eq!(d.mutation, m(Some(PreferDualStack), Some(&[IPv6, IPv4])));
    // With a selector, the families are checked against the cluster's (R3.14): none where unknown.
    let d = create(&p, "unknown", spec().headless());
    assert_eq!(d.mutation, m(Some(PreferDualStack), None));
}

// === UPDATE ===

fn stored(cluster_name: &str, s: ServiceSpec) -> ServiceSpec {
    let cidrs = cluster(cluster_name).service_cidrs.unwrap();
    crate::domain::apiserver_model::create(&s, &cidrs).unwrap()
}

const RESTORE: &str = "restoreDroppedFields: true\n";

#[test]
fn update_restores_what_a_put_dropped_when_asked_section_6() {
    let p = policy(&format!("{PREFER_V6}{RESTORE}"));
    let old = stored("v4", spec().policy("PreferDualStack"));
    let put = old.clone().with(|s| {
        s.ip_families = None;
        s.ip_family_policy = None;
        s.cluster_ips = None;
        s.cluster_ip = None;
    });
    let d = update(&p, "v4v6", old.clone(), put.clone());
    assert_eq!(d.mutation, m(Some(PreferDualStack), Some(&[IPv4])));
    assert!(d.audit["mutation"].contains("restored"));
    // kubectl label / apply: the stored fields come back unchanged: nothing to do.
    assert!(
        update(&p, "v4v6", old.clone(), old.clone())
            .mutation
            .is_empty()
    );
    // Without `restoreDroppedFields` the PUT goes through as sent.
    assert!(
        update(&policy(PREFER_V6), "v4v6", old, put)
            .mutation
            .is_empty()
    );
}

#[test]
fn update_never_applies_create_defaults() {
    let p = policy("defaults: {ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv6, IPv4]}\n");
    let old = stored("v4v6", spec());
    assert!(update(&p, "v4v6", old.clone(), old).mutation.is_empty());
}

#[test]
fn upgrade_existing_is_an_explicit_opt_in() {
    let rule =
        "rules: [{name: dual, upgradeExisting: true, require: {dualStack: true}, action: Warn}]\n";
    let p = policy(rule);
    let old = stored("v4", spec().policy("PreferDualStack"));
    let d = update(&p, "v4v6", old.clone(), old.clone());
    assert_eq!(d.mutation, m(Some(PreferDualStack), Some(&[IPv4, IPv6])));
    assert_eq!(
        d.warnings,
        ["Service \"apps/web\": rule \"dual\" added IPv6 to this Service (upgradeExisting)"]
    );
    // SingleStack becomes the rule's/global default if dual, else PreferDualStack.
    let old_single = stored("v6v4", spec());
    let p2 = policy(&format!(
        "defaults: {{ipFamilyPolicy: RequireDualStack}}\n{rule}"
    ));
    let d = update(&p2, "v6v4", old_single.clone(), old_single.clone());
    assert_eq!(d.mutation, m(Some(RequireDualStack), Some(&[IPv6, IPv4])));
    // Not without a dual-stack cluster we know of.
    assert!(
        update(&p, "unknown", old.clone(), old.clone())
            .mutation
            .is_empty()
    );
    assert!(
        update(&p, "v4", old.clone(), old.clone())
            .mutation
            .is_empty()
    );
    // Not when the client changes the fields itself (a deliberate downgrade or upgrade).
    let downgrade = stored("v4v6", spec().policy("RequireDualStack"));
    let to_single = downgrade.clone().policy("SingleStack");
    assert!(update(&p, "v4v6", downgrade, to_single).mutation.is_empty());
    // Not without the opt-in.
    assert!(
        update(&policy(PREFER_V6), "v4v6", old.clone(), old)
            .mutation
            .is_empty()
    );
}

#[test]
fn type_changes_r4() {
    let p = policy(PREFER_V6);
    let old = stored("v4v6", spec());
    // To ExternalName: nothing (R3.19 drops the fields).
    let to_en = old
        .clone()
        .type_("ExternalName")
        .with(|s| s.ip_families = None);
    assert!(update(&p, "v4v6", old, to_en).mutation.is_empty());
    // From ExternalName: defaults as on CREATE (R4.1).
    let en = spec().type_("ExternalName");
    let d = update(&p, "v4v6", en, spec());
    assert_eq!(d.mutation, m(Some(PreferDualStack), Some(&[IPv6, IPv4])));
}

#[test]
fn updates_the_api_server_refuses_anyway_are_not_patched() {
    let p = policy(&format!("{PREFER_V6}{RESTORE}"));
    let single = stored("v4v6", spec());
    let ip0 = single.cluster_ips.clone().unwrap()[0].clone();
    // A secondary IP outside the range (R3.17), with the policy dropped: not restored, not denied.
    let upgrade = single
        .clone()
        .ips(&[&ip0, "fd00:99::1"])
        .families(&["IPv4", "IPv6"])
        .with(|s| s.ip_family_policy = None);
    assert_eq!(update(&p, "v4v6", single, upgrade), Decision::default());
}

// === /validate ===

fn judge(
    p: &Policy,
    c: &str,
    op: Operation,
    old: Option<ServiceSpec>,
    new: ServiceSpec,
) -> Decision {
    let new = service("prod-a", "web", &[("app", "web")], new);
    let old = old.map(|o| service("prod-a", "web", &[("app", "web")], o));
    let req = Request {
        operation: op,
        namespace: "prod-a",
        object: Some(&new),
        old_object: old.as_ref(),
    };
    validate(p, &cluster(c), &req)
}

const RULES: &str = r#"rules:
  - name: dual
    match: {namespaces: ["prod-*"]}
    require: {ipFamilyPolicies: [PreferDualStack, RequireDualStack], dualStack: true}
    action: Deny
  - name: v6-first
    require: {primaryFamily: IPv6}
    action: Warn
  - name: count
    require: {dualStack: true}
    action: Audit
"#;

#[test]
fn deny_warn_audit() {
    let p = policy(RULES);
    let d = judge(&p, "v4v6", Operation::Create, None, stored("v4v6", spec()));
    let Some((name, Denial(findings))) = &d.denial else {
        panic!("denied expected: {d:?}")
    };
    assert_eq!(name, "prod-a/web");
    assert_eq!(
        findings.len(),
        2,
        "policy and dual-stack violations of rule dual"
    );
    assert!(
        findings
            .iter()
            .all(|f| f.rule == "dual" && f.action == Action::Deny)
    );
    let msg = DenialMessage {
        name,
        denial: &d.denial.as_ref().unwrap().1,
    }
    .to_string();
    assert!(
        msg.contains("prod-a/web")
            && msg.contains("rule \"dual\"")
            && msg.contains("set spec.ipFamilyPolicy"),
        "{msg}"
    );
    assert_eq!(
        d.warnings,
        ["Service \"prod-a/web\": rule \"v6-first\": primary family IPv4 but IPv6 required"]
    );
    assert!(d.audit["findings"].contains("count(Audit)"));
    // Compliant: nothing at all.
    let ok = stored("v6v4", spec().policy("RequireDualStack"));
    let d = judge(&p, "v6v4", Operation::Create, None, ok);
    assert!(
        d.allowed() && d.warnings.is_empty() && d.audit.is_empty(),
        "{d:?}"
    );
}

#[test]
fn requirements_apply_only_where_the_cluster_can_meet_them() {
    let p = policy(RULES);
    // IPv4-only cluster: dualStack and primaryFamily IPv6 cannot be met, so they are not judged.
    let s = stored("v4", spec().policy("PreferDualStack"));
    let d = judge(&p, "v4", Operation::Create, None, s);
    assert!(d.allowed() && d.warnings.is_empty(), "{d:?}");
}

#[test]
fn grandfathering() {
    let p = policy(RULES);
    let old = stored("v4v6", spec());
    // An unrelated edit (same dual-stack fields) of a Service that already broke "dual": allowed, warned.
    let d = judge(
        &p,
        "v4v6",
        Operation::Update,
        Some(old.clone()),
        old.clone().type_("NodePort"),
    );
    assert!(d.allowed(), "{d:?}");
    assert_eq!(
        d.warnings,
        [
            "Service \"prod-a/web\": grandfathered by rule \"dual\": ipFamilyPolicy SingleStack not \
             allowed (set PreferDualStack)",
            "Service \"prod-a/web\": grandfathered by rule \"dual\": single-stack but dual-stack \
             required",
            "Service \"prod-a/web\": grandfathered by rule \"v6-first\": primary family IPv4 but IPv6 \
             required",
        ]
    );
    assert!(d.audit["findings"].contains("dual(Deny, grandfathered)"));
    // A downgrade moves it further from the policy: judged by the action.
    let dual = stored("v4v6", spec().policy("RequireDualStack"));
    let downgraded = crate::domain::apiserver_model::update(
        &dual,
        &dual.clone().policy("SingleStack"),
        &cluster("v4v6").service_cidrs.unwrap(),
    )
    .unwrap();
    let d = judge(&p, "v4v6", Operation::Update, Some(dual), downgraded);
    assert!(!d.allowed());
}

/// `enforcement` makes every rule's action milder, never stricter: one Service that breaks all of
/// RULES (`dual` Deny, `v6-first` Warn, `count` Audit), under each enforcement. The audit
/// annotation keeps the action as written, so a rollout shows what enforcing would refuse.
#[test]
fn enforcement_softens_every_rule() {
    const POLICY: &str = "ipFamilyPolicy SingleStack not allowed (set PreferDualStack)";
    const SINGLE: &str = "single-stack but dual-stack required";
    const PRIMARY: &str = "primary family IPv4 but IPv6 required";
    let warning =
        |rule: &str, short: &str| format!("Service \"prod-a/web\": rule \"{rule}\": {short}");
    let cases = [
        (
            "Deny",
            [Action::Deny, Action::Deny, Action::Warn, Action::Audit],
            vec![warning("v6-first", PRIMARY)],
            format!(
                "dual(Deny): {POLICY}; dual(Deny): {SINGLE}; v6-first(Warn): {PRIMARY}; \
                 count(Audit): {SINGLE}"
            ),
        ),
        (
            "Warn",
            [Action::Warn, Action::Warn, Action::Warn, Action::Audit],
            vec![
                warning("dual", POLICY),
                warning("dual", SINGLE),
                warning("v6-first", PRIMARY),
            ],
            format!(
                "dual(Deny enforced as Warn): {POLICY}; dual(Deny enforced as Warn): {SINGLE}; \
                 v6-first(Warn): {PRIMARY}; count(Audit): {SINGLE}"
            ),
        ),
        (
            "Audit",
            [Action::Audit; 4],
            vec![],
            format!(
                "dual(Deny enforced as Audit): {POLICY}; dual(Deny enforced as Audit): {SINGLE}; \
                 v6-first(Warn enforced as Audit): {PRIMARY}; count(Audit): {SINGLE}"
            ),
        ),
    ];
    for (enforcement, actions, warnings, findings) in cases {
        let p = policy(&format!("enforcement: {enforcement}\n{RULES}"));
        let d = judge(&p, "v4v6", Operation::Create, None, stored("v4v6", spec()));
        assert_eq!(d.allowed(), enforcement != "Deny", "{enforcement}: {d:?}");
        let got: Vec<Action> = d.findings.iter().map(|f| f.action).collect();
        assert_eq!(got, actions, "{enforcement}");
        let written: Vec<Action> = d.findings.iter().map(|f| f.written_action).collect();
        assert_eq!(
            written,
            [Action::Deny, Action::Deny, Action::Warn, Action::Audit],
            "{enforcement}"
        );
        assert_eq!(d.warnings, warnings, "{enforcement}");
        assert_eq!(d.audit["findings"], findings, "{enforcement}");
        assert_eq!(d.audit.contains_key("denied"), enforcement == "Deny");
    }
}

/// A grandfathered finding warns only where its rule, as enforced, would warn or deny.
#[test]
fn enforcement_audit_silences_grandfathered_warnings() {
    let p = policy(&format!("enforcement: Audit\n{RULES}"));
    let old = stored("v4v6", spec());
    let edit = old.clone().type_("NodePort");
    let d = judge(&p, "v4v6", Operation::Update, Some(old), edit);
    assert!(d.allowed() && d.warnings.is_empty(), "{d:?}");
    assert!(
        d.audit["findings"].starts_with(
            "dual(Deny enforced as Audit, grandfathered): ipFamilyPolicy SingleStack not allowed"
        ),
        "{:?}",
        d.audit
    );
}

/// Enforcement is about violations only: defaults and upgrades apply as written.
#[test]
fn enforcement_leaves_mutation_alone() {
    for enforcement in ["Deny", "Warn", "Audit"] {
        let p = policy(&format!("enforcement: {enforcement}\n{PREFER_V6}"));
        let d = create(&p, "v4v6", spec());
        assert_eq!(
            d.mutation,
            m(Some(PreferDualStack), Some(&[IPv6, IPv4])),
            "{enforcement}"
        );
    }
}

#[test]
fn relabelling_out_of_scope_does_not_escape_a_rule() {
    let p = policy(
        "rules: [{name: web, match: {objectSelector: {matchLabels: {app: web}}}, require: {dualStack: true}}]\n",
    );
    let dual = stored("v4v6", spec().policy("RequireDualStack"));
    let single = crate::domain::apiserver_model::update(
        &dual,
        &dual.clone().policy("SingleStack"),
        &cluster("v4v6").service_cidrs.unwrap(),
    )
    .unwrap();
    let old = service("prod-a", "web", &[("app", "web")], dual);
    let new = service("prod-a", "web", &[("app", "other")], single);
    let req = Request {
        operation: Operation::Update,
        namespace: "prod-a",
        object: Some(&new),
        old_object: Some(&old),
    };
    assert!(!validate(&p, &cluster("v4v6"), &req).allowed());
}

#[test]
fn dual_stack_false_means_single_stack() {
    let p = policy("rules: [{name: legacy, require: {dualStack: false, primaryFamily: IPv4}}]\n");
    let d = judge(
        &p,
        "v4v6",
        Operation::Create,
        None,
        stored("v4v6", spec().policy("PreferDualStack")),
    );
    let Some((_, Denial(findings))) = &d.denial else {
        panic!("denied expected: {d:?}")
    };
    let advice = m(Some(SingleStack), Some(&[IPv4]));
    assert_eq!(findings[0].violation, Violation::NotSingleStack { advice });
    assert_eq!(
        findings[0].violation.to_string(),
        "the Service has two IP families, must be single-stack; set spec.ipFamilyPolicy: \
         SingleStack and spec.ipFamilies: [IPv4]"
    );
    assert!(judge(&p, "v4v6", Operation::Create, None, stored("v4v6", spec())).allowed());
}

#[test]
fn not_judged_exempt_external_name_delete() {
    let p = policy(&format!("exemptNamespaces: [\"prod-*\"]\n{RULES}"));
    assert_eq!(
        judge(&p, "v4v6", Operation::Create, None, stored("v4v6", spec())),
        Decision::default()
    );
    let p = policy(RULES);
    assert_eq!(
        judge(
            &p,
            "v4v6",
            Operation::Create,
            None,
            spec().type_("ExternalName")
        ),
        Decision::default()
    );
    assert_eq!(
        judge(&p, "v4v6", Operation::Delete, None, stored("v4v6", spec())),
        Decision::default()
    );
}

#[test]
fn warnings_stay_short() {
    let long = "x".repeat(200);
    let p = policy(&format!(
        "rules: [{{name: {long}, require: {{dualStack: true}}, action: Warn}}]\n"
    ));
    let d = judge(&p, "v4v6", Operation::Create, None, stored("v4v6", spec()));
    // The Service and the start of the rule's name, cut at 119 characters with `…`.
    let kept = MAX_WARNING_CHARS - 1 - "Service \"prod-a/web\": rule \"".len();
    let want = format!("Service \"prod-a/web\": rule \"{}…", "x".repeat(kept));
    assert_eq!(d.warnings, [want]);
    assert_eq!(d.warnings[0].chars().count(), MAX_WARNING_CHARS);
}

#[test]
fn namespace_selector_sees_the_automatic_name_label() {
    let p = policy(
        "rules: [{name: r, match: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: prod-a}}}, require: {dualStack: true}}]\n",
    );
    assert!(!judge(&p, "v4v6", Operation::Create, None, stored("v4v6", spec())).allowed());
}

#[test]
fn a_type_change_that_unfreezes_prefer_dual_stack_is_said_r3_5() {
    // Said as part of the update protection the policy asks for; an empty policy says nothing.
    let old = stored("v4", spec().policy("PreferDualStack"));
    let unfreeze = old.clone().type_("LoadBalancer");
    assert_eq!(
        update(&policy(""), "v4v6", old.clone(), unfreeze),
        Decision::default()
    );
    let p = policy(RESTORE);
    let old = stored("v4", spec().policy("PreferDualStack"));
    let d = update(&p, "v4v6", old.clone(), old.clone().type_("LoadBalancer"));
    assert_eq!(
        d.warnings,
        [
            "Service \"apps/web\": changing the type lets the API server add IPv6 to this \
             PreferDualStack Service"
        ]
    );
    assert_eq!(
        d.audit["mutation"],
        "type change unfreezes PreferDualStack: the API server adds IPv6"
    );
    // Same type: frozen, nothing to say.
    assert!(
        update(&p, "v4v6", old.clone(), old.clone())
            .warnings
            .is_empty()
    );
    // Single-stack cluster: nothing can be added.
    assert!(
        update(&p, "v4", old.clone(), old.type_("LoadBalancer"))
            .warnings
            .is_empty()
    );
}

// === exclude ===

/// A rule applies where `match` matches and `exclude` does not; all of exclude's given conditions
/// must hold to exclude (Kyverno's semantics).
#[test]
fn exclude_leaves_out_what_all_its_conditions_match() {
    let p = policy(
        r#"rules:
  - name: dual
    match: {namespaces: ["prod-*"]}
    exclude:
      namespaces: ["prod-legacy*"]
      objectSelector: {matchLabels: {tier: old}}
    require: {dualStack: true}
"#,
    );
    let single = stored("v4v6", spec());
    let cases = [
        ("prod-a", &[("tier", "old")][..], true),
        ("prod-legacy", &[("tier", "new")][..], true),
        // Both conditions hold: excluded.
        ("prod-legacy", &[("tier", "old")][..], false),
        ("prod-legacy-2", &[("tier", "old")][..], false),
        // Not matched at all.
        ("dev", &[][..], false),
    ];
    for (ns, labels, applies) in cases {
        let svc = service(ns, "web", labels, single.clone());
        let req = Request {
            operation: Operation::Create,
            namespace: ns,
            object: Some(&svc),
            old_object: None,
        };
        let d = validate(&p, &cluster("v4v6"), &req);
        assert_eq!(!d.allowed(), applies, "{ns} {labels:?}: {d:?}");
    }
}

/// On UPDATE the rule applies if it applies to the old object or the new one: relabelling a
/// Service into the exclude does not escape the rule.
#[test]
fn relabelling_into_the_exclude_does_not_escape_a_rule() {
    let p = policy(
        "rules: [{name: web, exclude: {objectSelector: {matchLabels: {tier: old}}}, require: {dualStack: true}}]\n",
    );
    let c = cluster("v4v6");
    let cidrs = c.service_cidrs.clone().unwrap();
    let dual = stored("v4v6", spec().policy("RequireDualStack"));
    let single =
        crate::domain::apiserver_model::update(&dual, &dual.clone().policy("SingleStack"), &cidrs)
            .unwrap();
    let judge_update = |old_labels: &[(&str, &str)], new_labels: &[(&str, &str)]| {
        let old = service("prod-a", "web", old_labels, dual.clone());
        let new = service("prod-a", "web", new_labels, single.clone());
        let req = Request {
            operation: Operation::Update,
            namespace: "prod-a",
            object: Some(&new),
            old_object: Some(&old),
        };
        validate(&p, &c, &req).allowed()
    };
    assert!(!judge_update(&[], &[("tier", "old")]), "into the exclude");
    assert!(!judge_update(&[("tier", "old")], &[]), "out of the exclude");
    assert!(
        judge_update(&[("tier", "old")], &[("tier", "old")]),
        "excluded both times"
    );
}

// === advice ===

/// The denial of one rule on one Service, as text.
fn denial_text(p: &Policy, c: &str, s: ServiceSpec) -> Option<String> {
    let d = judge(p, c, Operation::Create, None, s);
    let (name, denial) = d.denial.as_ref()?;
    Some(DenialMessage { name, denial }.to_string())
}

/// `ipFamilyPolicies` is judged among the policies the cluster can store (RequireDualStack needs
/// two families, R3.13), and the advice names the first of them: never a policy the API server
/// refuses on this cluster.
#[test]
fn policy_advice_names_a_policy_the_cluster_stores_r3_13() {
    let only_require =
        policy("rules: [{name: r, require: {ipFamilyPolicies: [RequireDualStack]}}]\n");
    // Not judged where it cannot be met.
    assert_eq!(denial_text(&only_require, "v4", stored("v4", spec())), None);
    assert_eq!(
        denial_text(&only_require, "v4v6", stored("v4v6", spec())).unwrap(),
        "Service \"prod-a/web\" violates the dual-stack policy: rule \"r\": ipFamilyPolicy is \
         SingleStack, allowed: RequireDualStack; set spec.ipFamilyPolicy: RequireDualStack"
    );
    let require_or_prefer = policy(
        "rules: [{name: r, require: {ipFamilyPolicies: [RequireDualStack, PreferDualStack]}}]\n",
    );
    assert_eq!(
        denial_text(&require_or_prefer, "v4", stored("v4", spec())).unwrap(),
        "Service \"prod-a/web\" violates the dual-stack policy: rule \"r\": ipFamilyPolicy is \
         SingleStack, allowed: RequireDualStack, PreferDualStack; set spec.ipFamilyPolicy: \
         PreferDualStack"
    );
    // Unknown cluster: every policy is assumed storable, as before.
    assert_eq!(
        denial_text(&require_or_prefer, "unknown", stored("v4", spec())).unwrap(),
        "Service \"prod-a/web\" violates the dual-stack policy: rule \"r\": ipFamilyPolicy is \
         SingleStack, allowed: RequireDualStack, PreferDualStack; set spec.ipFamilyPolicy: \
         RequireDualStack"
    );
}

/// The policy advised meets the rule's other requirements too: with `dualStack: true`, the first
/// allowed dual-stack policy, not SingleStack.
#[test]
fn policy_advice_meets_the_whole_rule() {
    let p = policy(
        "rules: [{name: r, require: {ipFamilyPolicies: [SingleStack, PreferDualStack], dualStack: true}}]\n",
    );
    let d = judge(
        &p,
        "v4v6",
        Operation::Create,
        None,
        stored("v4v6", spec().policy("RequireDualStack")),
    );
    assert_eq!(
        d.findings[0].violation,
        Violation::PolicyNotAllowed {
            actual: Some(RequireDualStack),
            allowed: vec![SingleStack, PreferDualStack],
            advice: m(Some(PreferDualStack), None),
        }
    );
}

/// The families advised are only those the cluster has (R3.14): both where it is known to be
/// dual-stack and the policy is dual, else the required one alone (the API server adds the other
/// where it can, R3.16); one under SingleStack (R3.9).
#[test]
fn family_advice_lists_only_families_the_cluster_has_r3_14() {
    let p = policy("rules: [{name: r, require: {primaryFamily: IPv6}}]\n");
    let advice = |c: &str, s: ServiceSpec| {
        let d = judge(&p, c, Operation::Create, None, s);
        d.findings[0].violation.advice().clone()
    };
    let prefer = spec().policy("PreferDualStack");
    assert_eq!(
        advice("v4v6", stored("v4v6", prefer.clone())),
        m(None, Some(&[IPv6, IPv4]))
    );
    assert_eq!(
        advice("v4v6", stored("v4v6", spec())),
        m(None, Some(&[IPv6]))
    );
    assert_eq!(
        advice("unknown", stored("v4v6", prefer)),
        m(None, Some(&[IPv6]))
    );
    assert_eq!(
        denial_text(&p, "unknown", stored("v4", spec())).unwrap(),
        "Service \"prod-a/web\" violates the dual-stack policy: rule \"r\": primary IP family \
         (ipFamilies[0]) is IPv4, must be IPv6; set spec.ipFamilies: [IPv6] (an existing \
         Service's primary family cannot change: recreate it)"
    );
}

/// `dualStack: true` names the dual-stack policies the rule allows, RequireDualStack first.
#[test]
fn dual_stack_advice_names_the_policies_the_rule_allows() {
    let text = |allowed: &str| {
        let p = policy(&format!(
            "rules: [{{name: r, require: {{ipFamilyPolicies: {allowed}, dualStack: true}}}}]\n"
        ));
        denial_text(
            &p,
            "v4v6",
            stored("v4v6", spec().policy("PreferDualStack").families(&["IPv4"])),
        )
    };
    // PreferDualStack with one family on a dual-stack cluster is upgraded by the API server
    // (R3.16): the only way to one family is SingleStack, which is not allowed here.
    assert_eq!(text("[PreferDualStack, SingleStack]"), None);
    let p = policy("rules: [{name: r, require: {dualStack: true}}]\n");
    assert_eq!(
        denial_text(&p, "v4v6", stored("v4v6", spec())).unwrap(),
        "Service \"prod-a/web\" violates the dual-stack policy: rule \"r\": the Service has one \
         IP family, must be dual-stack; set spec.ipFamilyPolicy: RequireDualStack (or \
         PreferDualStack) and leave spec.ipFamilies unset or list both families"
    );
    let p = policy(
        "rules: [{name: r, require: {ipFamilyPolicies: [SingleStack, PreferDualStack], dualStack: true}}]\n",
    );
    assert_eq!(
        denial_text(&p, "v4v6", stored("v4v6", spec())).unwrap(),
        "Service \"prod-a/web\" violates the dual-stack policy: rule \"r\": the Service has one \
         IP family, must be dual-stack; set spec.ipFamilyPolicy: PreferDualStack and leave \
         spec.ipFamilies unset or list both families"
    );
}

mod advice_properties {
    //! The advice of every finding, applied to the Service as the client sent it, is accepted by
    //! the API server (the model) and meets the rule, on every shape of cluster the webhook knows
    //! (for clients that pin no cluster IP: pinned IPs decide the families, R3.10).

    use proptest::prelude::*;
    use proptest::sample::{select, subsequence};

    use super::*;
    use crate::domain::policy::lint::{self, Severity};
    use crate::domain::yaml_lines::Lines;

    /// What the webhook and the API server make of a CREATE: the stored spec and the findings of
    /// `/validate`, or `None` when the API server refuses it.
    fn admit(p: &Policy, c: &Cluster, sent: &ServiceSpec) -> Option<Vec<Finding>> {
        let cidrs = c.service_cidrs.as_ref()?;
        let svc = service("apps", "web", &[("app", "web")], sent.clone());
        let req = Request {
            operation: Operation::Create,
            namespace: "apps",
            object: Some(&svc),
            old_object: None,
        };
        let patched = mutate(p, c, &req).mutation.apply(sent);
        let stored = crate::domain::apiserver_model::create(&patched, cidrs).ok()?;
        let after = service("apps", "web", &[("app", "web")], stored);
        let req = Request {
            object: Some(&after),
            ..req
        };
        Some(validate(p, c, &req).findings)
    }

    /// Whether some choice of the dual-stack fields, the rest of the Service as sent, is accepted
    /// and meets the policy: where none is (e.g. R3.12 gives a headless Service without selector
    /// two families under PreferDualStack on any cluster), no advice can be right.
    fn satisfiable(p: &Policy, c: &Cluster, sent: &ServiceSpec) -> bool {
        let policies = [
            None,
            Some(SingleStack),
            Some(PreferDualStack),
            Some(RequireDualStack),
        ];
        let families: [Option<&[IpFamily]>; 5] = [
            None,
            Some(&[IPv4]),
            Some(&[IPv6]),
            Some(&[IPv4, IPv6]),
            Some(&[IPv6, IPv4]),
        ];
        policies.iter().any(|policy| {
            families.iter().any(|f| {
                let choice = sent.clone().with(|s| {
                    s.ip_family_policy = policy.map(|p| p.as_str().to_owned());
                    s.ip_families = f.map(|f| f.iter().map(|x| x.as_str().to_owned()).collect());
                });
                admit(p, c, &choice).is_some_and(|findings| findings.is_empty())
            })
        })
    }

    prop_compose! {
        fn arb_sent()(
            type_ in select(vec!["ClusterIP", "NodePort", "LoadBalancer"]),
            headless in any::<bool>(),
            selector in any::<bool>(),
            families in proptest::option::of(select(vec![
                vec!["IPv4"], vec!["IPv6"], vec!["IPv4", "IPv6"], vec!["IPv6", "IPv4"],
            ])),
            policy in proptest::option::of(select(vec![
                "SingleStack", "PreferDualStack", "RequireDualStack",
            ])),
        ) -> ServiceSpec {
            let mut s = spec().type_(type_);
            if headless { s = s.headless(); }
            if !selector { s = s.selectorless(); }
            if let Some(f) = families { s = s.families(&f); }
            if let Some(p) = policy { s = s.policy(p); }
            s
        }
    }

    prop_compose! {
        fn arb_policy_text()(
            allowed in proptest::option::of(subsequence(
                vec!["SingleStack", "PreferDualStack", "RequireDualStack"], 1..=3,
            ).prop_shuffle()),
            primary in proptest::option::of(select(vec!["IPv4", "IPv6"])),
            dual in proptest::option::of(any::<bool>()),
            default_policy in proptest::option::of(select(vec![
                "SingleStack", "PreferDualStack", "RequireDualStack",
            ])),
            default_families in proptest::option::of(select(vec![
                "[IPv4]", "[IPv6]", "[IPv4, IPv6]", "[IPv6, IPv4]",
            ])),
        ) -> String {
            let mut require = Vec::new();
            if let Some(a) = allowed { require.push(format!("ipFamilyPolicies: [{}]", a.join(", "))); }
            if let Some(f) = primary { require.push(format!("primaryFamily: {f}")); }
            if let Some(d) = dual { require.push(format!("dualStack: {d}")); }
            let mut defaults = Vec::new();
            if let Some(p) = default_policy { defaults.push(format!("ipFamilyPolicy: {p}")); }
            if let Some(f) = default_families { defaults.push(format!("ipFamilies: {f}")); }
            format!(
                "defaults: {{{}}}\nrules: [{{name: r, require: {{{}}}}}]\n",
                defaults.join(", "),
                require.join(", ")
            )
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]

        #[test]
        fn advice_is_accepted_and_meets_the_rule(text in arb_policy_text(), sent in arb_sent()) {
            let full = format!("apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n{text}");
            // Contradictions are refused by the lint: nothing to advise.
            let Ok(p) = Policy::from_yaml(&full) else { return Ok(()) };
            for shape in ServiceCidrs::every_shape() {
                // A rule the lint says cannot be met here flags every Service: no advice can help.
                let unsatisfiable = lint::lint(&p, &Lines::default(), Some(&shape))
                    .iter()
                    .any(|f| f.severity == Severity::Warning && f.field == "rules[0].require");
                if unsatisfiable {
                    continue;
                }
                let c = Cluster::with_cidrs(Some(shape.clone()));
                let Some(findings) = admit(&p, &c, &sent) else { continue };
                let Some(first) = findings.first() else { continue };
                if !satisfiable(&p, &c, &sent) {
                    continue;
                }
                let advice = first.violation.advice();
                for f in &findings {
                    prop_assert_eq!(f.violation.advice(), advice, "one advice per rule");
                }
                let advised = advice.apply(&sent);
                let after = admit(&p, &c, &advised);
                prop_assert!(
                    after.is_some(),
                    "{:?}: the API server refuses the advised {:?} (advice {:?}, findings {:?})",
                    shape, advised, advice, findings
                );
                prop_assert_eq!(
                    after.unwrap_or_default(), vec![],
                    "{:?}: advised {:?} (advice {:?}, findings {:?})", shape, advised, advice, findings
                );
            }
        }
    }
}
