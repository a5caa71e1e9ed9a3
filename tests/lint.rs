//! `dualstack-webhook lint`: one test per check, each on policies written to a temporary
//! directory, asserting the whole output (`FILE:LINE: error|warning: FIELD: message`, then the
//! summary) and the exit code (0 clean or warnings only, 1 errors, 2 a file cannot be read).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_dualstack-webhook");
const HEADER: &str = "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n";

/// What one run printed and how it exited.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

/// Writes each `(name, text)` into a new directory and runs `lint ARGS... NAMES...` there, so that
/// the file names in the output are the names given.
fn lint(files: &[(&str, &str)], args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = Command::new(BIN)
        .arg("lint")
        .args(args)
        .args(files.iter().map(|(name, _)| name))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
        code: out.status.code(),
    }
}

/// Asserts the whole output on stdout (one line each), nothing on stderr, and the exit code.
#[track_caller]
fn assert_output(run: &Run, lines: &[&str], code: i32) {
    let want: String = lines.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(
        *run,
        Run {
            stdout: want,
            stderr: String::new(),
            code: Some(code),
        }
    );
}

fn policy(body: &str) -> String {
    format!("{HEADER}{body}")
}

#[test]
fn the_shipped_policies_are_clean() {
    let example = include_str!("../manifests/policy.yaml");
    let fixtures = include_str!("fixtures/policy.yaml");
    let e2e = include_str!("e2e/policy.yaml");
    let run = lint(
        &[
            ("example.yaml", example),
            ("fixtures.yaml", fixtures),
            ("e2e.yaml", e2e),
        ],
        &[],
    );
    assert_output(&run, &["0 errors, 0 warnings in 3 files"], 0);
    // Also on a dual-stack cluster, where every requirement is judged.
    let run = lint(
        &[("example.yaml", example)],
        &["--service-cidrs", "10.96.0.0/16,fd00:10:96::/112"],
    );
    assert_output(&run, &["0 errors, 0 warnings in 1 file"], 0);
}

#[test]
fn contradictions_inside_a_require_are_errors() {
    let body = "rules:
  - name: single-but-dual
    require: {ipFamilyPolicies: [SingleStack], dualStack: true}
  - name: require-but-single
    require: {ipFamilyPolicies: [RequireDualStack], dualStack: false}
";
    assert_output(
        &lint(&[("p.yaml", &policy(body))], &[]),
        &[
            "p.yaml:5: error: rules[0].require.dualStack: true contradicts ipFamilyPolicies, which \
             allows only SingleStack (one family): every Service on a dual-stack cluster would be \
             flagged",
            "p.yaml:7: error: rules[1].require.dualStack: false contradicts ipFamilyPolicies, \
             which allows only RequireDualStack (two families): every Service on a dual-stack \
             cluster would be flagged",
            "2 errors, 0 warnings in 1 file",
        ],
        1,
    );
}

#[test]
fn rule_defaults_the_rule_itself_flags_are_errors() {
    let body = "rules:
  - name: lb
    require: {ipFamilyPolicies: [RequireDualStack], primaryFamily: IPv6}
    defaults:
      ipFamilyPolicy: PreferDualStack
      ipFamilies: [IPv4, IPv6]
  - name: legacy
    require: {dualStack: false}
    defaults: {ipFamilyPolicy: RequireDualStack}
";
    assert_output(
        &lint(&[("p.yaml", &policy(body))], &[]),
        &[
            "p.yaml:7: error: rules[0].defaults.ipFamilyPolicy: PreferDualStack is not in this \
             rule's require.ipFamilyPolicies (RequireDualStack): the rule would flag the Services \
             it defaults on a dual-stack cluster",
            "p.yaml:8: error: rules[0].defaults.ipFamilies[0]: IPv4 contradicts this rule's \
             require.primaryFamily: IPv6: the rule would flag the Services it defaults on a \
             dual-stack cluster",
            "p.yaml:11: error: rules[1].defaults.ipFamilyPolicy: RequireDualStack contradicts this \
             rule's require.dualStack: false: the rule would flag the Services it defaults on a \
             dual-stack cluster",
            "3 errors, 0 warnings in 1 file",
        ],
        1,
    );
}

/// The check the brief of issue 20 gives: PreferDualStack defaults and a legacy rule that allows
/// only SingleStack warn on every Service the defaults created in its scope; so does a rule that
/// requires IPv6 first when the defaults leave the families to the API server.
#[test]
fn defaults_that_a_rule_then_flags_are_warnings() {
    let body = "defaults:
  ipFamilyPolicy: PreferDualStack
rules:
  - name: legacy
    match: {namespaces: [\"legacy-*\"]}
    require: {ipFamilyPolicies: [SingleStack]}
    action: Audit
  - name: v6-first
    match: {types: [LoadBalancer]}
    exclude: {namespaces: [\"legacy-*\"]}
    require: {primaryFamily: IPv6}
";
    let text = policy(body);
    let files = [("p.yaml", text.as_str())];
    assert_output(
        &lint(&files, &[]),
        &[
            "p.yaml:3: warning: defaults.ipFamilies: rule \"v6-first\" flags the Services these \
             defaults create (a LoadBalancer in namespace \"default\") on dual-stack IPv4-primary \
             clusters: primary family IPv4 but IPv6 required (unset: the API server picks the \
             cluster's primary family)",
            "p.yaml:4: warning: defaults.ipFamilyPolicy: rule \"legacy\" flags the Services these \
             defaults create (a ClusterIP in namespace \"legacy-x\") on every shape of cluster: \
             ipFamilyPolicy PreferDualStack not allowed (set SingleStack)",
            "0 errors, 2 warnings in 1 file",
        ],
        0,
    );
    // On a known cluster: that cluster only.
    assert_output(
        &lint(&files, &["--service-cidrs", "fd00:10:96::/112"]),
        &[
            "p.yaml:4: warning: defaults.ipFamilyPolicy: rule \"legacy\" flags the Services these \
             defaults create (a ClusterIP in namespace \"legacy-x\") on this IPv6-only cluster \
             (fd00:10:96::/112): ipFamilyPolicy PreferDualStack not allowed (set SingleStack)",
            "0 errors, 1 warning in 1 file",
        ],
        0,
    );
    // The rule's own defaults for its scope: nothing to say.
    let fixed = body.replace(
        "    action: Audit\n",
        "    action: Audit\n    defaults: {ipFamilyPolicy: SingleStack}\n",
    );
    let fixed = fixed.replace(
        "  ipFamilyPolicy: PreferDualStack\n",
        "  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv6, IPv4]\n",
    );
    assert_output(
        &lint(&[("p.yaml", &policy(&fixed))], &[]),
        &["0 errors, 0 warnings in 1 file"],
        0,
    );
}

#[test]
fn namespace_globs_that_match_no_namespace_are_errors_naming_the_character() {
    let body = "exemptNamespaces: [kube-system, Kube-Public]
rules:
  - name: a
    match: {namespaces: [\"legacy-[abc\", \"prod-\", \"\"]}
";
    assert_output(
        &lint(&[("p.yaml", &policy(body))], &[]),
        &[
            "p.yaml:3: error: exemptNamespaces[1]: \"Kube-Public\" is not a namespace glob: 'K' is \
             not allowed (namespace names have lowercase letters, digits and '-'; globs add '*' \
             and '?')",
            "p.yaml:6: error: rules[0].match.namespaces[0]: \"legacy-[abc\" is not a namespace \
             glob: '[' is not allowed (namespace names have lowercase letters, digits and '-'; \
             globs add '*' and '?')",
            "p.yaml:6: error: rules[0].match.namespaces[1]: \"prod-\" matches no namespace: a \
             namespace name starts and ends with a letter or digit",
            "p.yaml:6: error: rules[0].match.namespaces[2]: is empty: it matches no namespace",
            "4 errors, 0 warnings in 1 file",
        ],
        1,
    );
}

#[test]
fn label_keys_and_values_that_kubernetes_refuses_are_errors() {
    let long = "a".repeat(64);
    let body = format!(
        "rules:
  - name: a
    match:
      namespaceSelector:
        matchLabels: {{\"app/x/y\": web, \"Example.com/tier\": x, ok: \"bad value\"}}
      objectSelector:
        matchExpressions:
          - {{key: \"-x\", operator: Exists}}
          - {{key: tier, operator: In, values: [web, {long}]}}
"
    );
    assert_output(
        &lint(&[("p.yaml", &policy(&body))], &[]),
        &[
            "p.yaml:7: error: rules[0].match.namespaceSelector.matchLabels.Example.com/tier: \
             \"Example.com/tier\" is not a label key: the prefix before '/' has 'E', which is not \
             allowed (a DNS subdomain: lowercase letters, digits, '-' and '.')",
            "p.yaml:7: error: rules[0].match.namespaceSelector.matchLabels.app/x/y: \"app/x/y\" is \
             not a label key: the name has '/', which is not allowed (letters, digits, '-', '_' \
             and '.')",
            "p.yaml:7: error: rules[0].match.namespaceSelector.matchLabels.ok: \"bad value\" is \
             not a label value: it has ' ', which is not allowed (letters, digits, '-', '_' and \
             '.')",
            "p.yaml:10: error: rules[0].match.objectSelector.matchExpressions[0].key: \"-x\" is \
             not a label key: the name must start and end with a letter or digit",
            &format!(
                "p.yaml:11: error: rules[0].match.objectSelector.matchExpressions[1].values[1]: \
                 \"{long}\" is not a label value: it is longer than 63 characters"
            ),
            "5 errors, 0 warnings in 1 file",
        ],
        1,
    );
}

#[test]
fn ill_formed_selector_expressions_are_errors() {
    let body = "rules:
  - name: a
    match:
      objectSelector:
        matchExpressions:
          - {key: app, operator: In}
          - {key: tier, operator: Exists, values: [web]}
";
    assert_output(
        &lint(&[("p.yaml", &policy(body))], &[]),
        &[
            "p.yaml:8: error: rules[0].match.objectSelector.matchExpressions[0]: values must be \
             non-empty for In and NotIn",
            "1 error, 0 warnings in 1 file",
        ],
        1,
    );
}

#[test]
fn rules_that_never_apply_are_warnings() {
    let body = "exemptNamespaces: [kube-system, \"legacy-*\"]
rules:
  - name: no-types
    match: {types: []}
  - name: no-namespaces
    match: {namespaces: []}
  - name: all-exempt
    match: {namespaces: [legacy-a, \"legacy-b*\"]}
  - name: external-name
    match: {types: [ExternalName]}
  - name: excluded
    match: {namespaces: [\"prod-*\"], types: [LoadBalancer]}
    exclude: {namespaces: [\"prod-*\"], types: [LoadBalancer, NodePort]}
  - name: empty-exclude-list
    exclude: {types: []}
";
    assert_output(
        &lint(&[("p.yaml", &policy(body))], &[]),
        &[
            "p.yaml:6: warning: rules[0].match.types: is empty: the rule never applies",
            "p.yaml:8: warning: rules[1].match.namespaces: is empty: the rule never applies",
            "p.yaml:10: warning: rules[2].match.namespaces: every namespace it matches is exempt \
             (exemptNamespaces): the rule never applies",
            "p.yaml:12: warning: rules[3].match.types: lists only ExternalName, whose Services \
             have no dual-stack fields and are never mutated or judged: the rule never applies",
            "p.yaml:15: warning: rules[4].exclude: excludes every Service the rule's match \
             covers: the rule never applies",
            "p.yaml:17: warning: rules[5].exclude.types: is empty: the exclude never applies",
            "0 errors, 6 warnings in 1 file",
        ],
        0,
    );
}

#[test]
fn an_exclude_without_a_condition_is_an_error() {
    let body = "rules:\n  - name: a\n    exclude: {}\n";
    assert_output(
        &lint(&[("p.yaml", &policy(body))], &[]),
        &[
            "p.yaml:5: error: rules[0].exclude: must give at least one condition: an empty \
             exclude would exclude every Service",
            "1 error, 0 warnings in 1 file",
        ],
        1,
    );
}

#[test]
fn requirements_the_given_cluster_cannot_meet_are_warnings() {
    let body = "rules:
  - name: lb
    require: {ipFamilyPolicies: [RequireDualStack], primaryFamily: IPv6, dualStack: true}
";
    let text = policy(body);
    let files = [("p.yaml", text.as_str())];
    let here = "this IPv4-only cluster (10.96.0.0/16)";
    assert_output(
        &lint(&files, &["--service-cidrs", "10.96.0.0/16"]),
        &[
            &format!(
                "p.yaml:5: warning: rules[0].require.ipFamilyPolicies: RequireDualStack, the only \
                 policy allowed, is refused on {here}: not judged there"
            ),
            &format!(
                "p.yaml:5: warning: rules[0].require.primaryFamily: {here} has no IPv6: not judged \
                 there"
            ),
            &format!(
                "p.yaml:5: warning: rules[0].require.dualStack: {here} has one IP family: not \
                 judged there"
            ),
            "0 errors, 3 warnings in 1 file",
        ],
        0,
    );
    // Every requirement can be met on a dual-stack cluster, and none is skipped when the
    // cluster is unknown.
    for args in [
        &["--service-cidrs", "fd00:10:96::/112,10.96.0.0/16"][..],
        &[],
    ] {
        assert_output(&lint(&files, args), &["0 errors, 0 warnings in 1 file"], 0);
    }
}

/// Requirements no Service meets on some cluster: PreferDualStack has two families wherever the
/// cluster has two (R3.16), so it cannot be single-stack there.
#[test]
fn requirements_no_service_can_meet_are_warnings() {
    let body = "rules:
  - name: prefer-but-single
    require: {ipFamilyPolicies: [PreferDualStack], dualStack: false}
";
    let text = policy(body);
    let files = [("p.yaml", text.as_str())];
    assert_output(
        &lint(&files, &[]),
        &[
            "p.yaml:5: warning: rules[0].require: cannot be met on dual-stack IPv4-primary and \
             dual-stack IPv6-primary clusters: the rule flags every Service there",
            "0 errors, 1 warning in 1 file",
        ],
        0,
    );
    assert_output(
        &lint(&files, &["--service-cidrs", "10.96.0.0/16"]),
        &["0 errors, 0 warnings in 1 file"],
        0,
    );
}

#[test]
fn a_document_not_of_the_schema_is_an_error_with_the_parsers_line() {
    let run = lint(
        &[
            (
                "typo.yaml",
                &policy("rules:\n  - name: a\n    acton: Deny\n"),
            ),
            ("header.yaml", "apiVersion: v1\nkind: DualStackPolicy\n"),
        ],
        &[],
    );
    assert_output(
        &run,
        &[
            "typo.yaml:5: error: rules[0]: unknown field `acton`, expected one of `name`, \
             `match`, `exclude`, `require`, `defaults`, `upgradeExisting`, `action` at line 5 \
             column 5",
            "header.yaml:1: error: apiVersion: must be dualstack-webhook/v1alpha1, got \"v1\"",
            "2 errors, 0 warnings in 2 files",
        ],
        1,
    );
}

#[test]
fn an_unreadable_file_exits_2_and_the_others_are_still_linted() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, policy("rules: [{name: a, match: {types: []}}]\n")).unwrap();
    let missing = dir.path().join("missing.yaml");
    let out = Command::new(BIN)
        .args(["lint", missing.to_str().unwrap(), good.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run = Run {
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
        code: out.status.code(),
    };
    assert_eq!(
        run,
        Run {
            stdout: format!(
                "{}:3: warning: rules[0].match.types: is empty: the rule never applies\n\
                 0 errors, 1 warning in 1 file\n",
                good.display()
            ),
            stderr: format!(
                "dualstack-webhook: cannot read {}: No such file or directory (os error 2)\n",
                missing.display()
            ),
            code: Some(2),
        }
    );
}

/// `enforcement` changes what a violation does, not whether a rule can work: the same warnings
/// under each enforcement; an unknown value is an error with its line.
#[test]
fn enforcement_changes_no_finding() {
    let rest = "defaults:
  ipFamilyPolicy: PreferDualStack
rules:
  - name: legacy
    match: {namespaces: [\"legacy-*\"]}
    require: {ipFamilyPolicies: [SingleStack]}
";
    for enforcement in ["Deny", "Warn", "Audit"] {
        let text = policy(&format!("enforcement: {enforcement}\n{rest}"));
        assert_output(
            &lint(&[("p.yaml", &text)], &[]),
            &[
                "p.yaml:5: warning: defaults.ipFamilyPolicy: rule \"legacy\" flags the Services \
                 these defaults create (a ClusterIP in namespace \"legacy-x\") on every shape of \
                 cluster: ipFamilyPolicy PreferDualStack not allowed (set SingleStack)",
                "0 errors, 1 warning in 1 file",
            ],
            0,
        );
    }
    let text = policy(&format!("enforcement: Enforce\n{rest}"));
    assert_output(
        &lint(&[("p.yaml", &text)], &[]),
        &[
            "p.yaml:3: error: enforcement: unknown variant `Enforce`, expected one of `Deny`, \
             `Warn`, `Audit` at line 3 column 14",
            "1 error, 0 warnings in 1 file",
        ],
        1,
    );
}
