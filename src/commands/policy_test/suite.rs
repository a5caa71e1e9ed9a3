//! A policy test suite (`dualstack-test.yaml`): its format, and reading one into what `check` needs
//! (the policy, what is known of the cluster, the resources) and what the Services should get.
//!
//! Every path in a suite is relative to the suite file, so a suite runs the same from any working
//! directory. Mistakes are refused before anything runs, each with the field and, where the text
//! says, the line: unknown fields and wrong values by serde (whose YAML errors carry the line), the
//! rest here (a header, a `service` key, a result listed twice, a rule the policy lacks).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cluster::ServiceCidrs;
use crate::commands::check::Knowledge;
use crate::domain::policy::Policy;
use crate::domain::policy::limits::{self, POLICY_MAX_DEPTH};
use crate::domain::service::{IpFamily, IpFamilyPolicy, Labels};
use crate::domain::yaml_lines::Lines;
use crate::policy_file::{LoadError, load_policy, read_at_most};

use super::verify::Outcome;

/// `apiVersion` of a suite.
pub(super) const API_VERSION: &str = "dualstack-webhook/v1alpha1";
/// `kind` of a suite.
pub(super) const KIND: &str = "PolicyTest";
/// The file name a directory is searched for.
pub(super) const FILE_NAME: &str = "dualstack-test.yaml";
/// A suite is a few hundred lines at most; 1 MiB (the policy file's limit) is thousands of results.
const SUITE_MAX_BYTES: u64 = 1024 * 1024;

/// Why a suite cannot be run. Each message starts with the suite file.
#[derive(Debug, thiserror::Error)]
pub(super) enum SuiteError {
    /// The suite file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    /// The suite file is larger than 1 MiB, or not UTF-8.
    #[error("cannot read {0}: {1}")]
    NotText(PathBuf, &'static str),
    /// Not a suite: YAML syntax, an unknown field, a wrong type or value (with its line).
    #[error("{0}: {1}")]
    Syntax(PathBuf, #[source] serde_yaml_ng::Error),
    /// Nested too deep for the parser to be safe.
    #[error("{0}: {1}")]
    TooDeep(PathBuf, #[source] limits::TooDeep),
    /// A field whose value is wrong: the suite, the field, why, and the line.
    #[error("{file}: {field}: {why}{}", at_line(*.line))]
    Invalid {
        /// The suite file.
        file: PathBuf,
        /// The field, as `results[2].service`.
        field: String,
        /// What is wrong.
        why: String,
        /// Its line, where known.
        line: Option<usize>,
    },
    /// The policy the suite names could not be loaded.
    #[error("{}: policy: {}", .0.display(), policy_problem(.1))]
    Policy(PathBuf, #[source] LoadError),
    /// Not one document could be read from the resources.
    #[error("{0}: resources: {1}")]
    Resources(PathBuf, #[source] crate::commands::check::CheckError),
    /// Two Services of the resources have the same namespace and name: a result could not say which.
    #[error(
        "{0}: Service {1} is in the resources twice ({2} and {3}); give each Service of a suite its own name"
    )]
    Ambiguous(PathBuf, String, String, String),
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

/// [`LoadError`] without its `(--policy)`: a suite names its policy in a field, not a flag.
fn policy_problem(error: &LoadError) -> String {
    match error {
        LoadError::Read(path, e) => format!("cannot read {}: {e}", path.display()),
        LoadError::TooLarge(path) => format!("{} is larger than 1 MiB", path.display()),
        LoadError::Invalid(path, e) => format!("invalid policy file {}: {e}", path.display()),
    }
}

/// A suite as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SuiteFile {
    api_version: String,
    kind: String,
    /// Free text for people reading the file.
    #[serde(default)]
    #[allow(dead_code)] // read to be allowed, never printed: lines name the suite by its path
    name: String,
    policy: PathBuf,
    #[serde(default, rename = "serviceCIDRs")]
    service_cidrs: Option<String>,
    #[serde(default)]
    namespaces: BTreeMap<String, Labels>,
    resources: Vec<PathBuf>,
    #[serde(default)]
    strict: bool,
    results: Vec<ExpectedFile>,
}

/// One expected result as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExpectedFile {
    service: String,
    result: Outcome,
    rules: Option<Vec<String>>,
    ip_family_policy: Option<IpFamilyPolicy>,
    ip_families: Option<Vec<IpFamily>>,
    message_contains: Option<String>,
}

/// A suite, read and checked: ready to run.
#[derive(Debug)]
pub(super) struct Suite {
    /// The policy under test.
    pub(super) policy: Policy,
    /// What the cluster is known to be.
    pub(super) known: Knowledge,
    /// The resources, relative to the working directory.
    pub(super) resources: Vec<PathBuf>,
    /// Whether a Service without an expected result fails the suite.
    pub(super) strict: bool,
    /// What each Service should get, in the suite's order.
    pub(super) results: Vec<Expected>,
}

/// What one Service should get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Expected {
    /// The namespace (`default` when the suite names none).
    pub(super) namespace: String,
    /// The Service's name.
    pub(super) name: String,
    /// The outcome.
    pub(super) result: Outcome,
    /// Exactly the rules concerned, in any order.
    pub(super) rules: Option<Vec<String>>,
    /// `ipFamilyPolicy` as stored.
    pub(super) ip_family_policy: Option<IpFamilyPolicy>,
    /// `ipFamilies` as stored.
    pub(super) ip_families: Option<Vec<IpFamily>>,
    /// Text the message holds.
    pub(super) message_contains: Option<String>,
}

// === impl Suite ===

impl Suite {
    /// Reads the suite at `path`, and the policy it names.
    pub(super) fn load(path: &Path) -> Result<Self, SuiteError> {
        let text = read(path)?;
        let lines = Lines::of(&text);
        let invalid = |(field, why): (String, String)| SuiteError::Invalid {
            file: path.to_owned(),
            line: lines.line(0, &field),
            field,
            why,
        };
        let file = parse(path, &text)?;
        header(&file).map_err(invalid)?;
        let service_cidrs = file.service_cidrs.as_deref().map(|list| {
            ServiceCidrs::parse(list).map_err(|_| {
                let why = format!(
                    "{list:?} is not one or two CIDRs of different families, primary first \
                     (e.g. 10.96.0.0/16,fd00:10:96::/112)"
                );
                ("serviceCIDRs".to_owned(), why)
            })
        });
        let service_cidrs = service_cidrs.transpose().map_err(invalid)?;
        let base = path.parent().unwrap_or(Path::new(""));
        let (policy, _) = load_policy(&base.join(&file.policy))
            .map_err(|e| SuiteError::Policy(path.to_owned(), e))?;
        let results = expectations(file.results, &policy).map_err(invalid)?;
        Ok(Self {
            policy,
            known: Knowledge {
                service_cidrs,
                namespaces: file.namespaces.into_iter().collect::<HashMap<_, _>>(),
                ..Knowledge::default()
            },
            resources: file.resources.iter().map(|r| base.join(r)).collect(),
            strict: file.strict,
            results,
        })
    }
}

/// The suite as written: YAML, every field known and of its type.
fn parse(path: &Path, text: &str) -> Result<SuiteFile, SuiteError> {
    // Before the parser, whose cost grows with the square of the nesting (see `limits`).
    limits::check_depth(text, POLICY_MAX_DEPTH)
        .map_err(|e| SuiteError::TooDeep(path.to_owned(), e))?;
    serde_yaml_ng::from_str(text).map_err(|e| SuiteError::Syntax(path.to_owned(), e))
}

/// `apiVersion`, `kind`, and a result at least; else the field and what is wrong.
fn header(file: &SuiteFile) -> Result<(), (String, String)> {
    let wrong = |field: &str, why: String| Err((field.to_owned(), why));
    if file.api_version != API_VERSION {
        return wrong(
            "apiVersion",
            format!("must be {API_VERSION}, got {:?}", file.api_version),
        );
    }
    if file.kind != KIND {
        return wrong("kind", format!("must be {KIND}, got {:?}", file.kind));
    }
    if file.results.is_empty() {
        return wrong(
            "results",
            "must list at least one expected result".to_owned(),
        );
    }
    Ok(())
}

/// Each expected result, checked against the policy and the results before it.
fn expectations(
    written: Vec<ExpectedFile>,
    policy: &Policy,
) -> Result<Vec<Expected>, (String, String)> {
    let mut results: Vec<Expected> = Vec::with_capacity(written.len());
    for (i, expected) in written.into_iter().enumerate() {
        let expected = Expected::read(expected, policy)
            .map_err(|(f, why)| (format!("results[{i}].{f}"), why))?;
        if let Some(j) = results.iter().position(|e| e.key() == expected.key()) {
            let why = format!("{} is already expected by results[{j}]", expected.key());
            return Err((format!("results[{i}].service"), why));
        }
        results.push(expected);
    }
    Ok(results)
}

/// The suite's text: at most [`SUITE_MAX_BYTES`] of UTF-8.
fn read(path: &Path) -> Result<String, SuiteError> {
    let failed = |e| SuiteError::Read(path.to_owned(), e);
    let file = std::fs::File::open(path).map_err(failed)?;
    let bytes = read_at_most(file, SUITE_MAX_BYTES)
        .map_err(failed)?
        .ok_or_else(|| SuiteError::NotText(path.to_owned(), "larger than 1 MiB"))?;
    String::from_utf8(bytes).map_err(|_| SuiteError::NotText(path.to_owned(), "not UTF-8 text"))
}

// === impl Expected ===

impl Expected {
    /// `namespace/name`.
    pub(super) fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Checks one entry against the policy; a mistake is the field (under the entry) and why.
    fn read(file: ExpectedFile, policy: &Policy) -> Result<Self, (String, String)> {
        let (namespace, name) = match file.service.split_once('/') {
            Some((ns, name)) => (ns, name),
            None => ("default", file.service.as_str()),
        };
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            let why = format!("{:?} is not namespace/name or name", file.service);
            return Err(("service".into(), why));
        }
        for (i, rule) in file.rules.iter().flatten().enumerate() {
            if !policy.rules.iter().any(|r| r.name == *rule) {
                return Err((
                    format!("rules[{i}]"),
                    format!("the policy has no rule {rule:?}"),
                ));
            }
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            result: file.result,
            rules: file.rules,
            ip_family_policy: file.ip_family_policy,
            ip_families: file.ip_families,
            message_contains: file.message_contains,
        })
    }
}
