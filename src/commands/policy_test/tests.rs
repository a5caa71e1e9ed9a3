//! Unit tests of suites: reading them (each mistake named with its field and line) and comparing
//! rows with what a suite expects.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use std::path::{Path, PathBuf};

use super::suite::{Expected, Suite, SuiteError};
use super::verify::{Ambiguous, Line, Outcome, Status, verify};
use super::{FindError, Summary, find, render};
use crate::commands::report::{Row, Source, Verdict};
use crate::domain::service::{IpFamily, IpFamilyPolicy};

const POLICY: &str = "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n\
rules:\n  - {name: r1, require: {dualStack: true}}\n  - {name: r2, require: {primaryFamily: IPv6}}\n";

const HEADER: &str = "apiVersion: dualstack-webhook/v1alpha1\nkind: PolicyTest\n\
policy: policy.yaml\nresources: [services.yaml]\n";

/// A suite file with `body` beside a policy, in a new directory (kept alive by the guard).
fn suite_file(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let path = dir.path().join("dualstack-test.yaml");
    std::fs::write(&path, body).unwrap();
    (dir, path)
}

fn load(body: &str) -> Result<Suite, SuiteError> {
    let (_dir, path) = suite_file(body);
    Suite::load(&path)
}

/// The error's field, line and reason, when it is [`SuiteError::Invalid`].
fn invalid(body: &str) -> (String, Option<usize>, String) {
    match load(body).unwrap_err() {
        SuiteError::Invalid {
            field, line, why, ..
        } => (field, line, why),
        other => panic!("not Invalid: {other}"),
    }
}

fn expected(service: &str, result: Outcome) -> Expected {
    let (namespace, name) = service.split_once('/').unwrap();
    Expected {
        namespace: namespace.into(),
        name: name.into(),
        result,
        rules: None,
        ip_family_policy: None,
        ip_families: None,
        message_contains: None,
    }
}

fn row(service: &str, verdict: Verdict) -> Row {
    let (namespace, name) = service.split_once('/').unwrap();
    Row {
        source: Some(Source {
            file: "services.yaml".into(),
            document_index: 0,
            line: Some(3),
        }),
        namespace: namespace.into(),
        name: name.into(),
        type_: "ClusterIP".into(),
        ip_family_policy: "PreferDualStack".into(),
        ip_families: vec!["IPv6".into(), "IPv4".into()],
        cluster_ips: Vec::new(),
        verdict,
        rules: Vec::new(),
        message: String::new(),
    }
}

fn line(status: Status, subject: &str, detail: &str) -> Line {
    Line {
        status,
        subject: subject.into(),
        detail: detail.into(),
    }
}

// === reading ===

#[test]
fn a_full_suite_reads_with_paths_relative_to_it() {
    let body = format!(
        "{HEADER}{}",
        r#"name: all fields
serviceCIDRs: 10.96.0.0/16,fd00::/112
strict: true
namespaces:
  prod: {exposure: public}
results:
  - service: prod/web
    result: denied
    rules: [r1]
    ipFamilyPolicy: SingleStack
    ipFamilies: [IPv4]
    messageContains: dual-stack
  - {service: api, result: allowed}
"#
    );
    let (dir, path) = suite_file(&body);
    let suite = Suite::load(&path).unwrap();
    assert_eq!(suite.resources, [dir.path().join("services.yaml")]);
    assert_eq!(suite.policy.rules.len(), 2);
    assert!(suite.strict);
    assert!(suite.known.service_cidrs.unwrap().is_dual());
    assert_eq!(suite.known.namespaces["prod"]["exposure"], "public");
    assert_eq!(suite.known.default_namespace, "default");
    assert_eq!(
        suite.results[0],
        Expected {
            rules: Some(vec!["r1".into()]),
            ip_family_policy: Some(IpFamilyPolicy::SingleStack),
            ip_families: Some(vec![IpFamily::IPv4]),
            message_contains: Some("dual-stack".into()),
            ..expected("prod/web", Outcome::Denied)
        }
    );
    assert_eq!(suite.results[1], expected("default/api", Outcome::Allowed));
}

#[test]
fn unknown_fields_and_values_name_the_field_and_line() {
    let body = format!("{HEADER}results:\n  - service: web\n    result: allowed\n    rule: [r1]\n");
    let SuiteError::Syntax(_, e) = load(&body).unwrap_err() else {
        panic!("not Syntax")
    };
    assert_eq!(e.location().map(|l| l.line()), Some(8));
    assert!(
        e.to_string()
            .starts_with("results[0]: unknown field `rule`"),
        "{e}"
    );
    let body = format!("{HEADER}results:\n  - {{service: web, result: denyed}}\n");
    let SuiteError::Syntax(_, e) = load(&body).unwrap_err() else {
        panic!("not Syntax")
    };
    assert!(e.to_string().contains("unknown variant `denyed`"), "{e}");
}

#[test]
fn wrong_values_name_the_field_and_line() {
    let header = HEADER.replace("PolicyTest", "DualStackPolicy");
    let (field, line, why) = invalid(&format!(
        "{header}results: [{{service: a, result: allowed}}]"
    ));
    assert_eq!((field.as_str(), line), ("kind", Some(2)));
    assert_eq!(why, "must be PolicyTest, got \"DualStackPolicy\"");
    let body = format!(
        "{HEADER}serviceCIDRs: 10.0.0.0/8,10.1.0.0/16\nresults: [{{service: a, result: allowed}}]\n"
    );
    let (field, line, why) = invalid(&body);
    assert_eq!((field.as_str(), line), ("serviceCIDRs", Some(5)));
    assert_eq!(
        why,
        "\"10.0.0.0/8,10.1.0.0/16\" is not one or two CIDRs of different families, primary first \
         (e.g. 10.96.0.0/16,fd00:10:96::/112)"
    );
    let (field, line, _) = invalid(&format!("{HEADER}results: []\n"));
    assert_eq!((field.as_str(), line), ("results", Some(5)));
    let body = format!("{HEADER}results:\n  - {{service: a/b/c, result: allowed}}\n");
    let (field, line, why) = invalid(&body);
    assert_eq!((field.as_str(), line), ("results[0].service", Some(6)));
    assert_eq!(why, "\"a/b/c\" is not namespace/name or name");
    let body =
        format!("{HEADER}results:\n  - {{service: a, result: allowed, rules: [r2, nope]}}\n");
    let (field, _, why) = invalid(&body);
    assert_eq!(field, "results[0].rules[1]");
    assert_eq!(why, "the policy has no rule \"nope\"");
    let body = format!(
        "{HEADER}results:\n  - {{service: a, result: allowed}}\n  - {{service: default/a, result: denied}}\n"
    );
    let (field, line, why) = invalid(&body);
    assert_eq!((field.as_str(), line), ("results[1].service", Some(7)));
    assert_eq!(why, "default/a is already expected by results[0]");
}

#[test]
fn a_policy_that_does_not_load_is_named_without_the_flag() {
    let body = format!("{HEADER}results: [{{service: a, result: allowed}}]\n");
    let (dir, path) = suite_file(&body);
    std::fs::write(dir.path().join("policy.yaml"), "kind: Nope\n").unwrap();
    let error = Suite::load(&path).unwrap_err();
    assert!(matches!(error, SuiteError::Policy(..)));
    let text = error.to_string();
    assert!(text.contains(": policy: invalid policy file "), "{text}");
    assert!(!text.contains("--policy"), "{text}");
}

// === comparing ===

#[test]
fn matching_results_pass_with_their_outcome() {
    let mut r = row("prod/web", Verdict::Deny);
    r.rules = vec!["r2".into(), "r1".into()];
    r.message = "rule \"r1\": set spec.ipFamilyPolicy".into();
    let e = Expected {
        rules: Some(vec!["r1".into(), "r2".into()]),
        ip_family_policy: Some(IpFamilyPolicy::PreferDualStack),
        ip_families: Some(vec![IpFamily::IPv6, IpFamily::IPv4]),
        message_contains: Some("set spec.ipFamilyPolicy".into()),
        ..expected("prod/web", Outcome::Denied)
    };
    assert_eq!(
        verify(&[e], &[r], false).unwrap(),
        [line(Status::Pass, "prod/web", "denied")]
    );
}

#[test]
fn each_difference_is_said_then_the_message() {
    let mut r = row("prod/web", Verdict::Warn);
    r.message = "rule \"r2\": primary family IPv4 but IPv6 required".into();
    r.ip_family_policy = String::new();
    let e = Expected {
        rules: Some(vec!["r2".into()]),
        ip_family_policy: Some(IpFamilyPolicy::RequireDualStack),
        ip_families: Some(vec![IpFamily::IPv4]),
        message_contains: Some("dual-stack".into()),
        ..expected("prod/web", Outcome::Denied)
    };
    let detail = "expected denied, got warned; expected rules [r2], got none; \
        expected ipFamilyPolicy RequireDualStack, got none; expected ipFamilies [IPv4], got [IPv6, IPv4]; \
        expected a message containing \"dual-stack\" \
        (rule \"r2\": primary family IPv4 but IPv6 required)";
    assert_eq!(
        verify(&[e], &[r], false).unwrap(),
        [line(Status::Fail, "prod/web", detail)]
    );
}

#[test]
fn missing_unreadable_and_untested_services() {
    let mut unreadable = Row {
        verdict: Verdict::Error,
        message: "Service \"x\": invalid type".into(),
        ..row("/", Verdict::Error)
    };
    unreadable.source.as_mut().unwrap().line = Some(9);
    let rows = [
        row("a/found", Verdict::Ok),
        unreadable,
        row("a/extra", Verdict::Refused),
    ];
    let expect = [
        expected("a/found", Outcome::Allowed),
        expected("a/gone", Outcome::Denied),
    ];
    let first = [
        line(Status::Pass, "a/found", "allowed"),
        line(
            Status::Fail,
            "a/gone",
            "expected denied, got no such Service in the resources",
        ),
        line(
            Status::Fail,
            "services.yaml:9",
            "Service \"x\": invalid type",
        ),
    ];
    let lenient = verify(&expect, &rows, false).unwrap();
    assert_eq!(lenient[..3], first);
    let untested = "no expected result, got refused";
    assert_eq!(lenient[3], line(Status::Untested, "a/extra", untested));
    let strict = verify(&expect, &rows, true).unwrap();
    let untested = "no expected result (strict), got refused";
    assert_eq!(strict[3], line(Status::Fail, "a/extra", untested));
}

#[test]
fn a_service_twice_in_the_resources_is_ambiguous() {
    let mut second = row("a/web", Verdict::Ok);
    second.source.as_mut().unwrap().line = Some(20);
    let rows = [row("a/web", Verdict::Ok), second];
    assert_eq!(
        verify(&[expected("a/web", Outcome::Allowed)], &rows, false),
        Err(Ambiguous(
            "a/web".into(),
            "services.yaml:3".into(),
            "services.yaml:20".into()
        ))
    );
}

#[test]
fn every_verdict_but_error_is_an_outcome() {
    let pairs = [
        (Verdict::Ok, Some(Outcome::Allowed)),
        (Verdict::Deny, Some(Outcome::Denied)),
        (Verdict::Warn, Some(Outcome::Warned)),
        (Verdict::Audit, Some(Outcome::Audited)),
        (Verdict::Exempt, Some(Outcome::Exempt)),
        (Verdict::Refused, Some(Outcome::Refused)),
        (Verdict::Unknown, Some(Outcome::Unknown)),
        (Verdict::Error, None),
    ];
    for (verdict, outcome) in pairs {
        assert_eq!(Outcome::of(verdict), outcome, "{verdict:?}");
    }
}

// === output and discovery ===

#[test]
fn lines_and_summary_read_as_documented() {
    let l = line(Status::Fail, "a/web", "expected denied, got allowed");
    assert_eq!(
        render(Path::new("s/dualstack-test.yaml"), &l),
        "FAIL s/dualstack-test.yaml: a/web: expected denied, got allowed"
    );
    let summary = Summary {
        suites: 3,
        unreadable: 1,
        passed: 8,
        failed: 1,
        untested: 2,
    };
    assert_eq!(
        summary.to_string(),
        "3 suites (1 unreadable), 9 results: 8 passed, 1 failed, 2 untested"
    );
    let one = Summary {
        suites: 1,
        passed: 1,
        ..Summary::default()
    };
    assert_eq!(one.to_string(), "1 suite, 1 result: 1 passed, 0 failed");
}

#[test]
fn directories_are_searched_for_suites_in_path_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in ["b", "a/deep", ".hidden", "c"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for file in [
        "b/dualstack-test.yaml",
        "a/deep/dualstack-test.yaml",
        ".hidden/dualstack-test.yaml",
        "c/other.yaml",
    ] {
        std::fs::write(root.join(file), "").unwrap();
    }
    std::os::unix::fs::symlink(root.join("a"), root.join("a/deep/loop")).unwrap();
    assert_eq!(
        find(root).unwrap(),
        [
            root.join("a/deep/dualstack-test.yaml"),
            root.join("b/dualstack-test.yaml")
        ]
    );
    // A file is a suite whatever its name.
    let other = root.join("c/other.yaml");
    assert_eq!(find(&other).unwrap(), [other]);
    assert!(matches!(find(&root.join("c")), Err(FindError::NoSuite(_))));
    assert!(matches!(find(&root.join("nope")), Err(FindError::Read(..))));
}
