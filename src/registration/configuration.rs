//! The two admission configurations the webhook registers (`serve --register-webhooks`) and
//! prints (`webhook-configurations`): /mutate fills in the dual-stack fields a Service left unset,
//! /validate judges the final, allocated Service, each called only when the policy's match
//! conditions say it may act. Pure: built from flags, the CA bundle and the policy.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};

use crate::cluster::NAMESPACE_NAME_LABEL;
use crate::domain::cel::{Cel, conditions};
use crate::domain::policy::Policy;

/// The name of the webhook entry in the MutatingWebhookConfiguration.
pub const MUTATE_WEBHOOK: &str = "mutate.dualstack-webhook.io";
/// The name of the webhook entry in the ValidatingWebhookConfiguration.
pub const VALIDATE_WEBHOOK: &str = "validate.dualstack-webhook.io";
/// The namespace the control plane runs in: never sent to the webhook.
pub const CONTROL_PLANE_NAMESPACE: &str = "kube-system";

/// Everything the configurations depend on.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    /// The name of both configuration objects.
    pub name: String,
    /// Where the API server sends the reviews.
    pub endpoint: Endpoint,
    /// The PEM CA bundle the API server verifies the serving certificate with; `None` leaves
    /// `caBundle` out (the API server then uses its system roots).
    pub ca_bundle: Option<Vec<u8>>,
    /// `Fail` or `Ignore`: what the API server does when the webhook cannot answer.
    pub failure_policy: FailurePolicy,
    /// How long the API server waits for an answer (1–30 s).
    pub timeout_seconds: i32,
    /// When the API server calls each webhook; `None` sends every Service write to both.
    pub match_conditions: Option<MatchConditions>,
}

/// The `matchConditions` of both webhooks, generated from the policy (`domain::cel::conditions`):
/// the API server calls `/mutate` only when the webhook may patch, `/validate` only when a rule may
/// find a violation. All of a webhook's conditions must hold for it to be called.
#[derive(Clone, Debug, PartialEq)]
pub struct MatchConditions {
    /// The conditions of the mutating webhook.
    pub mutate: Vec<MatchCondition>,
    /// The conditions of the validating webhook.
    pub validate: Vec<MatchCondition>,
}

impl MatchConditions {
    /// The conditions under which `policy` may act.
    pub fn of(policy: &Policy) -> Self {
        let not_exempt = ("namespace-not-exempt", conditions::not_exempt(policy));
        let build = |own: (&str, Cel)| {
            [not_exempt.clone(), own]
                .into_iter()
                .filter(|(_, cel)| *cel != Cel::Const(true))
                .map(|(name, cel)| MatchCondition {
                    name: name.to_owned(),
                    expression: cel.render(),
                })
                .collect()
        };
        Self {
            mutate: build(("may-patch", conditions::may_patch(policy))),
            validate: build(("may-find-violation", conditions::may_find(policy))),
        }
    }
}

/// Where the API server sends the reviews.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The webhook's Service (`clientConfig.service`), in the namespace it runs in.
    Service {
        /// The Service's namespace: the webhook's own, never sent to it.
        namespace: String,
        /// The Service's name.
        name: String,
        /// The Service's port.
        port: i32,
    },
    /// A URL (`clientConfig.url`, the path appended), for a webhook outside the cluster.
    Url(String),
}

/// `failurePolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    /// A write the webhook cannot judge is refused.
    Fail,
    /// A write the webhook cannot judge is admitted as the client sent it.
    Ignore,
}

impl FailurePolicy {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "Fail",
            Self::Ignore => "Ignore",
        }
    }
}

impl Endpoint {
    /// The host name the API server verifies the serving certificate against: `<svc>.<ns>.svc`
    /// for a Service (what kube-apiserver dials), the URL's host otherwise.
    pub fn server_name(&self) -> String {
        match self {
            Self::Service {
                namespace, name, ..
            } => format!("{name}.{namespace}.svc"),
            Self::Url(url) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
                let authority = rest.split('/').next().unwrap_or_default();
                // `[::1]:8443` → `::1`; `host:8443` → `host`.
                match authority.strip_prefix('[') {
                    Some(v6) => v6.split(']').next().unwrap_or_default().to_owned(),
                    None => authority.split(':').next().unwrap_or_default().to_owned(),
                }
            }
        }
    }

    fn client_config(&self, path: &str, ca_bundle: Option<&[u8]>) -> WebhookClientConfig {
        let ca_bundle = ca_bundle.map(|pem| ByteString(pem.to_vec()));
        match self {
            Self::Service {
                namespace,
                name,
                port,
            } => WebhookClientConfig {
                service: Some(ServiceReference {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    path: Some(path.to_owned()),
                    port: Some(*port),
                }),
                ca_bundle,
                url: None,
            },
            Self::Url(base) => WebhookClientConfig {
                url: Some(format!("{}{path}", base.trim_end_matches('/'))),
                ca_bundle,
                service: None,
            },
        }
    }
}

impl Registration {
    /// The MutatingWebhookConfiguration: /mutate on Service CREATE and UPDATE.
    pub fn mutating(&self) -> MutatingWebhookConfiguration {
        MutatingWebhookConfiguration {
            metadata: self.metadata(),
            webhooks: Some(self.mutating_webhooks()),
        }
    }

    /// The ValidatingWebhookConfiguration: /validate on Service CREATE and UPDATE.
    pub fn validating(&self) -> ValidatingWebhookConfiguration {
        ValidatingWebhookConfiguration {
            metadata: self.metadata(),
            webhooks: Some(self.validating_webhooks()),
        }
    }

    /// The webhooks of [`Registration::mutating`].
    pub fn mutating_webhooks(&self) -> Vec<MutatingWebhook> {
        vec![MutatingWebhook {
            name: MUTATE_WEBHOOK.to_owned(),
            client_config: self
                .endpoint
                .client_config("/mutate", self.ca_bundle.as_deref()),
            rules: Some(service_writes()),
            // The patches depend only on the request and the policy, and a second call on the
            // webhook's own output changes nothing (fields it set are no longer unset): re-invocation
            // after other mutating webhooks is safe and fills fields they cleared.
            reinvocation_policy: Some("IfNeeded".to_owned()),
            namespace_selector: Some(self.namespace_selector()),
            object_selector: Some(LabelSelector::default()),
            side_effects: "None".to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            timeout_seconds: Some(self.timeout_seconds),
            failure_policy: Some(self.failure_policy.as_str().to_owned()),
            match_policy: Some("Equivalent".to_owned()),
            match_conditions: self
                .match_conditions
                .as_ref()
                .map(|c| c.mutate.clone())
                .filter(|c| !c.is_empty()),
        }]
    }

    /// The webhooks of [`Registration::validating`].
    pub fn validating_webhooks(&self) -> Vec<ValidatingWebhook> {
        vec![ValidatingWebhook {
            name: VALIDATE_WEBHOOK.to_owned(),
            client_config: self
                .endpoint
                .client_config("/validate", self.ca_bundle.as_deref()),
            rules: Some(service_writes()),
            namespace_selector: Some(self.namespace_selector()),
            object_selector: Some(LabelSelector::default()),
            side_effects: "None".to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            timeout_seconds: Some(self.timeout_seconds),
            failure_policy: Some(self.failure_policy.as_str().to_owned()),
            match_policy: Some("Equivalent".to_owned()),
            match_conditions: self
                .match_conditions
                .as_ref()
                .map(|c| c.validate.clone())
                .filter(|c| !c.is_empty()),
        }]
    }

    /// The namespaces never sent to the webhook: the control plane's, and the webhook's own, so a
    /// broken webhook can always be repaired (and never judges itself).
    pub fn never_sent(&self) -> Vec<String> {
        let mut names = vec![CONTROL_PLANE_NAMESPACE.to_owned()];
        if let Endpoint::Service { namespace, .. } = &self.endpoint
            && namespace != CONTROL_PLANE_NAMESPACE
        {
            names.push(namespace.clone());
        }
        names
    }

    pub(super) fn namespace_selector(&self) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: NAMESPACE_NAME_LABEL.to_owned(),
                operator: "NotIn".to_owned(),
                values: Some(self.never_sent()),
            }]),
            match_labels: None,
        }
    }

    fn metadata(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_owned(),
                "dualstack-webhook".to_owned(),
            )])),
            ..ObjectMeta::default()
        }
    }
}

/// Service CREATE and UPDATE in the core group, v1 (other versions through `matchPolicy`).
fn service_writes() -> Vec<RuleWithOperations> {
    vec![RuleWithOperations {
        operations: Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()]),
        api_groups: Some(vec![String::new()]),
        api_versions: Some(vec!["v1".to_owned()]),
        resources: Some(vec!["services".to_owned()]),
        scope: Some("Namespaced".to_owned()),
    }]
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn in_cluster(namespace: &str) -> Registration {
        Registration {
            name: "dualstack-webhook".to_owned(),
            endpoint: Endpoint::Service {
                namespace: namespace.to_owned(),
                name: "dualstack-webhook".to_owned(),
                port: 443,
            },
            ca_bundle: Some(b"PEM".to_vec()),
            failure_policy: FailurePolicy::Fail,
            timeout_seconds: 5,
            match_conditions: None,
        }
    }

    #[test]
    fn the_mutating_configuration_is_what_the_api_server_is_given() {
        let got = serde_json::to_value(in_cluster("platform-system").mutating()).unwrap();
        let want = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "dualstack-webhook", "labels": {"app.kubernetes.io/name": "dualstack-webhook"}},
            "webhooks": [{
                "name": "mutate.dualstack-webhook.io",
                "clientConfig": {
                    "service": {"namespace": "platform-system", "name": "dualstack-webhook", "path": "/mutate", "port": 443},
                    "caBundle": "UEVN"
                },
                "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                           "resources": ["services"], "scope": "Namespaced"}],
                "reinvocationPolicy": "IfNeeded",
                "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name",
                    "operator": "NotIn", "values": ["kube-system", "platform-system"]}]},
                "objectSelector": {},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 5,
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent"
            }]
        });
        assert_eq!(got, want);
    }

    #[test]
    fn the_validating_configuration_sends_validate_with_the_same_scope() {
        let mut r = in_cluster("dualstack-webhook");
        r.failure_policy = FailurePolicy::Ignore;
        let got = serde_json::to_value(r.validating()).unwrap();
        let hook = &got["webhooks"][0];
        assert_eq!(hook["name"], "validate.dualstack-webhook.io");
        assert_eq!(hook["clientConfig"]["service"]["path"], "/validate");
        assert_eq!(hook["failurePolicy"], "Ignore");
        assert_eq!(hook.get("reinvocationPolicy"), None);
        let mutating = serde_json::to_value(r.mutating()).unwrap();
        for field in [
            "rules",
            "namespaceSelector",
            "objectSelector",
            "timeoutSeconds",
        ] {
            assert_eq!(hook[field], mutating["webhooks"][0][field], "{field}");
        }
    }

    #[test]
    fn the_policy_match_conditions_go_to_their_webhook() {
        let policy = Policy::from_yaml(
            "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\nexemptNamespaces: [legacy]\n",
        )
        .unwrap();
        let mut r = in_cluster("x");
        r.match_conditions = Some(MatchConditions::of(&policy));
        let exempt = json!({"name": "namespace-not-exempt", "expression": "!(request.namespace == 'legacy')"});
        let mutating = serde_json::to_value(r.mutating()).unwrap();
        assert_eq!(
            mutating["webhooks"][0]["matchConditions"],
            json!([exempt, {"name": "may-patch", "expression": "false"}])
        );
        let validating = serde_json::to_value(r.validating()).unwrap();
        assert_eq!(
            validating["webhooks"][0]["matchConditions"],
            json!([exempt, {"name": "may-find-violation", "expression": "false"}])
        );
    }

    #[test]
    fn a_url_endpoint_gets_the_paths_appended_and_only_kube_system_is_never_sent() {
        let mut r = in_cluster("x");
        r.endpoint = Endpoint::Url("https://127.0.0.1:8443/".to_owned());
        r.ca_bundle = None;
        let got = serde_json::to_value(r.mutating()).unwrap();
        assert_eq!(
            got["webhooks"][0]["clientConfig"],
            json!({"url": "https://127.0.0.1:8443/mutate"})
        );
        assert_eq!(r.never_sent(), ["kube-system"]);
        let v = serde_json::to_value(r.validating()).unwrap();
        assert_eq!(
            v["webhooks"][0]["clientConfig"]["url"],
            Value::from("https://127.0.0.1:8443/validate")
        );
    }

    #[test]
    fn the_server_name_is_what_kube_apiserver_verifies() {
        let cases = [
            (
                in_cluster("platform-system").endpoint,
                "dualstack-webhook.platform-system.svc",
            ),
            (Endpoint::Url("https://127.0.0.1:8443".into()), "127.0.0.1"),
            (Endpoint::Url("https://[::1]:8443/x".into()), "::1"),
            (
                Endpoint::Url("https://hook.example.com/".into()),
                "hook.example.com",
            ),
        ];
        for (endpoint, want) in cases {
            assert_eq!(endpoint.server_name(), want, "{endpoint:?}");
        }
    }
}
