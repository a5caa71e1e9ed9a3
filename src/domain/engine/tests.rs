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
        ..Mutation::default()
    }
}

#[test]
fn empty_policy_changes_nothing() {
    let p = policy("");
    for c in ["v4", "v4v6", "unknown"] {
        let d = create(&p, c, spec());
        assert!(
            d.mutation.is_empty() && d.allowed() && d.audit.is_empty() && d.warnings.is_empty()
        );
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
        // Unknown cluster: only the primary; the API server adds the other where it has it (R3.16).
        ("unknown", m(Some(PreferDualStack), Some(&[IPv6]))),
    ];
    for (c, want) in cases {
        let d = create(&p, c, spec());
        assert_eq!(d.mutation, want, "cluster {c}");
        assert!(d.allowed());
        assert!(d.audit["mutation"].contains("ipFamilyPolicy=PreferDualStack (policy defaults)"));
    }
}

#[test]
fn require_dual_stack_default_is_softened_on_single_stack_clusters_r3_13() {
    let p = policy("defaults: {ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]}\n");
    assert_eq!(
        create(&p, "v4v6", spec()).mutation,
        m(Some(RequireDualStack), Some(&[IPv4, IPv6]))
    );
    let d = create(&p, "v4", spec());
    assert_eq!(d.mutation, m(Some(PreferDualStack), Some(&[IPv4])));
    assert!(
        d.changes[0].contains("refused on this single-stack cluster"),
        "{:?}",
        d.changes
    );
    // R3.12: headless selectorless Services may be RequireDualStack anywhere, families unchecked.
    let d = create(&p, "v4", spec().headless().selectorless());
    assert_eq!(d.mutation.ip_family_policy, Some(RequireDualStack));
    assert_eq!(d.mutation.ip_families, Some(vec![IPv4, IPv6]));
    assert_eq!(
        d.mutation.cluster_ips,
        strings(&["None"]),
        "R3.1: clusterIPs follows clusterIP"
    );
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

#[test]
fn two_pinned_families_never_get_single_stack_r3_9() {
    let p = policy("defaults: {ipFamilyPolicy: SingleStack, ipFamilies: [IPv4]}\n");
    let d = create(&p, "v4v6", spec().families(&["IPv6", "IPv4"]));
    assert_eq!(d.mutation, m(Some(RequireDualStack), None));
    let d = create(
        &p,
        "v4v6",
        spec()
            .ip("fd00:10:96::10")
            .ips(&["fd00:10:96::10", "10.96.0.10"]),
    );
    assert_eq!(d.mutation.ip_family_policy, Some(RequireDualStack));
    assert_eq!(
        d.mutation.ip_families,
        Some(vec![IPv6, IPv4]),
        "R3.10: IP order decides"
    );
}

#[test]
fn pinned_ips_decide_family_order_r3_10() {
    let p = policy(PREFER_V6);
    // clusterIP only: clusterIPs follows (R3.1), families follow the IP, then the other (R3.16).
    let d = create(&p, "v4v6", spec().ip("10.96.0.10"));
    assert_eq!(d.mutation.cluster_ips, strings(&["10.96.0.10"]));
    assert_eq!(d.mutation.cluster_ip, None);
    assert_eq!(d.mutation.ip_families, Some(vec![IPv4, IPv6]));
    // clusterIPs only: clusterIP = clusterIPs[0] (R1.8).
    let d = create(&p, "v4v6", spec().ips(&["10.96.0.10", "fd00:10:96::10"]));
    assert_eq!(d.mutation.cluster_ip.as_deref(), Some("10.96.0.10"));
    assert_eq!(d.mutation.ip_families, Some(vec![IPv4, IPv6]));
    // Unknown cluster: only what the IPs say.
    let d = create(&p, "unknown", spec().ip("10.96.0.10"));
    assert_eq!(d.mutation.ip_families, Some(vec![IPv4]));
    // Single-stack default with one pinned IP: one family.
    let single = policy("defaults: {ipFamilyPolicy: SingleStack, ipFamilies: [IPv6]}\n");
    let d = create(&single, "v4v6", spec().ip("10.96.0.10"));
    assert_eq!(d.mutation.ip_families, Some(vec![IPv4]));
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
    assert!(
        create(&p, "v4v6", spec().families(&["IPv5"]))
            .mutation
            .is_empty(),
        "R1.9"
    );
    assert!(
        create(&p, "v4v6", spec().policy("DualStack"))
            .mutation
            .is_empty(),
        "R1.11"
    );
    assert!(
        create(&p, "v4v6", spec().ip("not-an-ip"))
            .mutation
            .is_empty(),
        "R1.12"
    );
    assert!(
        create(&p, "v4v6", spec().type_("Weird"))
            .mutation
            .is_empty(),
        "R1.18"
    );
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
    assert_eq!(d.mutation.cluster_ips, strings(&["None"]));
    assert_eq!(d.mutation.ip_families, Some(vec![IPv6, IPv4]));
    assert_eq!(d.mutation.ip_family_policy, Some(PreferDualStack));
}

#[test]
fn the_api_servers_refusals_are_named_first() {
    let p = policy("");
    let denial = |c: &str, s: ServiceSpec| match create(&p, c, s).denial {
        Some((name, Denial::ApiServer(r))) => {
            assert_eq!(name, "apps/web");
            r
        }
        other => panic!("expected an API server rejection, got {other:?}"),
    };
    assert!(
        matches!(
            denial("v4v6", spec().ip("10.97.0.1")),
            Rejection::NotInRange { index: 0, .. }
        ),
        "R3.17"
    );
    assert!(
        matches!(
            denial("v4v6", spec().ip("10.96.0.0")),
            Rejection::NotInRange { .. }
        ),
        "network address"
    );
    assert!(
        matches!(
            denial("v4", spec().ip("fd00:10:96::1")),
            Rejection::IpFamilyNotConfigured { .. }
        ),
        "R3.10"
    );
    assert_eq!(
        denial("v4", spec().policy("RequireDualStack")),
        Rejection::NotDualStackCluster,
        "R3.13"
    );
    assert_eq!(
        denial("v4", spec().families(&["IPv6"])),
        Rejection::FamilyNotConfigured {
            index: 0,
            family: IPv6
        },
        "R3.14"
    );
    // R3.12 exempts headless selectorless Services from R3.13/R3.14.
    assert!(
        create(
            &p,
            "v4",
            spec().headless().selectorless().policy("RequireDualStack")
        )
        .allowed()
    );
    // No cluster knowledge: no assumptions.
    assert!(create(&p, "unknown", spec().ip("192.168.0.1")).allowed());
    let msg = Rejection::NotInRange {
        index: 0,
        ip: "10.97.0.1".parse().unwrap(),
        range: "10.96.0.0/16".into(),
    }
    .to_string();
    assert!(
        msg.contains("failed to allocate IP 10.97.0.1") && msg.contains("10.96.0.0/16"),
        "{msg}"
    );
}

// === UPDATE ===

fn stored(cluster_name: &str, s: ServiceSpec) -> ServiceSpec {
    let cidrs = cluster(cluster_name).service_cidrs.unwrap();
    crate::domain::apiserver_model::create(&s, &cidrs).unwrap()
}

#[test]
fn update_restores_what_a_put_dropped_section_6() {
    let p = policy(PREFER_V6);
    let old = stored("v4", spec().policy("PreferDualStack"));
    let put = old.clone().with(|s| {
        s.ip_families = None;
        s.ip_family_policy = None;
        s.cluster_ips = None;
        s.cluster_ip = None;
    });
    let d = update(&p, "v4v6", old.clone(), put);
    assert_eq!(d.mutation, m(Some(PreferDualStack), Some(&[IPv4])));
    assert!(d.audit["mutation"].contains("restored"));
    // kubectl label / apply: the stored fields come back unchanged: nothing to do.
    assert!(update(&p, "v4v6", old.clone(), old).mutation.is_empty());
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
    assert!(d.warnings[0].contains("added IPv6"), "{:?}", d.warnings);
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
fn update_checks_only_newly_pinned_ips() {
    let p = policy("");
    let old = stored("v4v6", spec().policy("PreferDualStack"));
    assert!(update(&p, "v4v6", old.clone(), old.clone()).allowed());
    // An IP now outside a (shrunk) range but already stored is not ours to refuse.
    assert!(
        update(
            &p,
            "v4v6",
            old.clone()
                .with(|s| s.cluster_ip = Some("10.96.0.1".into())),
            old.clone()
        )
        .allowed()
    );
    let single = stored("v4v6", spec());
    let ip0 = single.cluster_ips.clone().unwrap()[0].clone();
    let upgrade = single
        .clone()
        .policy("RequireDualStack")
        .ips(&[&ip0, "fd00:99::1"])
        .families(&["IPv4", "IPv6"]);
    assert!(matches!(
        update(&p, "v4v6", single, upgrade).denial,
        Some((_, Denial::ApiServer(Rejection::NotInRange { index: 1, .. })))
    ));
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
    let Some((name, Denial::Rules(findings))) = &d.denial else {
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
        ["rule \"v6-first\": primary family IPv4 but IPv6 required"]
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
    assert!(
        d.warnings
            .iter()
            .any(|w| w.starts_with("grandfathered by rule \"dual\"")),
        "{:?}",
        d.warnings
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
    assert!(
        matches!(&d.denial, Some((_, Denial::Rules(f))) if f[0].violation == Violation::NotSingleStack)
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
    assert_eq!(d.warnings.len(), 1);
    assert!(d.warnings[0].chars().count() < 120);
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
    let p = policy("");
    let old = stored("v4", spec().policy("PreferDualStack"));
    let d = update(&p, "v4v6", old.clone(), old.clone().type_("LoadBalancer"));
    assert!(d.warnings[0].contains("add IPv6"), "{:?}", d.warnings);
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
