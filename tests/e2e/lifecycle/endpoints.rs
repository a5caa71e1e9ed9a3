//! The endpoints controller (and the kubelet's readiness probe feeding it), in miniature: for each
//! pod, one EndpointSlice per Service selecting it, its one endpoint at this machine's IPv4
//! address, `conditions` as the endpointslice controller derives them from the pod — `serving`
//! follows `/readyz` polled every [`PROBE_PERIOD`], `terminating` is set the moment the pod is
//! deleted, `ready` is serving and not terminating — and the slice removed once the pod is gone.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::kubelet::{Pod, http_status};

/// The kubelet's probe period (a readiness change reaches the slice within about this).
pub(super) const PROBE_PERIOD: Duration = Duration::from_secs(1);
/// `endpointslice.kubernetes.io/managed-by` of the slices (and their field manager).
pub(super) const MANAGED_BY: &str = "lifecycle-e2e.dualstack-webhook.io";

/// One Service's slice for one pod.
#[derive(Clone, Debug)]
struct Slice {
    name: String,
    service: String,
    /// (Service port name, the pod's port on this machine)
    ports: Vec<(Option<String>, u16)>,
}

/// A pod as the controller tracks it.
struct Member {
    pod: String,
    admin: std::net::SocketAddr,
    slices: Vec<Slice>,
    /// What the slices say now: (ready, serving, terminating); `None` before the first write.
    published: Option<(bool, bool, bool)>,
    /// The last probe's verdict.
    serving: bool,
    terminating: bool,
}

/// A published change: when the write started, the pod, and (ready, serving, terminating).
#[derive(Clone, Debug)]
pub(super) struct Published {
    pub(super) at: Instant,
    pub(super) pod: String,
    pub(super) conditions: (bool, bool, bool),
}

struct State {
    client: Client,
    namespace: String,
    ip: Ipv4Addr,
    members: Vec<Member>,
    published: Vec<Published>,
    /// Writes of the probe loop that failed.
    errors: Vec<String>,
}

/// The controller; its probe loop runs until it is dropped.
pub(super) struct EndpointsController {
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl EndpointsController {
    /// Starts the probe loop for pods of `namespace`, endpoints at `ip`.
    pub(super) fn start(client: Client, namespace: &str, ip: Ipv4Addr) -> Self {
        let state = Arc::new(Mutex::new(State {
            client,
            namespace: namespace.to_owned(),
            ip,
            members: Vec::new(),
            published: Vec::new(),
            errors: Vec::new(),
        }));
        let task = tokio::spawn(probe_loop(state.clone()));
        EndpointsController { state, task }
    }

    /// Tracks a new pod: one slice for every Service of its namespace whose selector matches its
    /// labels, each Service port's `targetPort` resolved against the pod's container ports. The
    /// slices appear (not ready) at once, as for a pod that has just started.
    pub(super) async fn add(&self, pod: &Pod) {
        let mut state = self.state.lock().await;
        let services: Api<Service> = Api::namespaced(state.client.clone(), &state.namespace);
        let mut slices = Vec::new();
        for svc in services.list(&ListParams::default()).await.unwrap().items {
            let spec = svc.spec.clone().unwrap_or_default();
            let Some(selector) = spec.selector.filter(|s| !s.is_empty()) else {
                continue;
            };
            if !selector.iter().all(|(k, v)| pod.labels.get(k) == Some(v)) {
                continue;
            }
            let service = svc.metadata.name.clone().unwrap();
            let ports = spec
                .ports
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| {
                    let host = match &p.target_port {
                        Some(IntOrString::String(name)) => pod.host_port(Some(name), None),
                        Some(IntOrString::Int(n)) => pod.host_port(None, Some(*n)),
                        None => pod.host_port(None, Some(p.port)),
                    }?;
                    Some((p.name.clone(), host))
                })
                .collect::<Vec<_>>();
            if ports.is_empty() {
                continue;
            }
            slices.push(Slice {
                name: format!("{service}-{}", pod.name),
                service,
                ports,
            });
        }
        assert!(
            !slices.is_empty(),
            "no Service in {} selects pod {} (labels {:?})",
            state.namespace,
            pod.name,
            pod.labels
        );
        state.members.push(Member {
            pod: pod.name.clone(),
            admin: pod.admin,
            slices,
            published: None,
            serving: false,
            terminating: false,
        });
        let i = state.members.len() - 1;
        publish(&mut state, i).await.unwrap();
    }

    /// The pod is being deleted: its endpoints turn terminating (and not ready) at once, before
    /// the kubelet's SIGTERM has any effect. Returns when the slices say so.
    pub(super) async fn terminate(&self, pod: &str) {
        let mut state = self.state.lock().await;
        let i = index(&state, pod);
        state.members[i].terminating = true;
        publish(&mut state, i).await.unwrap();
    }

    /// The pod is gone (its containers exited): its slices are deleted.
    pub(super) async fn remove(&self, pod: &str) {
        let mut state = self.state.lock().await;
        let i = index(&state, pod);
        let member = state.members.remove(i);
        let api: Api<EndpointSlice> = Api::namespaced(state.client.clone(), &state.namespace);
        for slice in member.slices {
            match api.delete(&slice.name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => panic!("delete EndpointSlice {}: {e}", slice.name),
            }
        }
    }

    /// Waits until the pod's slices say ready; when that write started.
    pub(super) async fn wait_ready(&self, pod: &str, bound: Duration) -> Instant {
        let start = Instant::now();
        loop {
            {
                let state = self.state.lock().await;
                if let Some(p) = state
                    .published
                    .iter()
                    .find(|p| p.pod == pod && p.conditions.0)
                {
                    return p.at;
                }
            }
            assert!(
                start.elapsed() < bound,
                "the endpoint of {pod} not ready after {bound:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every change published so far.
    pub(super) async fn published(&self) -> Vec<Published> {
        self.state.lock().await.published.clone()
    }

    /// Writes of the probe loop that failed (none expected).
    pub(super) async fn errors(&self) -> Vec<String> {
        self.state.lock().await.errors.clone()
    }
}

impl Drop for EndpointsController {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn index(state: &State, pod: &str) -> usize {
    state
        .members
        .iter()
        .position(|m| m.pod == pod)
        .unwrap_or_else(|| panic!("pod {pod} is not tracked"))
}

/// The probes: every [`PROBE_PERIOD`], each pod's `/readyz`; a change is published.
async fn probe_loop(state: Arc<Mutex<State>>) {
    loop {
        let targets: Vec<(String, std::net::SocketAddr)> = {
            let s = state.lock().await;
            s.members.iter().map(|m| (m.pod.clone(), m.admin)).collect()
        };
        let mut results = Vec::new();
        for (pod, admin) in targets {
            results.push((pod, http_status(admin, "/readyz").await == Some(200)));
        }
        {
            let mut s = state.lock().await;
            for (pod, serving) in results {
                if let Some(i) = s.members.iter().position(|m| m.pod == pod) {
                    s.members[i].serving = serving;
                    if let Err(e) = publish(&mut s, i).await {
                        s.errors.push(e);
                    }
                }
            }
        }
        tokio::time::sleep(PROBE_PERIOD).await;
    }
}

/// Writes member `i`'s slices (server-side apply) if their conditions changed.
async fn publish(state: &mut State, i: usize) -> Result<(), String> {
    let member = &state.members[i];
    let serving = member.serving;
    let terminating = member.terminating;
    let conditions = (serving && !terminating, serving, terminating);
    if member.published == Some(conditions) {
        return Ok(());
    }
    let at = Instant::now();
    let api: Api<EndpointSlice> = Api::namespaced(state.client.clone(), &state.namespace);
    let params = PatchParams::apply(MANAGED_BY).force();
    for slice in &member.slices {
        let doc = json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": slice.name,
                "namespace": state.namespace,
                "labels": {
                    "kubernetes.io/service-name": slice.service,
                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                },
            },
            "addressType": "IPv4",
            "ports": slice.ports.iter().map(|(name, port)| json!({
                "name": name.clone().unwrap_or_default(),
                "port": port,
                "protocol": "TCP",
            })).collect::<Vec<_>>(),
            "endpoints": [{
                "addresses": [state.ip.to_string()],
                "conditions": {"ready": conditions.0, "serving": serving, "terminating": terminating},
                "targetRef": {"kind": "Pod", "namespace": state.namespace, "name": member.pod},
            }],
        });
        api.patch(&slice.name, &params, &Patch::Apply(&doc))
            .await
            .map_err(|e| format!("apply EndpointSlice {}: {e}", slice.name))?;
    }
    let pod = member.pod.clone();
    state.members[i].published = Some(conditions);
    state.published.push(Published {
        at,
        pod,
        conditions,
    });
    Ok(())
}
