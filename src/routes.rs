//! The HTTPS router: `POST /mutate` and `POST /validate`. Handlers are thin: read the body under a
//! limit and a deadline, call [`admission::review`], answer.
//!
//! A body that is not an AdmissionReview gets HTTP 400 with a one-line reason (413 when over the
//! limit, 408 when it does not arrive in time). The API server treats any non-2xx as a webhook
//! failure and applies `failurePolicy`; a policy decision is always HTTP 200 with an AdmissionReview.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::admission::{self, Answer};
use crate::cluster::Cluster;
use crate::metrics::{Endpoint, Metrics, Outcome};
use crate::policy::Policy;

/// The largest body accepted. An UPDATE review carries two Services, each at most the API server's
/// 3 MiB request limit, plus the envelope; 8 MiB covers that with room and bounds memory per request.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// How long a client may take to send the body once the headers are in (the header timeout is the
/// server's). The API server sends a review in one write; 10 s matches its default webhook timeout.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many reviews may be read and answered at once, across all connections. Each may buffer up to
/// [`MAX_BODY_BYTES`], so this bounds the webhook's memory (64 × 8 MiB) whatever clients do; more
/// wait for a slot (within [`SLOT_WAIT`], then 503). A decision takes microseconds, so 64 is far
/// above what a healthy API server needs.
pub const MAX_IN_FLIGHT: usize = 64;

/// How long a review waits for one of the [`MAX_IN_FLIGHT`] slots before it is answered 503: well
/// inside the API server's webhook timeout, so it can retry or apply `failurePolicy` in time.
pub const SLOT_WAIT: Duration = Duration::from_secs(1);

/// What the handlers read: the live policy and cluster snapshot, swapped atomically on reload.
#[derive(Clone)]
pub struct AppState {
    /// The policy in force.
    pub policy: Arc<ArcSwap<Policy>>,
    /// The cluster snapshot in force.
    pub cluster: Arc<ArcSwap<Cluster>>,
    /// Metrics.
    pub metrics: Metrics,
}

#[derive(Clone)]
struct Shared {
    state: AppState,
    in_flight: Arc<Semaphore>,
}

/// The webhook's router.
pub fn router(state: AppState) -> Router {
    let shared = Shared {
        state,
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
    };
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .with_state(shared)
}

async fn mutate(State(shared): State<Shared>, body: Body) -> Response {
    limited(&shared, Endpoint::mutate, body).await
}

async fn validate(State(shared): State<Shared>, body: Body) -> Response {
    limited(&shared, Endpoint::validate, body).await
}

/// Holds one of the [`MAX_IN_FLIGHT`] slots while the body is read and answered.
async fn limited(shared: &Shared, endpoint: Endpoint, body: Body) -> Response {
    let slot = tokio::time::timeout(SLOT_WAIT, shared.in_flight.acquire()).await;
    let Ok(Ok(_slot)) = slot else {
        let reason = format!("more than {MAX_IN_FLIGHT} reviews in flight; retry");
        return refuse(
            &shared.state,
            endpoint,
            StatusCode::SERVICE_UNAVAILABLE,
            reason,
        );
    };
    answer(&shared.state, endpoint, body).await
}

async fn answer(state: &AppState, endpoint: Endpoint, body: Body) -> Response {
    // No span around the body read and the review: nothing in them logs, and a span entered on
    // every poll, with four fields recorded one by one, cost more than the decision itself. The
    // `review` span is made once, with all its fields, around the events below (`log`, `refuse`).
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => {
            // to_bytes fails on the limit or on a broken connection; both end this request.
            let too_large = std::error::Error::source(&error)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            let (status, reason) = if too_large {
                let reason = format!("request body over the {MAX_BODY_BYTES}-byte limit");
                (StatusCode::PAYLOAD_TOO_LARGE, reason)
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {error}"),
                )
            };
            return refuse(state, endpoint, status, reason);
        }
        Err(_) => {
            let reason = format!(
                "request body not received within {}s",
                BODY_TIMEOUT.as_secs()
            );
            return refuse(state, endpoint, StatusCode::REQUEST_TIMEOUT, reason);
        }
    };
    let started = Instant::now();
    let (policy, cluster) = (state.policy.load(), state.cluster.load());
    match admission::review(endpoint, &bytes, &policy, &cluster) {
        Ok(answer) => {
            let seconds = started.elapsed().as_secs_f64();
            log(endpoint, &answer);
            let op = &*answer.summary.operation;
            state.metrics.review(endpoint, op, answer.outcome, seconds);
            ([(header::CONTENT_TYPE, "application/json")], answer.body).into_response()
        }
        Err(error) => refuse(state, endpoint, StatusCode::BAD_REQUEST, error.to_string()),
    }
}

/// Logs the decision as one event that carries the request's endpoint, uid, namespace, name and
/// operation (no span: making one per review, with its fields, cost more than the decision).
fn log(endpoint: Endpoint, answer: &Answer<'_>) {
    let s = &answer.summary;
    let (uid, namespace, name, operation) = (&*s.uid, &*s.namespace, &*s.name, &*s.operation);
    let dry_run = s.dry_run;
    match (&answer.outcome, &s.denied) {
        (Outcome::denied, Some(denial)) => {
            info!(?endpoint, uid, namespace, name, operation, dry_run, %denial, "denied");
        }
        (Outcome::patched, _) => {
            info!(
                ?endpoint,
                uid, namespace, name, operation, dry_run, "patched"
            );
        }
        (Outcome::warned, _) => {
            info!(
                ?endpoint,
                uid, namespace, name, operation, dry_run, "allowed with warnings"
            );
        }
        _ => debug!(
            ?endpoint,
            uid, namespace, name, operation, dry_run, "allowed"
        ),
    }
}

fn refuse(state: &AppState, endpoint: Endpoint, status: StatusCode, reason: String) -> Response {
    warn!(?endpoint, %status, %reason, "not an AdmissionReview");
    state
        .metrics
        .review(endpoint, "unknown", Outcome::invalid, 0.0);
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{reason}\n"),
    )
        .into_response()
}
