//! Bodies over real sockets: memory under many maximum-size reviews at once, and stalled streams.
//! In a test binary of their own: the first measures this process's peak RSS, which other tests
//! in the same process would move.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use dualstack_webhook::server::ServerOptions;
use dualstack_webhook::server::body::{LARGE_POOL_BYTES, MAX_BODY_BYTES};
use http_body_util::{BodyExt, StreamBody};
use hyper::StatusCode;
use hyper::body::Frame;

/// A valid review of exactly `len` bytes (a Service with one large annotation), streamed slowly in
/// 64 KiB chunks of one shared buffer, with its Content-Length, as the API server sends reviews.
fn large_review(
    len: usize,
) -> (
    usize,
    http_body_util::combinators::BoxBody<Bytes, std::io::Error>,
) {
    let prefix = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-big","kind":{"group":"","version":"v1","kind":"Service"},"resource":{"group":"","version":"v1","resource":"services"},"name":"big","namespace":"apps","operation":"CREATE","userInfo":{"username":"x"},"object":{"apiVersion":"v1","kind":"Service","metadata":{"name":"big","namespace":"apps","annotations":{"a":""#;
    let suffix = br#""}},"spec":{"type":"ClusterIP","selector":{"a":"b"},"ports":[{"port":80}]}},"dryRun":false}}"#;
    let chunk = Bytes::from(vec![b'a'; 64 * 1024]);
    let filler = len - prefix.len() - suffix.len();
    let (whole, rest) = (filler / chunk.len(), filler % chunk.len());
    let frames = std::iter::once(Bytes::from_static(prefix))
        .chain(std::iter::repeat_n(chunk.clone(), whole))
        .chain([chunk.slice(..rest), Bytes::from_static(suffix)]);
    let slow = futures_util::StreamExt::then(futures_util::stream::iter(frames), |b| async move {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok::<_, std::io::Error>(Frame::data(b))
    });
    (len, StreamBody::new(slow).boxed())
}

/// 64 maximum-size reviews, sent slowly and all at once over eight HTTP/2 connections: the
/// bodies being received count against a fixed budget (those it has no room for are answered 503
/// at once), so the peak RSS stays inside the pod's memory limit minus a quarter (128 Mi − 25 %,
/// for this whole test process, client included), memory comes back afterwards, and a
/// well-behaved client keeps being answered. (Before the budget: 64 × 8 MiB could be buffered.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_maximum_size_reviews_fit_the_memory_limit() {
    const MAX: usize = MAX_BODY_BYTES;
    let dir = tempfile::tempdir().unwrap();
    let (webhook, config) = start_in(dir.path(), ServerOptions::default()).await;
    let mut senders = Vec::new();
    for _ in 0..8 {
        let stream = connect(webhook.addr, with_alpn(&config, H2)).await.unwrap();
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        senders.push(sender);
    }
    let before = rss_kib();
    reset_hwm();
    let prober = Prober::start(webhook.addr, config.clone());
    let steady = tokio::spawn(kept_connection_latencies(webhook.addr, config.clone(), 100));
    let mut sent = Vec::new();
    for i in 0..64 {
        let mut sender = senders[i % senders.len()].clone();
        sent.push(tokio::spawn(async move {
            let (len, body) = large_review(MAX);
            let req = hyper::Request::post("https://localhost/mutate")
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(hyper::header::CONTENT_LENGTH, len)
                .body(body)
                .unwrap();
            let res = sender.send_request(req).await?;
            let status = res.status();
            let _ = res.into_body().collect().await;
            Ok::<_, hyper::Error>(status)
        }));
    }
    let mut statuses = Vec::new();
    for s in sent {
        statuses.push(bounded("a large review", s).await.unwrap());
    }
    let stats = prober.finish().await;
    let latencies = bounded("the kept connection's reviews", steady)
        .await
        .unwrap();
    drop(senders);
    // The connections' tasks end and give their buffers back within a moment; on a loaded
    // machine that moment can exceed half a second, so wait (up to 5 s) for what should come back.
    let settled = Instant::now() + Duration::from_secs(5);
    let mut after = rss_kib();
    while after >= before + 16 * 1024 && Instant::now() < settled {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = rss_kib();
    }
    let peak = vm_hwm_kib();
    let answered = statuses
        .iter()
        .filter(|s| matches!(s, Ok(StatusCode::OK)))
        .count();
    eprintln!(
        "rss before {} MiB, peak {} MiB, after {} MiB; {answered} of 64 answered; {statuses:?}; prober {stats:?}; kept connection p50 {:?} p99 {:?}",
        before / 1024,
        peak / 1024,
        after / 1024,
        latencies[49],
        latencies[98]
    );
    // The webhook's own RSS under load is ~24 MiB (bench/results/summary.md): what the attack adds
    // must fit the rest of 96 MiB.
    assert!(
        peak < before + 72 * 1024,
        "peak RSS {} MiB, {} before",
        peak / 1024,
        before / 1024
    );
    assert!(
        after < before + 16 * 1024,
        "RSS {} MiB after, {} before",
        after / 1024,
        before / 1024
    );
    // As many as the large-body pool holds are answered; the others are told at once to retry.
    let pool = LARGE_POOL_BYTES / MAX;
    assert!(
        answered >= pool,
        "only {answered} large reviews answered: {statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| matches!(s, Ok(StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE))),
        "{statuses:?}"
    );
    assert_served(&stats, Duration::from_millis(500));
    assert!(
        latencies[98] < Duration::from_millis(50),
        "p99 {:?}",
        latencies[98]
    );
    webhook.stop().await;
}

/// Twenty HTTP/2 connections with every stream they may open (their headers sent, a small body
/// declared, never a byte of it) hold nothing a review needs: a client on its own connection keeps
/// its p99 under 50 ms. (Before: the 64 review slots were taken by the first 64 such streams, and
/// every other review waited a second for one and got 503.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_streams_on_twenty_connections_keep_no_review_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let (webhook, config) = start_in(dir.path(), ServerOptions::default()).await;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let stream = connect(webhook.addr, with_alpn(&config, H2)).await.unwrap();
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        for _ in 0..dualstack_webhook::server::MAX_CONCURRENT_STREAMS {
            let mut sender = sender.clone();
            let never = futures_util::stream::pending::<Result<Frame<Bytes>, std::io::Error>>();
            let req = hyper::Request::post("https://localhost/mutate")
                .header(hyper::header::CONTENT_LENGTH, 4096)
                .body(StreamBody::new(never).boxed())
                .unwrap();
            stalled.push(tokio::spawn(async move { sender.send_request(req).await }));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let latencies = kept_connection_latencies(webhook.addr, config.clone(), 100).await;
    let p99 = latencies[98];
    eprintln!(
        "p50 {:?} p99 {:?} with {} stalled streams",
        latencies[49],
        p99,
        stalled.len()
    );
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
    for s in &stalled {
        s.abort();
    }
    webhook.stop().await;
}

/// `n` reviews one after another on one HTTP/2 connection, as the API server sends them; their
/// latencies, sorted.
async fn kept_connection_latencies(
    addr: std::net::SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
    n: usize,
) -> Vec<Duration> {
    let stream = connect(addr, with_alpn(&config, H2)).await.unwrap();
    // As Go's client does: without it, Nagle holds the DATA frame behind the HEADERS frame until
    // the server's delayed ACK, 40 ms a request.
    stream.get_ref().0.set_nodelay(true).unwrap();
    let mut client = h2_client(stream).await.unwrap();
    let mut latencies = Vec::new();
    for _ in 0..n {
        let started = std::time::Instant::now();
        let (status, body) = bounded("a review", h2_post(&mut client, "/mutate", REVIEW))
            .await
            .unwrap();
        latencies.push(started.elapsed());
        assert!(is_good_answer(status, &body), "{status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    latencies.sort();
    latencies
}
