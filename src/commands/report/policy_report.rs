//! `--output policyreport`: `wgpolicyk8s.io/v1alpha2` PolicyReports, as Kyverno writes them and
//! Policy Reporter reads them: YAML documents, each after a `---`, ready for `kubectl apply -f -`
//! (the PolicyReport CRD must be installed: Kyverno's, or `tests/schemas/`, which
//! `tests/outputs.rs` validates every output against).
//!
//! One report per namespace (`metadata.name` `dualstack-webhook`), namespaces in order, so that a
//! later run replaces the earlier one. Every result has `policy` and `source` `dualstack-webhook`,
//! `scored: true`, the row's message, `properties.verdict` (and `file`, `documentIndex`, `line`
//! for a row read from a file), and the Service in `resources`. The results of a row:
//!
//! | verdict | results |
//! | --- | --- |
//! | `ok` | one `pass`, with no `rule`: the Service meets the whole policy |
//! | `exempt` | one `skip`, with no `rule` |
//! | `deny`, `warn`, `audit` | one per rule the row names, by the rule's action: `Deny` → `fail` (`warn` in a `warn` row: grandfathered), `Warn` → `warn`, `Audit` → `fail` |
//! | `unknown` | one `skip` per rule concerned (the message says on what the verdict depends) |
//! | `refused` | one `fail`, rule [`REFUSED_RULE`] |
//! | `error` | one `error`, rule [`UNREADABLE_RULE`], no `resources` (the document names no Service) |
//!
//! A document that could not be read has no namespace: its result goes to the report of
//! namespace [`UNREADABLE_NAMESPACE`] (where `kubectl apply` would have put an object that names
//! none). The summary counts the results. No timestamps: the output is the same for the same rows.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{REFUSED_RULE, RenderError, Row, TOOL_NAME, UNREADABLE_RULE, Verdict};
use crate::domain::policy::{Action, Policy};

/// The namespace of the report that holds results with no namespace (unreadable documents).
pub const UNREADABLE_NAMESPACE: &str = "default";

/// The label that says who wrote a report (Kyverno sets it to `kyverno` on its own).
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata<'a>,
    results: Vec<ReportResult<'a>>,
    summary: Summary,
}

#[derive(Serialize)]
struct Metadata<'a> {
    name: &'static str,
    namespace: &'a str,
    labels: BTreeMap<&'static str, &'static str>,
}

/// `pass`, `fail`, `warn`, `error`, `skip`: the CRD's enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Pass,
    Fail,
    Warn,
    Error,
    Skip,
}

#[derive(Serialize)]
struct ReportResult<'a> {
    policy: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    result: Outcome,
    scored: bool,
    source: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    properties: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<[Resource<'a>; 1]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Resource<'a> {
    api_version: &'static str,
    kind: &'static str,
    name: &'a str,
    namespace: &'a str,
}

#[derive(Default, Serialize)]
struct Summary {
    pass: usize,
    fail: usize,
    warn: usize,
    error: usize,
    skip: usize,
}

/// The rows as PolicyReports, one YAML document per namespace (none for no rows).
pub fn policy_report(rows: &[Row], policy: &Policy) -> Result<String, RenderError> {
    let mut by_namespace: BTreeMap<&str, Vec<ReportResult<'_>>> = BTreeMap::new();
    for row in rows {
        let namespace = match row.namespace.as_str() {
            "" => UNREADABLE_NAMESPACE,
            ns => ns,
        };
        by_namespace
            .entry(namespace)
            .or_default()
            .extend(results(row, policy));
    }
    let mut out = String::new();
    for (namespace, results) in by_namespace {
        let report = Report {
            api_version: "wgpolicyk8s.io/v1alpha2",
            kind: "PolicyReport",
            metadata: Metadata {
                name: TOOL_NAME,
                namespace,
                labels: BTreeMap::from([(MANAGED_BY, TOOL_NAME)]),
            },
            summary: Summary::of(&results),
            results,
        };
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&report).map_err(RenderError::Yaml)?);
    }
    Ok(out)
}

fn results<'a>(row: &'a Row, policy: &Policy) -> Vec<ReportResult<'a>> {
    let result = |rule: Option<&'a str>, outcome| ReportResult {
        policy: TOOL_NAME,
        rule,
        result: outcome,
        scored: true,
        source: TOOL_NAME,
        message: &row.message,
        properties: properties(row),
        resources: (!row.name.is_empty()).then(|| {
            [Resource {
                api_version: "v1",
                kind: "Service",
                name: &row.name,
                namespace: &row.namespace,
            }]
        }),
    };
    let per_rule = |outcome_of: &dyn Fn(&str) -> Outcome| -> Vec<ReportResult<'a>> {
        if row.rules.is_empty() {
            return vec![result(None, outcome_of(""))];
        }
        row.rules
            .iter()
            .map(|rule| result(Some(rule.as_str()), outcome_of(rule)))
            .collect()
    };
    match row.verdict {
        Verdict::Ok => vec![result(None, Outcome::Pass)],
        Verdict::Exempt => vec![result(None, Outcome::Skip)],
        Verdict::Refused => vec![result(Some(REFUSED_RULE), Outcome::Fail)],
        Verdict::Error => vec![result(Some(UNREADABLE_RULE), Outcome::Error)],
        Verdict::Unknown => per_rule(&|_| Outcome::Skip),
        Verdict::Deny | Verdict::Warn | Verdict::Audit => per_rule(&|rule| {
            let action = policy
                .rules
                .iter()
                .find(|r| r.name == rule)
                .map(|r| r.action);
            violated(row.verdict, action)
        }),
    }
}

/// The outcome of one violated rule in a row with this verdict: by the rule's action, a `Deny`
/// rule only `warn` where the row is (grandfathered); by the verdict for a rule the policy lacks.
fn violated(verdict: Verdict, action: Option<Action>) -> Outcome {
    match (action, verdict) {
        (Some(Action::Warn), _) | (Some(Action::Deny) | None, Verdict::Warn) => Outcome::Warn,
        _ => Outcome::Fail,
    }
}

/// `verdict`, and where the row was read from, as the CRD's string map.
fn properties(row: &Row) -> BTreeMap<&'static str, String> {
    let mut properties = BTreeMap::from([("verdict", row.verdict.as_str().to_owned())]);
    if let Some(source) = &row.source {
        properties.insert("file", source.file.clone());
        properties.insert("documentIndex", source.document_index.to_string());
        if let Some(line) = source.line {
            properties.insert("line", line.to_string());
        }
    }
    properties
}

// === impl Summary ===

impl Summary {
    fn of(results: &[ReportResult<'_>]) -> Self {
        let mut summary = Self::default();
        for r in results {
            *match r.result {
                Outcome::Pass => &mut summary.pass,
                Outcome::Fail => &mut summary.fail,
                Outcome::Warn => &mut summary.warn,
                Outcome::Error => &mut summary.error,
                Outcome::Skip => &mut summary.skip,
            } += 1;
        }
        summary
    }
}
