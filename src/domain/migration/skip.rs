//! Why `migrate` leaves a Service alone: the reasons, their short names (tables, JSON) and their
//! messages for people.

use std::fmt;

use super::RECORD_ANNOTATION;

/// Why a Service is left alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The namespace is exempt from the policy.
    Exempt,
    /// `default/kubernetes`: kube-apiserver creates and reconciles its own Service.
    ApiServer,
    /// ExternalName Services have no dual-stack fields (R1.4).
    ExternalName,
    /// The stored dual-stack fields are not a stack the API server would store (an unknown type or
    /// value, no families): nothing to start from.
    Unreadable,
    /// The cluster has one service range (or its ranges are unknown): no secondary family to add.
    ClusterNotDualStack,
    /// `migrate` changed it already (it carries the record).
    Migrated,
    /// It has two families already.
    AlreadyDualStack,
    /// A GitOps controller owns it (the label or annotation).
    GitOps(String),
    /// Another manager applies the dual-stack fields (server-side apply).
    ManagedBy(String),
    /// Another manager applies `clusterIPs` (server-side apply): one IP, which its next apply
    /// would try to bring back.
    Pinned(String),
    /// No rule or default of the policy asks for a dual-stack `ipFamilyPolicy`.
    NoDefault,
    /// The API server would refuse the change (the model's message).
    Refused(String),
    /// The policy would deny the change (the webhook's message).
    Denied(String),
    /// Rollback: no record, so `migrate` did not change it.
    NotMigrated,
    /// Rollback: the record cannot be read.
    BadRecord(String),
}

// === impl Skip ===

impl Skip {
    /// A short name for tables and JSON (`exempt`, `managed-by`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Exempt => "exempt",
            Self::ApiServer => "apiserver",
            Self::ExternalName => "external-name",
            Self::Unreadable => "unreadable",
            Self::ClusterNotDualStack => "cluster-not-dual-stack",
            Self::Migrated => "migrated",
            Self::AlreadyDualStack => "already-dual-stack",
            Self::GitOps(_) => "gitops",
            Self::ManagedBy(_) => "managed-by",
            Self::Pinned(_) => "pinned",
            Self::NoDefault => "no-default",
            Self::Refused(_) => "refused",
            Self::Denied(_) => "denied",
            Self::NotMigrated => "not-migrated",
            Self::BadRecord(_) => "bad-record",
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exempt => f.write_str("the namespace is exempt from the policy"),
            Self::ApiServer => f.write_str("kube-apiserver's own Service, which it reconciles"),
            Self::ExternalName => f.write_str("ExternalName Services have no dual-stack fields"),
            Self::Unreadable => {
                f.write_str("no stored ipFamilyPolicy and ipFamilies to start from")
            }
            Self::ClusterNotDualStack => {
                f.write_str("the cluster is not dual-stack (one service range, or none known)")
            }
            Self::Migrated => write!(f, "migrated already ({RECORD_ANNOTATION})"),
            Self::AlreadyDualStack => f.write_str("dual-stack already"),
            Self::GitOps(marker) => {
                write!(f, "owned by GitOps ({marker}): change it in its source")
            }
            Self::ManagedBy(manager) => write!(
                f,
                "ipFamilyPolicy/ipFamilies applied by {manager:?}: change them there"
            ),
            Self::Pinned(manager) => write!(
                f,
                "clusterIPs applied by {manager:?}: its next apply would release the secondary IP, \
                 which the API server refuses; add the family there"
            ),
            Self::NoDefault => {
                f.write_str("no rule or default of the policy asks for a dual-stack ipFamilyPolicy")
            }
            Self::Refused(message) => write!(f, "the API server would refuse it: {message}"),
            Self::Denied(message) => write!(f, "the policy would deny it: {message}"),
            Self::NotMigrated => write!(f, "not migrated (no {RECORD_ANNOTATION})"),
            Self::BadRecord(why) => write!(f, "unusable {RECORD_ANNOTATION}: {why}"),
        }
    }
}
