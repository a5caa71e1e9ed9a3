//! Self-registration: the admission configurations the webhook puts itself into the API server's
//! path with ([`configuration`], pure), the in-process defaults registered beside them
//! ([`defaults`], pure), the check that the API server would trust it ([`trust`], pure), and the
//! task that registers them once a replica can answer ([`registrar`]).

pub mod configuration;
pub mod defaults;
pub mod registrar;
pub mod trust;

pub use configuration::{Endpoint, FailurePolicy, MatchConditions, Registration};
