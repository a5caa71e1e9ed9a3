//! dualstack-webhook: a Kubernetes admission webhook that enforces a dual-stack policy on Services.
//!
//! # Layout
//! ```text
//! main ─▶ cli (run) ─▶ config, telemetry, shutdown, tls, server, routes, admin, metrics, reload
//!                        routes ─▶ admission ─▶ policy ─▶ {engine, patch}
//! ```
//! - [`policy`] and [`patch`] are pure: no I/O, no async, no clock, no logging.
//! - [`admission`] owns the AdmissionReview wire format.
//! - [`server`] and [`tls`] are thin: an accept loop and a reloading certificate resolver.

pub mod admission;
pub mod apiserver;
pub mod certs;
pub mod cluster;
pub mod engine;
pub mod metrics;
pub mod patch;
pub mod policy;
pub mod server;
pub mod service;
pub mod tls;

#[cfg(test)]
mod testing;
