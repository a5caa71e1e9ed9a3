//! Policy parsing and validation: every field, every refusal names the field.

use super::*;

const HEADER: &str = "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n";

fn parse(body: &str) -> Result<Policy, PolicyError> {
    Policy::from_yaml(&format!("{HEADER}{body}"))
}

fn error(body: &str) -> String {
    parse(body).expect_err("policy must be refused").to_string()
}

#[test]
fn the_example_policy_parses() {
    let p = Policy::from_yaml(include_str!("../../../manifests/policy.yaml")).unwrap();
    assert!(!p.rules.is_empty());
    assert!(p.defaults.ip_family_policy.is_some());
}

#[test]
fn empty_policy_is_valid_and_empty() {
    let p = parse("").unwrap();
    assert_eq!(p.defaults, Defaults::default());
    assert!(p.rules.is_empty());
    assert!(p.exempt_namespaces.is_empty());
}

#[test]
fn full_schema_round_trips() {
    let p = parse(
        r#"
exemptNamespaces: [kube-system, "team-*"]
defaults:
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv6, IPv4]
rules:
  - name: public-lb-dual-stack
    match:
      namespaces: ["prod-*"]
      namespaceSelector: {matchLabels: {exposure: public}}
      objectSelector:
        matchExpressions: [{key: app, operator: In, values: [web]}]
      types: [LoadBalancer, NodePort]
    require:
      ipFamilyPolicies: [PreferDualStack, RequireDualStack]
      primaryFamily: IPv6
      dualStack: true
    defaults: {ipFamilyPolicy: RequireDualStack}
    upgradeExisting: true
    action: Warn
"#,
    )
    .unwrap();
    let r = &p.rules[0];
    assert_eq!(r.action, Action::Warn);
    assert!(r.upgrade_existing);
    assert_eq!(r.require.primary_family, Some(IpFamily::IPv6));
    assert_eq!(
        r.match_.types.as_deref(),
        Some(&[ServiceType::LoadBalancer, ServiceType::NodePort][..])
    );
    assert!(p.is_exempt("team-x"));
    assert!(p.is_exempt("kube-system"));
    assert!(!p.is_exempt("default"));
}

#[test]
fn action_defaults_to_deny() {
    let p = parse("rules: [{name: a}]").unwrap();
    assert_eq!(p.rules[0].action, Action::Deny);
    assert!(!p.rules[0].upgrade_existing);
}

#[test]
fn unknown_fields_are_named_with_their_line() {
    let e = error(
        "defaults:\n  ipFamilyPolicy: PreferDualStack\nrules:\n  - name: a\n    match: {namspaces: [x]}\n",
    );
    assert!(e.contains("unknown field `namspaces`"), "{e}");
    assert!(e.contains("line 7"), "{e}");
    let e = error("extra: 1\n");
    assert!(e.contains("unknown field `extra`"), "{e}");
}

#[test]
fn bad_enum_values_are_named() {
    let e = error("defaults: {ipFamilyPolicy: DualStack}\n");
    assert!(e.contains("unknown variant `DualStack`"), "{e}");
    let e = error("defaults: {ipFamilies: [IPv5]}\n");
    assert!(e.contains("unknown variant `IPv5`"), "{e}");
    let e = error("rules: [{name: a, action: Block}]\n");
    assert!(e.contains("unknown variant `Block`"), "{e}");
}

#[test]
fn semantic_errors_name_the_field() {
    let cases = [
        ("defaults: {ipFamilies: []}\n", "defaults.ipFamilies"),
        (
            "defaults: {ipFamilies: [IPv4, IPv6, IPv4]}\n",
            "defaults.ipFamilies",
        ),
        (
            "defaults: {ipFamilies: [IPv4, IPv4]}\n",
            "defaults.ipFamilies[1]",
        ),
        ("rules: [{name: a}, {name: a}]\n", "rules[1].name"),
        ("rules: [{name: ''}]\n", "rules[0].name"),
        (
            "rules: [{name: a, defaults: {ipFamilies: [IPv6, IPv6]}}]\n",
            "rules[0].defaults.ipFamilies[1]",
        ),
        (
            "rules: [{name: a, match: {objectSelector: {matchExpressions: [{key: k, operator: In}]}}}]\n",
            "rules[0].match.objectSelector.matchExpressions[0]",
        ),
        (
            "rules: [{name: a, require: {ipFamilyPolicies: []}}]\n",
            "rules[0].require.ipFamilyPolicies",
        ),
    ];
    for (body, field) in cases {
        match parse(body) {
            Err(PolicyError::Invalid { field: f, .. }) => assert_eq!(f, field, "{body}"),
            other => panic!("{body}: expected Invalid at {field}, got {other:?}"),
        }
    }
}

#[test]
fn header_is_required() {
    assert!(matches!(
        Policy::from_yaml("rules: []\n"),
        Err(PolicyError::Invalid { field, .. }) if field == "apiVersion"
    ));
    assert!(matches!(
        Policy::from_yaml("apiVersion: dualstack-webhook/v1alpha1\nkind: Policy\n"),
        Err(PolicyError::Invalid { field, .. }) if field == "kind"
    ));
    assert!(matches!(
        Policy::from_yaml(""),
        Err(PolicyError::Invalid { .. })
    ));
}

#[test]
fn match_scopes() {
    let p = parse(
        r#"
rules:
  - name: a
    match:
      namespaces: ["prod-*"]
      namespaceSelector: {matchLabels: {exposure: public}}
      objectSelector: {matchLabels: {app: web}}
      types: [LoadBalancer]
"#,
    )
    .unwrap();
    let m = &p.rules[0].match_;
    let l = |pairs: &[(&str, &str)]| -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    };
    let ns = l(&[("exposure", "public")]);
    let svc = l(&[("app", "web")]);
    let lb = Some(ServiceType::LoadBalancer);
    assert!(m.matches("prod-a", &ns, &svc, lb));
    assert!(!m.matches("dev-a", &ns, &svc, lb), "namespace glob");
    assert!(
        !m.matches("prod-a", &l(&[]), &svc, lb),
        "namespace selector"
    );
    assert!(
        !m.matches("prod-a", &ns, &l(&[("app", "db")]), lb),
        "object selector"
    );
    assert!(
        !m.matches("prod-a", &ns, &svc, Some(ServiceType::ClusterIP)),
        "type"
    );
    assert!(!m.matches("prod-a", &ns, &svc, None), "unknown type");
    assert!(
        Match::default().matches("x", &l(&[]), &l(&[]), None),
        "empty match is any"
    );
}

/// Reviews keep the Services' labels only for a policy that selects on them.
#[test]
fn reads_object_labels_only_with_a_non_empty_object_selector() {
    let rule = |select: &str| format!("rules: [{{name: r, match: {{{select}}}, action: Warn}}]\n");
    assert!(!parse("").unwrap().reads_object_labels());
    assert!(
        !parse(&rule("namespaces: [a]"))
            .unwrap()
            .reads_object_labels()
    );
    assert!(
        !parse(&rule("objectSelector: {}"))
            .unwrap()
            .reads_object_labels()
    );
    assert!(
        parse(&rule("objectSelector: {matchLabels: {app: web}}"))
            .unwrap()
            .reads_object_labels()
    );
    let exists = "objectSelector: {matchExpressions: [{key: app, operator: Exists}]}";
    assert!(parse(&rule(exists)).unwrap().reads_object_labels());
    let example = Policy::from_yaml(include_str!("../../../manifests/policy.yaml")).unwrap();
    assert!(!example.reads_object_labels());
}
