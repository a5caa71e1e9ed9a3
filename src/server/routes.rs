//! The webhook's routes: `POST /mutate` and `POST /validate`, an axum `Router` (`405` for another
//! method there, `404` elsewhere). Handlers are thin: read the body, call [`admission::review`],
//! count it, answer; its log lines are written once the answer is handed over.
//!
//! A body that is not an AdmissionReview gets HTTP 400 with a one-line reason (413 when over the
//! limit, 408 when it does not arrive in time, 503 for a large body while the memory budget has
//! no room; [`body`](crate::server::body) reads it inside the budget). The API server treats any
//! non-2xx as a webhook failure and applies `failurePolicy`; a policy decision is always HTTP 200
//! with an AdmissionReview.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, info};

use crate::admission::{self, Answer, Endpoint, Outcome};
use crate::cluster::Cluster;
use crate::domain::policy::{Action, Policy};
use crate::metrics::{Metrics, Refusal};
use crate::server::body::{BodyError, Budget};

/// What the handlers read: the live policy and cluster snapshot, swapped atomically on reload.
#[derive(Clone)]
pub struct AppState {
    /// The policy in force.
    pub policy: Arc<ArcSwap<Policy>>,
    /// The cluster snapshot in force.
    pub cluster: Arc<ArcSwap<Cluster>>,
    /// Metrics.
    pub metrics: Metrics,
    /// The tasks writing reviews' log lines, which run after each answer: `serve` waits for them
    /// before it exits, so that no line is lost.
    pub log_tasks: TaskTracker,
}

struct Shared {
    state: AppState,
    budget: Budget,
}

/// The webhook's router over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/mutate",
            post(
                |State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body| {
                    handle(s, Endpoint::Mutate, headers, body)
                },
            ),
        )
        .route(
            "/validate",
            post(
                |State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body| {
                    handle(s, Endpoint::Validate, headers, body)
                },
            ),
        )
        // One Arc for the router's state: axum clones it for every request.
        .with_state(Arc::new(Shared {
            state,
            budget: Budget::default(),
        }))
}

/// Reads the body within the memory budget, answers the review. A decision takes microseconds
/// and runs on the request's task: reviews decoded at once are bounded by the runtime's workers.
async fn handle(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let state = &shared.state;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let received = match shared.budget.read(body, declared).await {
        Ok(received) => received,
        Err(error) => {
            let (status, refusal) = match error {
                BodyError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, Refusal::too_large),
                BodyError::TimedOut => (StatusCode::REQUEST_TIMEOUT, Refusal::timed_out),
                BodyError::Cancelled(_) => (StatusCode::BAD_REQUEST, Refusal::cancelled),
                BodyError::Busy => (StatusCode::SERVICE_UNAVAILABLE, Refusal::busy),
            };
            return refuse(state, endpoint, status, refusal, error.to_string());
        }
    };
    let started = Instant::now();
    let (policy, cluster) = (state.policy.load(), state.cluster.load());
    match admission::review(endpoint, &received.bytes, &policy, &cluster) {
        Ok(mut answer) => {
            let seconds = started.elapsed().as_secs_f64();
            let metrics = &state.metrics;
            metrics.review(endpoint, &answer.operation, answer.outcome, seconds);
            metrics.findings(endpoint, &answer.summary.findings);
            let body = std::mem::take(&mut answer.body);
            // The log lines are written by a task of their own, which tokio runs once this task
            // has handed the answer over: formatting them is not part of the API server's wait.
            let lines = async move { log(endpoint, &answer) };
            state.log_tasks.spawn(lines.in_current_span());
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(error) => {
            let reason = error.to_string();
            refuse(
                state,
                endpoint,
                StatusCode::BAD_REQUEST,
                Refusal::invalid,
                reason,
            )
        }
    }
}

/// A review's log lines. One per review, with the request's endpoint, uid, namespace, name and
/// operation: `info` for what changed or flagged something, `debug` for plain allows. Then, unless
/// the review was denied (its line names the denial), one `info` line per `Audit` finding, naming
/// the Service, the rule and the finding: nothing else outside the API server's audit log shows an
/// Audit rule at work, which is what an "Audit first" rollout watches.
pub fn log(endpoint: Endpoint, answer: &Answer) {
    let s = &answer.summary;
    let (uid, namespace, name, denial) = (&s.uid, &s.namespace, &s.name, &s.denied);
    let (operation, dry_run) = (&answer.operation, s.dry_run);
    let what = match answer.outcome {
        Outcome::Denied => "denied",
        Outcome::Patched => "patched",
        Outcome::Warned => "allowed with warnings",
        Outcome::Allowed => "allowed",
    };
    if answer.outcome == Outcome::Allowed {
        debug!(
            ?endpoint,
            uid,
            namespace,
            name,
            ?operation,
            dry_run,
            "{what}"
        );
    } else {
        info!(
            ?endpoint,
            uid,
            namespace,
            name,
            ?operation,
            dry_run,
            ?denial,
            "{what}"
        );
    }
    if answer.outcome == Outcome::Denied {
        return;
    }
    for f in s.findings.iter().filter(|f| f.action == Action::Audit) {
        let (rule, finding) = (&f.rule, f.violation.short());
        info!(
            ?endpoint,
            uid,
            namespace,
            name,
            ?operation,
            dry_run,
            rule,
            finding,
            "audit finding"
        );
    }
}

/// A request that is not an AdmissionReview, or whose body did not arrive. Logged at debug only:
/// a client can send these by the thousand, and the counter says how many there were.
fn refuse(
    state: &AppState,
    endpoint: Endpoint,
    status: StatusCode,
    refusal: Refusal,
    reason: String,
) -> Response {
    // `?`: the reason may quote the request, and Debug escapes what could forge a log line.
    debug!(?endpoint, %status, ?reason, "refused");
    state.metrics.refused(endpoint, refusal);
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{reason}\n"),
    )
        .into_response()
}
