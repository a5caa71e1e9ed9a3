//! The two listeners: the webhook's HTTPS server and the plain-HTTP admin server.
//!
//! - [`https`]: the accept loop both listeners share (the TLS handshake, when there is one, in
//!   each connection's own task), with its timeouts and its caps on head size and connections.
//! - [`tls`]: the rustls configuration and the certificate that reloads itself.
//! - [`routes`]: the webhook's routes, `POST /mutate` and `POST /validate`.
//! - [`body`]: reading a review's body inside the memory budget.
//! - [`admin`]: `/healthz`, `/readyz` and `/metrics`.

pub mod admin;
pub mod body;
pub mod https;
pub mod routes;
pub mod tls;

pub use https::{
    ADMIN_MAX_CONNECTIONS, ADMIN_MAX_CONNECTIONS_PER_IP, H2_WINDOW_BYTES, MAX_CONCURRENT_STREAMS,
    MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP, MAX_HEAD_BYTES, MAX_HEADER_LIST_BYTES, ServerOptions,
    serve_plain, serve_tls,
};
