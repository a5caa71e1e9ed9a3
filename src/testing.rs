//! Test helpers: terse builders for Services and clusters.

use crate::cluster::{Cluster, ServiceCidrs};
use crate::domain::service::{Labels, Metadata, Selector, Service, ServiceSpec};

/// A ClusterIP Service spec with a selector, like Kubernetes' `MakeService`.
pub(crate) fn spec() -> ServiceSpec {
    ServiceSpec {
        type_: Some("ClusterIP".into()),
        selector: Selector::Labels,
        ..ServiceSpec::default()
    }
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(crate) fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| (*s).to_owned()).collect())
}

/// Builder methods on a spec.
pub(crate) trait SpecExt: Sized {
    fn with(self, f: impl FnOnce(&mut ServiceSpec)) -> Self;
    fn type_(self, t: &str) -> Self {
        self.with(|s| s.type_ = Some(t.into()))
    }
    fn ip(self, ip: &str) -> Self {
        self.with(|s| s.cluster_ip = Some(ip.into()))
    }
    fn ips(self, ips: &[&str]) -> Self {
        self.with(|s| s.cluster_ips = strings(ips))
    }
    fn families(self, f: &[&str]) -> Self {
        self.with(|s| s.ip_families = strings(f))
    }
    fn policy(self, p: &str) -> Self {
        self.with(|s| s.ip_family_policy = Some(p.into()))
    }
    fn headless(self) -> Self {
        self.ip("None")
    }
    fn selectorless(self) -> Self {
        self.with(|s| s.selector = Selector::Empty)
    }
}

impl SpecExt for ServiceSpec {
    fn with(mut self, f: impl FnOnce(&mut ServiceSpec)) -> Self {
        f(&mut self);
        self
    }
}

/// A Service `ns/name` with labels and this spec.
pub(crate) fn service(
    namespace: &str,
    name: &str,
    svc_labels: &[(&str, &str)],
    spec: ServiceSpec,
) -> Service {
    Service {
        metadata: Metadata {
            name: name.into(),
            namespace: namespace.into(),
            labels: labels(svc_labels),
            ..Metadata::default()
        },
        spec: Some(spec),
    }
}

pub(crate) fn cidrs(list: &str) -> ServiceCidrs {
    ServiceCidrs::parse(list).expect("test CIDRs")
}

/// Clusters by name: `v4`, `v6`, `v4v6`, `v6v4`, or `unknown`.
pub(crate) fn cluster(name: &str) -> Cluster {
    let list = match name {
        "v4" => "10.96.0.0/16",
        "v6" => "fd00:10:96::/112",
        "v4v6" => "10.96.0.0/16,fd00:10:96::/112",
        "v6v4" => "fd00:10:96::/112,10.96.0.0/16",
        _ => return Cluster::default(),
    };
    Cluster::with_cidrs(Some(cidrs(list)))
}
