//! `make bench-e2e`: latency of Service creates through the API server with and without the
//! webhook registered, in the same run against the same API server. Prints numbers; asserts none
//! (a loaded 2-core machine makes timings a report, not a test).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use crate::support::{self, Render};

async fn creates(api: &Api<Service>, prefix: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let svc = support::service(&format!("{prefix}-{i}"), json!({}));
        let start = Instant::now();
        api.create(&PostParams::default(), &svc)
            .await
            .unwrap_or_else(|e| panic!("{prefix}-{i}: {e}"));
        out.push(start.elapsed());
    }
    out
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::test]
#[ignore = "benchmark: make bench-e2e"]
async fn service_create_latency() {
    let n: usize = std::env::var("E2E_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let client = support::client().await;
    let api = support::namespace(&client, "e2e-bench").await;
    let ca =
        std::fs::read_to_string(format!("{}/ca.crt", support::env("E2E_WEBHOOK_CERTS"))).unwrap();
    let url = support::env("E2E_WEBHOOK_URL");
    let render = Render {
        name: "dualstack-webhook",
        base_url: &url,
        ca_pem: &ca,
        failure_policy: None,
        only_namespace: None,
    };
    support::apply_webhooks(&client, &render).await;
    support::wait_mutating(&client, "e2e-bench", "PreferDualStack").await;
    // Blocks of 50, alternating with and without the configurations registered, so that load from
    // other processes on this shared machine falls on both sides alike.
    const BLOCK: usize = 50;
    let admin: std::net::SocketAddr = support::env("E2E_WEBHOOK_ADMIN").parse().unwrap();
    let scrape = || {
        let text = support::http_get(admin, "/metrics").unwrap().1;
        let sum = support::metric(&text, "dualstack_webhook_review_duration_seconds_sum", &[]);
        let count = support::metric(
            &text,
            "dualstack_webhook_review_duration_seconds_count",
            &[],
        );
        (sum, count)
    };
    creates(&api, "warm-with", 20).await;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let (mut webhook_seconds, mut reviews) = (0.0, 0.0);
    for block in 0..n.div_ceil(BLOCK) {
        let size = BLOCK.min(n - block * BLOCK);
        let (s0, c0) = scrape();
        with.extend(creates(&api, &format!("with-{block}"), size).await);
        let (s1, c1) = scrape();
        (webhook_seconds, reviews) = (webhook_seconds + s1 - s0, reviews + c1 - c0);
        support::delete_webhooks(&client, "dualstack-webhook").await;
        support::wait_mutating(&client, "e2e-bench", "SingleStack").await;
        if block == 0 {
            creates(&api, "warm-without", 20).await;
        }
        without.extend(creates(&api, &format!("without-{block}"), size).await);
        support::apply_webhooks(&client, &render).await;
        support::wait_mutating(&client, "e2e-bench", "PreferDualStack").await;
    }
    with.sort();
    without.sort();
    let row = |name: &str, d: &[Duration]| {
        let mean = d.iter().sum::<Duration>() / d.len() as u32;
        println!(
            "{name:<16} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            ms(pct(d, 50.0)),
            ms(pct(d, 90.0)),
            ms(pct(d, 99.0)),
            ms(mean),
            ms(*d.last().unwrap())
        );
    };
    println!();
    println!(
        "bench-e2e: {n} sequential Service creates per row through kube-apiserver v1.37.2 (ms)"
    );
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "", "p50", "p90", "p99", "mean", "max"
    );
    row("with webhook", &with);
    row("without webhook", &without);
    println!(
        "ratio with/without: p50 {:.2}x, p99 {:.2}x",
        ms(pct(&with, 50.0)) / ms(pct(&without, 50.0)),
        ms(pct(&with, 99.0)) / ms(pct(&without, 99.0))
    );
    // Each create with the webhook is two reviews (/mutate and /validate).
    println!(
        "webhook's own time per review (body read to answer encoded, from /metrics): mean {:.3} ms over {reviews} reviews",
        1000.0 * webhook_seconds / reviews.max(1.0)
    );
}
