//! What the webhook knows of the cluster: its service CIDRs and namespace labels, as one snapshot.
//!
//! The snapshot is a plain value: the request path reads the latest one without awaiting anything, and
//! a watcher (or the command line) publishes a new one when something changes.

pub mod watch;

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::domain::policy::LabelLookup;
use crate::domain::service::{IpFamily, Labels};

/// The service IP ranges of the cluster (`--service-cluster-ip-range`), primary family first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceCidrs {
    primary: IpFamily,
    nets: Vec<IpNet>,
}

/// Why a list of service CIDRs was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No CIDR at all.
    #[error("--service-cidrs needs one or two CIDRs")]
    Empty,
    /// More than one per family or more than two.
    #[error("--service-cidrs takes at most one CIDR per family, primary first: {0}")]
    TooMany(String),
    /// Not a CIDR.
    #[error("--service-cidrs: {0:?} is not a CIDR (e.g. 10.96.0.0/16 or fd00:10:96::/112)")]
    Parse(String),
}

/// The cluster snapshot the engine decides against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cluster {
    /// The service ranges; `None` makes no cluster assumptions.
    pub service_cidrs: Option<ServiceCidrs>,
    /// Labels of namespaces seen so far; an unknown namespace has only `kubernetes.io/metadata.name`.
    pub namespaces: HashMap<String, Labels>,
}

/// The ServiceCIDR object that mirrors the API server's `--service-cluster-ip-range` (rules §7).
pub const DEFAULT_SERVICE_CIDR: &str = "kubernetes";

/// The label every namespace carries since Kubernetes 1.21.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

// === impl ServiceCidrs ===

impl ServiceCidrs {
    /// One or two CIDRs of different families; the first one's family is the primary.
    pub fn new(nets: Vec<IpNet>) -> Result<Self, CidrError> {
        let first = nets.first().ok_or(CidrError::Empty)?;
        let primary = IpFamily::of(&first.addr());
        let same_family = nets.len() == 2 && IpFamily::of(&nets[1].addr()) == primary;
        if nets.len() > 2 || same_family {
            let list: Vec<String> = nets.iter().map(ToString::to_string).collect();
            return Err(CidrError::TooMany(list.join(",")));
        }
        let nets = nets.into_iter().map(|n| n.trunc()).collect();
        Ok(Self { primary, nets })
    }

    /// Parses `CIDR[,CIDR]`.
    pub fn parse(list: &str) -> Result<Self, CidrError> {
        let nets = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|_| CidrError::Parse(s.to_owned())))
            .collect::<Result<Vec<IpNet>, _>>()?;
        Self::new(nets)
    }

    /// Folds ServiceCIDR objects (name → `spec.cidrs`) as rules §7 says: the object named
    /// `kubernetes` mirrors `--service-cluster-ip-range` and is authoritative for the families and the
    /// primary (its first CIDR); other objects extend the ranges of those families. `None` without a
    /// usable `kubernetes` object: then no cluster assumptions are made.
    pub fn from_service_cidr_objects(
        objects: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Option<Self> {
        let parse = |list: &Vec<String>| -> Vec<IpNet> {
            list.iter().filter_map(|c| c.parse().ok()).collect()
        };
        let default = parse(objects.get(DEFAULT_SERVICE_CIDR)?);
        let primary = IpFamily::of(&default.first()?.addr());
        let families: Vec<IpFamily> = default.iter().map(|n| IpFamily::of(&n.addr())).collect();
        let mut nets: Vec<IpNet> = default.iter().map(IpNet::trunc).collect();
        for (name, list) in objects {
            if name == DEFAULT_SERVICE_CIDR {
                continue;
            }
            for net in parse(list) {
                let net = net.trunc();
                if families.contains(&IpFamily::of(&net.addr())) && !nets.contains(&net) {
                    nets.push(net);
                }
            }
        }
        Some(Self { primary, nets })
    }

    /// One cluster of each shape (IPv4, IPv6, and dual-stack with either primary), each range
    /// holding every address: what the webhook must assume of a cluster whose ranges it does not know.
    pub fn every_shape() -> Vec<Self> {
        let (v4, v6) = (
            IpNet::from(Ipv4Net::default()),
            IpNet::from(Ipv6Net::default()),
        );
        [vec![v4], vec![v6], vec![v4, v6], vec![v6, v4]]
            .into_iter()
            .filter_map(|nets| Self::new(nets).ok())
            .collect()
    }

    /// The family of the first range: what the API server defaults to (R3.15).
    pub fn primary(&self) -> IpFamily {
        self.primary
    }

    /// Whether the cluster allocates from this family (R3.10, R3.14).
    pub fn has(&self, family: IpFamily) -> bool {
        self.nets.iter().any(|n| IpFamily::of(&n.addr()) == family)
    }

    /// Two families: a dual-stack cluster (R3.13).
    pub fn is_dual(&self) -> bool {
        self.has(IpFamily::IPv4) && self.has(IpFamily::IPv6)
    }

    /// The families the cluster has, primary first.
    pub fn families(&self) -> Vec<IpFamily> {
        let mut out = vec![self.primary];
        if self.has(self.primary.other()) {
            out.push(self.primary.other());
        }
        out
    }

    /// The ranges of a family, comma-separated, for messages.
    pub fn ranges_of(&self, family: IpFamily) -> String {
        let ranges: Vec<String> = self
            .nets
            .iter()
            .filter(|n| IpFamily::of(&n.addr()) == family)
            .map(ToString::to_string)
            .collect();
        ranges.join(",")
    }

    /// The first range of a family.
    pub fn range_of(&self, family: IpFamily) -> Option<&IpNet> {
        self.nets.iter().find(|n| IpFamily::of(&n.addr()) == family)
    }

    /// Whether an IP may be allocated: inside a range and, as in the API server's bitmap allocator,
    /// neither the network address nor (for IPv4) the broadcast address.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.nets.iter().any(|n| {
            n.contains(ip)
                && *ip != n.network()
                && !(matches!(n, IpNet::V4(v4) if v4.prefix_len() < 31) && *ip == n.broadcast())
        })
    }

    /// The ranges, primary first.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

// === impl Cluster ===

impl Cluster {
    /// A snapshot with these service ranges and no namespace labels.
    pub fn with_cidrs(service_cidrs: Option<ServiceCidrs>) -> Self {
        Self {
            service_cidrs,
            namespaces: HashMap::new(),
        }
    }

    /// The labels of a namespace (borrowed, not copied: this is looked up for every review); an
    /// unknown one has only its automatic name label.
    pub fn namespace_labels<'a>(&'a self, namespace: &'a str) -> NamespaceLabels<'a> {
        NamespaceLabels {
            stored: self.namespaces.get(namespace),
            name: namespace,
        }
    }
}

/// A namespace's labels as selectors see them: the stored ones, and `kubernetes.io/metadata.name`
/// (which the API server sets on every namespace) when the store does not have it.
#[derive(Debug)]
pub struct NamespaceLabels<'a> {
    stored: Option<&'a Labels>,
    name: &'a str,
}

impl LabelLookup for NamespaceLabels<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        let stored = self.stored.and_then(|labels| labels.label(key));
        stored.or((key == NAMESPACE_NAME_LABEL).then_some(self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::labels;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn primary_is_the_first_cidr() {
        let v4v6 = ServiceCidrs::parse("10.96.0.0/16,fd00::/108").unwrap();
        assert_eq!(v4v6.primary(), IpFamily::IPv4);
        assert_eq!(v4v6.families(), vec![IpFamily::IPv4, IpFamily::IPv6]);
        let v6v4 = ServiceCidrs::parse("fd00::/108, 10.96.0.0/16").unwrap();
        assert_eq!(v6v4.primary(), IpFamily::IPv6);
        assert_eq!(v6v4.families(), vec![IpFamily::IPv6, IpFamily::IPv4]);
        assert!(v6v4.is_dual());
        let v4 = ServiceCidrs::parse("10.0.0.0/24").unwrap();
        assert!(!v4.is_dual());
        assert!(!v4.has(IpFamily::IPv6));
    }

    #[test]
    fn refuses_bad_lists() {
        assert_eq!(ServiceCidrs::parse(""), Err(CidrError::Empty));
        assert!(matches!(
            ServiceCidrs::parse("10.0.0.0/8,10.1.0.0/16"),
            Err(CidrError::TooMany(_))
        ));
        assert!(matches!(
            ServiceCidrs::parse("10.0.0.0/8,fd00::/64,fd01::/64"),
            Err(CidrError::TooMany(_))
        ));
        assert!(matches!(
            ServiceCidrs::parse("10.0.0.0"),
            Err(CidrError::Parse(_))
        ));
    }

    #[test]
    fn contains_excludes_network_and_broadcast() {
        let c = ServiceCidrs::parse("10.96.0.0/24,fd00::/120").unwrap();
        assert!(c.contains(&ip("10.96.0.1")));
        assert!(c.contains(&ip("10.96.0.254")));
        assert!(!c.contains(&ip("10.96.0.0")));
        assert!(!c.contains(&ip("10.96.0.255")));
        assert!(!c.contains(&ip("10.97.0.1")));
        assert!(c.contains(&ip("fd00::ff")));
        assert!(!c.contains(&ip("fd00::")));
        assert!(!c.contains(&ip("fd00::100")));
    }

    #[test]
    fn service_cidr_objects_fold_as_rules_7_says() {
        let objs = |pairs: &[(&str, &[&str])]| -> std::collections::BTreeMap<String, Vec<String>> {
            pairs
                .iter()
                .map(|(n, c)| ((*n).to_owned(), c.iter().map(|s| (*s).to_owned()).collect()))
                .collect()
        };
        // No default object: no assumptions.
        assert_eq!(
            ServiceCidrs::from_service_cidr_objects(&objs(&[("extra", &["10.0.0.0/24"])])),
            None
        );
        let c = ServiceCidrs::from_service_cidr_objects(&objs(&[
            ("kubernetes", &["fd00:10:96::/112", "10.96.0.0/16"]),
            ("extra-v4", &["10.97.0.0/24"]),
            ("only-v6", &["fd00:99::/120"]),
        ]))
        .unwrap();
        assert_eq!(c.primary(), IpFamily::IPv6);
        assert!(c.is_dual());
        assert!(
            c.contains(&ip("10.97.0.5")),
            "extra ranges of a configured family count"
        );
        assert!(c.contains(&ip("fd00:99::5")));
        assert_eq!(c.ranges_of(IpFamily::IPv4), "10.96.0.0/16,10.97.0.0/24");
        // A family only in a non-default object is not usable (rules §7).
        let v4 = ServiceCidrs::from_service_cidr_objects(&objs(&[
            ("kubernetes", &["10.96.0.0/16"]),
            ("v6", &["fd00::/64"]),
        ]))
        .unwrap();
        assert!(!v4.is_dual());
        assert!(!v4.contains(&ip("fd00::1")));
    }

    #[test]
    fn unknown_namespace_has_its_name_label() {
        let c = Cluster::default();
        let labels = c.namespace_labels("prod-a");
        assert_eq!(labels.label(NAMESPACE_NAME_LABEL), Some("prod-a"));
        assert_eq!(labels.label("team"), None);
    }

    #[test]
    fn known_namespace_has_its_labels_and_its_name_label() {
        let mut c = Cluster::default();
        c.namespaces
            .insert("prod-a".to_owned(), labels(&[("team", "web")]));
        let prod = c.namespace_labels("prod-a");
        assert_eq!(prod.label("team"), Some("web"));
        assert_eq!(prod.label(NAMESPACE_NAME_LABEL), Some("prod-a"));
        assert_eq!(prod.label("tier"), None);
        // The stored value wins (the API server's own label always equals the name anyway).
        c.namespaces.insert(
            "odd".to_owned(),
            labels(&[(NAMESPACE_NAME_LABEL, "stored")]),
        );
        assert_eq!(
            c.namespace_labels("odd").label(NAMESPACE_NAME_LABEL),
            Some("stored")
        );
    }
}
