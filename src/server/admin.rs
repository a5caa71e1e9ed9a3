//! The admin listener (plain HTTP, its own port): `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

/// Ready once certificates and policy are loaded and every latch (e.g. each cluster watch's first
/// complete list) is released, and until shutdown begins.
#[derive(Clone, Debug)]
pub struct Readiness {
    started: Arc<AtomicBool>,
    pending: Arc<AtomicUsize>,
    /// Set at the first SIGTERM/SIGINT: not ready from then on, while the webhook still serves
    /// for `--shutdown-delay` (see `shutdown`).
    stopping: Arc<AtomicBool>,
}

/// One thing readiness waits for; released once.
#[derive(Debug)]
pub struct Latch(Arc<AtomicUsize>);

impl Default for Readiness {
    fn default() -> Self {
        Self {
            started: Arc::new(AtomicBool::new(false)),
            pending: Arc::new(AtomicUsize::new(0)),
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Readiness {
    /// Marks start-up (certificates, policy, listeners) done.
    pub fn set_ready(&self) {
        self.started.store(true, Ordering::Release);
    }

    /// Marks shutdown begun: not ready from now on, for good.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// A latch that readiness waits for until it is released.
    pub fn latch(&self) -> Latch {
        self.pending.fetch_add(1, Ordering::AcqRel);
        Latch(self.pending.clone())
    }

    /// Whether it is ready.
    pub fn is_ready(&self) -> bool {
        self.started.load(Ordering::Acquire)
            && self.pending.load(Ordering::Acquire) == 0
            && !self.stopping.load(Ordering::Acquire)
    }
}

impl Latch {
    /// Releases the latch.
    pub fn release(self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    readiness: Readiness,
}

/// The admin router.
pub fn router(registry: Arc<Registry>, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState {
            registry,
            readiness,
        })
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_after_start_up_and_every_latch() {
        let r = Readiness::default();
        let (a, b) = (r.latch(), r.latch());
        assert!(!r.is_ready());
        r.set_ready();
        assert!(!r.is_ready());
        a.release();
        assert!(!r.is_ready());
        b.release();
        assert!(r.is_ready());
    }

    #[test]
    fn not_ready_once_stopping_even_if_started_again() {
        let r = Readiness::default();
        r.set_ready();
        assert!(r.is_ready());
        r.clone().set_stopping();
        assert!(!r.is_ready());
        r.set_ready();
        assert!(!r.is_ready());
    }
}
