//! A review's `object` and `oldObject`, kept as JSON text until the review's `kind` says what they
//! are: a Service is then read once, and anything else never is.
//!
//! kube's `AdmissionReview<T>` asks `T: Resource`. `DynamicObject` would do, but it parses every
//! object into a generic tree first (serde's `flatten`): 140 k instructions a typical review, 2.5
//! times the TLS and HTTP/2 work of the same request, for a tree the webhook then throws away.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{NamespaceResourceScope, Resource};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The JSON of an object of a review.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(transparent)]
pub(super) struct RawObject {
    pub(super) json: Box<RawValue>,
    /// Only for kube's `Resource` bound; never read.
    #[serde(skip)]
    meta: ObjectMeta,
}

/// What kube's `Resource` bound asks; the webhook reviews v1 Services.
impl Resource for RawObject {
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
