//! Distinct service IPs for the Services of one `check` run, as the API server's allocator gives
//! them: the model of the API server allocates each Service alone (the first free address), so a
//! run of many would show the same address on all of them. Addresses a manifest pins are kept for
//! it, and a second Service pinning a taken one is refused, as the API server refuses it.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::cluster::ServiceCidrs;
use crate::domain::apiserver_model::ApiError;
use crate::domain::service::{IpFamily, Service, ServiceSpec};

/// The addresses of one run.
pub(super) struct Allocator {
    cidrs: ServiceCidrs,
    /// Given out so far, pinned or allocated.
    taken: HashSet<IpAddr>,
    /// Pinned by some manifest of the run: never given to another Service.
    pinned: HashSet<IpAddr>,
}

impl Allocator {
    /// An allocator for `cidrs` that keeps the addresses `services` pin.
    pub(super) fn new<'a>(
        cidrs: &ServiceCidrs,
        services: impl Iterator<Item = &'a Service>,
    ) -> Self {
        let pinned = services
            .flat_map(|svc| pinned_ips(svc.spec()))
            .filter_map(|ip| ip.parse().ok())
            .collect();
        // The API server gives the first address of its primary range to the `default/kubernetes`
        // Service it creates for itself (pkg/controlplane/controller/kubernetesservice).
        let kubernetes = cidrs
            .range_of(cidrs.primary())
            .and_then(|range| range.hosts().find(|a| cidrs.contains(a)));
        Self {
            cidrs: cidrs.clone(),
            taken: kubernetes.into_iter().collect(),
            pinned,
        }
    }

    /// The cluster the addresses are of.
    pub(super) fn cidrs(&self) -> &ServiceCidrs {
        &self.cidrs
    }

    /// Takes the addresses `sent` pins, or refuses the Service if one is taken already.
    pub(super) fn take_pinned(&mut self, sent: &ServiceSpec) -> Result<(), ApiError> {
        for ip in pinned_ips(sent) {
            let Ok(addr) = ip.parse::<IpAddr>() else {
                continue; // refused by the API server's model already
            };
            if !self.taken.insert(addr) {
                return Err(ApiError {
                    rule: "R3.17",
                    field: "spec.clusterIPs".into(),
                    detail: format!("failed to allocate IP {ip}: provided IP is already allocated"),
                });
            }
        }
        Ok(())
    }

    /// The `clusterIPs` of `stored` (the model's allocation of `sent` alone), with each address the
    /// client did not pin replaced by the next free one of its family.
    pub(super) fn assign(
        &mut self,
        sent: &ServiceSpec,
        stored: &ServiceSpec,
    ) -> Result<Vec<String>, ApiError> {
        let ips = stored.cluster_ips.clone().unwrap_or_default();
        if ips.iter().any(|ip| ip == "None") {
            return Ok(ips); // headless: nothing allocated
        }
        self.take_pinned(sent)?;
        let pinned = pinned_ips(sent).len();
        let mut out = Vec::with_capacity(ips.len());
        for (i, ip) in ips.iter().enumerate() {
            let addr = match ip.parse::<IpAddr>() {
                Ok(addr) if i >= pinned => addr,
                _ => {
                    out.push(ip.clone());
                    continue;
                }
            };
            let family = IpFamily::of(&addr);
            let next = self.cidrs.range_of(family).and_then(|range| {
                range.hosts().find(|a| {
                    self.cidrs.contains(a) && !self.taken.contains(a) && !self.pinned.contains(a)
                })
            });
            let Some(next) = next else {
                return Err(ApiError {
                    rule: "R3.17",
                    field: "spec.clusterIPs".into(),
                    detail: "failed to allocate a serviceIP: range is full".into(),
                });
            };
            self.taken.insert(next);
            out.push(next.to_string());
        }
        Ok(out)
    }
}

/// The addresses a client sets: `clusterIPs`, else `clusterIP` (empty and `None` pin nothing).
fn pinned_ips(spec: &ServiceSpec) -> Vec<String> {
    let ips = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.clone(),
        _ => spec.cluster_ip.clone().into_iter().collect(),
    };
    ips.into_iter()
        .filter(|ip| !ip.is_empty() && ip != "None")
        .collect()
}
