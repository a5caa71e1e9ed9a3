//! `check`: judge Service manifests offline, as the cluster would (mutate, the API server's own
//! defaulting and allocation when the service CIDRs are known, then validate). `audit` judges the
//! Services a cluster already stores the same way, from the validate step on.

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Namespace, Service as KubeService};
use serde::Deserialize as _;

use crate::cluster::Cluster;
use crate::cluster::watch::labels_of;
use crate::commands::report::Row;
use crate::domain::apiserver_model;
use crate::domain::engine::{self, DenialMessage, Operation, Request};
use crate::domain::policy::limits::{self, MANIFEST_MAX_BYTES, MANIFEST_MAX_DEPTH};
use crate::domain::policy::{Action, Policy};
use crate::domain::service::{Labels, Service};

/// Why manifests could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A path could not be read.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    /// A file is larger than [`MANIFEST_MAX_BYTES`].
    #[error("cannot read {0}: larger than {max} MiB", max = MANIFEST_MAX_BYTES >> 20)]
    TooLarge(PathBuf),
    /// A directory symlink leads back to a directory it is in: the first path is the symlink,
    /// the second the directory it leads back to.
    #[error("cannot read {0}: a symlink loop leads back to {1}")]
    SymlinkLoop(PathBuf, PathBuf),
    /// A file nests deeper than [`MANIFEST_MAX_DEPTH`]; refused before it is parsed.
    #[error("{0}: {1}")]
    TooDeep(PathBuf, #[source] limits::TooDeep),
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
    let mut walk = Walk::default();
    for p in paths {
        collect(p, &mut files, &mut walk)?;
    }
    let mut services = Vec::new();
    let mut cluster = cluster.clone();
    for file in &files {
        let text = read_manifest(file)?;
        // Before the parser, whose cost grows with the square of the nesting (see `limits`).
        limits::check_depth(&text, MANIFEST_MAX_DEPTH)
            .map_err(|e| CheckError::TooDeep(file.clone(), e))?;
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

/// Reads at most [`MANIFEST_MAX_BYTES`] of a file, plus one byte to tell a larger one.
fn read_manifest(file: &Path) -> Result<String, CheckError> {
    let failed = |e| CheckError::Read(file.to_owned(), e);
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .map_err(failed)?
        .take(MANIFEST_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > MANIFEST_MAX_BYTES {
        return Err(CheckError::TooLarge(file.to_owned()));
    }
    // The error `fs::read_to_string` gives.
    String::from_utf8(bytes).map_err(|_| {
        failed(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })
}

/// The directories a walk has read, by canonical path: symlinks are followed, but a directory
/// reached again is not read again, and one reached from inside itself is a loop, refused (it
/// would otherwise be followed for ever, each round adding its files again).
#[derive(Default)]
struct Walk {
    /// Every directory read so far.
    seen: HashSet<PathBuf>,
    /// The directories being read, outermost first: canonical, and as named.
    open: Vec<(PathBuf, PathBuf)>,
}

fn collect(path: &Path, out: &mut Vec<PathBuf>, walk: &mut Walk) -> Result<(), CheckError> {
    let meta = std::fs::metadata(path).map_err(|e| CheckError::Read(path.to_owned(), e))?;
    if meta.is_file() {
        out.push(path.to_owned());
        return Ok(());
    }
    let real = std::fs::canonicalize(path).map_err(|e| CheckError::Read(path.to_owned(), e))?;
    if let Some((_, named)) = walk.open.iter().find(|(open, _)| *open == real) {
        return Err(CheckError::SymlinkLoop(path.to_owned(), named.clone()));
    }
    if !walk.seen.insert(real.clone()) {
        // Read already, through another path: its Services are judged once.
        return Ok(());
    }
    walk.open.push((real, path.to_owned()));
    collect_dir(path, out, walk)?;
    walk.open.pop();
    Ok(())
}

fn collect_dir(path: &Path, out: &mut Vec<PathBuf>, walk: &mut Walk) -> Result<(), CheckError> {
    let entries = std::fs::read_dir(path).map_err(|e| CheckError::Read(path.to_owned(), e))?;
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        let is_manifest = child
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
        if child.is_dir() || is_manifest {
            collect(&child, out, walk)?;
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
