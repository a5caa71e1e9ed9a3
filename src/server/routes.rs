//! The webhook's routes: `POST /mutate` and `POST /validate`, an axum `Router` (`405` for another
//! method there, `404` elsewhere). Handlers are thin: take a slot, read the body under a limit and
//! a deadline, call [`admission::review`], answer.
//!
//! A body that is not an AdmissionReview gets HTTP 400 with a one-line reason (413 when over the
//! limit, 408 when it does not arrive in time, 503 when no slot frees up). The API server treats
//! any non-2xx as a webhook failure and applies `failurePolicy`; a policy decision is always HTTP
//! 200 with an AdmissionReview.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tracing::{debug, info, warn};

use crate::admission::{self, Answer, Endpoint, Outcome};
use crate::cluster::Cluster;
use crate::domain::policy::Policy;
use crate::metrics::Metrics;

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

/// The webhook's router over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/mutate",
            post(|State(s): State<Shared>, body: Body| handle(s, Endpoint::Mutate, body)),
        )
        .route(
            "/validate",
            post(|State(s): State<Shared>, body: Body| handle(s, Endpoint::Validate, body)),
        )
        .with_state(Shared {
            state,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        })
}

/// Holds one of the [`MAX_IN_FLIGHT`] slots while the body is read and answered.
async fn handle(shared: Shared, endpoint: Endpoint, body: Body) -> Response {
    let state = &shared.state;
    let Ok(Ok(_slot)) = timeout(SLOT_WAIT, shared.in_flight.acquire()).await else {
        let reason = format!("more than {MAX_IN_FLIGHT} reviews in flight; retry");
        return refuse(state, endpoint, StatusCode::SERVICE_UNAVAILABLE, reason);
    };
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err((status, reason)) => return refuse(state, endpoint, status, reason),
    };
    let started = Instant::now();
    let (policy, cluster) = (state.policy.load(), state.cluster.load());
    match admission::review(endpoint, &bytes, &policy, &cluster) {
        Ok(answer) => {
            let seconds = started.elapsed().as_secs_f64();
            log(endpoint, &answer);
            (state.metrics).review(endpoint, &answer.operation, answer.outcome, seconds);
            ([(header::CONTENT_TYPE, "application/json")], answer.body).into_response()
        }
        Err(error) => refuse(state, endpoint, StatusCode::BAD_REQUEST, error.to_string()),
    }
}

/// The whole body, within [`MAX_BODY_BYTES`] and [`BODY_TIMEOUT`].
async fn read_body(body: Body) -> Result<Bytes, (StatusCode, String)> {
    match timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over the {MAX_BODY_BYTES}-byte limit"),
        )),
        Ok(Err(error)) => Err((
            StatusCode::BAD_REQUEST,
            format!("could not read the request body: {error}"),
        )),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within {}s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// One event per review, with the request's endpoint, uid, namespace, name and operation.
fn log(endpoint: Endpoint, answer: &Answer) {
    let s = &answer.summary;
    let (uid, namespace, name) = (&s.uid, &s.namespace, &s.name);
    let (operation, dry_run) = (&answer.operation, s.dry_run);
    match (answer.outcome, &s.denied) {
        (Outcome::Denied, Some(denial)) => {
            info!(
                ?endpoint,
                uid,
                namespace,
                name,
                ?operation,
                dry_run,
                ?denial,
                "denied"
            );
        }
        (Outcome::Patched, _) => {
            info!(
                ?endpoint,
                uid,
                namespace,
                name,
                ?operation,
                dry_run,
                "patched"
            );
        }
        (Outcome::Warned, _) => {
            info!(
                ?endpoint,
                uid,
                namespace,
                name,
                ?operation,
                dry_run,
                "allowed with warnings"
            );
        }
        _ => debug!(
            ?endpoint,
            uid,
            namespace,
            name,
            ?operation,
            dry_run,
            "allowed"
        ),
    }
}

fn refuse(state: &AppState, endpoint: Endpoint, status: StatusCode, reason: String) -> Response {
    // `?`: the reason may quote the request, and Debug escapes what could forge a log line.
    warn!(?endpoint, %status, ?reason, "not an AdmissionReview");
    state.metrics.invalid(endpoint);
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{reason}\n"),
    )
        .into_response()
}
