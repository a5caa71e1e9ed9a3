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
fn enforcement_defaults_to_deny_and_is_read() {
    assert_eq!(parse("").unwrap().enforcement, Enforcement::Deny);
    assert_eq!(
        parse("enforcement: Warn\n").unwrap().enforcement,
        Enforcement::Warn
    );
    assert_eq!(
        parse("enforcement: Audit\n").unwrap().enforcement,
        Enforcement::Audit
    );
    assert_eq!(
        error("enforcement: Enforce\n"),
        "enforcement: unknown variant `Enforce`, expected one of `Deny`, `Warn`, `Audit` \
         at line 3 column 14"
    );
}

/// Every rule's action under every enforcement: the milder of the two.
#[test]
fn enforcement_makes_actions_milder_never_stricter() {
    use Action::{Audit, Deny, Warn};
    let table = [
        (Enforcement::Deny, [Deny, Warn, Audit]),
        (Enforcement::Warn, [Warn, Warn, Audit]),
        (Enforcement::Audit, [Audit, Audit, Audit]),
    ];
    for (enforcement, want) in table {
        let got = [Deny, Warn, Audit].map(|a| enforcement.apply(a));
        assert_eq!(got, want, "{enforcement:?}");
    }
    let p = parse("enforcement: Warn\nrules: [{name: a}, {name: b, action: Audit}]\n").unwrap();
    assert_eq!(p.action_of(&p.rules[0]), Warn);
    assert_eq!(p.action_of(&p.rules[1]), Audit);
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
        "unknown field `extra`, expected one of `apiVersion`, `kind`, `enforcement`, \
         `exemptNamespaces`, `defaults`, `restoreDroppedFields`, `rules` at line 3 column 1"
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
        "rules[2].name (line 3): \"a\" is used by an earlier rule"
    );
    assert_eq!(
        error("rules:\n  - name: a\n  - name: b\n  - name: a\n"),
        "rules[2].name (line 6): \"a\" is used by an earlier rule"
    );
    // A field the text lacks: the line of its nearest parent (here the document).
    assert_eq!(
        Policy::from_yaml("\nrules: []\n").unwrap_err().to_string(),
        "apiVersion (line 2): must be dualstack-webhook/v1alpha1, got \"\""
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
        ("rules: [{name: a, exclude: {}}]\n", "rules[0].exclude"),
        ("exemptNamespaces: [\"a_b\"]\n", "exemptNamespaces[0]"),
        (
            "rules: [{name: a, exclude: {namespaces: [\"x*\", \"X\"]}}]\n",
            "rules[0].exclude.namespaces[1]",
        ),
        (
            "rules: [{name: a, match: {objectSelector: {matchLabels: {\"a b\": c}}}}]\n",
            "rules[0].match.objectSelector.matchLabels.a b",
        ),
        (
            "rules: [{name: a, require: {ipFamilyPolicies: [SingleStack], dualStack: true}}]\n",
            "rules[0].require.dualStack",
        ),
        (
            "rules: [{name: a, require: {primaryFamily: IPv6}, defaults: {ipFamilies: [IPv4]}}]\n",
            "rules[0].defaults.ipFamilies[0]",
        ),
    ];
    for (body, field) in cases {
        match parse(body) {
            Err(PolicyError::Invalid { field: f, .. }) => assert_eq!(f, field, "{body}"),
            other => panic!("{body}: expected Invalid at {field}, got {other:?}"),
        }
    }
}

/// A lint error refuses the policy with the field and its line, as a syntax error is refused.
#[test]
fn lint_errors_refuse_the_policy_with_the_field_and_line() {
    assert_eq!(
        error("rules:\n  - name: a\n    match:\n      namespaces: [prod-a, \"legacy-[abc\"]\n"),
        "rules[0].match.namespaces[1] (line 6): \"legacy-[abc\" is not a namespace glob: '[' is \
         not allowed (namespace names have lowercase letters, digits and '-'; globs add '*' and '?')"
    );
    assert_eq!(
        error("rules:\n  - name: a\n    exclude: {}\n"),
        "rules[0].exclude (line 5): must give at least one condition: an empty exclude would \
         exclude every Service"
    );
    // Warnings do not refuse a policy.
    let p = parse("rules: [{name: a, match: {types: []}}]\n").unwrap();
    assert_eq!(p.rules[0].match_.types, Some(vec![]));
}

#[test]
fn exclude_has_the_fields_of_match() {
    let p = parse(
        "rules: [{name: a, exclude: {namespaces: [\"legacy-*\"], types: [NodePort], \
         namespaceSelector: {matchLabels: {t: x}}, objectSelector: {matchLabels: {app: db}}}}]\n",
    )
    .unwrap();
    let exclude = p.rules[0].exclude.as_ref().unwrap();
    assert_eq!(exclude.namespaces, Some(vec!["legacy-*".to_owned()]));
    assert_eq!(exclude.types, Some(vec![ServiceType::NodePort]));
    let labels = |pairs: &[(&str, &str)]| -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    };
    let rule = &p.rules[0];
    let (ns, svc) = (labels(&[("t", "x")]), labels(&[("app", "db")]));
    let np = Some(ServiceType::NodePort);
    assert!(
        !rule.applies("legacy-a", &ns, &svc, np),
        "every condition holds"
    );
    assert!(rule.applies("legacy-a", &ns, &svc, Some(ServiceType::ClusterIP)));
    assert!(rule.applies("prod-a", &ns, &svc, np));
    assert!(rule.applies("legacy-a", &labels(&[]), &svc, np));
    assert!(rule.applies("legacy-a", &ns, &labels(&[]), np));
}

/// The policies the repository ships lint clean, on every shape of cluster and on each one.
#[test]
fn the_shipped_policies_lint_clean() {
    use crate::cluster::ServiceCidrs;
    use crate::domain::yaml_lines::Lines;
    for text in [
        include_str!("../../../manifests/policy.yaml"),
        include_str!("../../../tests/fixtures/policy.yaml"),
        include_str!("../../../tests/e2e/policy.yaml"),
        include_str!("../../../tests/e2e/policy-isolated.yaml"),
    ] {
        let p = Policy::from_yaml(text).unwrap();
        assert_eq!(lint::lint(&p, &Lines::of(text), None), vec![]);
        for shape in ServiceCidrs::every_shape().iter().filter(|c| c.is_dual()) {
            assert_eq!(lint::lint(&p, &Lines::of(text), Some(shape)), vec![]);
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

// === nesting limit ===

use std::time::Duration;

use super::limits::{self, POLICY_MAX_DEPTH, TooDeep};

/// Runs `f` on another thread and gives up after 10 s: a return to libyaml's quadratic scan
/// (30 to 60 s for these documents) fails the test instead of hanging it.
fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("did not finish within 10 s")
}

/// The refusal of `text`, which must be for its nesting.
#[track_caller]
fn refused_as_too_deep(text: String) -> (TooDeep, String) {
    match within_10s(move || Policy::from_yaml(&text)) {
        Err(PolicyError::TooDeep(e)) => (e, PolicyError::TooDeep(e).to_string()),
        other => panic!("expected a depth refusal, got {other:?}"),
    }
}

const DEEP: usize = 100_000;

#[test]
fn deep_flow_nesting_is_refused_at_the_limit_quickly() {
    for (text, line) in [
        ("[".repeat(DEEP) + &"]".repeat(DEEP), 1),
        ("{a: ".repeat(DEEP) + &"}".repeat(DEEP), 1),
        // 200 KB: 30 s in libyaml before this check (release build).
        (
            format!("{HEADER}rules: {}{}\n", "[".repeat(DEEP), "]".repeat(DEEP)),
            3,
        ),
        ("[\n".repeat(DEEP), 65),
    ] {
        let (error, message) = refused_as_too_deep(text);
        assert_eq!(error, TooDeep { limit: 64, line });
        assert_eq!(
            message,
            format!("nested deeper than 64 levels at line {line}")
        );
    }
}

#[test]
fn deep_block_nesting_is_refused_at_the_limit_quickly() {
    // 100 k indented levels would be 5 GB; the compact forms nest as deep in 200 KB.
    let indented: String = (0..1_000)
        .map(|i| format!("{}a:\n", " ".repeat(i)))
        .collect();
    for (text, line) in [
        ("- ".repeat(DEEP) + "x\n", 1),
        ("? ".repeat(DEEP) + "x\n", 1),
        (indented, 65),
    ] {
        let (error, message) = refused_as_too_deep(text);
        assert_eq!(error, TooDeep { limit: 64, line });
        assert_eq!(
            message,
            format!("nested deeper than 64 levels at line {line}")
        );
    }
}

#[test]
fn nesting_at_the_limit_is_parsed() {
    // The top mapping is one level: 63 more.
    let flow = |n: usize| {
        format!(
            "{HEADER}exemptNamespaces: {}{}\n",
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    assert_eq!(
        Policy::from_yaml(&flow(POLICY_MAX_DEPTH - 1))
            .unwrap_err()
            .to_string(),
        "exemptNamespaces[0]: invalid type: sequence, expected a string at line 3 column 20"
    );
    assert_eq!(
        Policy::from_yaml(&flow(POLICY_MAX_DEPTH))
            .unwrap_err()
            .to_string(),
        "nested deeper than 64 levels at line 3"
    );

    let block = |n: usize| -> String { (0..n).map(|i| format!("{}a:\n", " ".repeat(i))).collect() };
    assert!(matches!(
        Policy::from_yaml(&block(POLICY_MAX_DEPTH)),
        Err(PolicyError::Syntax(_))
    ));
    assert_eq!(
        Policy::from_yaml(&block(POLICY_MAX_DEPTH + 1))
            .unwrap_err()
            .to_string(),
        "nested deeper than 64 levels at line 65"
    );
}

/// The deepest nesting of every document in `text` as serde_yaml_ng reads it, or `None` where it
/// refuses `text`.
fn parsed_depth(text: &str) -> Option<usize> {
    use serde::Deserialize as _;
    use serde_yaml_ng::Value;
    fn depth(v: &Value) -> usize {
        match v {
            Value::Sequence(s) => 1 + s.iter().map(depth).max().unwrap_or(0),
            Value::Mapping(m) => {
                1 + m
                    .iter()
                    .map(|(k, v)| depth(k).max(depth(v)))
                    .max()
                    .unwrap_or(0)
            }
            Value::Tagged(t) => depth(&t.value),
            _ => 0,
        }
    }
    let mut max = 0;
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        max = max.max(depth(&Value::deserialize(doc).ok()?));
    }
    Some(max)
}

#[test]
fn brackets_in_scalars_and_comments_do_not_count() {
    let b = "[{".repeat(100);
    for (text, depth) in [
        (format!("a: '{b} '' {b}'\n"), 1),
        (format!("a: \"{b} \\\" {b}\"\n"), 1),
        (format!("a: \"x\\\n{b}\"\n"), 1),
        (format!("a: '{b}\n  {b}'\n"), 1),
        (format!("a: b # {b}\n#{b}\n"), 1),
        (format!("a: |\n  {b}\n   {b}\n\n  {b}\nb: x\n"), 1),
        (format!("- a: >2-\n     {b}\n    {b}\n- x\n"), 2),
        (format!("a: |  # {b}\n  {b}\n"), 1),
        (format!("--- |\n {b}\n"), 0),
        (format!("a: x{b}\n"), 1),
        (format!("a: don't {b}\n"), 1),
        (format!("a: x\n  {b}\n  'y\nb: c\n"), 1),
        (format!("x{b}\n"), 0),
        (format!("- x\n  - {b}\n"), 1),
        (format!("a: !<tag:{}> x\n", "[[]]".repeat(100)), 1),
        ("[a:b, c-d, e: f, ? g, {h: [i]}]\n".to_owned(), 3),
        (format!("%TAG ! tag:{}\n--- x\n", "[[]]".repeat(100)), 0),
    ] {
        assert_eq!(limits::max_depth(&text), depth, "{text}");
        assert_eq!(parsed_depth(&text), Some(depth), "{text}");
    }
}

/// Scans that skip too much would let a deep document through: every one of these opens 100
/// flow collections that libyaml opens too.
#[test]
fn brackets_that_only_look_hidden_are_counted() {
    let open = "[".repeat(100);
    // A `#` right after a token starts a comment: the `]` is not read.
    let a_comment_right_after_a_token = format!("a: {}\n", "[#]\n".repeat(100));
    assert_eq!(
        limits::check_depth(&a_comment_right_after_a_token, POLICY_MAX_DEPTH),
        Err(TooDeep {
            limit: 64,
            line: 64
        })
    );
    for text in [
        // Each line break that libyaml knows ends a comment (here LS, U+2028).
        format!("a: 1 # c\u{2028}b: {open}"),
        format!("a: 1 # c\rb: {open}"),
        // In single quotes a backslash is a character, not an escape.
        format!("a: 'x\\'\nb: {open}"),
        // An apostrophe inside a plain scalar starts no quote, on its line or a continuation.
        format!("a: don't\nb: {open}"),
        format!("a: x\n  'y\nb: {open}"),
        // A block scalar's content is deeper than its parent's key (column 2 here, not 0).
        format!("- a: |\n  {open}"),
        // A continuation must be deeper than the enclosing mapping (`b`, column 2).
        format!("- b: x\n  c: {open}"),
        // A tag runs to a blank, a verbatim tag to its `>`.
        format!("a: !t {open}"),
        format!("a: [!<x> {open}"),
    ] {
        assert_eq!(
            limits::check_depth(&text, POLICY_MAX_DEPTH),
            Err(TooDeep {
                limit: 64,
                line: text.matches(['\n', '\r', '\u{2028}']).count() + 1
            }),
            "{text:?}"
        );
    }
}

#[test]
fn indentless_sequences_count_as_levels() {
    for text in [
        "a:\n- b:\n  - c\n",
        "a:\n- - x\nb: y\n",
        "? - a\n: - b\n",
        "a:\n- x\nb:\n- y\n",
    ] {
        assert_eq!(Some(limits::max_depth(text)), parsed_depth(text), "{text}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

    /// For every document serde_yaml_ng reads, the scan counts exactly the nesting it builds:
    /// a scan that got a scalar's extent wrong would differ on one of them.
    #[test]
    fn the_scan_counts_what_the_parser_builds(
        parts in proptest::collection::vec(proptest::sample::select(vec![
            "[", "]", "{", "}", ", ", ",", ": ", ":", "- ", "-", "? ", "?", "#", " # c", " ",
            "  ", "\n", "\n", "\n  ", "\n    ", "\n - ", "\n- ", "a", "b", "a: ", "- a: ",
            "'", "''", "\"", "\\", "\\\"", "|", ">", "|2", "|-", ">+\n", "|\n  ", "!t ", "!<x> ",
            "!<[> ", "&x ", "---\n", "--- ", "...\n", "\t", "\r\n", "\r", "\u{2028}", "\u{85}",
            "x'y", "%", "\u{feff}",
        ]), 1..60)
    ) {
        let text: String = parts.concat();
        if let Some(depth) = parsed_depth(&text) {
            proptest::prop_assert_eq!(limits::max_depth(&text), depth, "{:?}", text);
        }
    }
}
