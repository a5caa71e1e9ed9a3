//! The two listeners: the webhook's HTTPS server and the plain-HTTP admin server.
//!
//! - [`https`]: the accept loop, with the TLS handshake in each connection's own task.
//! - [`tls`]: the rustls configuration and the certificate that reloads itself.
//! - [`routes`]: the webhook's routes, `POST /mutate` and `POST /validate`.
//! - [`admin`]: `/healthz`, `/readyz` and `/metrics`.

pub mod admin;
pub mod https;
pub mod routes;
pub mod tls;

pub use https::{MAX_CONCURRENT_STREAMS, ServerOptions, serve_plain, serve_tls};
