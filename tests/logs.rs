//! The review log lines as the running server writes them, over real TLS on 127.0.0.1: one line a
//! review, in its connection's span over HTTP/1.1 and over HTTP/2.
//!
//! The only test in this binary: the subscriber it installs is the process's, so that it sees
//! every task of the server whatever thread runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::*;
use hyper::StatusCode;

/// The review lines in `out` so far.
fn patched(out: &LogBuffer) -> Vec<String> {
    let mut lines = out.lines();
    lines.retain(|l| l.contains(": patched "));
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_review_is_one_line_in_its_connections_span_over_http1_and_http2() {
    let out = LogBuffer::default();
    tracing::subscriber::set_global_default(out.subscriber()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (webhook, config) = start_in(dir.path(), Default::default()).await;

    let stream = bounded("connect", connect(webhook.addr, config.clone()))
        .await
        .unwrap();
    let h1_client = stream.get_ref().0.local_addr().unwrap();
    let (status, _) = bounded("h1", h1_post(stream, "/mutate", REVIEW))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);

    let stream = connect(webhook.addr, with_alpn(&config, H2));
    let stream = bounded("connect", stream).await.unwrap();
    let h2_client_addr = stream.get_ref().0.local_addr().unwrap();
    let mut h2 = bounded("h2 handshake", h2_client(stream)).await.unwrap();
    let (status, _) = bounded("h2", h2_post(&mut h2, "/mutate", REVIEW))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);

    // The lines are written once the answers are handed over: wait for both.
    let written = async {
        while patched(&out).len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    bounded("two review lines", written).await;
    webhook.stop().await;
    let review = format!(
        r#"dualstack_webhook::server::routes: patched endpoint=Mutate uid="{REVIEW_UID}" namespace="apps" name="web" operation=Create dry_run=false denial=None"#
    );
    assert_eq!(
        patched(&out),
        [
            format!(" INFO conn{{client.addr={h1_client}}}: {review}"),
            format!(" INFO conn{{client.addr={h2_client_addr}}}: {review}"),
        ]
    );
}
