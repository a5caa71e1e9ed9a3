//! The in-process defaults beside the webhook: a MutatingAdmissionPolicy `<name>-defaults` that
//! sets on CREATE what `/mutate` would ([`in_process_defaults`]), so that a create the defaults
//! complete is not sent to the webhook at all, and its binding, whose param is the `kubernetes`
//! ServiceCIDR (the cluster's families, rules §7). An installation creates the binding, which no
//! replica writes; a ready replica applies the policy (server-side apply, owned by the binding)
//! after the webhook configurations, and again when the policy changes or it is found missing.
//! Deleting the binding unregisters it. `webhook-configurations --policy` prints both. Pure: JSON
//! objects.
//!
//! Nothing depends on it being there: without it (no binding, a cluster before Kubernetes 1.36,
//! the param missing, its CEL failing under `failurePolicy: Ignore`) the fields stay unset and the
//! webhook's `may-patch` condition sends the create to `/mutate`, which sets them.

use serde_json::{Value, json};

use crate::domain::cel::export::in_process_defaults;
use crate::domain::policy::Policy;

use super::configuration::Registration;

/// The match condition of a policy that has no defaults to set.
const NO_DEFAULTS: &str = "no-defaults";
const API_VERSION: &str = "admissionregistration.k8s.io/v1";
/// The param: the ServiceCIDR that mirrors `--service-cluster-ip-range`.
const PARAM: &str = crate::cluster::DEFAULT_SERVICE_CIDR;

/// The policy's spec for `policy`: its CREATE defaults, or, when it has none, a spec that does
/// nothing (a MutatingAdmissionPolicy must have a mutation).
pub fn spec(policy: &Policy) -> Value {
    in_process_defaults(policy).unwrap_or_else(|| {
        json!({
            "failurePolicy": "Ignore",
            "paramKind": {"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR"},
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["services"],
            }]},
            "matchConditions": [{"name": NO_DEFAULTS, "expression": "false"}],
            "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": "[]"}}],
            "reinvocationPolicy": "Never",
        })
    })
}

impl Registration {
    /// The name of the policy and of its binding.
    pub fn defaults_name(&self) -> String {
        format!("{}-defaults", self.name)
    }

    /// The MutatingAdmissionPolicy with this spec; owned by the binding of this `uid` when given
    /// (the garbage collector then deletes it with the binding).
    pub fn defaults_policy(&self, spec: Value, binding_uid: Option<&str>) -> Value {
        let mut metadata = self.defaults_metadata();
        if let Some(uid) = binding_uid {
            metadata["ownerReferences"] = json!([{
                "apiVersion": API_VERSION,
                "kind": "MutatingAdmissionPolicyBinding",
                "name": self.defaults_name(),
                "uid": uid,
            }]);
        }
        json!({
            "apiVersion": API_VERSION,
            "kind": "MutatingAdmissionPolicy",
            "metadata": metadata,
            "spec": spec,
        })
    }

    /// Its binding: the namespaces the webhook configurations send (the same selector), the
    /// `kubernetes` ServiceCIDR as param, and no policy run where it is missing (the webhook then
    /// sets the defaults).
    pub fn defaults_binding(&self) -> Value {
        json!({
            "apiVersion": API_VERSION,
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": self.defaults_metadata(),
            "spec": {
                "policyName": self.defaults_name(),
                "paramRef": {"name": PARAM, "parameterNotFoundAction": "Allow"},
                "matchResources": {"namespaceSelector": self.namespace_selector()},
            },
        })
    }

    fn defaults_metadata(&self) -> Value {
        json!({
            "name": self.defaults_name(),
            "labels": {"app.kubernetes.io/name": "dualstack-webhook"},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::{Endpoint, FailurePolicy};

    fn registration() -> Registration {
        Registration {
            name: "dualstack-webhook".to_owned(),
            endpoint: Endpoint::Service {
                namespace: "platform-system".to_owned(),
                name: "dualstack-webhook".to_owned(),
                port: 443,
            },
            ca_bundle: None,
            failure_policy: FailurePolicy::Fail,
            timeout_seconds: 5,
            match_conditions: None,
        }
    }

    fn policy(yaml: &str) -> Policy {
        Policy::from_yaml(&format!(
            "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n{yaml}"
        ))
        .unwrap()
    }

    #[test]
    fn the_binding_takes_the_kubernetes_service_cidr_and_the_webhooks_namespaces() {
        let got = registration().defaults_binding();
        let want = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": "dualstack-webhook-defaults",
                         "labels": {"app.kubernetes.io/name": "dualstack-webhook"}},
            "spec": {
                "policyName": "dualstack-webhook-defaults",
                "paramRef": {"name": "kubernetes", "parameterNotFoundAction": "Allow"},
                "matchResources": {"namespaceSelector": {"matchExpressions": [{
                    "key": "kubernetes.io/metadata.name", "operator": "NotIn",
                    "values": ["kube-system", "platform-system"],
                }]}},
            },
        });
        assert_eq!(got, want);
    }

    #[test]
    fn the_manifests_ship_this_binding() {
        use serde::Deserialize as _;
        let shipped: Vec<Value> = serde_yaml_ng::Deserializer::from_str(include_str!(
            "../../manifests/base/webhooks.yaml"
        ))
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc| {
            doc["kind"]
                .as_str()
                .unwrap()
                .starts_with("MutatingAdmissionPolicy")
        })
        .collect();
        let mut r = registration();
        r.endpoint = Endpoint::Service {
            namespace: "dualstack-webhook".to_owned(),
            name: "dualstack-webhook".to_owned(),
            port: 443,
        };
        assert_eq!(shipped, [r.defaults_binding()]);
    }

    #[test]
    fn the_policy_is_owned_by_its_binding_and_does_nothing_without_defaults() {
        let r = registration();
        let with = r.defaults_policy(
            spec(&policy("defaults: {ipFamilyPolicy: PreferDualStack}\n")),
            Some("1234"),
        );
        assert_eq!(
            with["metadata"],
            json!({"name": "dualstack-webhook-defaults",
                   "labels": {"app.kubernetes.io/name": "dualstack-webhook"},
                   "ownerReferences": [{"apiVersion": "admissionregistration.k8s.io/v1",
                       "kind": "MutatingAdmissionPolicyBinding",
                       "name": "dualstack-webhook-defaults", "uid": "1234"}]})
        );
        assert_eq!(with["spec"]["failurePolicy"], "Ignore");
        let without = spec(&policy(""));
        assert_eq!(
            without["matchConditions"],
            json!([{"name": "no-defaults", "expression": "false"}])
        );
        assert_eq!(
            without["paramKind"],
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR"})
        );
    }
}
