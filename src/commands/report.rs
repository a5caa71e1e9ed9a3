//! The verdicts `check` and `audit` print: one [`Row`] per Service, written as an aligned table or
//! as JSON, and the exit status they imply.

use serde::Serialize;

use crate::domain::service::Service;

/// The verdict for one Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The manifest file (`check`) or `cluster` (`audit`).
    pub file: String,
    /// Namespace (`default` when the manifest has none).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.type`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `ipFamilyPolicy` after the webhook and the API server.
    pub policy: String,
    /// `ipFamilies` after the webhook and the API server.
    pub families: Vec<String>,
    /// `clusterIPs` (known for stored Services and with `--service-cidrs`).
    pub cluster_ips: Vec<String>,
    /// `ok`, `exempt`, `deny`, `warn`, `audit`, `grandfathered` or `refused` (by the API server).
    pub verdict: &'static str,
    /// The rules concerned.
    pub rules: Vec<String>,
    /// What is wrong and what to set.
    pub message: String,
}

// === impl Row ===

impl Row {
    /// A row for `svc`, read from `source`, with the verdict `ok` until judged.
    pub(crate) fn new(source: &str, svc: &Service) -> Self {
        let namespace = match svc.metadata.namespace.as_str() {
            "" => "default",
            ns => ns,
        };
        Self {
            file: source.to_owned(),
            namespace: namespace.to_owned(),
            name: svc.metadata.name.clone(),
            type_: svc
                .spec()
                .type_
                .clone()
                .unwrap_or_else(|| "ClusterIP".into()),
            policy: String::new(),
            families: Vec::new(),
            cluster_ips: Vec::new(),
            verdict: "ok",
            rules: Vec::new(),
            message: String::new(),
        }
    }

    /// The dual-stack fields of a stored Service, shown whatever the verdict.
    pub(crate) fn show_stack(&mut self, stored: &Service) {
        let spec = stored.spec();
        self.policy = spec.ip_family_policy.clone().unwrap_or_default();
        self.families = spec.ip_families.clone().unwrap_or_default();
        self.cluster_ips = spec.cluster_ips.clone().unwrap_or_default();
    }
}

// === output ===

/// Whether any row fails the check (a Deny violation or an API server refusal).
pub fn failed(rows: &[Row]) -> bool {
    rows.iter()
        .any(|r| r.verdict == "deny" || r.verdict == "refused")
}

/// The rows as a pretty-printed JSON array, with a final newline.
pub fn json(rows: &[Row]) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(rows).map(|text| text + "\n")
}

/// Aligned columns.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "NAMESPACE",
        "NAME",
        "TYPE",
        "POLICY",
        "FAMILIES",
        "CLUSTER-IPS",
        "VERDICT",
        "RULES",
        "MESSAGE",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.namespace.clone(),
                r.name.clone(),
                r.type_.clone(),
                r.policy.clone(),
                r.families.join(","),
                r.cluster_ips.join(","),
                r.verdict.to_owned(),
                r.rules.join(","),
                r.message.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cols: Vec<&str>, out: &mut String| {
        let padded: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in &cells {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}
