//! dualstack-webhook: a Kubernetes admission webhook that enforces a dual-stack policy on Services.
//!
//! # Layout
//! ```text
//! main ─▶ commands ─┬─▶ serve ─▶ server::{https, tls, routes, admin}, cluster::watch, policy_file,
//!                   │            registration::registrar, metrics, telemetry, shutdown
//!                   ├─▶ review, check, audit, lint, test ─▶ admission / domain
//!                   ├─▶ migrate ─▶ audit (cluster reading), domain::migration
//!                   ├─▶ webhook-configurations ─▶ registration::{configuration, defaults} ─▶ domain::cel
//!                   └─▶ certs
//! server::routes ─▶ admission ─▶ domain::{engine ─▶ policy, apiserver_model, patch, service}
//! domain::migration ─▶ domain::{engine, apiserver_model}
//! ```
//! - [`admission`]: the AdmissionReview wire format (kube's admission types).
//! - [`domain`]: the pure core (service view, policy, engine, the model of kube-apiserver, patch):
//!   no I/O, no async, no clock, no logging.
//! - [`cluster`]: the snapshot of the cluster the engine reads; [`cluster::watch`] keeps it current.
//! - [`registration`]: the admission configurations and the in-process defaults, and the task that
//!   registers them once a replica can answer.
//! - [`server`]: the HTTPS and admin listeners; [`policy_file`] reads and reloads the policy.
//! - [`commands`]: the subcommands; [`config`] their flags.
//!
//! `docs/architecture.md` says where each thing lives.

pub mod admission;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod domain;
pub mod metrics;
pub mod policy_file;
pub mod registration;
pub mod server;
pub mod shutdown;
pub mod telemetry;

/// An error as hyper and tower carry them: boxed, from any source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[cfg(test)]
mod testing;
