//! The HTTPS service: `POST /mutate` and `POST /validate` (`405` for another method there, `404`
//! elsewhere). Handlers are thin: read the body under a limit and a deadline, call
//! [`admission::review`], answer.
//!
//! A body that is not an AdmissionReview gets HTTP 400 with a one-line reason (413 when over the
//! limit, 408 when it does not arrive in time). The API server treats any non-2xx as a webhook
//! failure and applies `failurePolicy`; a policy decision is always HTTP 200 with an AdmissionReview.
//!
//! Two fixed routes are matched by hand rather than by an axum `Router` (which serves the admin
//! port): its route table, boxed request body and handler future, extension map and response
//! conversions cost 3.7 k instructions a review, as much as the policy engine (`bench/README.md`).

use std::convert::Infallible;
use std::future::{Future, poll_fn, ready};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::BoxError;
use crate::admission::{self, Answer};
use crate::cluster::Cluster;
use crate::domain::policy::Policy;
use crate::metrics::{Endpoint, Metrics, Outcome};

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

struct Shared {
    state: AppState,
    in_flight: Semaphore,
}

/// The webhook's HTTPS service (a tower `Service`, generic over the request body so that tests can
/// call it without a connection).
#[derive(Clone)]
pub struct Webhook {
    shared: Arc<Shared>,
}

/// What [`Webhook`] answers with.
pub type WebhookResponse = Response<Full<Bytes>>;

/// The webhook's service over `state`.
pub fn service(state: AppState) -> Webhook {
    Webhook {
        shared: Arc::new(Shared {
            state,
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
        }),
    }
}

impl<B> tower::Service<Request<B>> for Webhook
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = WebhookResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<WebhookResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let endpoint = match request.uri().path() {
            "/mutate" => Endpoint::mutate,
            "/validate" => Endpoint::validate,
            _ => return Box::pin(ready(Ok(empty(StatusCode::NOT_FOUND)))),
        };
        if request.method() != Method::POST {
            let mut response = empty(StatusCode::METHOD_NOT_ALLOWED);
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return Box::pin(ready(Ok(response)));
        }
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { Ok(limited(&shared, endpoint, request.into_body()).await) })
    }
}

/// Holds one of the [`MAX_IN_FLIGHT`] slots while the body is read and answered.
async fn limited<B>(shared: &Shared, endpoint: Endpoint, body: B) -> WebhookResponse
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let slot = within(SLOT_WAIT, pin!(shared.in_flight.acquire())).await;
    let Some(Ok(_slot)) = slot else {
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

async fn answer<B>(state: &AppState, endpoint: Endpoint, body: B) -> WebhookResponse
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    // No span around the body read and the review: nothing in them logs, and a span entered on
    // every poll, with four fields recorded one by one, cost more than the decision itself. The
    // events below (`log`, `refuse`) carry the request's fields themselves.
    let collect = pin!(Limited::new(body, MAX_BODY_BYTES).collect());
    let collected = within(BODY_TIMEOUT, collect).await;
    let bytes = match collected {
        Some(Ok(collected)) => collected.to_bytes(),
        Some(Err(error)) => {
            // Over the limit, or a broken connection; both end this request.
            let (status, reason) = if error.is::<LengthLimitError>() {
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
        None => {
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
            respond(StatusCode::OK, "application/json", answer.body.into())
        }
        Err(error) => refuse(state, endpoint, StatusCode::BAD_REQUEST, error.to_string()),
    }
}

/// `future`, or `None` once `limit` has passed: `tokio::time::timeout`, with the timer armed only
/// when the first poll does not finish `future`. A slot is almost always free and a review's body
/// has almost always arrived with its headers; registering a timer in tokio's wheel and taking it
/// out again cost more than reading the body. The timer is boxed, so that it takes no room in the
/// (boxed) future of every review. The deadline counts from the second poll, microseconds later.
async fn within<F: Future>(limit: Duration, mut future: Pin<&mut F>) -> Option<F::Output> {
    if let Poll::Ready(output) = poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await {
        return Some(output);
    }
    let mut timer = Box::pin(tokio::time::sleep(limit));
    poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => timer.as_mut().poll(cx).map(|()| None),
    })
    .await
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

fn refuse(
    state: &AppState,
    endpoint: Endpoint,
    status: StatusCode,
    reason: String,
) -> WebhookResponse {
    warn!(?endpoint, %status, %reason, "not an AdmissionReview");
    state
        .metrics
        .review(endpoint, "unknown", Outcome::invalid, 0.0);
    respond(
        status,
        "text/plain; charset=utf-8",
        format!("{reason}\n").into(),
    )
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> WebhookResponse {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn empty(status: StatusCode) -> WebhookResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}
