//! `check`: judge Service manifests offline, as the cluster would (mutate, the API server's own
//! defaulting and allocation when the service CIDRs are known, then validate). `audit` judges the
//! Services a cluster already stores the same way, from the validate step on.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cluster::Cluster;
use crate::domain::apiserver_model;
use crate::domain::engine::{self, DenialMessage, Operation, Request};
use crate::domain::policy::{Action, Policy};
use crate::domain::service::{Labels, Service};

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

/// Why manifests could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A path could not be read.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    /// A document is not YAML.
    #[error("{0}: {1}")]
    Yaml(PathBuf, #[source] serde_yaml_ng::Error),
}

/// Judges every Service in `paths`. Namespace objects in the same manifests supply namespace labels.
pub fn check(
    policy: &Policy,
    cluster: &Cluster,
    paths: &[PathBuf],
) -> Result<Vec<Row>, CheckError> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files)?;
    }
    let mut services = Vec::new();
    let mut cluster = cluster.clone();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| CheckError::Read(file.clone(), e))?;
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc)
                .map_err(|e| CheckError::Yaml(file.clone(), e))?;
            read_objects(&value, file, &mut services, &mut cluster.namespaces)
                .map_err(|e| CheckError::Yaml(file.clone(), e))?;
        }
    }
    Ok(services
        .iter()
        .map(|(file, svc)| judge(policy, &cluster, file, svc))
        .collect())
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), CheckError> {
    let meta = std::fs::metadata(path).map_err(|e| CheckError::Read(path.to_owned(), e))?;
    if meta.is_file() {
        out.push(path.to_owned());
        return Ok(());
    }
    let entries = std::fs::read_dir(path).map_err(|e| CheckError::Read(path.to_owned(), e))?;
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        let is_manifest = child
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
        if child.is_dir() || is_manifest {
            collect(&child, out)?;
        }
    }
    Ok(())
}

/// Services and Namespaces of a document (a `List` is opened).
fn read_objects(
    value: &serde_yaml_ng::Value,
    file: &Path,
    services: &mut Vec<(String, Service)>,
    namespaces: &mut std::collections::HashMap<String, Labels>,
) -> Result<(), serde_yaml_ng::Error> {
    let field = |k: &str| {
        value
            .get(k)
            .and_then(serde_yaml_ng::Value::as_str)
            .unwrap_or("")
    };
    match (field("apiVersion"), field("kind")) {
        ("v1", "Service") => {
            let svc: Service = serde_yaml_ng::from_value(value.clone())?;
            services.push((file.display().to_string(), svc));
        }
        ("v1", "Namespace") => {
            let ns: Service = serde_yaml_ng::from_value(value.clone())?;
            namespaces.insert(ns.metadata.name.clone(), ns.metadata.labels);
        }
        (_, "List") => {
            for item in value
                .get("items")
                .and_then(|i| i.as_sequence())
                .into_iter()
                .flatten()
            {
                read_objects(item, file, services, namespaces)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn judge(policy: &Policy, cluster: &Cluster, file: &str, svc: &Service) -> Row {
    let mut row = Row::new(file, svc);
    if policy.is_exempt(&row.namespace) {
        row.verdict = "exempt";
        return row;
    }
    let namespace = row.namespace.clone();
    let req = Request {
        operation: Operation::Create,
        namespace: &namespace,
        object: Some(svc),
        old_object: None,
    };
    let mutated = engine::mutate(policy, cluster, &req);
    if let Some((name, denial)) = &mutated.denial {
        row.verdict = "refused";
        row.message = DenialMessage { name, denial }.to_string();
        return row;
    }
    let mut stored = svc.clone();
    let spec = mutated.mutation.apply(svc.spec());
    stored.spec = Some(match &cluster.service_cidrs {
        Some(cidrs) => match apiserver_model::create(&spec, cidrs) {
            Ok(spec) => spec,
            Err(error) => {
                row.verdict = "refused";
                row.message = format!("the API server would refuse it: {error}");
                return row;
            }
        },
        None => spec,
    });
    judge_stored(policy, cluster, &mut row, &stored);
    row
}

/// Judges a stored (final, allocated) Service as `/validate` would judge its creation: every matching
/// rule applies, nothing is grandfathered. `audit` uses this for the Services a cluster already has.
pub fn judge_stored_service(
    policy: &Policy,
    cluster: &Cluster,
    source: &str,
    stored: &Service,
) -> Row {
    let mut row = Row::new(source, stored);
    if policy.is_exempt(&row.namespace) {
        row.show_stack(stored);
        row.verdict = "exempt";
        return row;
    }
    judge_stored(policy, cluster, &mut row, stored);
    row
}

fn judge_stored(policy: &Policy, cluster: &Cluster, row: &mut Row, stored: &Service) {
    row.show_stack(stored);
    let req = Request {
        operation: Operation::Create,
        namespace: &row.namespace,
        object: Some(stored),
        old_object: None,
    };
    let judged = engine::validate(policy, cluster, &req);
    row.rules = judged.findings.iter().map(|f| f.rule.clone()).collect();
    row.rules.dedup();
    if let Some((name, denial)) = &judged.denial {
        row.verdict = "deny";
        row.message = DenialMessage { name, denial }.to_string();
    } else if let Some(w) = judged.warnings.first() {
        row.verdict = "warn";
        row.message = w.clone();
    } else if let Some(f) = judged.findings.iter().find(|f| f.action == Action::Audit) {
        row.verdict = "audit";
        row.message = format!("rule {:?}: {}", f.rule, f.violation.short());
    }
}

impl Row {
    /// The dual-stack fields of a stored Service, shown whatever the verdict.
    fn show_stack(&mut self, stored: &Service) {
        let spec = stored.spec();
        self.policy = spec.ip_family_policy.clone().unwrap_or_default();
        self.families = spec.ip_families.clone().unwrap_or_default();
        self.cluster_ips = spec.cluster_ips.clone().unwrap_or_default();
    }

    fn new(source: &str, svc: &Service) -> Self {
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
}

/// Whether any row fails the check (a Deny violation or an API server refusal).
pub fn failed(rows: &[Row]) -> bool {
    rows.iter()
        .any(|r| r.verdict == "deny" || r.verdict == "refused")
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
