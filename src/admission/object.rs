//! A review's `object` and `oldObject` as the review's one pass reads them: the metadata the policy
//! reads (every Kubernetes object's metadata is an ObjectMeta, whatever its kind), the `spec` kept
//! as JSON text until the review's `kind` says it is a Service's.
//!
//! kube's `AdmissionReview<T>` asks `T: Resource`. `DynamicObject` would do, but it parses every
//! object into a generic tree first (serde's `flatten`): 140 k instructions a typical review, 2.5
//! times the TLS and HTTP/2 work of the same request, for a tree the webhook then throws away.
//! Keeping the whole object as text instead reads it twice (once to find its end, once for the
//! Service): its annotations and managedFields, most of a typical object, are skipped once here.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{NamespaceResourceScope, Resource};
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::domain::service::{Metadata, Service};

/// An object of a review: its metadata, and its `spec` as JSON text.
pub(super) struct ReviewObject {
    metadata: Metadata,
    spec: Option<Box<RawValue>>,
    /// Only for kube's `Resource` bound; never read.
    meta: ObjectMeta,
}

impl ReviewObject {
    /// The Service this object is, its spec read now.
    pub(super) fn into_service(self) -> Result<Service, serde_json::Error> {
        let spec = self.spec.map(|spec| serde_json::from_str(spec.get()));
        Ok(Service {
            metadata: self.metadata,
            spec: spec.transpose()?.map(|ObjectOnly(spec)| spec),
        })
    }
}

impl<'de> Deserialize<'de> for ReviewObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ObjectOnly(Members { metadata, spec }) = ObjectOnly::deserialize(deserializer)?;
        Ok(Self {
            metadata,
            spec,
            meta: ObjectMeta::default(),
        })
    }
}

/// The members read; anything else is skipped unread (the API server has validated the object).
#[derive(Deserialize)]
struct Members {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: Option<Box<RawValue>>,
}

/// `T` read from a JSON object only: serde's derived `Deserialize` reads a struct from a JSON array
/// too (members in order), and a patch on `/spec/...` cannot apply to an array.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(ObjectOnly)
    }
}

/// What kube's `Resource` bound asks; the webhook reviews v1 Services.
impl Resource for ReviewObject {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind((): &()) -> Cow<'_, str> {
        "Service".into()
    }
    fn group((): &()) -> Cow<'_, str> {
        "".into()
    }
    fn version((): &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural((): &()) -> Cow<'_, str> {
        "services".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}
