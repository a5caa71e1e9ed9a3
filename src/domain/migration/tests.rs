//! Table tests: one per outcome of [`plan`] and [`rollback`], citing the API server rule they rely on.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;

use super::*;
use crate::domain::service::IpFamily::{IPv4, IPv6};
use crate::domain::service::IpFamilyPolicy::{PreferDualStack, RequireDualStack, SingleStack};
use crate::testing::*;

const DUAL: &str = "10.96.0.0/16,fd00:10:96::/112";

fn policy(body: &str) -> Policy {
    Policy::from_yaml(&format!(
        "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n{body}"
    ))
    .unwrap()
}

/// Defaults PreferDualStack; LoadBalancers RequireDualStack; `legacy` exempt; a Deny rule on
/// `prod` that wants IPv6 first.
fn the_policy() -> Policy {
    policy(
        "exemptNamespaces: [legacy]
defaults: {ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv6, IPv4]}
rules:
  - name: lb-require
    match: {types: [LoadBalancer]}
    defaults: {ipFamilyPolicy: RequireDualStack}
  - name: prod-v6-first
    match: {namespaces: [prod]}
    require: {primaryFamily: IPv6}
    action: Deny
  - name: single-only
    match: {namespaces: [single]}
    require: {ipFamilyPolicies: [SingleStack]}
    action: Deny
",
    )
}

/// A Service stored on the IPv4-only cluster: SingleStack [IPv4] with one IP.
fn v4_spec() -> ServiceSpec {
    spec()
        .ip("10.96.0.10")
        .ips(&["10.96.0.10"])
        .families(&["IPv4"])
        .policy("SingleStack")
}

fn stored(namespace: &str, spec: ServiceSpec) -> Stored {
    Stored {
        service: service(namespace, "web", &[("app", "web")], spec),
        ..Stored::default()
    }
}

fn plan_in(cidrs: Option<&str>, s: &Stored) -> Outcome {
    plan(&the_policy(), &Cluster::with_cidrs(cidrs.map(cidrs_of)), s)
}

fn cidrs_of(list: &str) -> crate::cluster::ServiceCidrs {
    cidrs(list)
}

fn stack(p: IpFamilyPolicy, f: &[IpFamily]) -> Stack {
    Stack {
        ip_family_policy: p,
        ip_families: f.to_vec(),
    }
}

fn change(from: Stack, to: Stack, because: &str) -> Outcome {
    Outcome::Change(Change {
        from,
        to,
        because: because.to_owned(),
    })
}

/// SingleStack [IPv4] → PreferDualStack [IPv4,IPv6] by the policy defaults: the common change.
fn v4_to_prefer() -> Outcome {
    change(
        stack(SingleStack, &[IPv4]),
        stack(PreferDualStack, &[IPv4, IPv6]),
        "policy defaults",
    )
}

#[test]
fn single_stack_gets_the_default_policy_and_the_secondary_family() {
    // R2.2: the primary stays first (the policy's IPv6-first order does not move it); R3.18
    // allocates the secondary IP.
    assert_eq!(
        plan_in(Some(DUAL), &stored("apps", v4_spec())),
        v4_to_prefer()
    );
}

#[test]
fn a_rule_s_defaults_win() {
    let s = stored("apps", v4_spec().type_("LoadBalancer"));
    assert_eq!(
        plan_in(Some(DUAL), &s),
        change(
            stack(SingleStack, &[IPv4]),
            stack(RequireDualStack, &[IPv4, IPv6]),
            "defaults of rule \"lb-require\""
        )
    );
}

#[test]
fn frozen_prefer_dual_stack_is_upgraded() {
    // R3.5: a PreferDualStack Service created on the single-stack cluster keeps one family until
    // its families are set; migrate sets them.
    let s = stored("apps", v4_spec().policy("PreferDualStack"));
    assert_eq!(
        plan_in(Some(DUAL), &s),
        change(
            stack(PreferDualStack, &[IPv4]),
            stack(PreferDualStack, &[IPv4, IPv6]),
            "policy defaults"
        )
    );
}

#[test]
fn headless_services_are_upgraded_without_ips() {
    // R2.1 and R2.2 do not apply to headless Services; R3.17: no IP is allocated.
    for selector in [true, false] {
        let mut s = v4_spec().headless().ips(&["None"]);
        if !selector {
            s = s.selectorless();
        }
        assert_eq!(
            plan_in(Some(DUAL), &stored("apps", s)),
            v4_to_prefer(),
            "selector: {selector}"
        );
    }
}

#[test]
fn a_headless_service_s_applied_none_is_no_pin() {
    let mut s = stored("apps", v4_spec().headless().ips(&["None"]));
    s.pinners = vec!["platform-gitops".into()];
    assert!(matches!(plan_in(Some(DUAL), &s), Outcome::Change(_)));
}

#[test]
fn every_reason_to_skip() {
    let v4 = || v4_spec();
    let dual = v4()
        .ips(&["10.96.0.10", "fd00:10:96::10"])
        .families(&["IPv4", "IPv6"])
        .policy("PreferDualStack");
    let external = spec().type_("ExternalName").selectorless();
    let with = |s: ServiceSpec, f: fn(&mut Stored)| {
        let mut st = stored("apps", s);
        f(&mut st);
        st
    };
    let cases: Vec<(&str, Option<&str>, Stored, Skip)> = vec![
        ("exempt", Some(DUAL), stored("legacy", v4()), Skip::Exempt),
        (
            "the API server's own",
            Some(DUAL),
            {
                let mut s = stored("default", v4());
                s.service.metadata.name = "kubernetes".into();
                s
            },
            Skip::ApiServer,
        ),
        (
            "external name (R1.4)",
            Some(DUAL),
            stored("apps", external),
            Skip::ExternalName,
        ),
        (
            "no families stored",
            Some(DUAL),
            stored("apps", spec()),
            Skip::Unreadable,
        ),
        (
            "single-stack cluster",
            Some("10.96.0.0/16"),
            stored("apps", v4()),
            Skip::ClusterNotDualStack,
        ),
        (
            "unknown cluster",
            None,
            stored("apps", v4()),
            Skip::ClusterNotDualStack,
        ),
        (
            "dual-stack already",
            Some(DUAL),
            stored("apps", dual.clone()),
            Skip::AlreadyDualStack,
        ),
        (
            "migrated",
            Some(DUAL),
            with(dual, |s| {
                s.annotations.insert(RECORD_ANNOTATION.into(), "{}".into());
            }),
            Skip::Migrated,
        ),
        (
            "argo cd",
            Some(DUAL),
            with(v4(), |s| {
                s.annotations.insert(
                    "argocd.argoproj.io/tracking-id".into(),
                    "app:/Service:apps/web".into(),
                );
            }),
            Skip::GitOps("argocd.argoproj.io/tracking-id".into()),
        ),
        (
            "flux label",
            Some(DUAL),
            with(v4(), |s| {
                s.service
                    .metadata
                    .labels
                    .insert("kustomize.toolkit.fluxcd.io/name".into(), "apps".into());
            }),
            Skip::GitOps("kustomize.toolkit.fluxcd.io/name".into()),
        ),
        (
            "applied by another manager",
            Some(DUAL),
            with(v4(), |s| s.appliers = vec!["platform-gitops".into()]),
            Skip::ManagedBy("platform-gitops".into()),
        ),
        (
            "clusterIPs applied by another manager",
            Some(DUAL),
            with(v4(), |s| s.pinners = vec!["platform-gitops".into()]),
            Skip::Pinned("platform-gitops".into()),
        ),
    ];
    for (name, cidrs, s, want) in cases {
        assert_eq!(plan_in(cidrs, &s), Outcome::Skip(want), "{name}");
    }
}

#[test]
fn no_dual_stack_default_is_no_change() {
    let cluster = Cluster::with_cidrs(Some(cidrs(DUAL)));
    let s = stored("apps", v4_spec());
    for body in [
        "",
        "defaults: {ipFamilies: [IPv6, IPv4]}\n",
        "defaults: {ipFamilyPolicy: SingleStack}\n",
    ] {
        assert_eq!(
            plan(&policy(body), &cluster, &s),
            Outcome::Skip(Skip::NoDefault),
            "{body}"
        );
    }
}

#[test]
fn what_the_policy_would_deny_is_not_changed() {
    let got = plan_in(Some(DUAL), &stored("single", v4_spec()));
    assert_eq!(
        got,
        Outcome::Skip(Skip::Denied(
            "Service \"single/web\" violates the dual-stack policy: rule \"single-only\": \
             ipFamilyPolicy is PreferDualStack, allowed: SingleStack; set spec.ipFamilyPolicy: \
             SingleStack and spec.ipFamilies: [IPv4]"
                .into()
        ))
    );
}

#[test]
fn a_violation_the_change_does_not_worsen_is_grandfathered() {
    // prod-v6-first is violated before and after (R2.2 keeps IPv4 first): as /validate judges
    // the update, not a denial.
    let got = plan_in(Some(DUAL), &stored("prod", v4_spec()));
    assert_eq!(got, v4_to_prefer());
}

#[test]
fn ipv6_primary_clusters_keep_ipv6_first() {
    let s = stored(
        "apps",
        spec()
            .ip("fd00:10:96::10")
            .ips(&["fd00:10:96::10"])
            .families(&["IPv6"])
            .policy("SingleStack"),
    );
    assert_eq!(
        plan_in(Some("fd00:10:96::/112,10.96.0.0/16"), &s),
        change(
            stack(SingleStack, &[IPv6]),
            stack(PreferDualStack, &[IPv6, IPv4]),
            "policy defaults"
        )
    );
}

fn migrated(record: &str) -> Stored {
    let mut s = stored(
        "apps",
        v4_spec()
            .ips(&["10.96.0.10", "fd00:10:96::10"])
            .families(&["IPv4", "IPv6"])
            .policy("PreferDualStack"),
    );
    s.annotations
        .insert(RECORD_ANNOTATION.into(), record.into());
    s
}

#[test]
fn rollback_returns_to_the_recorded_family_single_stack() {
    // R3.8: SingleStack trims clusterIPs and ipFamilies to the primary; R2.1 allows the shrink.
    let cluster = Cluster::with_cidrs(Some(cidrs(DUAL)));
    let record = stack(SingleStack, &[IPv4]).record();
    assert_eq!(
        record,
        r#"{"ipFamilyPolicy":"SingleStack","ipFamilies":["IPv4"]}"#
    );
    assert_eq!(
        rollback(&cluster, &migrated(&record)),
        change(
            stack(PreferDualStack, &[IPv4, IPv6]),
            stack(SingleStack, &[IPv4]),
            "recorded SingleStack [IPv4]"
        )
    );
    // R3.16: PreferDualStack with one family cannot be stored on a dual-stack cluster.
    let record = stack(PreferDualStack, &[IPv4]).record();
    assert_eq!(
        rollback(&cluster, &migrated(&record)),
        change(
            stack(PreferDualStack, &[IPv4, IPv6]),
            stack(SingleStack, &[IPv4]),
            "recorded PreferDualStack [IPv4]"
        )
    );
}

#[test]
fn rollback_skips() {
    let cluster = Cluster::with_cidrs(Some(cidrs(DUAL)));
    assert_eq!(
        rollback(&cluster, &stored("apps", v4_spec())),
        Outcome::Skip(Skip::NotMigrated)
    );
    let Outcome::Skip(Skip::BadRecord(why)) = rollback(&cluster, &migrated("nope")) else {
        panic!("bad record")
    };
    assert_eq!(why, "expected ident at line 1 column 2");
    let record = stack(SingleStack, &[IPv6]).record();
    assert_eq!(
        rollback(&cluster, &migrated(&record)),
        Outcome::Skip(Skip::BadRecord(
            "records IPv6 first, the Service has [IPv4,IPv6]".into()
        ))
    );
}

#[test]
fn appliers_are_apply_managers_of_the_stack_fields_but_migrate() {
    let entry = |manager: &str, operation: &str, spec: serde_json::Value| ManagedFieldsEntry {
        manager: Some(manager.into()),
        operation: Some(operation.into()),
        fields_v1: Some(FieldsV1(serde_json::json!({ "f:spec": spec }))),
        ..ManagedFieldsEntry::default()
    };
    let stack_fields = serde_json::json!({"f:ipFamilyPolicy": {}, "f:ports": {}});
    let entries = [
        entry("argocd-controller", "Apply", stack_fields.clone()),
        entry("kubectl-create", "Update", stack_fields.clone()),
        entry(FIELD_MANAGER, "Apply", stack_fields),
        entry("helm", "Apply", serde_json::json!({"f:ports": {}})),
        entry("flux", "Apply", serde_json::json!({"f:ipFamilies": {}})),
    ];
    assert_eq!(
        appliers(&entries, &STACK_FIELDS),
        ["argocd-controller", "flux"]
    );
    let pinned = [entry(
        "gitops",
        "Apply",
        serde_json::json!({"f:clusterIPs": {}}),
    )];
    assert_eq!(appliers(&pinned, &CLUSTER_IPS_FIELD), ["gitops"]);
    assert!(appliers(&pinned, &STACK_FIELDS).is_empty());
}

#[test]
fn skip_messages() {
    assert_eq!(
        Skip::ManagedBy("argocd".into()).to_string(),
        "ipFamilyPolicy/ipFamilies applied by \"argocd\": change them there"
    );
    assert_eq!(
        Skip::Migrated.to_string(),
        "migrated already (migrate.dualstack-webhook.io/migrated-from)"
    );
}

mod properties {
    //! For random Services stored by a single-stack cluster that then becomes dual-stack: every
    //! planned change is an update the API server accepts, with the planned families, the primary
    //! IP unchanged (R2.1); nothing the policy asks for is refused; and the rollback of each is
    //! accepted and gives the stored family and IP back (R3.8).

    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;

    /// (single-stack range, the dual-stack ranges it becomes, same primary).
    const UPGRADES: [(&str, &str); 2] = [
        ("10.96.0.0/16", "10.96.0.0/16,fd00:10:96::/112"),
        ("fd00:10:96::/112", "fd00:10:96::/112,10.96.0.0/16"),
    ];
    const IPS: [&str; 4] = ["10.96.0.10", "fd00:10:96::10", "None", ""];

    prop_compose! {
        fn arb_created()(
            type_ in select(vec!["ClusterIP", "NodePort", "LoadBalancer"]),
            ip in select(&IPS[..]),
            policy in proptest::option::of(select(vec!["SingleStack", "PreferDualStack", "RequireDualStack"])),
            families in proptest::option::of(select(vec!["IPv4", "IPv6"])),
            selector in any::<bool>(),
        ) -> ServiceSpec {
            let mut s = spec().type_(type_);
            if !ip.is_empty() { s = s.ip(ip); }
            if let Some(p) = policy { s = s.policy(p); }
            if let Some(f) = families { s = s.families(&[f]); }
            if !selector { s = s.selectorless(); }
            s
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn planned_changes_are_accepted_and_roll_back(
            created in arb_created(),
            (single, dual) in select(&UPGRADES[..]),
            default in select(vec!["PreferDualStack", "RequireDualStack"]),
        ) {
            // What the single-stack cluster stored (requests it refuses are not Services).
            let Ok(stored_spec) = apiserver_model::create(&created, &cidrs(single)) else {
                return Ok(());
            };
            let policy = policy(&format!("defaults: {{ipFamilyPolicy: {default}}}\n"));
            let dual_cidrs = cidrs(dual);
            let cluster = Cluster::with_cidrs(Some(dual_cidrs.clone()));
            let outcome = plan(&policy, &cluster, &stored("apps", stored_spec.clone()));
            let change = match outcome {
                Outcome::Change(c) => c,
                Outcome::Skip(Skip::AlreadyDualStack) => {
                    prop_assert_eq!(stored_spec.ip_families.as_ref().map(Vec::len), Some(2));
                    return Ok(());
                }
                Outcome::Skip(other) => {
                    return Err(TestCaseError::fail(format!("{stored_spec:?}: {other:?}")));
                }
            };
            let migrated = apiserver_model::update(&stored_spec, &change.to.apply(&stored_spec), &dual_cidrs)
                .map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
            let want: Vec<String> = change.to.ip_families.iter().map(|f| f.as_str().to_owned()).collect();
            prop_assert_eq!(migrated.ip_families.as_ref(), Some(&want));
            prop_assert_eq!(
                migrated.cluster_ips.as_ref().and_then(|ips| ips.first()),
                stored_spec.cluster_ips.as_ref().and_then(|ips| ips.first())
            );
            // The rollback of what was stored.
            let mut after = stored("apps", migrated.clone());
            after.annotations.insert(RECORD_ANNOTATION.into(), change.from.record());
            let Outcome::Change(back) = rollback(&cluster, &after) else {
                return Err(TestCaseError::fail("no rollback"));
            };
            let restored = apiserver_model::update(&migrated, &back.to.apply(&migrated), &dual_cidrs)
                .map_err(|e| TestCaseError::fail(format!("rollback refused: {e}")))?;
            prop_assert_eq!(restored.ip_families, stored_spec.ip_families);
            prop_assert_eq!(restored.cluster_ips, stored_spec.cluster_ips);
        }
    }
}
