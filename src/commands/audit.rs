//! `audit`: judge every Service a cluster stores against the policy, as `/validate` would, so an operator
//! sees what a new policy would break before turning it on.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Service as KubeService};
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::cluster::watch::{labels_of, usable_cidrs};
use crate::cluster::{Cluster, ServiceCidrs};
use crate::commands::check::{Row, judge_stored_service};
use crate::domain::policy::Policy;
use crate::domain::service::Service;

/// Why the cluster could not be audited.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Listing failed.
    #[error("cannot list {0}: {1}")]
    List(&'static str, #[source] kube::Error),
    /// A Service could not be read as one.
    #[error("cannot read Service {0}: {1}")]
    Decode(String, #[source] serde_json::Error),
}

/// Lists namespaces, service CIDRs (unless given) and Services, and judges every Service.
pub async fn audit(
    client: Client,
    policy: &Policy,
    static_cidrs: Option<ServiceCidrs>,
) -> Result<Vec<Row>, AuditError> {
    let lp = ListParams::default();
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&lp)
        .await
        .map_err(|e| AuditError::List("namespaces", e))?;
    let service_cidrs = match static_cidrs {
        Some(c) => Some(c),
        None => match Api::<ServiceCIDR>::all(client.clone()).list(&lp).await {
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
    let cluster = Cluster {
        service_cidrs,
        namespaces: namespaces
            .items
            .iter()
            .map(|ns| (ns.name_any(), labels_of(ns)))
            .collect(),
    };
    let services = Api::<KubeService>::all(client)
        .list(&lp)
        .await
        .map_err(|e| AuditError::List("services", e))?;
    let mut rows = Vec::with_capacity(services.items.len());
    for item in services.items {
        let name = format!(
            "{}/{}",
            item.namespace().unwrap_or_default(),
            item.name_any()
        );
        let value = serde_json::to_value(&item).map_err(|e| AuditError::Decode(name.clone(), e))?;
        let svc: Service =
            serde_json::from_value(value).map_err(|e| AuditError::Decode(name, e))?;
        rows.push(judge_stored_service(policy, &cluster, "cluster", &svc));
    }
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(rows)
}
