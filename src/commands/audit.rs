//! `audit`: judge every Service a cluster stores against the policy, as `/validate` would, so an operator
//! sees what a new policy would break before turning it on.

use std::collections::{BTreeMap, HashMap};
use std::error::Error as _;

use k8s_openapi::api::core::v1::{Namespace, Service as KubeService};
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::ListParams;
use kube::config::{InferConfigError, KubeconfigError};
use kube::{Api, Client, ResourceExt};

use crate::cluster::watch::{labels_of, usable_cidrs};
use crate::cluster::{Cluster, ServiceCidrs};
use crate::commands::check::judge_stored_service;
use crate::commands::report::Row;
use crate::domain::policy::Policy;
use crate::domain::service::{Labels, Service};

/// Why the cluster could not be audited.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Neither a kubeconfig nor an in-cluster configuration is usable.
    ///
    /// kube's own error nests both attempts and their causes (several hundred characters); `reason` is
    /// the one of them a user can fix, so this variant keeps no `source` that would repeat it at length.
    #[error("no cluster to audit: {reason}; set KUBECONFIG or run in a pod")]
    NoCluster {
        /// What failed, e.g. `cannot read kubeconfig /path: No such file or directory (os error 2)`.
        reason: String,
    },
    /// The configuration was read but no client could be built from it (bad certificates, bad URL).
    #[error("cannot connect to the cluster: {0}")]
    Client(#[source] kube::Error),
    /// Listing failed.
    #[error("cannot list {0}: {1}")]
    List(&'static str, #[source] kube::Error),
}

/// A client for the cluster of the kubeconfig (`KUBECONFIG`, else `~/.kube/config`), or of the pod it runs
/// in, as `kubectl` would choose.
pub async fn connect() -> Result<Client, AuditError> {
    let config = kube::Config::infer()
        .await
        .map_err(|error| AuditError::NoCluster {
            reason: no_cluster_reason(&error),
        })?;
    Client::try_from(config).map_err(AuditError::Client)
}

/// The failure to report when there is no configuration: the kubeconfig's, unless this runs in a pod
/// (where both attempts are worth reading).
fn no_cluster_reason(error: &InferConfigError) -> String {
    let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    match error
        .source()
        .and_then(|e| e.downcast_ref::<KubeconfigError>())
    {
        _ if in_pod => error.to_string(),
        // kube quotes the path twice (`'"/x"'`).
        Some(KubeconfigError::ReadConfig(cause, path)) => {
            format!("cannot read kubeconfig {}: {cause}", path.display())
        }
        // The first line: a YAML error goes on with a multi-line excerpt of the file.
        Some(kubeconfig) => {
            let text = kubeconfig.to_string();
            format!("kubeconfig: {}", text.lines().next().unwrap_or_default())
        }
        None => error.to_string(),
    }
}

/// The labels of every namespace of the cluster.
pub async fn namespace_labels(client: Client) -> Result<HashMap<String, Labels>, AuditError> {
    let namespaces = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .map_err(|e| AuditError::List("namespaces", e))?;
    Ok(namespaces
        .items
        .iter()
        .map(|ns| (ns.name_any(), labels_of(ns)))
        .collect())
}

/// Lists namespaces, service CIDRs (unless given) and Services, and judges every Service.
pub async fn audit(
    client: Client,
    policy: &Policy,
    static_cidrs: Option<ServiceCidrs>,
) -> Result<Vec<Row>, AuditError> {
    let cluster = read_cluster(client.clone(), static_cidrs).await?;
    let services = Api::<KubeService>::all(client)
        .list(&ListParams::default())
        .await
        .map_err(|e| AuditError::List("services", e))?;
    let mut rows: Vec<Row> = services
        .items
        .iter()
        .map(|item| judge_stored_service(policy, &cluster, &Service::from(item)))
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(rows)
}

/// What the engine reads of the cluster: the namespaces' labels and the service ranges (the given
/// ones, else the cluster's ServiceCIDRs; none where the API has no ServiceCIDRs).
pub async fn read_cluster(
    client: Client,
    static_cidrs: Option<ServiceCidrs>,
) -> Result<Cluster, AuditError> {
    let namespaces = namespace_labels(client.clone()).await?;
    let service_cidrs = match static_cidrs {
        Some(c) => Some(c),
        None => match Api::<ServiceCIDR>::all(client)
            .list(&ListParams::default())
            .await
        {
            Ok(list) => {
                let objects: BTreeMap<String, Vec<String>> = list
                    .items
                    .iter()
                    .filter_map(|o| usable_cidrs(o).map(|c| (o.name_any(), c)))
                    .collect();
                ServiceCidrs::from_service_cidr_objects(&objects)
            }
            // Before Kubernetes 1.33 the API may not exist: no cluster assumptions.
            Err(kube::Error::Api(status)) if status.code == 404 => None,
            Err(e) => return Err(AuditError::List("servicecidrs", e)),
        },
    };
    Ok(Cluster {
        service_cidrs,
        namespaces,
    })
}
