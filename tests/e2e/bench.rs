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
    out.sort();
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

    creates(&api, "warm-with", 20).await;
    let with = creates(&api, "with", n).await;
    support::delete_webhooks(&client, "dualstack-webhook").await;
    support::wait_mutating(&client, "e2e-bench", "SingleStack").await;
    creates(&api, "warm-without", 20).await;
    let without = creates(&api, "without", n).await;
    // Leave the cluster as the driver registered it.
    support::apply_webhooks(&client, &render).await;

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
}
