//! The only module that talks to the API server: watches ServiceCIDR objects and Namespaces, folds them
//! into the [`Cluster`] snapshot and publishes it. The request path only ever reads the latest snapshot;
//! it never awaits the API server. A lost connection keeps the last snapshot and retries with backoff.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cluster::{Cluster, DEFAULT_SERVICE_CIDR, ServiceCidrs};
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
    /// Watches `api` (see [`follow`](Self::follow)), retrying with backoff.
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
        let stream =
            watcher::watcher(api, watcher::Config::default().any_semantic()).default_backoff();
        self.follow(stream, extract, fold, listed).await;
    }

    /// Keeps `name → extract(object)` for every object (`None` drops it), and after the first
    /// complete list and every change publishes `fold(objects, current snapshot)`. Errors are logged
    /// and counted while the watcher retries with backoff; the last snapshot stays in use. A 404 on
    /// the first list means the API does not exist here: the latch is released and the watch ends.
    /// The ServiceCIDR watch logs the service ranges when it first learns them and at each change.
    async fn follow<K, V>(
        self,
        stream: impl Stream<Item = Result<Event<K>, watcher::Error>>,
        extract: impl Fn(&K) -> Option<V>,
        fold: impl Fn(&BTreeMap<String, V>, &Cluster) -> Cluster,
        listed: Latch,
    ) where
        K: kube::Resource,
        K::DynamicType: Default,
    {
        let mut listed = Some(listed);
        let mut known: BTreeMap<String, V> = BTreeMap::new();
        let mut buffer: BTreeMap<String, V> = BTreeMap::new();
        // What the log last said of the service ranges (`None`: nothing yet).
        let mut said: Option<Option<ServiceCidrs>> = None;
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
                if self.resource == WatchResource::servicecidrs {
                    let now = self.snapshot.load().service_cidrs.clone();
                    if let Some(news) = ranges_news(said.as_ref(), now.as_ref()) {
                        news.log();
                    }
                    said = Some(now);
                }
            }
        }
    }
}

/// What is new about the service ranges, for the log.
#[derive(Debug, PartialEq, Eq)]
enum RangesNews {
    /// Known now, and not before (or nothing said yet).
    Learned(String),
    /// Known before and now, and different.
    Changed {
        /// The ranges now, primary first.
        to: String,
        /// The ranges before.
        from: String,
    },
    /// Not known (no usable `kubernetes` ServiceCIDR): no cluster assumptions.
    Unknown,
}

/// The news between what was `said` last (`None`: nothing yet) and the ranges `now`.
fn ranges_news(
    said: Option<&Option<ServiceCidrs>>,
    now: Option<&ServiceCidrs>,
) -> Option<RangesNews> {
    match (said, now) {
        (Some(before), now) if before.as_ref() == now => None,
        (Some(Some(before)), Some(now)) => Some(RangesNews::Changed {
            to: ranges(now),
            from: ranges(before),
        }),
        (_, Some(now)) => Some(RangesNews::Learned(ranges(now))),
        (_, None) => Some(RangesNews::Unknown),
    }
}

/// `CIDR[,CIDR...]`, primary first, as `--service-cidrs` takes them.
fn ranges(cidrs: &ServiceCidrs) -> String {
    let nets: Vec<String> = cidrs.nets().iter().map(ToString::to_string).collect();
    nets.join(",")
}

impl RangesNews {
    fn log(&self) {
        match self {
            Self::Learned(ranges) => info!(%ranges, "learned the cluster's service ranges"),
            Self::Changed { to, from } => {
                info!(ranges = %to, previous = %from, "the cluster's service ranges changed");
            }
            Self::Unknown => warn!(
                "no usable ServiceCIDR named {DEFAULT_SERVICE_CIDR:?}: making no assumptions about the cluster's service ranges"
            ),
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
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::sync::Mutex;

    use k8s_openapi::api::networking::v1::ServiceCIDRSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;
    use crate::server::admin::Readiness;

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

    fn service_cidr(name: &str, cidrs: &[&str]) -> ServiceCIDR {
        ServiceCIDR {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceCIDRSpec {
                cidrs: Some(cidrs.iter().map(|c| (*c).to_owned()).collect()),
            }),
            status: None,
        }
    }

    #[test]
    fn ranges_news_says_what_changed() {
        let dual = ServiceCidrs::parse("fd00::/108,10.96.0.0/16").unwrap();
        let v4 = ServiceCidrs::parse("10.96.0.0/16").unwrap();
        let learned = Some(RangesNews::Learned("fd00::/108,10.96.0.0/16".to_owned()));
        assert_eq!(ranges_news(None, Some(&dual)), learned);
        assert_eq!(ranges_news(Some(&None), Some(&dual)), learned);
        assert_eq!(ranges_news(Some(&Some(dual.clone())), Some(&dual)), None);
        assert_eq!(
            ranges_news(Some(&Some(v4.clone())), Some(&dual)),
            Some(RangesNews::Changed {
                to: "fd00::/108,10.96.0.0/16".to_owned(),
                from: "10.96.0.0/16".to_owned()
            })
        );
        assert_eq!(ranges_news(None, None), Some(RangesNews::Unknown));
        assert_eq!(
            ranges_news(Some(&Some(v4)), None),
            Some(RangesNews::Unknown)
        );
        assert_eq!(ranges_news(Some(&None), None), None);
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The ServiceCIDR watch over a scripted stream of events: the snapshot it publishes, the
    /// readiness latch, and the log lines (plain, without time).
    #[tokio::test]
    async fn the_service_cidr_watch_logs_the_ranges_it_learns_and_each_change() {
        let out = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let out = out.clone();
                move || out.clone()
            })
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::INFO)
            .finish();
        // The test runs on one thread (current-thread runtime): the default is in force throughout.
        let _default = tracing::subscriber::set_default(subscriber);
        let kubernetes = service_cidr("kubernetes", &["fd00:10:96::/112", "10.96.0.0/16"]);
        let extra = service_cidr("extra", &["10.97.0.0/24"]);
        let events = [
            Event::Init,
            Event::InitApply(kubernetes.clone()),
            Event::InitDone,
            Event::Apply(extra.clone()),
            Event::Apply(extra), // the same again: no news
            Event::Delete(kubernetes),
        ];
        let snapshot = Arc::new(ArcSwap::from_pointee(Cluster::default()));
        let readiness = Readiness::default();
        readiness.set_ready();
        let watch = Watch {
            resource: WatchResource::servicecidrs,
            snapshot: snapshot.clone(),
            metrics: Metrics::default(),
            shutdown: CancellationToken::new(),
        };
        let stream = futures_util::stream::iter(events.map(Ok));
        let fold = |known: &BTreeMap<String, Vec<String>>, cluster: &Cluster| Cluster {
            service_cidrs: ServiceCidrs::from_service_cidr_objects(known),
            ..cluster.clone()
        };
        watch
            .follow(stream, usable_cidrs, fold, readiness.latch())
            .await;
        assert!(readiness.is_ready(), "the first list released the latch");
        assert_eq!(snapshot.load().service_cidrs, None);
        let log = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let target = "dualstack_webhook::cluster::watch";
        let want = [
            format!(" INFO {target}: listed resource=servicecidrs objects=1"),
            format!(
                " INFO {target}: learned the cluster's service ranges ranges=fd00:10:96::/112,10.96.0.0/16"
            ),
            format!(
                " INFO {target}: the cluster's service ranges changed \
                 ranges=fd00:10:96::/112,10.96.0.0/16,10.97.0.0/24 previous=fd00:10:96::/112,10.96.0.0/16"
            ),
            format!(
                " WARN {target}: no usable ServiceCIDR named \"kubernetes\": making no assumptions about \
                 the cluster's service ranges"
            ),
        ];
        assert_eq!(log.lines().collect::<Vec<_>>(), want, "{log}");
    }
}
