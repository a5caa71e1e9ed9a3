//! The only module that talks to the API server: watches ServiceCIDR objects and Namespaces, folds them
//! into the [`Cluster`] snapshot and publishes it. The request path only ever reads the latest snapshot;
//! it never awaits the API server. A lost connection keeps the last snapshot and retries with backoff.

use std::collections::BTreeMap;
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

use crate::cluster::{Cluster, ServiceCidrs};
use crate::domain::service::Labels;
use crate::metrics::{Metrics, WatchResource};
use crate::server::admin::Latch;

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
    let namespaces = Watch {
        resource: WatchResource::namespaces,
        snapshot: snapshot.clone(),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    };
    tokio::spawn(namespaces.run(
        Api::<Namespace>::all(client.clone()),
        |ns| Some(labels_of(ns)),
        |known, cluster| Cluster {
            namespaces: known.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            ..cluster.clone()
        },
        namespaces_listed,
    ));
    if static_cidrs {
        cidrs_listed.release();
        return;
    }
    let cidrs = Watch {
        resource: WatchResource::servicecidrs,
        snapshot,
        metrics,
        shutdown,
    };
    tokio::spawn(cidrs.run(
        Api::<ServiceCIDR>::all(client),
        usable_cidrs,
        |known, cluster| Cluster {
            service_cidrs: ServiceCidrs::from_service_cidr_objects(known),
            ..cluster.clone()
        },
        cidrs_listed,
    ));
}

/// One watch: where it publishes, what it counts, when it stops.
struct Watch {
    resource: WatchResource,
    snapshot: Arc<ArcSwap<Cluster>>,
    metrics: Metrics,
    shutdown: CancellationToken,
}

impl Watch {
    /// Keeps `name → extract(object)` for every object (`None` drops it), and after the first
    /// complete list and every change publishes `fold(objects, current snapshot)`. Errors are logged
    /// and counted while the watcher retries with backoff; the last snapshot stays in use. A 404 on
    /// the first list means the API does not exist here: the latch is released and the watch ends.
    async fn run<K, V>(
        self,
        api: Api<K>,
        extract: impl Fn(&K) -> Option<V>,
        fold: impl Fn(&BTreeMap<String, V>, &Cluster) -> Cluster,
        listed: Latch,
    ) where
        K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
        K::DynamicType: Default,
    {
        let mut listed = Some(listed);
        let mut known: BTreeMap<String, V> = BTreeMap::new();
        let mut buffer: BTreeMap<String, V> = BTreeMap::new();
        let stream =
            watcher::watcher(api, watcher::Config::default().any_semantic()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        loop {
            let event = tokio::select! {
                () = self.shutdown.cancelled() => return,
                event = stream.next() => event,
            };
            let Some(event) = event else { return };
            let changed = match event {
                Ok(Event::Init) => {
                    buffer.clear();
                    false
                }
                Ok(Event::InitApply(o)) => {
                    if let Some(v) = extract(&o) {
                        buffer.insert(o.name_any(), v);
                    }
                    false
                }
                Ok(Event::InitDone) => {
                    known = std::mem::take(&mut buffer);
                    info!(resource = ?self.resource, objects = known.len(), "listed");
                    if let Some(latch) = listed.take() {
                        latch.release();
                    }
                    true
                }
                Ok(Event::Apply(o)) => {
                    match extract(&o) {
                        Some(v) => known.insert(o.name_any(), v),
                        None => known.remove(&o.name_any()),
                    };
                    true
                }
                Ok(Event::Delete(o)) => known.remove(&o.name_any()).is_some(),
                Err(error) if api_missing(&error) && listed.is_some() => {
                    // e.g. ServiceCIDR before Kubernetes 1.33: no assumptions (use --service-cidrs).
                    warn!(%error, "the {} API is not served; making no assumptions from it", self.resource.kind());
                    if let Some(latch) = listed.take() {
                        latch.release();
                    }
                    return;
                }
                Err(error) => {
                    warn!(resource = ?self.resource, %error, "watch failed; retrying with backoff");
                    self.metrics.watch_error(self.resource);
                    false
                }
            };
            if changed {
                self.snapshot.rcu(|current| fold(&known, current));
            }
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

/// A namespace's labels, as namespace selectors read them.
pub fn labels_of(ns: &Namespace) -> Labels {
    ns.labels().clone().into_iter().collect()
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
