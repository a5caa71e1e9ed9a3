//! The admin listener (plain HTTP, its own port): `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

/// Ready once certificates and policy are loaded and every latch (e.g. each cluster watch's first
/// complete list) is released, and until shutdown begins.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    started: AtomicBool,
    pending: AtomicUsize,
    /// Set at the first SIGTERM/SIGINT: not ready from then on, while the webhook still serves
    /// for `--shutdown-delay` (see `shutdown`).
    stopping: AtomicBool,
    /// Woken at each change, for [`Readiness::ready`].
    changed: Notify,
}

/// One thing readiness waits for; released once.
#[derive(Debug)]
pub struct Latch(Arc<Shared>);

impl Readiness {
    /// Marks start-up (certificates, policy, listeners) done.
    pub fn set_ready(&self) {
        self.0.started.store(true, Ordering::Release);
        self.0.changed.notify_waiters();
    }

    /// Marks shutdown begun: not ready from now on, for good.
    pub fn set_stopping(&self) {
        self.0.stopping.store(true, Ordering::Release);
        self.0.changed.notify_waiters();
    }

    /// A latch that readiness waits for until it is released.
    pub fn latch(&self) -> Latch {
        self.0.pending.fetch_add(1, Ordering::AcqRel);
        Latch(self.0.clone())
    }

    /// Whether it is ready: what `/readyz` answers.
    pub fn is_ready(&self) -> bool {
        self.0.started.load(Ordering::Acquire)
            && self.0.pending.load(Ordering::Acquire) == 0
            && !self.0.stopping.load(Ordering::Acquire)
    }

    /// Completes once it is ready (at once if it is now): when `/readyz` turns 200.
    pub async fn ready(&self) {
        loop {
            let changed = self.0.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Registered before the check, so a change between the two is not missed.
            changed.as_mut().enable();
            if self.is_ready() {
                return;
            }
            changed.await;
        }
    }
}

impl Latch {
    /// Releases the latch.
    pub fn release(self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
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

/// The `Content-Type` of OpenMetrics text, as prometheus-client writes it.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics in the format the `Accept` header prefers: OpenMetrics text when it asks for
/// `application/openmetrics-text` (as Prometheus does), else the Prometheus text format 0.0.4
/// (also without an `Accept` header: curl, older scrapers). Both come from prometheus-client's
/// own encoders; they differ in the content type, the `# EOF` line, the counters' `# TYPE` name
/// (`x_total` in 0.0.4, `x` in OpenMetrics) and the `info` type (a gauge in 0.0.4).
async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let openmetrics = prefers_openmetrics(accept);
    let mut body = String::new();
    let (content_type, encoded) = if openmetrics {
        (OPENMETRICS, text::encode(&mut body, &state.registry))
    } else {
        let encoded = prometheus_text::encode(&mut body, &state.registry);
        (prometheus_text::CONTENT_TYPE, encoded)
    };
    match encoded {
        Ok(()) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::VARY, "Accept"),
            ],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Whether `Accept` values (RFC 9110 §12.5.1) rank OpenMetrics text at least as high as the
/// plain text format: listed with a non-zero `q`, and with a `q` no lower than that of
/// `text/plain` (or `text/*`, `*/*`). Media-type parameters such as `version` are not compared:
/// there is one version of each format to give.
fn prefers_openmetrics<'a>(accept: impl Iterator<Item = &'a str>) -> bool {
    let (mut openmetrics, mut plain) = (0.0_f32, 0.0_f32);
    for range in accept.flat_map(|value| value.split(',')) {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" | "text/*" | "*/*" => plain = plain.max(q),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= plain
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
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

    #[tokio::test]
    async fn ready_completes_when_the_last_latch_is_released() {
        let r = Readiness::default();
        let latch = r.latch();
        r.set_ready();
        let mut waiting = tokio::spawn({
            let r = r.clone();
            async move { r.ready().await }
        });
        tokio::task::yield_now().await;
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), &mut waiting);
        assert!(
            pending.await.is_err(),
            "ready before the latch was released"
        );
        latch.release();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        // Ready already: at once.
        r.ready().await;
    }

    #[test]
    fn accept_picks_the_format() {
        let prefers = |values: &[&str]| prefers_openmetrics(values.iter().copied());
        // Prometheus 2.x/3.x scrape Accept headers.
        assert!(prefers(&[
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ]));
        assert!(prefers(&["application/openmetrics-text; version=1.0.0"]));
        assert!(prefers(&[
            "text/plain;q=0.5",
            "Application/OpenMetrics-Text"
        ]));
        assert!(!prefers(&[]));
        assert!(!prefers(&["text/plain;version=0.0.4"]));
        assert!(!prefers(&["*/*"]));
        assert!(!prefers(&["application/openmetrics-text;q=0"]));
        assert!(!prefers(&[
            "text/plain, application/openmetrics-text;q=0.9"
        ]));
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
