//! `check`: judge Service manifests offline, as the cluster would (mutate, the API server's own
//! defaulting and allocation when the service CIDRs are known, then validate). `audit` judges the
//! Services a cluster already stores the same way, from the validate step on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Namespace, Service as KubeService};
use serde::Deserialize as _;

use crate::cluster::Cluster;
use crate::cluster::watch::labels_of;
use crate::commands::report::Row;
use crate::domain::apiserver_model;
use crate::domain::engine::{self, DenialMessage, Operation, Request};
use crate::domain::policy::{Action, Policy};
use crate::domain::service::{Labels, Service};

/// Why manifests could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A path could not be read.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    /// A document is not YAML.
    #[error("{0}: {1}")]
    Yaml(PathBuf, #[source] serde_yaml_ng::Error),
    /// A `v1/Service` or `v1/Namespace` document is not a valid one.
    #[error("{file}: {kind} {name:?}: {source}")]
    Object {
        /// The manifest file.
        file: PathBuf,
        /// `Service` or `Namespace`.
        kind: &'static str,
        /// `metadata.name`, as far as it can be read.
        name: String,
        /// What is wrong.
        #[source]
        source: serde_yaml_ng::Error,
    },
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
            let value = serde_yaml_ng::Value::deserialize(doc)
                .map_err(|e| CheckError::Yaml(file.clone(), e))?;
            read_objects(&value, file, &mut services, &mut cluster.namespaces)?;
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

/// Services and Namespaces of a document (a `List` is opened), each decoded as the API's own type.
fn read_objects(
    value: &serde_yaml_ng::Value,
    file: &Path,
    services: &mut Vec<(String, Service)>,
    namespaces: &mut HashMap<String, Labels>,
) -> Result<(), CheckError> {
    let field = |k: &str| {
        value
            .get(k)
            .and_then(serde_yaml_ng::Value::as_str)
            .unwrap_or("")
    };
    let invalid = |kind, source| CheckError::Object {
        file: file.to_owned(),
        kind,
        name: value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(serde_yaml_ng::Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        source,
    };
    match (field("apiVersion"), field("kind")) {
        ("v1", "Service") => {
            let svc = KubeService::deserialize(value).map_err(|e| invalid("Service", e))?;
            services.push((file.display().to_string(), Service::from(&svc)));
        }
        ("v1", "Namespace") => {
            let ns = Namespace::deserialize(value).map_err(|e| invalid("Namespace", e))?;
            namespaces.insert(ns.metadata.name.clone().unwrap_or_default(), labels_of(&ns));
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
