//! The part of a core/v1 Service that the policy reads, and the dual-stack enums.
//!
//! Decoding only these fields (and skipping managedFields, annotations, ports ...) keeps reviews cheap.
//! Values stay raw strings where the client may send something invalid: the engine then leaves the field
//! to the API server, which rejects it with its own message (R1.9, R1.11, R1.12).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// A value that is not one of the field's enum values: the API server refuses it (R1.9, R1.11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a supported value")]
pub struct InvalidValue;

/// An IP family (`spec.ipFamilies[i]`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum IpFamily {
    /// IPv4.
    IPv4,
    /// IPv6.
    IPv6,
}

/// `spec.ipFamilyPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum IpFamilyPolicy {
    /// One family.
    SingleStack,
    /// Two families where the cluster has two, else one.
    PreferDualStack,
    /// Two families; rejected on a single-stack cluster (R3.13).
    RequireDualStack,
}

/// `spec.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    /// The default.
    ClusterIP,
    /// ClusterIP plus a port on every node.
    NodePort,
    /// NodePort plus an external load balancer.
    LoadBalancer,
    /// A DNS alias: no IPs, no families, no policy (R1.4).
    ExternalName,
}

/// A Service as the engine sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Object metadata (name, namespace, labels).
    #[serde(default)]
    pub metadata: Metadata,
    /// `spec`; absent only in malformed objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ServiceSpec>,
}

/// The metadata fields the policy reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Name; empty on CREATE with `generateName`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Name prefix for generated names.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub generate_name: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Labels, matched by `objectSelector`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
}

/// The spec fields of the dual-stack rules. `None` means absent (on UPDATE: inherit, R0.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `type`; absent is `ClusterIP` (R0.6).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// `clusterIP`: an IP, `None` (headless) or empty.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    /// `clusterIPs`: one per family, `[0] == clusterIP` (R1.7).
    #[serde(
        default,
        rename = "clusterIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub cluster_ips: Option<Vec<String>>,
    /// `ipFamilies`, primary first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_families: Option<Vec<String>>,
    /// `ipFamilyPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_policy: Option<String>,
    /// `selector`; empty or absent makes a headless Service "selectorless" (R3.12).
    #[serde(default, skip_serializing_if = "Selector::is_empty")]
    pub selector: Selector,
}

/// `spec.selector` as the rules read it: whether it names a label (R3.6, R3.12). Nothing reads the
/// labels themselves, so they are checked (a map of strings, as the API server's type is) and
/// dropped rather than copied out of every review.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Selector {
    /// Absent, `null` or `{}`: the Service selects no Pods.
    #[default]
    Empty,
    /// At least one label.
    Labels,
}

impl Selector {
    /// [`Selector::Empty`] or [`Selector::Labels`], by the number of labels.
    pub fn of(labels: usize) -> Self {
        if labels == 0 {
            Self::Empty
        } else {
            Self::Labels
        }
    }

    /// Selects no Pods.
    pub fn is_empty(&self) -> bool {
        *self == Self::Empty
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let labels = Option::<Labels>::deserialize(deserializer)?;
        Ok(Self::of(labels.map_or(0, |labels| labels.len())))
    }
}

/// Written as `{}` or as one placeholder label: what the rules see of it, for tests that build
/// JSON from a [`ServiceSpec`].
impl Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let labels: &[(&str, &str)] = match self {
            Self::Empty => &[],
            Self::Labels => &[("selected", "true")],
        };
        serializer.collect_map(labels.iter().copied())
    }
}

static EMPTY_SPEC: ServiceSpec = ServiceSpec {
    type_: None,
    cluster_ip: None,
    cluster_ips: None,
    ip_families: None,
    ip_family_policy: None,
    selector: Selector::Empty,
};

// === impl Service ===

/// A Service of the API's own type (a manifest `check` read, a list `audit` got from the cluster)
/// as the engine's input. A review's object is deserialized into [`Service`] directly.
impl From<&k8s_openapi::api::core::v1::Service> for Service {
    fn from(svc: &k8s_openapi::api::core::v1::Service) -> Self {
        let meta = &svc.metadata;
        Self {
            metadata: Metadata {
                name: meta.name.clone().unwrap_or_default(),
                generate_name: meta.generate_name.clone().unwrap_or_default(),
                namespace: meta.namespace.clone().unwrap_or_default(),
                labels: meta.labels.clone().unwrap_or_default(),
            },
            spec: svc.spec.as_ref().map(|spec| ServiceSpec {
                type_: spec.type_.clone(),
                cluster_ip: spec.cluster_ip.clone(),
                cluster_ips: spec.cluster_ips.clone(),
                ip_families: spec.ip_families.clone(),
                ip_family_policy: spec.ip_family_policy.clone(),
                selector: Selector::of(spec.selector.as_ref().map_or(0, |s| s.len())),
            }),
        }
    }
}

// === impl IpFamily ===

impl IpFamily {
    /// The family of an address.
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::IPv4,
            IpAddr::V6(_) => Self::IPv6,
        }
    }

    /// The other family.
    pub fn other(self) -> Self {
        match self {
            Self::IPv4 => Self::IPv6,
            Self::IPv6 => Self::IPv4,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IPv4 => "IPv4",
            Self::IPv6 => "IPv6",
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IpFamily {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "IPv4" => Ok(Self::IPv4),
            "IPv6" => Ok(Self::IPv6),
            _ => Err(InvalidValue),
        }
    }
}

// === impl IpFamilyPolicy ===

impl IpFamilyPolicy {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SingleStack => "SingleStack",
            Self::PreferDualStack => "PreferDualStack",
            Self::RequireDualStack => "RequireDualStack",
        }
    }

    /// Prefer or Require: the policies that may hold two families (R3.9).
    pub fn is_dual(self) -> bool {
        !matches!(self, Self::SingleStack)
    }
}

impl fmt::Display for IpFamilyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IpFamilyPolicy {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "SingleStack" => Ok(Self::SingleStack),
            "PreferDualStack" => Ok(Self::PreferDualStack),
            "RequireDualStack" => Ok(Self::RequireDualStack),
            _ => Err(InvalidValue),
        }
    }
}

// === impl ServiceType ===

impl ServiceType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
            Self::ExternalName => "ExternalName",
        }
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Service (accessors) ===

impl Service {
    /// `namespace/name` for messages (`generateName` + `*` when the name is not yet known).
    pub fn display_name(&self, namespace: &str) -> String {
        let ns = if self.metadata.namespace.is_empty() {
            namespace
        } else {
            &self.metadata.namespace
        };
        let name = if self.metadata.name.is_empty() && !self.metadata.generate_name.is_empty() {
            format!("{}*", self.metadata.generate_name)
        } else {
            self.metadata.name.clone()
        };
        format!("{ns}/{name}")
    }

    /// The spec, or an empty one.
    pub fn spec(&self) -> &ServiceSpec {
        self.spec.as_ref().unwrap_or(&EMPTY_SPEC)
    }

    /// The type (see [`ServiceSpec::service_type`]).
    pub fn service_type(&self) -> Option<ServiceType> {
        self.spec().service_type()
    }
}

// === impl ServiceSpec ===

impl ServiceSpec {
    /// The type; absent or empty is ClusterIP (R0.6). `None` for an unknown type (the API server rejects it, R1.18).
    pub fn service_type(&self) -> Option<ServiceType> {
        match self.type_.as_deref() {
            None | Some("") | Some("ClusterIP") => Some(ServiceType::ClusterIP),
            Some("NodePort") => Some(ServiceType::NodePort),
            Some("LoadBalancer") => Some(ServiceType::LoadBalancer),
            Some("ExternalName") => Some(ServiceType::ExternalName),
            Some(_) => None,
        }
    }

    /// `clusterIP`, with empty meaning unset.
    pub fn cluster_ip(&self) -> Option<&str> {
        self.cluster_ip.as_deref().filter(|ip| !ip.is_empty())
    }

    /// `clusterIPs`, with empty meaning unset.
    pub fn cluster_ips(&self) -> Option<&[String]> {
        self.cluster_ips.as_deref().filter(|ips| !ips.is_empty())
    }

    /// `ipFamilies`, with empty meaning unset.
    pub fn ip_families_raw(&self) -> Option<&[String]> {
        self.ip_families.as_deref().filter(|f| !f.is_empty())
    }

    /// The families, `Ok(None)` when unset, `Err` when any value is not a family (R1.9).
    pub fn ip_families(&self) -> Result<Option<Vec<IpFamily>>, InvalidValue> {
        self.ip_families_raw()
            .map(|raw| raw.iter().map(|f| f.parse()).collect())
            .transpose()
    }

    /// The policy, `Ok(None)` when unset, `Err` when not a known value (R1.11).
    pub fn ip_family_policy(&self) -> Result<Option<IpFamilyPolicy>, InvalidValue> {
        self.ip_family_policy
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .transpose()
    }

    /// Headless as the allocator sees it: `clusterIP: None` (R3.6, R3.12 test the singular field),
    /// or `clusterIPs: [None]` (`isHeadlessService`, R1.12).
    pub fn is_headless(&self) -> bool {
        self.cluster_ip() == Some("None")
            || self
                .cluster_ips()
                .is_some_and(|ips| ips.len() == 1 && ips[0] == "None")
    }

    /// No selector, or an empty one (R3.6, R3.12).
    pub fn is_selectorless(&self) -> bool {
        self.selector.is_empty()
    }

    /// The pinned IPs that decide families (R3.10): `clusterIPs`, else `[clusterIP]`, without `None`.
    /// `Err` when one is not an IP: the API server rejects it (R1.12), so the engine stays out of it.
    pub fn pinned_ips(&self) -> Result<Vec<IpAddr>, InvalidValue> {
        let raw: Vec<&str> = match (self.cluster_ips(), self.cluster_ip()) {
            (Some(ips), _) => ips.iter().map(String::as_str).collect(),
            (None, Some(ip)) => vec![ip],
            (None, None) => vec![],
        };
        raw.into_iter()
            .filter(|ip| *ip != "None")
            .map(|ip| ip.parse().map_err(|_| InvalidValue))
            .collect()
    }
}
