//! The output formats of `check` and `audit` (`--output table|json|junit|sarif|policyreport`),
//! each checked against the schema its readers follow, vendored in `tests/schemas/` (its README
//! says where each came from):
//!
//! - SARIF: the OASIS SARIF 2.1.0 JSON Schema (errata 01), with format assertions on.
//! - PolicyReport: the `openAPIV3Schema` of the `wgpolicyk8s.io/v1alpha2` CRD (Kyverno's), read
//!   as a JSON Schema, with unknown fields refused as `kubectl apply` does (strict field
//!   validation) rather than pruned in silence.
//! - JUnit: the Jenkins xUnit plugin's `junit-10.xsd`, through `xmllint --schema` (libxml2,
//!   Debian's `libxml2-utils`, which `tests/install-deps.sh` installs), plus the counts the XSD
//!   cannot state, read back with quick-xml.
//!
//! Rows cover every verdict, read from files (`check`) and from a cluster (`audit`); each schema
//! check is shown to refuse broken documents; small inputs are compared with whole outputs.
//! `tests/e2e/reports.rs` applies the PolicyReports to a real API server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::io::Write;
use std::process::{Command, Stdio};

use dualstack_webhook::commands::report::{
    self, REFUSED_RULE, Row, Source, UNREADABLE_NAMESPACE, UNREADABLE_RULE, Verdict, render,
};
use dualstack_webhook::config::OutputFormat;
use dualstack_webhook::domain::policy::Policy;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};
use serde_json::{Value, json};

const SARIF_SCHEMA: &str = include_str!("schemas/sarif-schema-2.1.0.json");
const JUNIT_XSD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemas/junit-10.xsd");
const POLICY_REPORT_CRD: &str = include_str!("schemas/wgpolicyk8s.io_policyreports.yaml");

/// One rule of each action.
const POLICY: &str = "\
apiVersion: dualstack-webhook/v1alpha1
kind: DualStackPolicy
exemptNamespaces: [kube-system]
rules:
- name: public-lb-dual-stack
  match: {types: [LoadBalancer]}
  require: {ipFamilyPolicies: [RequireDualStack], dualStack: true}
- name: ipv6-first
  require: {primaryFamily: IPv6}
  action: Warn
- name: no-single-stack
  require: {ipFamilyPolicies: [PreferDualStack, RequireDualStack]}
  action: Audit
";

fn policy() -> Policy {
    Policy::from_yaml(POLICY).unwrap()
}

/// Rows from a table, one a line: `SOURCE | NAMESPACE/NAME | VERDICT | RULES | MESSAGE`. SOURCE
/// is `FILE#DOCUMENT` or `FILE#DOCUMENT:LINE` for a file (`check`), empty for a cluster's Service
/// (`audit`); RULES are comma-separated; an empty NAMESPACE/NAME is a document that could not be
/// read. Every Service is a single-stack IPv4 LoadBalancer.
fn rows(table: &str) -> Vec<Row> {
    let verdicts = [
        Verdict::Ok,
        Verdict::Exempt,
        Verdict::Warn,
        Verdict::Audit,
        Verdict::Unknown,
        Verdict::Deny,
        Verdict::Refused,
        Verdict::Error,
    ];
    let row = |line: &str| {
        let cells: Vec<&str> = line.splitn(5, '|').map(str::trim).collect();
        let [source, service, verdict, rules, message] = cells[..] else {
            panic!("not a row: {line}")
        };
        let source = (!source.is_empty()).then(|| {
            let (file, at) = source.rsplit_once('#').unwrap();
            let (document, line) = at.split_once(':').map_or((at, None), |(d, l)| (d, Some(l)));
            Source {
                file: file.into(),
                document_index: document.parse().unwrap(),
                line: line.map(|l| l.parse().unwrap()),
            }
        });
        let (namespace, name) = service.split_once('/').unwrap_or_default();
        let known = |value: &str| if name.is_empty() { "" } else { value }.to_owned();
        let list = |value: &str| Vec::from_iter((!name.is_empty()).then(|| value.to_owned()));
        Row {
            source,
            namespace: namespace.into(),
            name: name.into(),
            type_: known("LoadBalancer"),
            ip_family_policy: known("SingleStack"),
            ip_families: list("IPv4"),
            cluster_ips: list("10.96.0.10"),
            verdict: *verdicts.iter().find(|v| v.as_str() == verdict).unwrap(),
            rules: rules
                .split(',')
                .filter(|r| !r.is_empty())
                .map(Into::into)
                .collect(),
            message: message.into(),
        }
    };
    table
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(row)
        .collect()
}

/// Every verdict from files (`check`), then every verdict a cluster can give (`audit`: no
/// `error`, which is a document that could not be read).
fn every_verdict() -> Vec<Row> {
    rows("
        apps.yaml#0:1             | web/frontend         | ok      |                                 |
        apps.yaml#1:12            | kube-system/dns      | exempt  |                                 |
        apps.yaml#2:20            | web/api              | warn    | ipv6-first                      | ipv6-first: primary family IPv4 but IPv6 required
        other.yaml#0:1            | team-a/cache         | audit   | no-single-stack                 | no-single-stack: ipFamilyPolicy SingleStack not allowed (set PreferDualStack)
        other.yaml#1              | team-a/lb            | unknown | public-lb-dual-stack            | deny on single-stack clusters, ok on dual-stack ones: pass --service-cidrs
        other.yaml#2:30           | team-a/edge          | deny    | public-lb-dual-stack,ipv6-first | denied by \"public-lb-dual-stack\": set spec.ipFamilyPolicy: <RequireDualStack> & two families
        dir with space/x.yaml#0:3 | web/pinned           | refused |                                 | the API server would refuse it: spec.clusterIPs[0]: Invalid value
        dir with space/x.yaml#1:9 |                      | error   |                                 | document 1: not a Kubernetes object: control character \u{1} at line 9
                                  | default/kubernetes   | ok      |                                 |
                                  | kube-system/kube-dns | exempt  |                                 |
                                  | team-b/api           | warn    | ipv6-first                      | ipv6-first: primary family IPv4 but IPv6 required
                                  | team-b/cache         | audit   | no-single-stack                 | no-single-stack: ipFamilyPolicy SingleStack not allowed (set PreferDualStack)
                                  | team-b/lb            | unknown | public-lb-dual-stack            | depends on the labels of namespace team-b
                                  | team-b/edge          | deny    | public-lb-dual-stack            | denied by \"public-lb-dual-stack\": set spec.ipFamilyPolicy: <RequireDualStack> & two families
                                  | team-b/pinned        | refused |                                 | the API server would refuse it: spec.clusterIPs[0]: Invalid value
    ")
}

/// A named change that breaks a document, for showing that a schema check refuses it.
type Mutation = (&'static str, fn(&mut Value));

/// A draft-04 JSON Schema (what both vendored schemas are) with format assertions on.
fn json_schema(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .build(schema)
        .unwrap()
}

/// Asserts that `doc` is valid, then that each mutation of it is not.
fn assert_schema_refuses(validator: &jsonschema::Validator, doc: &Value, mutations: &[Mutation]) {
    assert_valid(validator, doc);
    for (what, mutate) in mutations {
        let mut broken = doc.clone();
        mutate(&mut broken);
        assert_ne!(&broken, doc, "{what}: changed nothing");
        assert!(!validator.is_valid(&broken), "{what}: passed");
    }
}

fn assert_valid(validator: &jsonschema::Validator, doc: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
}

// === json ===

#[test]
fn json_keeps_the_row_fields() {
    let rows = every_verdict();
    let out: Value = serde_json::from_str(&report::json(&rows).unwrap()).unwrap();
    let out = out.as_array().unwrap();
    assert_eq!(out.len(), rows.len());
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let common = [
        "clusterIPs",
        "ipFamilies",
        "ipFamilyPolicy",
        "message",
        "name",
        "namespace",
        "rules",
        "type",
        "verdict",
    ];
    let mut from_file: Vec<&str> = [&common[..], &["documentIndex", "file", "line"]].concat();
    from_file.sort_unstable();
    assert_eq!(keys(&out[0]), from_file);
    // The line is left out where it is not known; a cluster's Service has no file at all.
    assert!(out[4].get("line").is_none() && out[4]["file"] == "other.yaml");
    assert_eq!(keys(&out[8]), common);
    assert_eq!(out[5]["verdict"], "deny");
    assert_eq!(
        out[5]["rules"],
        json!(["public-lb-dual-stack", "ipv6-first"])
    );
    assert_eq!(out[7]["documentIndex"], 1);
}

// === table ===

#[test]
fn table_of_files_starts_with_their_position() {
    let mut rows = rows(
        "
        a.yaml#0:3  | web/frontend | ok    |                                 |
        b.json#2    | team-a/edge  | deny  | public-lb-dual-stack,ipv6-first | denied:
        b.json#3:40 |              | error |                                 | not YAML
    ",
    );
    rows[1].message.push_str("\n  set RequireDualStack");
    assert_eq!(
        report::table(&rows),
        "\
FILE                 NAMESPACE  NAME      TYPE          POLICY       FAMILIES  CLUSTER-IPS  VERDICT  RULES                            MESSAGE
a.yaml:3             web        frontend  LoadBalancer  SingleStack  IPv4      10.96.0.10   ok
b.json (document 2)  team-a     edge      LoadBalancer  SingleStack  IPv4      10.96.0.10   deny     public-lb-dual-stack,ipv6-first  denied: set RequireDualStack
b.json:40                                                                                   error                                     not YAML
"
    );
}

#[test]
fn table_of_a_cluster_keeps_the_kubectl_columns() {
    let rows = rows(
        "
         | default/kubernetes | ok   |            |
         | team-b/api         | warn | ipv6-first | ipv6-first: IPv4 first
    ",
    );
    assert_eq!(
        report::table(&rows),
        "\
NAMESPACE  NAME        TYPE          POLICY       FAMILIES  CLUSTER-IPS  VERDICT  RULES       MESSAGE
default    kubernetes  LoadBalancer  SingleStack  IPv4      10.96.0.10   ok
team-b     api         LoadBalancer  SingleStack  IPv4      10.96.0.10   warn     ipv6-first  ipv6-first: IPv4 first
"
    );
    assert_eq!(
        report::table(&[]),
        "NAMESPACE  NAME  TYPE  POLICY  FAMILIES  CLUSTER-IPS  VERDICT  RULES  MESSAGE\n"
    );
}

// === junit ===

/// Runs `xmllint --noout --schema junit-10.xsd -` on `xml`: its exit status and what it said.
fn xmllint(xml: &str) -> (Option<i32>, String) {
    let mut child = Command::new("xmllint")
        .args(["--noout", "--schema", JUNIT_XSD, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run xmllint ({e}): run tests/install-deps.sh (Debian: libxml2-utils)")
        });
    // Writing fails only to an xmllint that stopped reading: its status says why.
    let written = child.stdin.take().unwrap().write_all(xml.as_bytes());
    let out = child.wait_with_output().unwrap();
    let mut said = String::from_utf8_lossy(&out.stderr).into_owned();
    if let Err(e) = written {
        said += &format!("(writing the document to it: {e})");
    }
    (out.status.code(), said)
}

fn assert_junit_valid(xml: &str) {
    let (status, said) = xmllint(xml);
    assert_eq!(status, Some(0), "xmllint refused it:\n{said}\n{xml}");
}

/// An element of a JUnit document, read back: its name, attributes, child elements and text.
#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
    text: String,
}

impl Node {
    fn attr(&self, name: &str) -> Option<&str> {
        let mut found = self.attrs.iter().filter(|(k, _)| k == name);
        found.next().map(|(_, v)| v.as_str())
    }

    fn count(&self, attr: &str) -> usize {
        self.attr(attr).unwrap().parse().unwrap()
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// The root element of `xml`, which xmllint has found well-formed.
fn parse(xml: &str) -> Node {
    let element = |e: &BytesStart<'_>| Node {
        name: e.name().as_ref().to_owned(),
        attrs: (e.attributes())
            .map(|a| {
                let a = a.unwrap();
                let value = a.normalized_value(XmlVersion::Implicit1_0).unwrap();
                (a.key.as_ref().to_owned(), value.into_owned())
            })
            .collect(),
        ..Node::default()
    };
    let mut reader = Reader::from_str(xml);
    let mut stack = vec![Node::default()]; // the document, whose child is the root
    loop {
        let top = stack.last_mut().unwrap();
        match reader.read_event().unwrap() {
            Event::Start(e) => stack.push(element(&e)),
            Event::Empty(e) => top.children.push(element(&e)),
            Event::End(_) => {
                let done = stack.pop().unwrap();
                stack.last_mut().unwrap().children.push(done);
            }
            Event::Text(t) => top.text.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => match r.resolve_char_ref().unwrap() {
                Some(c) => top.text.push(c),
                None => top
                    .text
                    .push_str(quick_xml::escape::resolve_predefined_entity(&r).unwrap()),
            },
            Event::Eof => return stack.pop().unwrap().children.pop().unwrap(),
            _ => {}
        }
    }
}

#[test]
fn junit_is_valid_against_junit_10_xsd() {
    let rows = every_verdict();
    let xml = report::junit(&rows).unwrap();
    assert_junit_valid(&xml);
    // XML 1.0 cannot carry C0 controls even escaped: the unreadable document's message had one.
    assert!(!xml.contains('\u{1}') && !xml.contains("&#1;"), "{xml}");

    let root = parse(&xml);
    assert_eq!(root.name, "testsuites");
    let suites: Vec<&str> = root
        .all("testsuite")
        .map(|s| s.attr("name").unwrap())
        .collect();
    let files = ["apps.yaml", "other.yaml", "dir with space/x.yaml"];
    assert_eq!(suites, [&files[..], &["cluster"]].concat());

    // The counts the XSD cannot state: each equals the children that carry it.
    let mut total = [0; 3];
    for suite in root.all("testsuite") {
        let cases_with = |child| {
            let cases = suite.all("testcase");
            cases.filter(|c| c.all(child).next().is_some()).count()
        };
        let found = [
            suite.all("testcase").count(),
            cases_with("failure"),
            cases_with("error"),
            cases_with("skipped"),
        ];
        let said = ["tests", "failures", "errors", "skipped"].map(|a| suite.count(a));
        assert_eq!(said, found, "{suite:?}");
        total.iter_mut().zip(found).for_each(|(t, n)| *t += n);
    }
    assert_eq!(
        ["tests", "failures", "errors"].map(|a| root.count(a)),
        total
    );
    assert_eq!(total, [rows.len(), 4, 1]);

    // Each verdict's element, in file order then the cluster's.
    let cases: Vec<&Node> = root
        .all("testsuite")
        .flat_map(|s| s.all("testcase"))
        .collect();
    assert_eq!(cases.len(), rows.len());
    for (case, row) in cases.iter().zip(&rows) {
        let kids: Vec<&str> = case.children.iter().map(|c| c.name.as_str()).collect();
        let expected: &[&str] = match row.verdict {
            Verdict::Ok => &[],
            Verdict::Deny | Verdict::Refused => &["failure"],
            Verdict::Error => &["error"],
            Verdict::Exempt | Verdict::Unknown => &["skipped"],
            Verdict::Warn | Verdict::Audit => &["system-out"],
        };
        assert_eq!(kids, expected, "{case:?}");
        match case.children.first() {
            Some(out) if out.name == "system-out" => {
                assert_eq!(
                    out.text,
                    format!("{}: {}", row.verdict.as_str(), row.message)
                );
            }
            Some(child) => assert_eq!(child.attr("type"), Some(row.verdict.as_str())),
            None => {}
        }
        let classname = row.source.as_ref().map_or(&row.namespace, |s| &s.file);
        assert_eq!(case.attr("classname"), Some(classname.as_str()));
    }
    let deny = &cases[5].children[0];
    assert_eq!(cases[5].attr("name"), Some("team-a/edge"));
    // Escaped on the way out, read back exactly.
    assert_eq!(deny.attr("message"), Some(rows[5].message.as_str()));
    assert_eq!(deny.text, rows[5].message);
    assert_eq!(cases[7].attr("name"), Some("document 1"));
    assert_eq!(
        cases[7].children[0].text,
        rows[7].message.replace('\u{1}', "\u{fffd}")
    );
    // A skipped case with no message still says why.
    assert_eq!(cases[1].children[0].attr("message"), Some("exempt"));

    let empty = report::junit(&[]).unwrap();
    assert_junit_valid(&empty);
    assert_eq!(parse(&empty).attr("tests"), Some("0"));
}

#[test]
fn xmllint_refuses_what_the_schema_forbids() {
    let xml = report::junit(&every_verdict()).unwrap();
    assert_junit_valid(&xml);
    let frontend = r#"<testcase name="web/frontend" classname="apps.yaml"/>"#;
    let broken = [
        // `skipped` is not an attribute of <testsuites> in junit-10.xsd.
        ("<testsuites ", r#"<testsuites skipped="2" "#),
        // `errors` is required on <testsuite>.
        (r#" errors="0" skipped="#, " skipped="),
        // <testcase> needs a name.
        (r#"<testcase name="web/frontend""#, "<testcase"),
        // A failure belongs in a test case, not in the suite.
        (frontend, "<failure/>"),
        // <testcase> is not mixed: no text of its own.
        (frontend, r#"<testcase name="x">oops</testcase>"#),
        // <system-out> is text only.
        ("<system-out>", r#"<system-out a="b">"#),
        // An element the schema does not declare.
        ("<skipped ", "<ignored "),
        // `time` must match the SUREFIRE_TIME pattern.
        ("<testsuite ", r#"<testsuite time="soon" "#),
    ];
    for (from, to) in broken {
        let doc = xml.replacen(from, to, 1);
        assert_ne!(doc, xml, "{to}: changed nothing");
        // 3: the document is well-formed and does not validate.
        let (status, said) = xmllint(&doc);
        assert_eq!(status, Some(3), "{to}:\n{said}\n{doc}");
    }
    let (status, said) = xmllint(&xml.replacen("</testsuites>", "", 1));
    assert_eq!(status, Some(1), "not well-formed:\n{said}");

    // What the schema allows and this crate does not write is accepted.
    let other = r#"<?xml version="1.0"?>
<testsuites name="n" tests="1" failures="0" errors="0">
  <testsuite name="s" tests="1" failures="0" errors="0" skipped="0" time="1,234.5">
    <properties><property name="a" value="b"/></properties>
    <testcase name="c" classname="k" time="anything"><system-err>e</system-err><system-out>o</system-out><skipped/></testcase>
    <testsuite name="nested" tests="0" failures="0" errors="0"/>
    <system-out>suite output</system-out>
  </testsuite>
</testsuites>"#;
    assert_junit_valid(other);
    assert_eq!(xmllint(&other.replace(r#" value="b""#, "")).0, Some(3));
}

#[test]
fn junit_whole_output() {
    let rows = rows(
        r#"
        a.yaml#0:1 | web/ok          | ok     |                      |
        a.yaml#1:9 | web/lb          | deny   | public-lb-dual-stack | set <RequireDualStack> & "two"
        b.yaml#0:1 |                 | error  |                      | not YAML
                   | team-b/api      | warn   | ipv6-first           | IPv4 first
                   | kube-system/dns | exempt |                      |
    "#,
    );
    assert_eq!(
        report::junit(&rows).unwrap(),
        r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="dualstack-webhook" tests="5" failures="1" errors="1">
  <testsuite name="a.yaml" tests="2" failures="1" errors="0" skipped="0">
    <testcase name="web/ok" classname="a.yaml"/>
    <testcase name="web/lb" classname="a.yaml">
      <failure type="deny" message="set &lt;RequireDualStack&gt; &amp; &quot;two&quot;">set &lt;RequireDualStack&gt; &amp; &quot;two&quot;</failure>
    </testcase>
  </testsuite>
  <testsuite name="b.yaml" tests="1" failures="0" errors="1" skipped="0">
    <testcase name="document 0" classname="b.yaml">
      <error type="error" message="not YAML">not YAML</error>
    </testcase>
  </testsuite>
  <testsuite name="cluster" tests="2" failures="0" errors="0" skipped="1">
    <testcase name="team-b/api" classname="team-b">
      <system-out>warn: IPv4 first</system-out>
    </testcase>
    <testcase name="kube-system/dns" classname="kube-system">
      <skipped type="exempt" message="exempt"/>
    </testcase>
  </testsuite>
</testsuites>
"#
    );
}

// === sarif ===

fn sarif_validator() -> jsonschema::Validator {
    json_schema(&serde_json::from_str(SARIF_SCHEMA).unwrap())
}

#[test]
fn sarif_is_valid_against_the_sarif_2_1_0_schema() {
    let rows = every_verdict();
    let policy = policy();
    let log: Value = serde_json::from_str(&report::sarif(&rows, &policy).unwrap()).unwrap();
    let validator = sarif_validator();
    assert_valid(&validator, &log);

    assert_eq!(log["version"], "2.1.0");
    let runs = log["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert_eq!(driver["name"], "dualstack-webhook");
    assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
    let ids: Vec<&str> = driver["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "public-lb-dual-stack",
            "ipv6-first",
            "no-single-stack",
            REFUSED_RULE,
            UNREADABLE_RULE
        ]
    );
    assert_eq!(
        driver["rules"][0]["shortDescription"]["text"],
        "Requires ipFamilyPolicy RequireDualStack and two IP families; a violation is denied."
    );
    assert_eq!(
        driver["rules"][1]["defaultConfiguration"]["level"],
        "warning"
    );
    assert_eq!(driver["rules"][2]["defaultConfiguration"]["level"], "note");

    let results = runs[0]["results"].as_array().unwrap();
    // Findings are all rows but `ok` and `exempt`.
    let findings: Vec<&Row> = (rows.iter())
        .filter(|r| !matches!(r.verdict, Verdict::Ok | Verdict::Exempt))
        .collect();
    assert_eq!(results.len(), findings.len());
    for (result, row) in results.iter().zip(findings) {
        let (level, rule) = match row.verdict {
            Verdict::Deny => ("error", "public-lb-dual-stack"),
            Verdict::Refused => ("error", REFUSED_RULE),
            Verdict::Error => ("error", UNREADABLE_RULE),
            Verdict::Warn => ("warning", "ipv6-first"),
            Verdict::Audit => ("note", "no-single-stack"),
            Verdict::Unknown => ("note", "public-lb-dual-stack"),
            Verdict::Ok | Verdict::Exempt => unreachable!(),
        };
        assert_eq!(result["level"], level, "{result}");
        assert_eq!(result["ruleId"], rule, "{result}");
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(ids[index], rule);
        assert_eq!(result["message"]["text"], row.message.as_str());
        assert_eq!(result["properties"]["verdict"], row.verdict.as_str());
        assert_eq!(
            result.get("kind").and_then(Value::as_str),
            (row.verdict == Verdict::Unknown).then_some("review")
        );
        let location = &result["locations"][0];
        match &row.source {
            Some(source) => {
                let physical = &location["physicalLocation"];
                let uri = physical["artifactLocation"]["uri"].as_str().unwrap();
                assert_eq!(uri, source.file.replace(' ', "%20"));
                assert!(is_path_reference(uri), "{uri}");
                assert_eq!(
                    physical["region"]["startLine"].as_u64(),
                    source.line.map(|l| l as u64)
                );
            }
            None => {
                assert!(location.get("physicalLocation").is_none(), "{location}");
                assert_eq!(
                    location["logicalLocations"],
                    json!([{
                        "name": row.name,
                        "fullyQualifiedName": format!("{}/{}", row.namespace, row.name),
                        "kind": "resource",
                    }])
                );
            }
        }
    }
    // The deny row names two rules: filed under the Deny one, both listed.
    let deny = &results[3];
    assert_eq!(
        deny["properties"]["rules"],
        json!(["public-lb-dual-stack", "ipv6-first"])
    );
    // The unreadable document has a file and a line, and no Service.
    assert!(results[5]["locations"][0].get("logicalLocations").is_none());

    let empty: Value = serde_json::from_str(&report::sarif(&[], &policy).unwrap()).unwrap();
    assert_valid(&validator, &empty);
    assert_eq!(empty["runs"][0]["results"], json!([]));
}

/// Whether `uri` is an RFC 3986 relative reference of path characters, as the schema's
/// `uri-reference` format asks: a draft-04 validator does not check that format (draft 6's).
fn is_path_reference(uri: &str) -> bool {
    let bytes = uri.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if bytes.len() > i + 2
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                i += 3;
                continue;
            }
            b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) => {}
            _ => return false,
        }
        i += 1;
    }
    // A colon in the first segment would read as a scheme.
    !uri.split('/').next().unwrap_or_default().contains(':')
}

#[test]
fn path_reference_check_refuses_what_is_not_one() {
    assert!(is_path_reference("dir%20with%20space/x.yaml"));
    assert!(is_path_reference("/abs/a.yaml"));
    for bad in [
        "dir with space/x.yaml",
        "c:x.yaml",
        "100%.yaml",
        "a#b.yaml",
        "a?b",
    ] {
        assert!(!is_path_reference(bad), "{bad}");
    }
}

#[test]
fn sarif_schema_refuses_broken_logs() {
    let log: Value =
        serde_json::from_str(&report::sarif(&every_verdict(), &policy()).unwrap()).unwrap();
    let mutations: [Mutation; 6] = [
        ("no version", |l| {
            l.as_object_mut().unwrap().remove("version");
        }),
        ("an unknown level", |l| {
            l["runs"][0]["results"][0]["level"] = json!("fatal")
        }),
        ("line 0", |l| {
            l["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] =
                json!(0);
        }),
        ("a message without text", |l| {
            l["runs"][0]["results"][0]["message"] = json!({});
        }),
        ("a property SARIF does not define", |l| {
            l["runs"][0]["results"][0]["severity"] = json!("high");
        }),
        ("a driver without a name", |l| {
            l["runs"][0]["tool"]["driver"]
                .as_object_mut()
                .unwrap()
                .remove("name");
        }),
    ];
    assert_schema_refuses(&sarif_validator(), &log, &mutations);
}

#[test]
fn sarif_whole_output() {
    let policy = Policy::from_yaml(
        "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\nrules:\n- name: v6-primary\n  require: {primaryFamily: IPv6}\n",
    )
    .unwrap();
    let rows = rows(
        "
        a.yaml#0:1 | web/ok     | ok      |            |
        a.yaml#1:9 | web/lb     | deny    | v6-primary | set IPv6 first
                   | team-b/api | unknown | v6-primary | depends on the ranges
    ",
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        report::sarif(&rows, &policy).unwrap(),
        format!(
            r#"{{
  "$schema": "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json",
  "version": "2.1.0",
  "runs": [
    {{
      "tool": {{
        "driver": {{
          "name": "dualstack-webhook",
          "version": "{version}",
          "rules": [
            {{
              "id": "v6-primary",
              "shortDescription": {{
                "text": "Requires ipFamilies[0] IPv6; a violation is denied."
              }},
              "defaultConfiguration": {{
                "level": "error"
              }}
            }},
            {{
              "id": "apiserver-refused",
              "shortDescription": {{
                "text": "The API server refuses the Service by its own validation, whatever the policy."
              }},
              "defaultConfiguration": {{
                "level": "error"
              }}
            }},
            {{
              "id": "unreadable-document",
              "shortDescription": {{
                "text": "The document cannot be read as a Kubernetes object."
              }},
              "defaultConfiguration": {{
                "level": "error"
              }}
            }}
          ]
        }}
      }},
      "results": [
        {{
          "ruleId": "v6-primary",
          "ruleIndex": 0,
          "level": "error",
          "message": {{
            "text": "set IPv6 first"
          }},
          "locations": [
            {{
              "physicalLocation": {{
                "artifactLocation": {{
                  "uri": "a.yaml"
                }},
                "region": {{
                  "startLine": 9
                }}
              }},
              "logicalLocations": [
                {{
                  "name": "lb",
                  "fullyQualifiedName": "web/lb",
                  "kind": "resource"
                }}
              ]
            }}
          ],
          "properties": {{
            "verdict": "deny",
            "rules": [
              "v6-primary"
            ]
          }}
        }},
        {{
          "ruleId": "v6-primary",
          "ruleIndex": 0,
          "kind": "review",
          "level": "note",
          "message": {{
            "text": "depends on the ranges"
          }},
          "locations": [
            {{
              "logicalLocations": [
                {{
                  "name": "api",
                  "fullyQualifiedName": "team-b/api",
                  "kind": "resource"
                }}
              ]
            }}
          ],
          "properties": {{
            "verdict": "unknown",
            "rules": [
              "v6-primary"
            ]
          }}
        }}
      ]
    }}
  ]
}}
"#
        )
    );
}

// === policyreport ===

/// The CRD's `openAPIV3Schema` for v1alpha2 as a JSON Schema, with `additionalProperties: false`
/// on every object that lists its properties and says nothing of others: the API server would
/// drop such fields (pruning) and `kubectl apply` refuses them (strict field validation).
fn policy_report_validator() -> jsonschema::Validator {
    let crd: Value = serde_yaml_ng::from_str(POLICY_REPORT_CRD).unwrap();
    assert_eq!(crd["spec"]["group"], "wgpolicyk8s.io");
    assert_eq!(crd["spec"]["names"]["kind"], "PolicyReport");
    let version = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1alpha2")
        .unwrap();
    let mut schema = version["schema"]["openAPIV3Schema"].clone();
    strict(&mut schema);
    json_schema(&schema)
}

fn strict(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if object.contains_key("properties") && !object.contains_key("additionalProperties") {
        object.insert("additionalProperties".into(), json!(false));
    }
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        properties.values_mut().for_each(strict);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(nested) = object.get_mut(key) {
            strict(nested);
        }
    }
}

/// The YAML documents of a `policyreport` output, each after its `---`.
fn reports(text: &str) -> Vec<Value> {
    assert!(text.is_empty() || text.starts_with("---\n"), "{text}");
    text.split("---\n")
        .skip(1)
        .map(|doc| serde_yaml_ng::from_str(doc).unwrap())
        .collect()
}

#[test]
fn policy_report_is_valid_against_the_crd_schema() {
    let rows = every_verdict();
    let validator = policy_report_validator();
    let reports = reports(&report::policy_report(&rows, &policy()).unwrap());
    let namespaces: Vec<&str> = reports
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(
        namespaces,
        ["default", "kube-system", "team-a", "team-b", "web"],
        "one report per namespace, in order"
    );
    let mut results = Vec::new();
    for report in &reports {
        assert_valid(&validator, report);
        assert_eq!(report["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(report["kind"], "PolicyReport");
        assert_eq!(report["metadata"]["name"], "dualstack-webhook");
        assert_eq!(
            report["metadata"]["labels"],
            json!({"app.kubernetes.io/managed-by": "dualstack-webhook"})
        );
        let namespace = &report["metadata"]["namespace"];
        let mut summary = json!({"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 0});
        for result in report["results"].as_array().unwrap() {
            assert_eq!(result["policy"], "dualstack-webhook");
            assert_eq!(result["source"], "dualstack-webhook");
            assert_eq!(result["scored"], true);
            let outcome = result["result"].as_str().unwrap();
            summary[outcome] = json!(summary[outcome].as_u64().unwrap() + 1);
            if let Some(resources) = result.get("resources") {
                assert_eq!(resources[0]["apiVersion"], "v1");
                assert_eq!(resources[0]["kind"], "Service");
                assert_eq!(&resources[0]["namespace"], namespace);
            }
            results.push(result.clone());
        }
        assert_eq!(report["summary"], summary, "the summary counts the results");
    }

    let of = |ns: &str, name: &str| {
        let resource =
            |r: &&Value| r["resources"][0]["namespace"] == ns && r["resources"][0]["name"] == name;
        (results.iter().filter(resource))
            .map(|r| {
                (
                    r["rule"].as_str().unwrap_or(""),
                    r["result"].as_str().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(of("web", "frontend"), [("", "pass")]);
    assert_eq!(of("kube-system", "dns"), [("", "skip")]);
    assert_eq!(of("web", "api"), [("ipv6-first", "warn")]);
    assert_eq!(of("team-a", "cache"), [("no-single-stack", "fail")]);
    assert_eq!(of("team-a", "lb"), [("public-lb-dual-stack", "skip")]);
    // One result per rule, by its action: the Deny rule fails, the Warn rule warns.
    assert_eq!(
        of("team-a", "edge"),
        [("public-lb-dual-stack", "fail"), ("ipv6-first", "warn")]
    );
    assert_eq!(of("web", "pinned"), [(REFUSED_RULE, "fail")]);
    assert_eq!(of("team-b", "edge"), [("public-lb-dual-stack", "fail")]);

    // The unreadable document: in the report of UNREADABLE_NAMESPACE, no Service, its file said.
    let unreadable: Vec<&Value> = results.iter().filter(|r| r["result"] == "error").collect();
    assert_eq!(unreadable.len(), 1);
    let unreadable = unreadable[0];
    assert_eq!(UNREADABLE_NAMESPACE, "default");
    assert_eq!(unreadable["rule"], UNREADABLE_RULE);
    assert!(unreadable.get("resources").is_none());
    assert_eq!(
        unreadable["properties"],
        json!({"verdict": "error", "file": "dir with space/x.yaml", "documentIndex": "1", "line": "9"})
    );
    assert_eq!(unreadable["message"], rows[7].message.as_str());
    assert_eq!(reports[0]["summary"]["error"], 1);

    assert_eq!(report::policy_report(&[], &policy()).unwrap(), "");
}

#[test]
fn policy_report_schema_refuses_broken_reports() {
    let report = reports(&report::policy_report(&every_verdict(), &policy()).unwrap())
        .pop()
        .unwrap();
    let mutations: [Mutation; 6] = [
        ("an unknown result", |r| {
            r["results"][0]["result"] = json!("maybe")
        }),
        ("no policy", |r| {
            r["results"][0].as_object_mut().unwrap().remove("policy");
        }),
        ("a number in properties", |r| {
            r["results"][0]["properties"]["line"] = json!(3)
        }),
        ("an unknown field", |r| {
            r["results"][0]["verdict"] = json!("ok")
        }),
        ("a string count", |r| r["summary"]["pass"] = json!("1")),
        ("scored as a string", |r| {
            r["results"][0]["scored"] = json!("true")
        }),
    ];
    assert_schema_refuses(&policy_report_validator(), &report, &mutations);
}

#[test]
fn policy_report_whole_output() {
    let rows = rows(
        "
        a.yaml#0:1 | web/ok     | ok    |            |
        a.yaml#1:9 |            | error |            | not YAML: line 9
                   | team-b/api | warn  | ipv6-first | ipv6-first: IPv4 first
    ",
    );
    assert_eq!(
        report::policy_report(&rows, &policy()).unwrap(),
        "\
---
apiVersion: wgpolicyk8s.io/v1alpha2
kind: PolicyReport
metadata:
  name: dualstack-webhook
  namespace: default
  labels:
    app.kubernetes.io/managed-by: dualstack-webhook
results:
- policy: dualstack-webhook
  rule: unreadable-document
  result: error
  scored: true
  source: dualstack-webhook
  message: 'not YAML: line 9'
  properties:
    documentIndex: '1'
    file: a.yaml
    line: '9'
    verdict: error
summary:
  pass: 0
  fail: 0
  warn: 0
  error: 1
  skip: 0
---
apiVersion: wgpolicyk8s.io/v1alpha2
kind: PolicyReport
metadata:
  name: dualstack-webhook
  namespace: team-b
  labels:
    app.kubernetes.io/managed-by: dualstack-webhook
results:
- policy: dualstack-webhook
  rule: ipv6-first
  result: warn
  scored: true
  source: dualstack-webhook
  message: 'ipv6-first: IPv4 first'
  properties:
    verdict: warn
  resources:
  - apiVersion: v1
    kind: Service
    name: api
    namespace: team-b
summary:
  pass: 0
  fail: 0
  warn: 1
  error: 0
  skip: 0
---
apiVersion: wgpolicyk8s.io/v1alpha2
kind: PolicyReport
metadata:
  name: dualstack-webhook
  namespace: web
  labels:
    app.kubernetes.io/managed-by: dualstack-webhook
results:
- policy: dualstack-webhook
  result: pass
  scored: true
  source: dualstack-webhook
  properties:
    documentIndex: '0'
    file: a.yaml
    line: '1'
    verdict: ok
  resources:
  - apiVersion: v1
    kind: Service
    name: ok
    namespace: web
summary:
  pass: 1
  fail: 0
  warn: 0
  error: 0
  skip: 0
"
    );
}

// === render ===

#[test]
fn render_writes_each_format() {
    let rows = every_verdict();
    let policy = policy();
    let cases = [
        (OutputFormat::Table, report::table(&rows)),
        (OutputFormat::Json, report::json(&rows).unwrap()),
        (OutputFormat::Junit, report::junit(&rows).unwrap()),
        (OutputFormat::Sarif, report::sarif(&rows, &policy).unwrap()),
        (
            OutputFormat::PolicyReport,
            report::policy_report(&rows, &policy).unwrap(),
        ),
    ];
    let mut seen = Vec::new();
    for (format, expected) in cases {
        let out = render(&rows, format, &policy).unwrap();
        assert_eq!(out, expected, "{format:?}");
        assert!(out.ends_with('\n'), "{format:?}");
        assert!(!seen.contains(&out), "{format:?} repeats another format");
        seen.push(out);
    }
}

/// The rules' levels are their actions as the policy's `enforcement` makes them.
#[test]
fn sarif_rule_levels_follow_the_enforcement_mode() {
    let policy = Policy::from_yaml(&format!("{POLICY}enforcement: Audit\n")).unwrap();
    let log: Value = serde_json::from_str(&report::sarif(&[], &policy).unwrap()).unwrap();
    let rules = &log["runs"][0]["tool"]["driver"]["rules"];
    for i in 0..3 {
        assert_eq!(rules[i]["defaultConfiguration"]["level"], "note", "{rules}");
    }
    assert_eq!(
        rules[0]["shortDescription"]["text"],
        "Requires ipFamilyPolicy RequireDualStack and two IP families; a violation is allowed and recorded in the audit log."
    );
}
