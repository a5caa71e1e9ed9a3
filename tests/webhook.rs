//! The service end to end without sockets (`oneshot`): routes → admission → engine → patch, plus the
//! admin endpoints and policy reload.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use dualstack_webhook::cluster::{Cluster, ServiceCidrs};
use dualstack_webhook::domain::policy::Policy;
use dualstack_webhook::metrics::Metrics;
use dualstack_webhook::policy_file::watch_policy;
use dualstack_webhook::server::admin::{self, Readiness};
use dualstack_webhook::server::body::{LARGE_POOL_BYTES, MAX_BODY_BYTES};
use dualstack_webhook::server::routes::{self, AppState};
use http_body_util::BodyExt as _;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const HEADER: &str = "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n";

fn policy(body: &str) -> Policy {
    Policy::from_yaml(&format!("{HEADER}{body}")).unwrap()
}

fn state(p: Policy) -> (AppState, Arc<Registry>) {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let cidrs = ServiceCidrs::parse("10.96.0.0/16,fd00:10:96::/112").unwrap();
    let state = AppState {
        policy: Arc::new(ArcSwap::from_pointee(p)),
        cluster: Arc::new(ArcSwap::from_pointee(Cluster::with_cidrs(Some(cidrs)))),
        metrics,
        log_tasks: Default::default(),
    };
    (state, Arc::new(registry))
}

fn review(spec: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Service"},
                    "resource": {"group": "", "version": "v1", "resource": "services"},
                    "name": "web", "namespace": "apps", "operation": "CREATE",
                    "object": {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "apps"}, "spec": spec},
                    "userInfo": {"username": "admin"}, "dryRun": false}
    }))
    .unwrap()
}

async fn post(app: axum::Router, path: &str, body: Vec<u8>) -> (StatusCode, String, Vec<u8>) {
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        ctype,
        res.into_body().collect().await.unwrap().to_bytes().to_vec(),
    )
}

fn patch_of(body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap();
    let b64 = v["response"]["patch"].as_str().expect("base64 patch");
    serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

/// The benchmark's floor (`examples/floor.rs`) answers every request with these bytes: they must be
/// the webhook's own answer to the benchmark's review, or the two servers send different amounts.
#[tokio::test]
async fn the_benchmark_floor_sends_the_webhooks_answer() {
    let shipped = include_str!("../manifests/policy.yaml");
    let (s, _) = state(Policy::from_yaml(shipped).unwrap());
    let review = include_bytes!("../bench/data/review-typical.json").to_vec();
    let (status, _, body) = post(routes::router(s), "/mutate", review).await;
    assert_eq!(status, StatusCode::OK);
    let floor = include_str!("../bench/data/answer-typical.json");
    assert_eq!(String::from_utf8(body).unwrap(), floor);
}

#[tokio::test]
async fn mutate_patches_and_validate_judges() {
    let (s, _) = state(policy(
        "defaults: {ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv6, IPv4]}\nrules: [{name: dual, require: {dualStack: true}}]\n",
    ));
    let app = routes::router(s);
    let (status, ctype, body) = post(
        app.clone(),
        "/mutate",
        review(json!({"type": "ClusterIP", "selector": {"a": "b"}})),
    )
    .await;
    assert_eq!(
        (status, ctype.as_str()),
        (StatusCode::OK, "application/json")
    );
    assert_eq!(
        patch_of(&body),
        json!([{"op": "add", "path": "/spec/ipFamilyPolicy", "value": "PreferDualStack"},
               {"op": "add", "path": "/spec/ipFamilies", "value": ["IPv6", "IPv4"]}])
    );
    let single = json!({"type": "ClusterIP", "clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"});
    let (status, _, body) = post(app, "/validate", review(single)).await;
    assert_eq!(status, StatusCode::OK, "a denial is still HTTP 200");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(v["response"]["uid"], "u-1");
}

/// A review's findings reach the metrics through the router (tests/metrics.rs tests the counting).
#[tokio::test]
async fn findings_of_a_review_are_counted() {
    let (s, registry) = state(policy(
        "rules: [{name: dual, require: {dualStack: true}}, {name: v6, require: {primaryFamily: IPv6}, action: Audit}]\n",
    ));
    let single = json!({"type": "ClusterIP", "clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"});
    let (status, _, _) = post(routes::router(s), "/validate", review(single)).await;
    assert_eq!(status, StatusCode::OK);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        r#"dualstack_webhook_findings_total{endpoint="validate",rule="dual",action="Deny",grandfathered="false"} 1"#,
        r#"dualstack_webhook_findings_total{endpoint="validate",rule="v6",action="Audit",grandfathered="false"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
}

#[tokio::test]
async fn bad_requests_get_a_status_and_a_one_line_reason() {
    let (s, registry) = state(policy(""));
    let app = routes::router(s);
    for (body, want) in [
        (b"".to_vec(), "empty body"),
        (b"{oops".to_vec(), "malformed AdmissionReview"),
        (
            br#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview"}"#.to_vec(),
            "unsupported apiVersion",
        ),
    ] {
        let (status, ctype, text) = post(app.clone(), "/mutate", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(ctype.starts_with("text/plain"));
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.starts_with(want) && text.ends_with('\n') && text.lines().count() == 1,
            "{text:?}"
        );
    }
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &registry).unwrap();
    assert!(metrics.contains(r#"dualstack_webhook_reviews_total{endpoint="mutate",operation="unknown",outcome="invalid"} 3"#), "{metrics}");
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let (s, _) = state(policy(""));
    let (status, _, text) =
        post(routes::router(s), "/mutate", vec![b' '; MAX_BODY_BYTES + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(String::from_utf8(text).unwrap().contains("limit"));
}

#[tokio::test]
async fn a_body_just_under_the_limit_is_read() {
    let (s, _) = state(policy(""));
    let mut body = review(json!({"type": "ClusterIP"}));
    body.resize(MAX_BODY_BYTES, b' '); // trailing whitespace is valid JSON
    let (status, _, _) = post(routes::router(s), "/validate", body).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn wrong_method_and_path() {
    let (s, _) = state(policy(""));
    let app = routes::router(s);
    let get = Request::builder()
        .uri("/mutate")
        .body(Body::empty())
        .unwrap();
    let refused = app.clone().oneshot(get).await.unwrap();
    assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(refused.headers()[header::ALLOW], "POST");
    let (status, _, _) = post(app, "/nope", vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_endpoints() {
    let (s, registry) = state(policy(""));
    let readiness = Readiness::default();
    let app = admin::router(registry, readiness.clone());
    let get = |path: &str| Request::builder().uri(path).body(Body::empty()).unwrap();
    assert_eq!(
        app.clone().oneshot(get("/healthz")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        app.clone().oneshot(get("/readyz")).await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    readiness.set_ready();
    assert_eq!(
        app.clone().oneshot(get("/readyz")).await.unwrap().status(),
        StatusCode::OK
    );
    let _ = post(
        routes::router(s),
        "/mutate",
        review(json!({"type": "ClusterIP"})),
    )
    .await;
    // No Accept header: the Prometheus text format (tests/metrics.rs tests both formats).
    let res = app.oneshot(get("/metrics")).await.unwrap();
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.contains(r#"dualstack_webhook_reviews_total{endpoint="mutate",operation="CREATE",outcome="allowed"} 1"#), "{text}");
    assert!(
        text.contains("dualstack_webhook_review_duration_seconds_count"),
        "{text}"
    );
    assert!(
        text.contains("dualstack_webhook_tls_handshake_failures_total"),
        "{text}"
    );
}

#[tokio::test]
async fn policy_reload_keeps_the_last_good_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    let v1 = format!("{HEADER}defaults: {{ipFamilyPolicy: SingleStack}}\n");
    std::fs::write(&path, &v1).unwrap();
    let (s, registry) = state(Policy::from_yaml(&v1).unwrap());
    let app = routes::router(s.clone());
    let token = CancellationToken::new();
    let task = tokio::spawn(watch_policy(
        path.clone(),
        v1.clone().into_bytes(),
        s.policy.clone(),
        None,
        Duration::from_millis(20),
        s.metrics.clone(),
        token.clone(),
    ));
    let policy_in_patch = |body: Vec<u8>| patch_of(&body)[0]["value"].as_str().unwrap().to_owned();
    let (_, _, body) = post(app.clone(), "/mutate", review(json!({"type": "ClusterIP"}))).await;
    assert_eq!(policy_in_patch(body), "SingleStack");

    // A broken file: counted, logged, the last good policy stays.
    std::fs::write(
        &path,
        format!("{HEADER}defaults: {{ipFamilyPolicy: Bogus}}\n"),
    )
    .unwrap();
    let metric = |registry: &Registry| {
        let mut t = String::new();
        prometheus_client::encoding::text::encode(&mut t, registry).unwrap();
        t
    };
    wait_for(|| {
        metric(&registry).contains(r#"dualstack_webhook_policy_reloads_total{result="failure"} 1"#)
    })
    .await;
    let (_, _, body) = post(app.clone(), "/mutate", review(json!({"type": "ClusterIP"}))).await;
    assert_eq!(policy_in_patch(body), "SingleStack");

    // A good file: takes effect.
    std::fs::write(
        &path,
        format!("{HEADER}defaults: {{ipFamilyPolicy: PreferDualStack}}\n"),
    )
    .unwrap();
    wait_for(|| {
        metric(&registry).contains(r#"dualstack_webhook_policy_reloads_total{result="success"} 1"#)
    })
    .await;
    let (_, _, body) = post(app, "/mutate", review(json!({"type": "ClusterIP"}))).await;
    assert_eq!(policy_in_patch(body), "PreferDualStack");
    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..250 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met within 5 s");
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_arrives_gets_408() {
    let (s, _) = state(policy(""));
    let never = futures_util::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
    let req = Request::builder()
        .method(Method::POST)
        .uri("/mutate")
        .body(Body::from_stream(never))
        .unwrap();
    // Time is paused: the runtime jumps to the body deadline as soon as everything is idle.
    let res = routes::router(s).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
}

/// A request whose body never arrives holds nothing: hundreds of them (more than any slot count a
/// server might keep) do not delay a review, and each ends at its body deadline. (The webhook used
/// to take one of 64 slots per request when its headers arrived: 64 stalled requests made every
/// other review wait a second and get 503.)
#[tokio::test(start_paused = true)]
async fn stalled_bodies_hold_nothing() {
    let (s, _) = state(policy(""));
    let app = routes::router(s);
    let stalled_request = |declared: Option<usize>| {
        let never = futures_util::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
        let mut req = Request::builder().method(Method::POST).uri("/mutate");
        if let Some(n) = declared {
            req = req.header(header::CONTENT_LENGTH, n);
        }
        req.body(Body::from_stream(never)).unwrap()
    };
    let mut stalled = Vec::new();
    for i in 0..300 {
        let declared = [None, Some(4096), Some(MAX_BODY_BYTES)][i % 3];
        stalled.push(tokio::spawn(app.clone().oneshot(stalled_request(declared))));
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let started = tokio::time::Instant::now();
    let (status, _, _) = post(app.clone(), "/mutate", review(json!({"type": "ClusterIP"}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::ZERO, "the review waited");
    for s in stalled {
        assert_eq!(
            s.await.unwrap().unwrap().status(),
            StatusCode::REQUEST_TIMEOUT
        );
    }
}

/// Large bodies that fill their pool and stall keep no small review waiting: small bodies count
/// against a pool of their own.
#[tokio::test(start_paused = true)]
async fn stalled_large_bodies_keep_no_small_review_waiting() {
    let (s, _) = state(policy(""));
    let app = routes::router(s);
    let mut stalled = Vec::new();
    // Enough maximum-size bodies, each declared and begun, to take the whole large pool and more.
    for _ in 0..(LARGE_POOL_BYTES / MAX_BODY_BYTES + 3) {
        let first =
            futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{"))]);
        let body = futures_util::StreamExt::chain(first, futures_util::stream::pending());
        let req = Request::builder()
            .method(Method::POST)
            .uri("/mutate")
            .header(header::CONTENT_LENGTH, MAX_BODY_BYTES)
            .body(Body::from_stream(body))
            .unwrap();
        stalled.push(tokio::spawn(app.clone().oneshot(req)));
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let body = review(json!({"type": "ClusterIP"}));
    let req = Request::builder()
        .method(Method::POST)
        .uri("/mutate")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .unwrap();
    let started = tokio::time::Instant::now();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::ZERO, "the small review waited");
    // The pool holds as many as fit; the others were told at once to retry (503), and the ones
    // it holds end at their body deadline (408).
    let mut statuses = Vec::new();
    for s in stalled {
        statuses.push(s.await.unwrap().unwrap().status());
    }
    let count = |status| statuses.iter().filter(|s| **s == status).count();
    assert_eq!(
        (
            count(StatusCode::REQUEST_TIMEOUT),
            count(StatusCode::SERVICE_UNAVAILABLE)
        ),
        (LARGE_POOL_BYTES / MAX_BODY_BYTES, 3),
        "{statuses:?}"
    );
}

/// A client that goes away mid-body is counted as `cancelled`, not as an invalid review (a
/// connection that resets thousands of streams must not look like a broken API server), and
/// refusals are not timed as reviews.
#[tokio::test]
async fn a_body_cut_off_is_counted_as_cancelled() {
    let (s, registry) = state(policy(""));
    let broken = futures_util::stream::iter([
        Ok(bytes::Bytes::from_static(b"{\"apiVersion\"")),
        Err(std::io::Error::other("stream reset")),
    ]);
    let req = Request::builder()
        .method(Method::POST)
        .uri("/validate")
        .body(Body::from_stream(broken))
        .unwrap();
    let res = routes::router(s).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let line = r#"dualstack_webhook_reviews_total{endpoint="validate",operation="unknown",outcome="cancelled"} 1"#;
    assert!(text.lines().any(|l| l == line), "{text}");
    let invalid = r#"dualstack_webhook_reviews_total{endpoint="validate",operation="unknown",outcome="invalid"} 0"#;
    assert!(text.lines().any(|l| l == invalid), "{text}");
    let timed = r#"dualstack_webhook_review_duration_seconds_count{endpoint="validate"} 0"#;
    assert!(text.lines().any(|l| l == timed), "{text}");
}
