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
    assert_eq!(
        e,
        "rules[0].match: unknown field `namspaces`, expected one of `namespaces`, \
         `namespaceSelector`, `objectSelector`, `types` at line 7 column 13"
    );
    assert_eq!(
        error("extra: 1\n"),
        "unknown field `extra`, expected one of `apiVersion`, `kind`, `exemptNamespaces`, \
         `defaults`, `restoreDroppedFields`, `rules` at line 3 column 1"
    );
}

#[test]
fn bad_enum_values_are_named() {
    assert_eq!(
        error("defaults: {ipFamilyPolicy: DualStack}\n"),
        "defaults.ipFamilyPolicy: unknown variant `DualStack`, expected one of `SingleStack`, \
         `PreferDualStack`, `RequireDualStack` at line 3 column 28"
    );
    assert_eq!(
        error("defaults: {ipFamilies: [IPv5]}\n"),
        "defaults.ipFamilies[0]: unknown variant `IPv5`, expected `IPv4` or `IPv6` at line 3 column 25"
    );
    assert_eq!(
        error("rules: [{name: a, action: Block}]\n"),
        "rules[0].action: unknown variant `Block`, expected one of `Deny`, `Warn`, `Audit` \
         at line 3 column 27"
    );
}

/// A whole message for a refusal of meaning: the field, then what is wrong.
#[test]
fn a_duplicate_rule_name_is_refused_at_the_second_rule() {
    assert_eq!(
        error("rules: [{name: a}, {name: b}, {name: a}]\n"),
        "rules[2].name: \"a\" is used by an earlier rule"
    );
    assert_eq!(
        Policy::from_yaml("rules: []\n").unwrap_err().to_string(),
        "apiVersion: must be dualstack-webhook/v1alpha1, got \"\""
    );
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
}

/// An empty file is the empty policy (not a missing header): it changes nothing and denies nothing.
#[test]
fn an_empty_document_is_the_empty_policy() {
    for text in ["", "\n  \n", "# no policy yet\n", "---\n# nothing\n", "~\n"] {
        let p = Policy::from_yaml(text).unwrap();
        // The same as a document with only the header.
        assert_eq!(p, parse("").unwrap(), "{text:?}");
        assert!(p.rules.is_empty() && p.exempt_namespaces.is_empty());
        assert_eq!(p.defaults, Defaults::default());
        // The empty policy has its header: it is a policy this build would write and read.
        assert_eq!(
            Policy::from_yaml(&serde_yaml_ng::to_string(&p).unwrap()).unwrap(),
            p
        );
    }
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
