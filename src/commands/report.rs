//! The verdicts `check` and `audit` print: one [`Row`] per Service, the exit status they imply, and
//! the formats they are written in (`--output`).
//!
//! # Layout
//! - here: [`Row`], [`Source`], [`Verdict`], [`failed`], [`render`] and `json` (the rows as
//!   they are).
//! - [`table`]: aligned columns for people.
//! - [`junit`]: JUnit XML for CI test reports (the Jenkins xUnit `junit-10.xsd` dialect).
//! - [`sarif`]: SARIF 2.1.0 for code scanning.
//! - [`policy_report`]: `wgpolicyk8s.io/v1alpha2` PolicyReports for Kyverno and Policy Reporter.
//!
//! Every format is deterministic: the same rows give the same bytes (no timestamps, no host names),
//! so outputs can be diffed and committed.

mod junit;
mod policy_report;
mod sarif;
mod table;

use serde::Serialize;

use crate::config::OutputFormat;
use crate::domain::policy::Policy;
use crate::domain::service::Service;
pub use junit::junit;
pub use policy_report::{UNREADABLE_NAMESPACE, policy_report};
pub use sarif::sarif;
pub use table::{aligned, table};

/// The verdict for one Service (or one document that could not be read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// Where the Service was read (`check`); `None` for a Service a cluster stores (`audit`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Namespace (`check --namespace`, `default` unless given, when the manifest has none).
    pub namespace: String,
    /// Name (empty for a document that could not be read).
    pub name: String,
    /// `spec.type`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `ipFamilyPolicy` after the webhook and the API server (empty when unknown).
    pub ip_family_policy: String,
    /// `ipFamilies` after the webhook and the API server (empty when unknown).
    pub ip_families: Vec<String>,
    /// `clusterIPs` (known for stored Services, and simulated when the service CIDRs are known).
    #[serde(rename = "clusterIPs")]
    pub cluster_ips: Vec<String>,
    /// The verdict.
    pub verdict: Verdict,
    /// The rules concerned.
    pub rules: Vec<String>,
    /// What is wrong and what to set; for `unknown`, what the verdict depends on.
    pub message: String,
}

/// Where a Service was read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// The file, as named on the command line (`-` for stdin).
    pub file: String,
    /// The YAML document in the file, from 0.
    pub document_index: usize,
    /// The line (from 1) where the object starts, where the text says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// The outcome for one Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No rule is violated.
    Ok,
    /// In an exempt namespace: never mutated or judged.
    Exempt,
    /// A `Warn` rule is violated (or a `Deny` one grandfathered): allowed with a warning.
    Warn,
    /// Only `Audit` rules are violated: allowed, recorded.
    Audit,
    /// The verdict depends on what is not known (the cluster's ranges, a namespace's labels), and
    /// it is not a denial everywhere: the message says on what.
    Unknown,
    /// A `Deny` rule is violated.
    Deny,
    /// The API server would refuse the Service.
    Refused,
    /// The document could not be read: the message says why.
    Error,
}

// === impl Verdict ===

impl Verdict {
    /// The name shown in tables and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Exempt => "exempt",
            Self::Warn => "warn",
            Self::Audit => "audit",
            Self::Unknown => "unknown",
            Self::Deny => "deny",
            Self::Refused => "refused",
            Self::Error => "error",
        }
    }

    /// Whether this verdict fails a check: a denial, a refusal or an unreadable document.
    pub fn fails(self) -> bool {
        matches!(self, Self::Deny | Self::Refused | Self::Error)
    }
}

// === impl Row ===

impl Row {
    /// A row for `svc`, read from `source`, with the verdict `ok` until judged. `namespace` is the
    /// namespace of a Service that names none.
    pub(crate) fn new(source: Option<Source>, svc: &Service, namespace: &str) -> Self {
        let namespace = match svc.metadata.namespace.as_str() {
            "" => namespace,
            ns => ns,
        };
        Self {
            source,
            namespace: namespace.to_owned(),
            name: svc.metadata.name.clone(),
            type_: svc
                .spec()
                .type_
                .clone()
                .unwrap_or_else(|| "ClusterIP".into()),
            ip_family_policy: String::new(),
            ip_families: Vec::new(),
            cluster_ips: Vec::new(),
            verdict: Verdict::Ok,
            rules: Vec::new(),
            message: String::new(),
        }
    }

    /// A row for a document that could not be read.
    pub(crate) fn unreadable(source: Source, message: String) -> Self {
        Self {
            source: Some(source),
            namespace: String::new(),
            name: String::new(),
            type_: String::new(),
            ip_family_policy: String::new(),
            ip_families: Vec::new(),
            cluster_ips: Vec::new(),
            verdict: Verdict::Error,
            rules: Vec::new(),
            message,
        }
    }

    /// The dual-stack fields of a stored Service, shown whatever the verdict.
    pub(crate) fn show_stack(&mut self, stored: &Service) {
        let spec = stored.spec();
        self.ip_family_policy = spec.ip_family_policy.clone().unwrap_or_default();
        self.ip_families = spec.ip_families.clone().unwrap_or_default();
        self.cluster_ips = spec.cluster_ips.clone().unwrap_or_default();
    }

    /// `namespace/name`; `None` for a document that could not be read (it names no Service).
    pub fn resource(&self) -> Option<String> {
        (!self.name.is_empty()).then(|| format!("{}/{}", self.namespace, self.name))
    }

    /// What a format that needs one title calls the row: `namespace/name`, or for a document that
    /// could not be read, the document (`document 2`).
    pub fn title(&self) -> String {
        match (self.resource(), &self.source) {
            (Some(resource), _) => resource,
            (None, Some(source)) => format!("document {}", source.document_index),
            (None, None) => "unnamed".to_owned(),
        }
    }
}

// === impl Source ===

impl Source {
    /// `file:line`, or `file (document N)` where the line is not known.
    pub fn position(&self) -> String {
        match self.line {
            Some(line) => format!("{}:{line}", self.file),
            None => format!("{} (document {})", self.file, self.document_index),
        }
    }
}

// === output ===

/// The name every machine-readable format gives the tool: SARIF's driver, the PolicyReports'
/// `policy`, `source` and `metadata.name`, JUnit's root suite.
pub const TOOL_NAME: &str = "dualstack-webhook";

/// The rule id of results for a Service the API server would refuse (its own validation, not a
/// rule of the policy), where a format needs one (SARIF, PolicyReport).
pub const REFUSED_RULE: &str = "apiserver-refused";

/// The rule id of results for a document that could not be read (SARIF, PolicyReport).
pub const UNREADABLE_RULE: &str = "unreadable-document";

/// Why rows could not be written. Encoding plain structs into memory does not fail in practice;
/// the variants say which encoder did if it ever does.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// `json` or `sarif`.
    #[error("cannot encode the report as JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// `policyreport`.
    #[error("cannot encode the report as YAML: {0}")]
    Yaml(#[source] serde_yaml_ng::Error),
    /// `junit`.
    #[error("cannot write the JUnit XML: {0}")]
    Xml(#[source] std::io::Error),
}

/// Whether any row fails the check (see [`Verdict::fails`]).
pub fn failed(rows: &[Row]) -> bool {
    rows.iter().any(|r| r.verdict.fails())
}

/// The rows in `format`; `policy` describes the rules for the formats that list them (SARIF's
/// `tool.driver.rules`, the PolicyReport result of each rule).
pub fn render(rows: &[Row], format: OutputFormat, policy: &Policy) -> Result<String, RenderError> {
    match format {
        OutputFormat::Table => Ok(table(rows)),
        OutputFormat::Json => json(rows),
        OutputFormat::Junit => junit(rows),
        OutputFormat::Sarif => sarif(rows, policy),
        OutputFormat::PolicyReport => policy_report(rows, policy),
    }
}

/// The rows as a pretty-printed JSON array, with a final newline.
pub fn json(rows: &[Row]) -> Result<String, RenderError> {
    serde_json::to_string_pretty(rows)
        .map(|text| text + "\n")
        .map_err(RenderError::Json)
}
