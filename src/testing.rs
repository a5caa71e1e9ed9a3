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

/// Any JSON value: every scalar, strings of up to `string_len` characters (any printable ones, or
/// the quotes, backslashes, control characters and Latin-1 that need escaping), arrays and objects
/// (keys of up to six printable characters) nested up to `depth` levels.
pub(crate) fn any_json(
    depth: u32,
    string_len: usize,
) -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    use proptest::string::string_regex;
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        string_regex(&format!("\\PC{{0,{string_len}}}"))
            .unwrap()
            .prop_map(Value::String),
        string_regex(&format!(
            "[\"\\\\/\u{0}-\u{1f}a-z\u{7f}-\u{ff}]{{0,{string_len}}}"
        ))
        .unwrap()
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 8 * depth, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A few bytes inserted, removed or overwritten: what JSON close to valid looks like.
pub(crate) fn corruptions() -> impl proptest::strategy::Strategy<Value = Vec<Edit>> {
    use proptest::prelude::*;
    let bytes = &b"{}[],:\"\\ 0-.eEtfnul\x01\xffau"[..];
    prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            0..3u8,
            prop::sample::select(bytes),
        ),
        1..4,
    )
}

/// Where, how (0 insert, 1 remove, 2 overwrite or append) and which byte.
pub(crate) type Edit = (proptest::sample::Index, u8, u8);

pub(crate) fn corrupt(body: &mut Vec<u8>, edits: Vec<Edit>) {
    for (at, kind, byte) in edits {
        let at = at.index(body.len() + 1);
        match kind {
            0 => body.insert(at, byte),
            1 if at < body.len() => {
                body.remove(at);
            }
            _ if at < body.len() => body[at] = byte,
            _ => body.push(byte),
        }
    }
}
