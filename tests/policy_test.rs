//! `dualstack-webhook test`: the example suites pass, and a wrong expectation, a missing Service,
//! an unreadable suite or a directory without suites each give their line and exit code.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_dualstack-webhook");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `test` with `args` in `dir`, so that the lines name paths as relative as the arguments.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("test")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A policy with one Deny rule: `prod` must be dual-stack.
const POLICY: &str = "\
apiVersion: dualstack-webhook/v1alpha1
kind: DualStackPolicy
exemptNamespaces: [kube-system]
defaults: {ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv6, IPv4]}
rules:
  - name: prod-dual
    match: {namespaces: [prod]}
    require: {dualStack: true}
";

const SERVICES: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: single, namespace: prod}
spec:
  ipFamilyPolicy: SingleStack
  selector: {app: single}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: kube-system}
spec:
  selector: {app: dns}
  ports: [{port: 53}]
";

const HEADER: &str = "\
apiVersion: dualstack-webhook/v1alpha1
kind: PolicyTest
policy: policy.yaml
serviceCIDRs: 10.96.0.0/16,fd00:10:96::/112
resources: [services.yaml]
";

/// A directory with the policy, the Services and a suite of `HEADER` + `results`.
fn suite(results: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    std::fs::write(dir.path().join("services.yaml"), SERVICES).unwrap();
    let body = format!("{HEADER}{results}");
    std::fs::write(dir.path().join("dualstack-test.yaml"), body).unwrap();
    dir
}

/// Every `dualstack-test.yaml` under `dir`, relative to [`ROOT`].
fn suites_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(Path::new(ROOT).join(dir)).unwrap() {
        let rel = dir.join(entry.unwrap().file_name());
        if Path::new(ROOT).join(&rel).is_dir() {
            suites_under(&rel, out);
        } else if rel.ends_with("dualstack-test.yaml") {
            out.push(rel);
        }
    }
}

#[test]
fn every_example_suite_passes() {
    let out = run_in(Path::new(ROOT), &["examples/"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let mut suites = Vec::new();
    suites_under(Path::new("examples"), &mut suites);
    assert!(suites.len() >= 4, "{suites:?}");
    let lines: Vec<&str> = text.lines().collect();
    let (summary, results) = lines.split_last().unwrap();
    let n = results.len();
    assert_eq!(
        *summary,
        format!("{} suites, {n} results: {n} passed, 0 failed", suites.len())
    );
    for suite in &suites {
        let prefix = format!("PASS {}: ", suite.display());
        assert!(results.iter().any(|l| l.starts_with(&prefix)), "{prefix}");
    }
    assert!(
        results.iter().all(|l| l.starts_with("PASS examples/")),
        "{text}"
    );
    // One line of each example, whole.
    for line in [
        "PASS examples/policy-tests/example-policy/dual-stack/dualstack-test.yaml: prod-eu/legacy-lb: denied",
        "PASS examples/policy-tests/example-policy/ipv4-only/dualstack-test.yaml: prod-eu/legacy-lb-fixed: allowed",
        "PASS examples/policy-tests/example-policy/unknown-cluster/dualstack-test.yaml: apps/pinned-v4: unknown",
        "PASS examples/policy-tests/e2e-policy/dualstack-test.yaml: e2e-nssel-plain/v4-single: denied",
    ] {
        assert!(lines.contains(&line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn a_wrong_expectation_fails_with_what_differs() {
    let dir = suite(
        "\
strict: true
results:
  - {service: web, result: denied}
  - {service: prod/single, result: denied, rules: [prod-dual], ipFamilies: [IPv4]}
  - {service: kube-system/dns, result: exempt}
",
    );
    let out = run_in(dir.path(), &["dualstack-test.yaml"]);
    assert_eq!(stderr(&out), "");
    let single = stdout(&out)
        .lines()
        .nth(1)
        .map(|l| l.split(" (").next().unwrap_or_default().to_owned());
    assert_eq!(
        stdout(&out).lines().next(),
        Some("FAIL dualstack-test.yaml: default/web: expected denied, got allowed")
    );
    // The message that follows in parentheses is the engine's denial.
    assert_eq!(
        single.as_deref(),
        Some("FAIL dualstack-test.yaml: prod/single: expected ipFamilies [IPv4], got [IPv6]")
    );
    assert!(
        stdout(&out)
            .lines()
            .nth(1)
            .unwrap()
            .contains("rule \"prod-dual\"")
    );
    assert_eq!(
        stdout(&out).lines().skip(2).collect::<Vec<_>>(),
        [
            "PASS dualstack-test.yaml: kube-system/dns: exempt",
            "1 suite, 3 results: 1 passed, 2 failed"
        ]
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_missing_service_fails_and_an_unexpected_one_is_reported() {
    let dir = suite(
        "\
results:
  - {service: web, result: allowed, rules: [], ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv6, IPv4]}
  - {service: prod/single, result: denied, rules: [prod-dual], messageContains: must be dual-stack}
  - {service: prod/gone, result: allowed}
",
    );
    let out = run_in(dir.path(), &["."]);
    assert_eq!(stderr(&out), "");
    assert_eq!(
        stdout(&out),
        "\
PASS ./dualstack-test.yaml: default/web: allowed
PASS ./dualstack-test.yaml: prod/single: denied
FAIL ./dualstack-test.yaml: prod/gone: expected allowed, got no such Service in the resources
UNTESTED ./dualstack-test.yaml: kube-system/dns: no expected result, got exempt
1 suite, 3 results: 2 passed, 1 failed, 1 untested
"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn strict_fails_a_service_without_an_expected_result() {
    let dir = suite("strict: true\nresults: [{service: web, result: allowed}]\n");
    let out = run_in(dir.path(), &["dualstack-test.yaml"]);
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines[0], "PASS dualstack-test.yaml: default/web: allowed");
    assert!(
        lines[1].starts_with(
            "FAIL dualstack-test.yaml: prod/single: no expected result (strict), got denied (Service \"prod/single\""
        ),
        "{lines:?}"
    );
    assert_eq!(
        lines[2..],
        [
            "FAIL dualstack-test.yaml: kube-system/dns: no expected result (strict), got exempt",
            "1 suite, 3 results: 1 passed, 2 failed"
        ]
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn an_unreadable_resource_fails_the_suite() {
    let dir = suite("results: [{service: web, result: allowed}]\n");
    let broken = "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {ports: nope}\n";
    let services = format!("{SERVICES}---\n{broken}");
    std::fs::write(dir.path().join("services.yaml"), services).unwrap();
    let out = run_in(dir.path(), &["dualstack-test.yaml"]);
    let text = stdout(&out);
    assert_eq!(
        text,
        "\
PASS dualstack-test.yaml: default/web: allowed
UNTESTED dualstack-test.yaml: prod/single: no expected result, got denied
UNTESTED dualstack-test.yaml: kube-system/dns: no expected result, got exempt
FAIL dualstack-test.yaml: services.yaml:23: Service \"bad\": spec.ports: invalid type: string \"nope\", expected a sequence
1 suite, 2 results: 1 passed, 1 failed, 2 untested
"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn an_unknown_field_is_an_unreadable_suite_with_its_line() {
    let dir = suite("results:\n  - service: web\n    result: allowed\n    rule: [prod-dual]\n");
    let out = run_in(dir.path(), &["dualstack-test.yaml"]);
    assert_eq!(
        stderr(&out),
        "dualstack-webhook: dualstack-test.yaml: results[0]: unknown field `rule`, expected one of \
         `service`, `result`, `rules`, `ipFamilyPolicy`, `ipFamilies`, `messageContains` at line 9 column 5\n"
    );
    assert_eq!(
        stdout(&out),
        "1 suite (1 unreadable), 0 results: 0 passed, 0 failed\n"
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn other_suites_still_run_beside_an_unreadable_one() {
    let good = suite("results: [{service: web, result: allowed}]\n");
    let bad = good.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    let body = "apiVersion: dualstack-webhook/v1alpha1\nkind: PolicyTest\npolicy: nope.yaml\n\
                resources: [x.yaml]\nresults: [{service: web, result: allowed}]\n";
    std::fs::write(bad.join("dualstack-test.yaml"), body).unwrap();
    let out = run_in(good.path(), &["."]);
    assert_eq!(
        stderr(&out),
        "dualstack-webhook: ./bad/dualstack-test.yaml: policy: cannot read ./bad/nope.yaml: \
         No such file or directory (os error 2)\n"
    );
    assert_eq!(
        stdout(&out),
        "\
PASS ./dualstack-test.yaml: default/web: allowed
UNTESTED ./dualstack-test.yaml: prod/single: no expected result, got denied
UNTESTED ./dualstack-test.yaml: kube-system/dns: no expected result, got exempt
2 suites (1 unreadable), 1 result: 1 passed, 0 failed, 2 untested
"
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_directory_without_suites_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let out = run_in(dir.path(), &["."]);
    assert_eq!(
        stderr(&out),
        "dualstack-webhook: .: no dualstack-test.yaml in this directory or below\n"
    );
    assert_eq!(stdout(&out), "");
    assert_eq!(out.status.code(), Some(2));
    let out = run_in(dir.path(), &["missing"]);
    assert_eq!(
        stderr(&out),
        "dualstack-webhook: cannot read missing: No such file or directory (os error 2)\n"
    );
    assert_eq!(out.status.code(), Some(2));
}
