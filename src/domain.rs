//! The pure core: what the webhook decides, and the model of kube-apiserver it decides against.
//! No I/O, no async, no clock, no logging: plain values in, plain values out.
//!
//! - [`service`]: the Service fields the rules read (the engine's input).
//! - [`policy`]: the policy file's schema and matching.
//! - [`engine`]: what `/mutate` sets and what `/validate` judges.
//! - [`migration`]: what `migrate` changes on a stored Service, and how it rolls it back.
//! - [`apiserver_model`]: what kube-apiserver does with the dual-stack fields.
//! - [`cel`]: CEL the API server evaluates for us (the webhooks' match conditions).
//! - [`patch`]: a mutation as an RFC 6902 JSON Patch.
//! - [`yaml_lines`]: the line of each node of a YAML text, for messages.

pub mod apiserver_model;
pub mod cel;
pub mod engine;
pub mod migration;
pub mod patch;
pub mod policy;
pub mod service;
pub mod yaml_lines;
