//! dualstack-webhook: a Kubernetes admission webhook that enforces a dual-stack policy on Services.
//!
//! # Layout
//! ```text
//! main ─▶ cli ─▶ config, telemetry, shutdown, reload, tls, server, admin, metrics
//!            └─▶ routes ─▶ admission ─▶ engine ─▶ {policy, cluster, service}
//!                                    └─▶ patch, json_text
//!        check ─▶ engine, apiserver (a model of kube-apiserver's dual-stack rules)
//! ```
//! - [`engine`], [`policy`], [`patch`] and [`apiserver`] are pure: no I/O, no async, no clock, no logging.
//! - [`admission`] owns the AdmissionReview wire format.
//! - [`server`] and [`tls`] are thin: an accept loop and a reloading certificate resolver.

pub mod admission;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod domain;
pub mod json_skip;
pub mod json_text;
pub mod metrics;
pub mod policy_file;
pub mod server;
pub mod shutdown;
pub mod telemetry;

/// An error as hyper and tower carry them: boxed, from any source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[cfg(test)]
mod testing;
