//! `--output sarif`: SARIF 2.1.0 (OASIS, errata 01) for code scanning (GitHub, GitLab, viewers).
//! `tests/outputs.rs` validates every output against the vendored `sarif-schema-2.1.0.json`.
//!
//! One run; `tool.driver.rules` lists every rule of the policy (its id is the rule's name, its
//! description says what it requires and what a violation does, its default level follows its
//! action), then [`REFUSED_RULE`] and [`UNREADABLE_RULE`]. One result per row that is a finding:
//!
//! | verdict | level | ruleId |
//! | --- | --- | --- |
//! | `deny` | `error` | the first listed rule whose action is `Deny` |
//! | `refused` | `error` | [`REFUSED_RULE`] |
//! | `error` (unreadable) | `error` | [`UNREADABLE_RULE`] |
//! | `warn` | `warning` | the first `Warn` rule (else the first rule: a grandfathered `Deny`) |
//! | `audit` | `note` | the first `Audit` rule |
//! | `unknown` | `note`, with `kind: review` (a person must decide) | the first rule concerned |
//! | `ok`, `exempt` | no result | |
//!
//! Every rule the row names is in the result's `properties.rules`, with `properties.verdict`.
//! `message.text` is the row's message. A row read from a file (`check`) is located by
//! `physicalLocation` (the file as given, as a relative URI reference, and `region.startLine` where
//! the line is known) and names its Service in `logicalLocations`; a Service read from a cluster
//! (`audit`) has only the logical location (`fullyQualifiedName` `namespace/name`, kind
//! `resource`).

use std::fmt::Write as _;

use serde::Serialize;

use super::{REFUSED_RULE, RenderError, Row, TOOL_NAME, UNREADABLE_RULE, Verdict};
use crate::domain::policy::{Action, Policy, Rule};

/// The schema the output follows: the OASIS standard's, errata 01 (its `id`).
const SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// The log: `$schema`, `version` and one run.
#[derive(Serialize)]
struct Log<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: [Run<'a>; 1],
}

#[derive(Serialize)]
struct Run<'a> {
    tool: Tool,
    results: Vec<Finding<'a>>,
}

#[derive(Serialize)]
struct Tool {
    driver: Driver,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver {
    name: &'static str,
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    information_uri: Option<&'static str>,
    rules: Vec<Descriptor>,
}

/// A `reportingDescriptor`: one rule.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    id: String,
    short_description: Text,
    default_configuration: Configuration,
}

#[derive(Serialize)]
struct Configuration {
    level: &'static str,
}

/// A `message` or `multiformatMessageString`.
#[derive(Serialize)]
struct Text {
    text: String,
}

/// A `result`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Finding<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    level: &'static str,
    message: Text,
    locations: [Location<'a>; 1],
    properties: Properties<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    physical_location: Option<PhysicalLocation>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    logical_locations: Vec<LogicalLocation<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: ArtifactLocation,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<Region>,
}

#[derive(Serialize)]
struct ArtifactLocation {
    uri: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogicalLocation<'a> {
    name: &'a str,
    fully_qualified_name: String,
    kind: &'static str,
}

#[derive(Serialize)]
struct Properties<'a> {
    verdict: &'static str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    rules: &'a [String],
}

/// The rows as a SARIF 2.1.0 log (pretty-printed JSON, final newline).
pub fn sarif(rows: &[Row], policy: &Policy) -> Result<String, RenderError> {
    let rules = descriptors(policy);
    let results = rows
        .iter()
        .filter_map(|row| finding(row, policy, &rules))
        .collect();
    // Cargo's `repository` or `homepage`, once Cargo.toml has one: no address is invented here.
    let information_uri = [env!("CARGO_PKG_HOMEPAGE"), env!("CARGO_PKG_REPOSITORY")]
        .into_iter()
        .find(|uri| !uri.is_empty());
    let log = Log {
        schema: SCHEMA,
        version: "2.1.0",
        runs: [Run {
            tool: Tool {
                driver: Driver {
                    name: TOOL_NAME,
                    version: env!("CARGO_PKG_VERSION"),
                    information_uri,
                    rules,
                },
            },
            results,
        }],
    };
    serde_json::to_string_pretty(&log)
        .map(|text| text + "\n")
        .map_err(RenderError::Json)
}

/// The policy's rules, then the API server's refusal and the unreadable document.
fn descriptors(policy: &Policy) -> Vec<Descriptor> {
    let descriptor = |id: &str, text: String, level| Descriptor {
        id: id.to_owned(),
        short_description: Text { text },
        default_configuration: Configuration { level },
    };
    let mut rules: Vec<Descriptor> = policy
        .rules
        .iter()
        .map(|rule| {
            let action = policy.action_of(rule);
            descriptor(&rule.name, describe(rule, action), action_level(action))
        })
        .collect();
    rules.push(descriptor(
        REFUSED_RULE,
        "The API server refuses the Service by its own validation, whatever the policy.".into(),
        "error",
    ));
    rules.push(descriptor(
        UNREADABLE_RULE,
        "The document cannot be read as a Kubernetes object.".into(),
        "error",
    ));
    rules
}

fn finding<'a>(row: &'a Row, policy: &Policy, rules: &[Descriptor]) -> Option<Finding<'a>> {
    let (level, kind) = match row.verdict {
        Verdict::Ok | Verdict::Exempt => return None,
        Verdict::Deny | Verdict::Refused | Verdict::Error => ("error", None),
        Verdict::Warn => ("warning", None),
        Verdict::Audit => ("note", None),
        Verdict::Unknown => ("note", Some("review")),
    };
    let rule_id = rule_id(row, policy);
    let rule_index = rule_id.and_then(|id| rules.iter().position(|r| r.id == id));
    let text = match row.message.as_str() {
        "" => row.verdict.as_str().to_owned(),
        message => message.to_owned(),
    };
    let logical_locations = row
        .resource()
        .map(|fully_qualified_name| LogicalLocation {
            name: &row.name,
            fully_qualified_name,
            kind: "resource",
        })
        .into_iter()
        .collect();
    let physical_location = row.source.as_ref().map(|source| PhysicalLocation {
        artifact_location: ArtifactLocation {
            uri: uri_reference(&source.file),
        },
        region: source.line.map(|start_line| Region { start_line }),
    });
    Some(Finding {
        rule_id,
        rule_index,
        kind,
        level,
        message: Text { text },
        locations: [Location {
            physical_location,
            logical_locations,
        }],
        properties: Properties {
            verdict: row.verdict.as_str(),
            rules: &row.rules,
        },
    })
}

/// The rule a result is filed under: the one whose action made the verdict (see the module doc).
fn rule_id<'a>(row: &'a Row, policy: &Policy) -> Option<&'a str> {
    let wanted: &[Action] = match row.verdict {
        Verdict::Refused => return Some(REFUSED_RULE),
        Verdict::Error => return Some(UNREADABLE_RULE),
        Verdict::Deny => &[Action::Deny],
        Verdict::Warn => &[Action::Warn],
        Verdict::Audit => &[Action::Audit],
        Verdict::Ok | Verdict::Exempt | Verdict::Unknown => &[],
    };
    let action = |name: &str| {
        policy
            .rules
            .iter()
            .find(|r| r.name == name)
            .map(|r| policy.action_of(r))
    };
    row.rules
        .iter()
        .find(|name| action(name).is_some_and(|a| wanted.contains(&a)))
        .or_else(|| row.rules.first())
        .map(String::as_str)
}

/// One sentence: what the rule requires, and what a violation does (its action as enforced).
fn describe(rule: &Rule, action: Action) -> String {
    let require = &rule.require;
    let mut parts = Vec::new();
    if let Some(policies) = &require.ip_family_policies {
        let names: Vec<&str> = policies.iter().map(|p| p.as_str()).collect();
        parts.push(format!("ipFamilyPolicy {}", names.join(" or ")));
    }
    if let Some(family) = require.primary_family {
        parts.push(format!("ipFamilies[0] {family}"));
    }
    match require.dual_stack {
        Some(true) => parts.push("two IP families".to_owned()),
        Some(false) => parts.push("exactly one IP family".to_owned()),
        None => {}
    }
    let requires = match parts.as_slice() {
        [] => "Requires nothing".to_owned(),
        [one] => format!("Requires {one}"),
        [init @ .., last] => format!("Requires {} and {last}", init.join(", ")),
    };
    let outcome = match action {
        Action::Deny => "denied",
        Action::Warn => "allowed with a warning",
        Action::Audit => "allowed and recorded in the audit log",
    };
    format!("{requires}; a violation is {outcome}.")
}

fn action_level(action: Action) -> &'static str {
    match action {
        Action::Deny => "error",
        Action::Warn => "warning",
        Action::Audit => "note",
    }
}

/// A file name as given on the command line, as a relative (or absolute-path) URI reference:
/// bytes other than unreserved characters and `/` percent-encoded (RFC 3986), so that a space, a
/// `%` or a `:` in the first segment cannot make the `uri` invalid or read as a scheme.
fn uri_reference(path: &str) -> String {
    let mut uri = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            uri.push(char::from(b));
        } else {
            // Writing into a String cannot fail.
            let _ = write!(uri, "%{b:02X}");
        }
    }
    uri
}
