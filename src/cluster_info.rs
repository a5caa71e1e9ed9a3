//! The only module that talks to the API server: watches ServiceCIDR objects and Namespaces, folds them
//! into the [`Cluster`] snapshot and publishes it. The request path only ever reads the latest snapshot;
//! it never awaits the API server. A lost connection keeps the last snapshot and retries with backoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::admin::Latch;
use crate::cluster::{Cluster, ServiceCidrs};
use crate::metrics::{Metrics, WatchResource};
use crate::service::Labels;

/// Starts the watches. With `static_cidrs` (from `--service-cidrs`) the ServiceCIDR watch is not run:
/// the flag wins. Each latch is released after its watch's first complete list (or, for ServiceCIDRs,
/// when the API turns out not to exist: then the webhook makes no cluster assumptions).
pub fn spawn(
    client: Client,
    static_cidrs: bool,
    snapshot: Arc<ArcSwap<Cluster>>,
    namespaces_listed: Latch,
    cidrs_listed: Latch,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    tokio::spawn(watch_namespaces(
        Api::all(client.clone()),
        snapshot.clone(),
        namespaces_listed,
        metrics.clone(),
        shutdown.clone(),
    ));
    if static_cidrs {
        cidrs_listed.release();
    } else {
        tokio::spawn(watch_service_cidrs(
            Api::all(client),
            snapshot,
            cidrs_listed,
            metrics,
            shutdown,
        ));
    }
}

async fn watch_namespaces(
    api: Api<Namespace>,
    snapshot: Arc<ArcSwap<Cluster>>,
    listed: Latch,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut listed = Some(listed);
    let mut known: HashMap<String, Labels> = HashMap::new();
    let mut buffer: HashMap<String, Labels> = HashMap::new();
    let stream = watcher::watcher(api, watcher::Config::default().any_semantic()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = stream.next() => event,
        };
        let Some(event) = event else { return };
        let publish = match event {
            Ok(Event::Init) => {
                buffer.clear();
                false
            }
            Ok(Event::InitApply(ns)) => {
                buffer.insert(ns.name_any(), ns.labels().clone().into_iter().collect());
                false
            }
            Ok(Event::InitDone) => {
                known = std::mem::take(&mut buffer);
                info!(namespaces = known.len(), "namespaces listed");
                if let Some(latch) = listed.take() {
                    latch.release();
                }
                true
            }
            Ok(Event::Apply(ns)) => {
                known.insert(ns.name_any(), ns.labels().clone().into_iter().collect());
                true
            }
            Ok(Event::Delete(ns)) => {
                known.remove(&ns.name_any());
                true
            }
            Err(error) => {
                // The watcher retries with backoff; the last snapshot stays in use meanwhile.
                warn!(%error, "namespace watch failed; retrying with backoff");
                metrics.watch_error(WatchResource::namespaces);
                false
            }
        };
        if publish {
            let namespaces = known.clone();
            snapshot.rcu(|current| Cluster {
                namespaces: namespaces.clone(),
                ..Cluster::clone(current)
            });
        }
    }
}

async fn watch_service_cidrs(
    api: Api<ServiceCIDR>,
    snapshot: Arc<ArcSwap<Cluster>>,
    listed: Latch,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut listed = Some(listed);
    let mut known: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut buffer: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let stream = watcher::watcher(api, watcher::Config::default().any_semantic()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = stream.next() => event,
        };
        let Some(event) = event else { return };
        let publish = match event {
            Ok(Event::Init) => {
                buffer.clear();
                false
            }
            Ok(Event::InitApply(o)) => {
                if let Some(cidrs) = usable_cidrs(&o) {
                    buffer.insert(o.name_any(), cidrs);
                }
                false
            }
            Ok(Event::InitDone) => {
                known = std::mem::take(&mut buffer);
                if let Some(latch) = listed.take() {
                    latch.release();
                }
                true
            }
            Ok(Event::Apply(o)) => {
                match usable_cidrs(&o) {
                    Some(cidrs) => known.insert(o.name_any(), cidrs),
                    None => known.remove(&o.name_any()),
                };
                true
            }
            Ok(Event::Delete(o)) => {
                known.remove(&o.name_any());
                true
            }
            Err(error) if api_missing(&error) && listed.is_some() => {
                // An API server before 1.33 (or with the API off): fall back to no assumptions.
                warn!(%error, "the ServiceCIDR API is not served; making no cluster assumptions (use --service-cidrs)");
                if let Some(latch) = listed.take() {
                    latch.release();
                }
                return;
            }
            Err(error) => {
                warn!(%error, "ServiceCIDR watch failed; retrying with backoff");
                metrics.watch_error(WatchResource::servicecidrs);
                false
            }
        };
        if publish {
            let cidrs = ServiceCidrs::from_service_cidr_objects(&known);
            info!(cidrs = ?cidrs.as_ref().map(|c| c.nets().to_vec()), "service CIDRs");
            snapshot.rcu(|current| Cluster {
                service_cidrs: cidrs.clone(),
                ..Cluster::clone(current)
            });
        }
    }
}

/// The ranges of a ServiceCIDR the allocator uses: none once it is being deleted (a finalizer may
/// hold a terminating object for long, but the API server no longer allocates from it, R3.17).
pub fn usable_cidrs(o: &ServiceCIDR) -> Option<Vec<String>> {
    if o.metadata.deletion_timestamp.is_some() {
        return None;
    }
    Some(
        o.spec
            .as_ref()
            .and_then(|s| s.cidrs.clone())
            .unwrap_or_default(),
    )
}

/// A 404 from the initial list: the resource type does not exist on this API server.
fn api_missing(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status)) => status.code == 404,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::networking::v1::ServiceCIDRSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    fn cidr(deleting: bool) -> ServiceCIDR {
        ServiceCIDR {
            metadata: ObjectMeta {
                name: Some("extra".into()),
                deletion_timestamp: deleting.then(|| Time(Default::default())),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceCIDRSpec {
                cidrs: Some(vec!["10.97.0.0/24".into()]),
            }),
            status: None,
        }
    }

    #[test]
    fn a_terminating_service_cidr_is_not_a_range() {
        assert_eq!(
            usable_cidrs(&cidr(false)),
            Some(vec!["10.97.0.0/24".to_owned()])
        );
        assert_eq!(usable_cidrs(&cidr(true)), None);
    }
}
