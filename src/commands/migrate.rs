//! `migrate`: bring a cluster's existing Services to the policy's dual-stack defaults, planned,
//! batched and reversible. The decisions are [`crate::domain::migration`]'s; this module lists the
//! Services, prints the plan and hands the changes to `apply`.
//!
//! # Layout
//! - here: reading the cluster, the plan ([`PlanRow`]) and its outputs, the summary.
//! - `apply`: the writes: dry-run, then a merge patch of the dual-stack fields and the record,
//!   with a `resourceVersion` precondition, in batches.

mod apply;

use std::collections::BTreeMap;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::Service as KubeService;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;

use crate::cluster::Cluster;
use crate::commands::audit::{self, AuditError};
use crate::commands::report::aligned;
use crate::config::{MigrateArgs, PlanFormat};
use crate::domain::migration::{self, Change, Outcome, Stack, Stored};
use crate::domain::policy::Policy;

pub use apply::{Batches, Done};

/// Why `migrate` stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Neither a kubeconfig nor an in-cluster configuration is usable.
    #[error("no cluster to migrate: {reason}; set KUBECONFIG or run in a pod")]
    NoCluster {
        /// What failed (see [`AuditError::NoCluster`]).
        reason: String,
    },
    /// Reading the cluster failed.
    #[error(transparent)]
    Read(AuditError),
    /// The API server refused a change migrate expected it to accept (or answered with something
    /// else than what migrate asked for): migrate stops there.
    #[error("{service}: {message}; stopped after {done} of {planned} changes (a rerun resumes)")]
    Refused {
        /// `namespace/name`.
        service: String,
        /// The API server's whole message, or what differs.
        message: String,
        /// Changes made before.
        done: usize,
        /// Changes planned.
        planned: usize,
    },
}

/// One line of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.type`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `change` or `skip`.
    pub action: &'static str,
    /// The stack stored now (for a change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Stack>,
    /// The stack it gets (for a change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Stack>,
    /// Why the Service is skipped (`exempt`, `managed-by`, …); empty for a change.
    pub reason: &'static str,
    /// Why, for people: where `to` comes from, or why it is skipped.
    pub message: String,
}

/// A planned change of one stored Service.
#[derive(Clone, Debug)]
pub struct Planned {
    /// The Service as listed (its `resourceVersion` is the precondition of the write).
    pub service: KubeService,
    /// The change.
    pub change: Change,
}

/// Runs `migrate`: prints the plan, and with `--apply` makes it.
pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let MigrateArgs {
        policy,
        cluster,
        output,
        apply,
        rollback,
        namespace,
        selector,
        batch,
        pause,
        max_batches,
    } = args;
    let cidrs = cluster.service_cidrs;
    let policy = super::load_for_judging(&policy, cidrs.as_ref(), None)?;
    let batches = Batches {
        size: batch as usize,
        pause,
        max: max_batches.map(|m| m as usize),
    };
    super::runtime()?.block_on(async {
        let client = audit::connect().await.map_err(|e| match e {
            AuditError::NoCluster { reason } => MigrateError::NoCluster { reason },
            other => MigrateError::Read(other),
        })?;
        let cluster = audit::read_cluster(client.clone(), cidrs)
            .await
            .map_err(MigrateError::Read)?;
        let listed = list(client.clone(), namespace.as_deref(), selector.as_deref()).await?;
        let (rows, planned) = decide(&policy, &cluster, rollback, listed);
        if !apply {
            print!("{}", render(&rows, output)?);
            eprintln!("{}", summary_of_plan(&rows));
            return Ok(ExitCode::SUCCESS);
        }
        let done = apply::apply(client, &policy, &cluster, rollback, planned, batches).await?;
        println!("{done}");
        Ok(ExitCode::SUCCESS)
    })
}

/// The Services of `--namespace` (else all) that match `--selector`, by namespace and name.
async fn list(
    client: Client,
    namespace: Option<&str>,
    selector: Option<&str>,
) -> Result<Vec<KubeService>, MigrateError> {
    let api: Api<KubeService> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let mut lp = ListParams::default();
    if let Some(selector) = selector {
        lp = lp.labels(selector);
    }
    let mut items = api
        .list(&lp)
        .await
        .map_err(|e| MigrateError::Read(AuditError::List("services", e)))?
        .items;
    items.sort_by_key(|s| (s.namespace().unwrap_or_default(), s.name_any()));
    Ok(items)
}

/// What migrate (or its rollback) does with one listed Service.
pub(crate) fn outcome(
    policy: &Policy,
    cluster: &Cluster,
    rollback: bool,
    svc: &KubeService,
) -> Outcome {
    let stored = Stored::from(svc);
    if rollback {
        migration::rollback(cluster, &stored)
    } else {
        migration::plan(policy, cluster, &stored)
    }
}

/// The plan's rows, and the changes to make.
fn decide(
    policy: &Policy,
    cluster: &Cluster,
    rollback: bool,
    listed: Vec<KubeService>,
) -> (Vec<PlanRow>, Vec<Planned>) {
    let mut rows = Vec::with_capacity(listed.len());
    let mut planned = Vec::new();
    for service in listed {
        let outcome = outcome(policy, cluster, rollback, &service);
        rows.push(row(&service, &outcome));
        if let Outcome::Change(change) = outcome {
            planned.push(Planned { service, change });
        }
    }
    (rows, planned)
}

fn row(svc: &KubeService, outcome: &Outcome) -> PlanRow {
    let type_ = svc.spec.as_ref().and_then(|s| s.type_.clone());
    let mut row = PlanRow {
        namespace: svc.namespace().unwrap_or_default(),
        name: svc.name_any(),
        type_: type_.unwrap_or_else(|| "ClusterIP".to_owned()),
        action: "change",
        from: None,
        to: None,
        reason: "",
        message: String::new(),
    };
    match outcome {
        Outcome::Change(change) => {
            row.from = Some(change.from.clone());
            row.to = Some(change.to.clone());
            row.message.clone_from(&change.because);
        }
        Outcome::Skip(skip) => {
            row.action = "skip";
            row.reason = skip.as_str();
            row.message = skip.to_string();
        }
    }
    row
}

/// The plan in `format`.
fn render(rows: &[PlanRow], format: PlanFormat) -> Result<String, serde_json::Error> {
    let stack = |s: &Option<Stack>| s.as_ref().map(ToString::to_string).unwrap_or_default();
    match format {
        PlanFormat::Json => serde_json::to_string_pretty(rows).map(|text| text + "\n"),
        PlanFormat::Table => {
            let header = [
                "NAMESPACE",
                "NAME",
                "TYPE",
                "ACTION",
                "FROM",
                "TO",
                "REASON",
                "MESSAGE",
            ];
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.namespace.clone(),
                        r.name.clone(),
                        r.type_.clone(),
                        r.action.to_owned(),
                        stack(&r.from),
                        stack(&r.to),
                        r.reason.to_owned(),
                        r.message.clone(),
                    ]
                })
                .collect();
            Ok(aligned(&header, &cells))
        }
    }
}

/// `plan: 187 to change, 13 to skip (exempt 2, external-name 4, …)`.
fn summary_of_plan(rows: &[PlanRow]) -> String {
    let changes = rows.iter().filter(|r| r.action == "change").count();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.action == "skip") {
        *reasons.entry(r.reason).or_default() += 1;
    }
    let skips = rows.len() - changes;
    let mut summary = format!("plan: {changes} to change, {skips} to skip");
    if !reasons.is_empty() {
        let detail: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
        summary += &format!(" ({})", detail.join(", "));
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(action: &'static str, reason: &'static str) -> PlanRow {
        PlanRow {
            namespace: "apps".to_owned(),
            name: "web".to_owned(),
            type_: "ClusterIP".to_owned(),
            action,
            from: None,
            to: None,
            reason,
            message: String::new(),
        }
    }

    #[test]
    fn the_plans_summary_counts_skips_by_reason_and_names_none_when_there_are_none() {
        let rows = [
            row("change", ""),
            row("skip", "exempt"),
            row("skip", "external-name"),
            row("skip", "exempt"),
        ];
        assert_eq!(
            summary_of_plan(&rows),
            "plan: 1 to change, 3 to skip (exempt 2, external-name 1)"
        );
        assert_eq!(
            summary_of_plan(&[row("change", "")]),
            "plan: 1 to change, 0 to skip"
        );
        assert_eq!(summary_of_plan(&[]), "plan: 0 to change, 0 to skip");
    }
}
