//! `migrate --apply`: the writes. Each planned change is a JSON merge patch of only
//! `ipFamilyPolicy`, `ipFamilies` and the record annotation (never `clusterIPs`: the API server
//! allocates the secondary, R3.18, and releases it, R3.8), with the listed `resourceVersion` as a
//! precondition, so a concurrent writer is never overwritten: on a conflict the Service is read
//! again and decided again. Each patch is dry-run on the server first; the first refusal stops
//! the run with the API server's whole message.

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service as KubeService;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::{MigrateError, Planned, outcome};
use crate::cluster::Cluster;
use crate::domain::migration::{Change, FIELD_MANAGER, Outcome, RECORD_ANNOTATION};
use crate::domain::policy::Policy;

/// How many times a Service is read and patched again after a conflicting write by someone else.
const CONFLICT_ATTEMPTS: usize = 5;

/// How the changes are paced.
#[derive(Clone, Copy, Debug)]
pub struct Batches {
    /// Changes per batch.
    pub size: usize,
    /// Wait between batches.
    pub pause: Duration,
    /// Stop after this many batches (`--max-batches`).
    pub max: Option<usize>,
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    /// `migrated` or `rolled back`.
    verb: &'static str,
    /// Services changed.
    changed: usize,
    /// Planned changes that needed none once read again (changed by someone else, or deleted).
    skipped: usize,
    /// Changes planned.
    planned: usize,
    /// Batches run, when `--max-batches` stopped the run before the end.
    stopped_after: Option<usize>,
}

/// Makes the planned changes, batch by batch, with a progress line per Service and per batch on
/// stderr.
pub(super) async fn apply(
    client: Client,
    policy: &Policy,
    cluster: &Cluster,
    rollback: bool,
    planned: Vec<Planned>,
    batches: Batches,
) -> Result<Done, MigrateError> {
    let mut done = Done {
        verb: if rollback { "rolled back" } else { "migrated" },
        changed: 0,
        skipped: 0,
        planned: planned.len(),
        stopped_after: None,
    };
    let writer = Writer {
        client,
        policy,
        cluster,
        rollback,
    };
    for (index, batch) in planned.chunks(batches.size).enumerate() {
        if batches.max.is_some_and(|max| index >= max) {
            done.stopped_after = Some(index);
            break;
        }
        if index > 0 && !batches.pause.is_zero() {
            tokio::time::sleep(batches.pause).await;
        }
        for p in batch {
            let service = format!(
                "{}/{}",
                p.service.namespace().unwrap_or_default(),
                p.service.name_any()
            );
            done.count(service, writer.change(p).await)?;
        }
        eprintln!(
            "batch {}: {} of {} {}",
            index + 1,
            done.changed + done.skipped,
            done.planned,
            done.verb
        );
    }
    Ok(done)
}

/// Writes one Service at a time.
struct Writer<'a> {
    client: Client,
    policy: &'a Policy,
    cluster: &'a Cluster,
    rollback: bool,
}

impl Writer<'_> {
    /// The change made (as decided on the last read) and the Service stored; `None` when, read
    /// again after a conflict, it needs no change any more. `Err` is the message to stop with.
    async fn change(&self, planned: &Planned) -> Result<Option<(Change, KubeService)>, String> {
        let ns = planned.service.namespace().unwrap_or_default();
        let name = planned.service.name_any();
        let api: Api<KubeService> = Api::namespaced(self.client.clone(), &ns);
        let (mut current, mut change) = (planned.service.clone(), planned.change.clone());
        for _ in 0..CONFLICT_ATTEMPTS {
            match write(&api, &name, &self.patch(&current, &change)).await {
                Ok(stored) => {
                    check(&current, &change, &stored)?;
                    return Ok(Some((change, stored)));
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    eprintln!(
                        "conflict on {ns}/{name}: written by someone else meanwhile, read again"
                    );
                    current = match api.get_opt(&name).await {
                        Ok(Some(svc)) => svc,
                        Ok(None) => return Ok(None),
                        Err(e) => return Err(format!("cannot read it again: {e}")),
                    };
                    match outcome(self.policy, self.cluster, self.rollback, &current) {
                        Outcome::Change(c) => change = c,
                        Outcome::Skip(_) => return Ok(None),
                    }
                }
                Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
                Err(kube::Error::Api(status)) => return Err(status.message),
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(format!(
            "still conflicting with other writers after {CONFLICT_ATTEMPTS} attempts"
        ))
    }

    /// The merge patch: the dual-stack fields, the record (set, or removed on rollback), and the
    /// `resourceVersion` read, which the API server checks (409 Conflict when it moved on).
    fn patch(&self, current: &KubeService, change: &Change) -> serde_json::Value {
        let record = (!self.rollback).then(|| change.from.record());
        json!({
            "metadata": {
                "resourceVersion": current.resource_version(),
                "annotations": { RECORD_ANNOTATION: record },
            },
            "spec": {
                "ipFamilyPolicy": change.to.ip_family_policy,
                "ipFamilies": change.to.ip_families,
            },
        })
    }
}

/// Server-side dry run, then the write.
async fn write(
    api: &Api<KubeService>,
    name: &str,
    patch: &serde_json::Value,
) -> kube::Result<KubeService> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(name, &params.clone().dry_run(), &Patch::Merge(patch))
        .await?;
    api.patch(name, &params, &Patch::Merge(patch)).await
}

/// What the API server stored is what was asked: the families of `change.to`, the primary IP
/// unchanged (R2.1).
fn check(before: &KubeService, change: &Change, stored: &KubeService) -> Result<(), String> {
    let primary = |s: &KubeService| {
        s.spec
            .as_ref()
            .and_then(|s| s.cluster_ips.as_ref()?.first().cloned())
    };
    let families: Vec<String> = change
        .to
        .ip_families
        .iter()
        .map(|f| f.as_str().to_owned())
        .collect();
    let stored_families = stored.spec.as_ref().and_then(|s| s.ip_families.clone());
    if stored_families.as_ref() != Some(&families) || primary(stored) != primary(before) {
        return Err(format!(
            "the API server stored ipFamilies {stored_families:?} and clusterIPs[0] {:?}, \
             expected {families:?} and {:?}",
            primary(stored),
            primary(before)
        ));
    }
    Ok(())
}

impl Done {
    /// Counts one Service's result and prints its progress line; a refusal stops the run.
    fn count(
        &mut self,
        service: String,
        result: Result<Option<(Change, KubeService)>, String>,
    ) -> Result<(), MigrateError> {
        match result {
            Ok(Some((change, stored))) => {
                self.changed += 1;
                let ips = stored.spec.and_then(|s| s.cluster_ips).unwrap_or_default();
                eprintln!(
                    "{} {service}: {} → {}, clusterIPs {}",
                    self.verb,
                    change.from,
                    change.to,
                    ips.join(",")
                );
                Ok(())
            }
            Ok(None) => {
                self.skipped += 1;
                eprintln!("skipped {service}: changed or deleted by someone else meanwhile");
                Ok(())
            }
            Err(message) => Err(MigrateError::Refused {
                service,
                message,
                done: self.changed,
                planned: self.planned,
            }),
        }
    }
}

impl fmt::Display for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} of {} Services",
            self.verb, self.changed, self.planned
        )?;
        if self.skipped > 0 {
            write!(
                f,
                " ({} changed or deleted meanwhile, left alone)",
                self.skipped
            )?;
        }
        if let Some(batches) = self.stopped_after {
            let plural = if batches == 1 { "batch" } else { "batches" };
            write!(
                f,
                "; stopped after {batches} {plural} (--max-batches): a rerun resumes"
            )?;
        }
        Ok(())
    }
}
