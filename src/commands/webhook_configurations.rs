//! `webhook-configurations`: prints the MutatingWebhookConfiguration and
//! ValidatingWebhookConfiguration `serve --register-webhooks` registers, as YAML, for a review,
//! a GitOps repository, or a webhook outside the cluster (`--url`); with `--policy`, with the
//! match conditions generated from that policy, followed by the in-process defaults it fills in
//! beside them (a MutatingAdmissionPolicy and its binding, `registration::defaults`).

use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::{WebhookArgs, WebhookConfigurationsArgs};
use crate::policy_file::load_policy;
use crate::registration::{Endpoint, MatchConditions, Registration, defaults};

pub(super) fn run(args: WebhookConfigurationsArgs) -> anyhow::Result<ExitCode> {
    let WebhookConfigurationsArgs {
        name,
        webhook,
        url,
        policy,
    } = args;
    let ca_bundle = match &webhook.ca_bundle {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let endpoint = match url {
        Some(url) => Endpoint::Url(url),
        None => service_endpoint(&webhook)?,
    };
    let policy = match &policy {
        Some(path) => Some(load_policy(path)?.0),
        None => None,
    };
    let registration = Registration {
        match_conditions: policy.as_ref().map(MatchConditions::of),
        ..registration(name, &webhook, endpoint, ca_bundle)
    };
    let mut documents = vec![
        serde_yaml_ng::to_string(&registration.mutating())?,
        serde_yaml_ng::to_string(&registration.validating())?,
    ];
    if let Some(policy) = &policy {
        let spec = defaults::spec(policy);
        documents.push(serde_yaml_ng::to_string(
            &registration.defaults_policy(spec, None),
        )?);
        documents.push(serde_yaml_ng::to_string(&registration.defaults_binding())?);
    }
    print!("{}", documents.join("---\n"));
    Ok(ExitCode::SUCCESS)
}

/// The webhook's Service in `--namespace`, port 443.
pub(super) fn service_endpoint(webhook: &WebhookArgs) -> anyhow::Result<Endpoint> {
    let namespace = webhook.namespace.clone().context(
        "--namespace (or POD_NAMESPACE) is needed: the namespace the webhook and its Service run in",
    )?;
    Ok(Endpoint::Service {
        namespace,
        name: webhook.service.clone(),
        port: 443,
    })
}

/// The configurations the flags describe, without match conditions.
pub(super) fn registration(
    name: String,
    webhook: &WebhookArgs,
    endpoint: Endpoint,
    ca_bundle: Option<Vec<u8>>,
) -> Registration {
    Registration {
        name,
        endpoint,
        ca_bundle,
        failure_policy: webhook.failure_policy.into(),
        timeout_seconds: webhook.webhook_timeout,
        match_conditions: None,
    }
}
