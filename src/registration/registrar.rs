//! `serve --register-webhooks NAME`: the webhook puts itself in the API server's path only when a
//! call can reach it, so installing it never fails a write.
//!
//! The manifests create both configurations empty. Each replica, once ready (`/readyz` 200) and
//! once its Service has a ready endpoint (the API server routes through it), waits for kube-proxy
//! to program the route and fills their `webhooks` with a JSON merge patch, which never creates
//! them: deleting them unregisters for good, even while replicas still run. It patches again when
//! the CA bundle or the serving certificate changes (a rotation), after checking that the bundle
//! trusts the certificate for the name the API server dials, when a reloaded policy changes the
//! match conditions (when each webhook is called), and when it finds them re-created empty
//! (checked every 10 s). Patching identical content is a no-op for the API server, so every
//! replica of a rollout doing it is harmless.
//!
//! After the configurations it applies the in-process defaults' policy (`super::defaults`), where
//! the installation created their binding: none (not installed, deleted, a cluster before 1.36)
//! or no RBAC for them leaves creates to `/mutate`. It applies it again when it finds the binding
//! without it (checked with the configurations).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use rustls::pki_types::UnixTime;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::configuration::{
    Endpoint, MUTATE_WEBHOOK, MatchConditions, Registration, VALIDATE_WEBHOOK,
};
use super::defaults;
use super::trust::{TrustError, verify_serving};
use crate::domain::policy::Policy;
use crate::metrics::{Metrics, ReloadResult};
use crate::server::admin::Readiness;

/// The field manager of the patches (what `managedFields` shows).
const FIELD_MANAGER: &str = "dualstack-webhook";

/// How long after the first ready endpoint the webhook waits before registering: the time
/// kube-proxy takes to route the Service's address to it (about a second; see
/// `--shutdown-delay`, the same lag on the way out).
const ROUTE_SETTLE: Duration = Duration::from_secs(2);

/// How often a registered replica checks that its configurations were not re-created empty.
const REFILL_CHECK: Duration = Duration::from_secs(10);

/// The in-process defaults' kinds: (kind, plural).
const POLICY: (&str, &str) = ("MutatingAdmissionPolicy", "mutatingadmissionpolicies");
const BINDING: (&str, &str) = (
    "MutatingAdmissionPolicyBinding",
    "mutatingadmissionpolicybindings",
);

/// How often the EndpointSlices are listed while no endpoint is ready.
const ENDPOINT_POLL: Duration = Duration::from_secs(1);

/// What the registrar needs.
pub struct Registrar {
    /// Credentials of the webhook's ServiceAccount.
    pub client: Client,
    /// The configurations, without their CA bundle (read from `ca_bundle`) and match conditions
    /// (generated from `policy`).
    pub registration: Registration,
    /// The policy served, reloaded: the match conditions follow it.
    pub policy: Arc<ArcSwap<Policy>>,
    /// `--ca-bundle`: the PEM CAs written into `caBundle`.
    pub ca_bundle: PathBuf,
    /// `--tls-cert`: the serving chain the bundle must trust.
    pub tls_cert: PathBuf,
    /// How often the two files are checked for changes.
    pub every: Duration,
    /// Where attempts are counted.
    pub metrics: Metrics,
}

/// What the registered configurations were built from: registered again when any changes.
#[derive(PartialEq)]
struct Inputs {
    /// The CA bundle file's content.
    bundle: Vec<u8>,
    /// The serving certificate file's content.
    chain: Vec<u8>,
    /// The match conditions of the policy served.
    conditions: MatchConditions,
    /// The in-process defaults' spec for the policy served.
    defaults: serde_json::Value,
}

/// Why one registration attempt failed.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("{0} (--ca-bundle, --tls-cert)")]
    Trust(#[from] TrustError),
    #[error(
        "{kind} {name} not found: not registering (the manifests create it empty; it is gone after an uninstall)"
    )]
    NotInstalled { kind: &'static str, name: String },
    #[error("cannot patch {kind} {name}: {source}")]
    Patch {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl Registrar {
    /// Registers once the webhook is ready and reachable, then again whenever the CA bundle or the
    /// serving certificate changes, until `stop` (shutdown leaves the configurations in place: the
    /// other replicas keep serving).
    pub async fn run(self, readiness: Readiness, stop: CancellationToken) {
        tokio::select! {
            () = stop.cancelled() => return,
            () = readiness.ready() => {}
        }
        if let Endpoint::Service {
            namespace, name, ..
        } = &self.registration.endpoint
        {
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.ready_endpoint(namespace, name) => {}
            }
        }
        let mut registered: Option<Inputs> = None;
        let mut last_check = Instant::now();
        let mut last_error = None;
        let mut interval = tokio::time::interval(self.every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                _ = interval.tick() => {}
            }
            let inputs = match self.read_files().await {
                Ok((bundle, chain)) => {
                    let policy = self.policy.load();
                    Inputs {
                        bundle,
                        chain,
                        conditions: MatchConditions::of(&policy),
                        defaults: defaults::spec(&policy),
                    }
                }
                Err(error) => {
                    self.metrics.registration(ReloadResult::failure);
                    log_failure(&error, &mut last_error);
                    continue;
                }
            };
            if registered.as_ref() == Some(&inputs) {
                // Filled once; check now and then that they still are: configurations deleted and
                // re-created empty (the emergency runbook, an installer that wiped them) are
                // filled again without a restart. Never a second opinion on filled ones: replicas
                // would fight over a rotation.
                if last_check.elapsed() < REFILL_CHECK {
                    continue;
                }
                last_check = Instant::now();
                match self.emptied().await {
                    Ok(false) => continue,
                    Ok(true) => info!(
                        configurations = %self.registration.name,
                        "the webhook configurations are empty: registering again"
                    ),
                    Err(error) => {
                        debug!(%error, "cannot read the webhook configurations");
                        continue;
                    }
                }
            }
            match self.register(&inputs).await {
                Ok(()) => {
                    self.metrics.registration(ReloadResult::success);
                    registered = Some(inputs);
                    last_error = None;
                }
                Err(error) => {
                    self.metrics.registration(ReloadResult::failure);
                    log_failure(&error, &mut last_error);
                }
            }
        }
    }

    /// Whether a configuration exists without this webhook's entry (re-created empty). A missing
    /// one is not "emptied": removing the configurations unregisters for good.
    async fn emptied(&self) -> Result<bool, kube::Error> {
        let name = &self.registration.name;
        let mutating: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let validating: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let mutating_emptied = mutating.get_opt(name).await?.is_some_and(|c| {
            !c.webhooks
                .unwrap_or_default()
                .iter()
                .any(|h| h.name == MUTATE_WEBHOOK)
        });
        let validating_emptied = validating.get_opt(name).await?.is_some_and(|c| {
            !c.webhooks
                .unwrap_or_default()
                .iter()
                .any(|h| h.name == VALIDATE_WEBHOOK)
        });
        // The binding without its policy (deleted, or the binding created after the replica
        // registered): apply it again. Errors say nothing: the configurations decide.
        let name = self.registration.defaults_name();
        let binding = self.defaults_api(BINDING).get_opt(&name).await;
        let policy = self.defaults_api(POLICY).get_opt(&name).await;
        let defaults_missing = matches!((binding, policy), (Ok(Some(_)), Ok(None)));
        Ok(mutating_emptied || validating_emptied || defaults_missing)
    }

    /// The API of a kind of the in-process defaults (admissionregistration.k8s.io/v1, 1.36+).
    fn defaults_api(&self, (kind, plural): (&str, &str)) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
        Api::all_with(
            self.client.clone(),
            &ApiResource::from_gvk_with_plural(&gvk, plural),
        )
    }

    /// Applies the in-process defaults' policy where its binding exists (owned by it).
    async fn apply_defaults(
        &self,
        registration: &Registration,
        spec: &serde_json::Value,
    ) -> Result<(), Error> {
        let name = registration.defaults_name();
        let binding = match self.defaults_api(BINDING).get_opt(&name).await {
            Ok(Some(binding)) => binding,
            Ok(None) => {
                info!(binding = %name, "no in-process defaults binding: creates are defaulted by /mutate");
                return Ok(());
            }
            Err(kube::Error::Api(status)) if status.code == 403 || status.code == 404 => {
                warn!(binding = %name, message = %status.message, "cannot read the in-process defaults binding: creates are defaulted by /mutate");
                return Ok(());
            }
            Err(e) => return Err(patch_error("MutatingAdmissionPolicyBinding", &name, e)),
        };
        let object = registration.defaults_policy(spec.clone(), binding.metadata.uid.as_deref());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match self
            .defaults_api(POLICY)
            .patch(&name, &params, &Patch::Apply(&object))
            .await
        {
            Ok(_) => {
                info!(policy = %name, "applied the in-process defaults");
                Ok(())
            }
            // Manifests older than the binary (no RBAC for it): the webhook still does it all.
            Err(kube::Error::Api(status)) if status.code == 403 => {
                warn!(policy = %name, message = %status.message, "not allowed to apply the in-process defaults: creates are defaulted by /mutate");
                Ok(())
            }
            Err(e) => Err(patch_error("MutatingAdmissionPolicy", &name, e)),
        }
    }

    /// Completes once an EndpointSlice of the Service lists a ready endpoint.
    async fn ready_endpoint(&self, namespace: &str, service: &str) {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        let params = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
        let mut last_error = None;
        let mut said_waiting = false;
        loop {
            match api.list(&params).await {
                Ok(list) if list.items.iter().any(has_ready_endpoint) => break,
                Ok(_) if !said_waiting => {
                    info!(
                        service = format!("{namespace}/{service}"),
                        "waiting for a ready endpoint of the Service before registering"
                    );
                    said_waiting = true;
                }
                Ok(_) => {}
                Err(error) => {
                    let message =
                        format!("cannot list EndpointSlices of {namespace}/{service}: {error}");
                    if last_error.as_ref() != Some(&message) {
                        warn!("{message}");
                        last_error = Some(message);
                    }
                }
            }
            tokio::time::sleep(ENDPOINT_POLL).await;
        }
        debug!(wait = ?ROUTE_SETTLE, "a ready endpoint: waiting for the route");
        tokio::time::sleep(ROUTE_SETTLE).await;
    }

    async fn read_files(&self) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let read = |path: PathBuf| async move {
            tokio::fs::read(&path)
                .await
                .map_err(|e| Error::Read(path, e))
        };
        Ok((
            read(self.ca_bundle.clone()).await?,
            read(self.tls_cert.clone()).await?,
        ))
    }

    /// Checks the bundle against the certificate, then patches both configurations.
    async fn register(&self, inputs: &Inputs) -> Result<(), Error> {
        let host = self.registration.endpoint.server_name();
        verify_serving(&inputs.bundle, &inputs.chain, &host, UnixTime::now())?;
        let registration = Registration {
            ca_bundle: Some(inputs.bundle.clone()),
            match_conditions: Some(inputs.conditions.clone()),
            ..self.registration.clone()
        };
        let name = &registration.name;
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let mutating: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let patch = json!({"webhooks": registration.mutating_webhooks()});
        mutating
            .patch(name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| patch_error("MutatingWebhookConfiguration", name, e))?;
        let validating: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let patch = json!({"webhooks": registration.validating_webhooks()});
        validating
            .patch(name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| patch_error("ValidatingWebhookConfiguration", name, e))?;
        info!(
            configurations = %name,
            server_name = %host,
            failure_policy = registration.failure_policy.as_str(),
            never_sent = ?registration.never_sent(),
            "registered the webhook configurations"
        );
        // Last: creates are defaulted in-process only once the webhook backs the policy up.
        self.apply_defaults(&registration, &inputs.defaults).await
    }
}

/// Whether the slice lists an endpoint the API server would pick (`ready` unset counts as ready,
/// as kube-apiserver's resolver reads it).
fn has_ready_endpoint(slice: &EndpointSlice) -> bool {
    slice
        .endpoints
        .iter()
        .any(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
}

fn patch_error(kind: &'static str, name: &str, source: kube::Error) -> Error {
    match &source {
        kube::Error::Api(status) if status.code == 404 => Error::NotInstalled {
            kind,
            name: name.to_owned(),
        },
        _ => Error::Patch {
            kind,
            name: name.to_owned(),
            source,
        },
    }
}

/// Logs a failure at `warn` when it differs from the previous one (every attempt at `debug`).
fn log_failure(error: &Error, last: &mut Option<String>) {
    let message = error.to_string();
    if last.as_ref() == Some(&message) {
        debug!(%error, "still not registered");
    } else {
        warn!(%error, "not registered; retrying");
        *last = Some(message);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::discovery::v1::{Endpoint as SliceEndpoint, EndpointConditions};

    use super::*;

    fn slice(ready: &[Option<bool>]) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".to_owned(),
            endpoints: ready
                .iter()
                .map(|r| SliceEndpoint {
                    addresses: vec!["10.0.0.1".to_owned()],
                    conditions: Some(EndpointConditions {
                        ready: *r,
                        ..EndpointConditions::default()
                    }),
                    ..SliceEndpoint::default()
                })
                .collect(),
            ..EndpointSlice::default()
        }
    }

    #[test]
    fn an_endpoint_is_ready_unless_it_says_it_is_not() {
        let cases: [(&[Option<bool>], bool); 5] = [
            (&[], false),
            (&[Some(false)], false),
            (&[Some(true)], true),
            (&[None], true),
            (&[Some(false), Some(true)], true),
        ];
        for (ready, want) in cases {
            assert_eq!(has_ready_endpoint(&slice(ready)), want, "{ready:?}");
        }
    }

    #[test]
    fn a_missing_configuration_is_not_installed_not_a_patch_failure() {
        let status = kube::core::Status::failure("not found", "NotFound").with_code(404);
        let error = patch_error(
            "MutatingWebhookConfiguration",
            "dualstack-webhook",
            kube::Error::Api(Box::new(status)),
        );
        assert_eq!(
            error.to_string(),
            "MutatingWebhookConfiguration dualstack-webhook not found: not registering (the \
             manifests create it empty; it is gone after an uninstall)"
        );
    }
}
