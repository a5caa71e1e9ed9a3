//! The model against Kubernetes' own test tables (TestCreateInitIPFields, TestValidateServiceCreate/Update,
//! TestFeatureType): if the model is wrong, the property tests that use it as oracle prove nothing.

use super::*;
use crate::testing::*;

const V4V6: &str = "10.96.0.0/16,fd00:10:96::/112";
const V6V4: &str = "fd00:10:96::/112,10.96.0.0/16";
const V4: &str = "10.96.0.0/16";

fn families(s: &ServiceSpec) -> Vec<String> {
    s.ip_families.clone().unwrap_or_default()
}

fn rule_of(r: Result<ServiceSpec>) -> &'static str {
    r.expect_err("must be refused").rule
}

#[test]
fn r3d_defaults_table() {
    // (cluster, request, policy, families, number of clusterIPs)
    let ok = |c: &str, s: ServiceSpec, p: &str, f: &[&str], n: usize| {
        let out = create(&s, &cidrs(c)).unwrap_or_else(|e| panic!("{s:?} on {c}: {e}"));
        assert_eq!(out.ip_family_policy.as_deref(), Some(p), "{s:?} on {c}");
        assert_eq!(families(&out), strings(f).unwrap(), "{s:?} on {c}");
        assert_eq!(
            out.cluster_ips.as_ref().map_or(0, Vec::len),
            n,
            "{s:?} on {c}"
        );
        assert_eq!(
            out.cluster_ip.as_deref(),
            out.cluster_ips.as_ref().map(|v| v[0].as_str()),
            "R3.17 clusterIP = clusterIPs[0]"
        );
    };
    ok(V4V6, spec(), "SingleStack", &["IPv4"], 1);
    ok(V6V4, spec(), "SingleStack", &["IPv6"], 1);
    ok(
        V4V6,
        spec().policy("PreferDualStack"),
        "PreferDualStack",
        &["IPv4", "IPv6"],
        2,
    );
    ok(
        V6V4,
        spec().policy("PreferDualStack"),
        "PreferDualStack",
        &["IPv6", "IPv4"],
        2,
    );
    ok(
        V4,
        spec().policy("PreferDualStack"),
        "PreferDualStack",
        &["IPv4"],
        1,
    );
    ok(
        V4V6,
        spec().ip("fd00:10:96::5").ips(&["fd00:10:96::5"]),
        "SingleStack",
        &["IPv6"],
        1,
    );
    ok(V4V6, spec().headless(), "SingleStack", &["IPv4"], 1);
    ok(
        V4,
        spec().headless().selectorless(),
        "RequireDualStack",
        &["IPv4", "IPv6"],
        1,
    );
    ok(
        V4,
        spec().headless().selectorless().families(&["IPv6"]),
        "RequireDualStack",
        &["IPv6", "IPv4"],
        1,
    );
    ok(
        V4V6,
        spec().policy("PreferDualStack").families(&["IPv6"]),
        "PreferDualStack",
        &["IPv6", "IPv4"],
        2,
    );
    assert_eq!(
        rule_of(create(&spec().policy("RequireDualStack"), &cidrs(V4))),
        "R3.13"
    );
    assert_eq!(
        rule_of(create(&spec().families(&["IPv4", "IPv6"]), &cidrs(V4V6))),
        "R3.9"
    );
    assert_eq!(
        rule_of(create(
            &spec().headless().policy("RequireDualStack"),
            &cidrs(V4)
        )),
        "R3.13"
    );
    assert_eq!(
        rule_of(create(&spec().type_("NodePort").headless(), &cidrs(V4V6))),
        "R1.3"
    );
    assert_eq!(
        rule_of(create(
            &spec().type_("LoadBalancer").headless(),
            &cidrs(V4V6)
        )),
        "R1.2"
    );
    let en = spec().type_("ExternalName").selectorless();
    assert_eq!(create(&en, &cidrs(V4V6)).unwrap(), en);
    assert_eq!(
        rule_of(create(&en.clone().ip("1.2.3.4"), &cidrs(V4V6))),
        "R1.4"
    );
    assert_eq!(
        rule_of(create(&en.clone().policy("SingleStack"), &cidrs(V4V6))),
        "R1.4"
    );
}

#[test]
fn r1_field_validation() {
    let c = cidrs(V4V6);
    assert_eq!(rule_of(create(&spec().ips(&["10.96.0.5"]), &c)), "R1.8");
    assert_eq!(
        rule_of(create(&spec().ip("10.96.0.5").ips(&["10.96.0.6"]), &c)),
        "R1.7"
    );
    assert_eq!(rule_of(create(&spec().families(&["IPv5"]), &c)), "R1.9");
    assert_eq!(
        rule_of(create(
            &spec().policy("PreferDualStack").families(&["IPv4", "IPv4"]),
            &c
        )),
        "R1.10"
    );
    assert_eq!(rule_of(create(&spec().policy("DualStack"), &c)), "R1.11");
    assert_eq!(
        rule_of(create(
            &spec()
                .ip("10.96.0.5")
                .ips(&["10.96.0.5", "None"])
                .policy("PreferDualStack"),
            &c
        )),
        "R1.12"
    );
    assert_eq!(
        rule_of(create(
            &spec()
                .ip("10.96.0.5")
                .ips(&["10.96.0.5", "10.96.0.6"])
                .policy("PreferDualStack"),
            &c
        )),
        "R1.14"
    );
    assert_eq!(
        rule_of(create(
            &spec()
                .ip("10.96.0.5")
                .ips(&["10.96.0.5"])
                .families(&["IPv6"]),
            &c
        )),
        "R1.15"
    );
    assert_eq!(rule_of(create(&spec().ip("10.97.0.5"), &c)), "R3.17");
    assert_eq!(
        rule_of(create(&spec().ip("fd00:10:96::5"), &cidrs(V4))),
        "R3.10"
    );
    assert_eq!(
        rule_of(create(&spec().families(&["IPv6"]), &cidrs(V4))),
        "R3.14"
    );
    // R1.16: 1 IP + 2 families is valid
    let out = create(
        &spec()
            .ip("10.96.0.5")
            .ips(&["10.96.0.5"])
            .families(&["IPv4", "IPv6"])
            .policy("RequireDualStack"),
        &c,
    )
    .unwrap();
    assert_eq!(out.cluster_ips.unwrap().len(), 2);
}

fn stored(c: &str, s: ServiceSpec) -> ServiceSpec {
    create(&s, &cidrs(c)).unwrap()
}

#[test]
fn r2_update_rules_and_r4_type_changes() {
    let c = cidrs(V4V6);
    let single = stored(V4V6, spec());
    let dual = stored(V4V6, spec().policy("RequireDualStack"));
    // label-only style update (the same object) is accepted and unchanged
    assert_eq!(update(&single, &single, &c).unwrap(), single);
    // upgrade by policy
    let up = update(&single, &single.clone().policy("RequireDualStack"), &c).unwrap();
    assert_eq!(families(&up), ["IPv4", "IPv6"]);
    assert_eq!(
        up.cluster_ips.as_ref().unwrap()[0],
        single.cluster_ips.as_ref().unwrap()[0]
    );
    // downgrade by policy only (R3.8 trims)
    let down = update(&dual, &dual.clone().policy("SingleStack"), &c).unwrap();
    assert_eq!(families(&down), ["IPv4"]);
    // downgrade without SingleStack is refused
    let half = dual
        .clone()
        .ips(&[&dual.cluster_ips.as_ref().unwrap()[0]])
        .families(&["IPv4"]);
    assert_eq!(rule_of(update(&dual, &half, &c)), "R3.8");
    // primary family flip refused
    assert_eq!(
        rule_of(update(&single, &single.clone().families(&["IPv6"]), &c)),
        "R1.15"
    );
    // ClusterIP -> headless refused (R4.5)
    let to_headless = single.clone().ip("None").ips(&["None"]);
    assert_eq!(rule_of(update(&single, &to_headless, &c)), "R2.1");
    // headless may change families freely
    let h = stored(V4V6, spec().headless().policy("PreferDualStack"));
    assert_eq!(families(&h), ["IPv4", "IPv6"]);
    let flipped = update(&h, &h.clone().families(&["IPv6"]).policy("SingleStack"), &c).unwrap();
    assert_eq!(families(&flipped), ["IPv6"]);
    // R4.1 ExternalName -> ClusterIP, R4.2 back
    let en = spec().type_("ExternalName");
    let to_cip = update(&en, &spec(), &c).unwrap();
    assert_eq!(families(&to_cip), ["IPv4"]);
    let back = update(&single, &single.clone().type_("ExternalName"), &c).unwrap();
    assert_eq!(back.cluster_ips, None);
    assert_eq!(back.ip_families, None);
    // R4.4 ClusterIP -> NodePort keeps IPs
    let np = update(&dual, &dual.clone().type_("NodePort"), &c).unwrap();
    assert_eq!(np.cluster_ips, dual.cluster_ips);
}

#[test]
fn r3_5_prefer_dual_stack_freeze_and_its_edge() {
    // A PreferDualStack Service created on an IPv4-only cluster, then the cluster becomes dual-stack.
    let old = stored(V4, spec().policy("PreferDualStack"));
    assert_eq!(families(&old), ["IPv4"]);
    let dual = cidrs(V4V6);
    // kubectl label/apply-style: the whole stored spec comes back: frozen, no upgrade (R3.5).
    assert_eq!(families(&update(&old, &old, &dual).unwrap()), ["IPv4"]);
    // A PUT that omits ipFamilies is not "matching": R3.16 upgrades it (§6 edge).
    let put = old.clone().with(|s| s.ip_families = None);
    assert_eq!(
        families(&update(&old, &put, &dual).unwrap()),
        ["IPv4", "IPv6"]
    );
    // A PUT that omits ipFamilyPolicy too (R3.6 inherits PreferDualStack, but the freeze needs it explicit).
    let put = old.clone().with(|s| {
        s.ip_families = None;
        s.ip_family_policy = None;
    });
    assert_eq!(
        families(&update(&old, &put, &dual).unwrap()),
        ["IPv4", "IPv6"]
    );
    let put = old.clone().with(|s| s.ip_family_policy = None);
    assert_eq!(
        families(&update(&old, &put, &dual).unwrap()),
        ["IPv4", "IPv6"]
    );
}

/// What users read names the field and the API server's detail, not the internal rule number;
/// the rule stays on the error for debug output and tests.
#[test]
fn a_refusal_reads_without_the_rule_number() {
    let error = create(&spec().policy("RequireDualStack"), &cidrs(V4)).unwrap_err();
    assert_eq!(error.rule, "R3.13");
    assert_eq!(
        error.to_string(),
        "spec.ipFamilyPolicy: this cluster is not configured for dual-stack services"
    );
}
