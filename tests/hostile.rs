//! Hostile and broken clients against the real router over real TLS on 127.0.0.1: bodies that are
//! not AdmissionReviews, oversized bodies, slowloris heads, handshake floods, plain HTTP and
//! TLS 1.0/1.1 on the TLS port, and an HTTP/2 client that never reads. In every test a
//! well-behaved client ([`common::Prober`]) runs alongside and must be served throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use dualstack_webhook::server::body::MAX_BODY_BYTES;
use dualstack_webhook::server::{MAX_CONCURRENT_STREAMS, ServerOptions};
use http_body_util::{BodyExt, StreamBody};
use hyper::StatusCode;
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The memory test takes this for writing, every other test for reading: readings of this
/// process's RSS mean nothing while another test in it allocates.
static MEMORY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Reads until EOF or error and returns what arrived and how long the peer took to close.
async fn until_closed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    bounded("the server to close the connection", async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    (got, started.elapsed())
}

// === 1. bodies that are not AdmissionReviews ===

fn nested(depth: usize, open: &str, close: &str, inner: &str) -> Vec<u8> {
    let mut s = open.repeat(depth);
    s += inner;
    s += &close.repeat(depth);
    s.into_bytes()
}

/// The review with its `request.object` replaced by `object` (raw JSON text).
fn with_object(object: &str) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(REVIEW).unwrap();
    v["request"]["object"] = serde_json::Value::Null;
    let text = serde_json::to_string(&v).unwrap();
    text.replacen(r#""object":null"#, &format!(r#""object":{object}"#,), 1)
        .into_bytes()
}

#[tokio::test]
async fn bodies_that_are_not_reviews_get_400_and_others_are_served() {
    let _serial = MEMORY.read().await;
    let dir = tempfile::tempdir().unwrap();
    let (webhook, config) = start_in(dir.path(), ServerOptions::default()).await;
    let prober = Prober::start(webhook.addr, config.clone());

    let review = String::from_utf8(REVIEW.to_vec()).unwrap();
    let deep = 200_000; // far past serde_json's recursion limit of 128
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("whitespace", b" \r\n\t ".to_vec()),
        ("not json", b"<AdmissionReview/>".to_vec()),
        ("open brace", b"{".to_vec()),
        ("truncated", REVIEW[..REVIEW.len() / 2].to_vec()),
        ("truncated by one", REVIEW[..REVIEW.len() - 2].to_vec()),
        ("null", b"null".to_vec()),
        ("array", b"[]".to_vec()),
        ("string", b"\"AdmissionReview\"".to_vec()),
        ("not utf-8", vec![0xff, 0xfe, b'{', 0x80, b'}']),
        ("nul bytes", vec![0; 1024]),
        ("nested arrays", nested(deep, "[", "]", "")),
        ("nested objects", nested(deep, r#"{"a":"#, "}", "1")),
        ("object is an array", with_object("[1, 2]")),
        ("object is a string", with_object(r#""svc""#)),
        (
            "spec is a string",
            with_object(r#"{"metadata": {"name": "web"}, "spec": "x"}"#),
        ),
        (
            "wrong apiVersion",
            review
                .replace("admission.k8s.io/v1", "admission.k8s.io/v2")
                .into_bytes(),
        ),
        (
            "no apiVersion",
            review
                .replace(r#""apiVersion": "admission.k8s.io/v1","#, "")
                .into_bytes(),
        ),
        (
            "wrong kind",
            review
                .replacen(
                    r#""kind": "AdmissionReview""#,
                    r#""kind": "TokenReview""#,
                    1,
                )
                .into_bytes(),
        ),
        ("no uid", review.replace(REVIEW_UID, "").into_bytes()),
        (
            "no request",
            br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#.to_vec(),
        ),
    ];
    // Deep nesting where serde skips a value (an unknown member of the object or of the review)
    // is skipped without recursion: a review like any other, answered with its patch.
    let deep_object = String::from_utf8(nested(deep, r#"{"a":"#, "}", "1")).unwrap();
    let deep_array = String::from_utf8(nested(deep, "[", "]", "")).unwrap();
    let answered: Vec<(&str, Vec<u8>)> = vec![
        (
            "nested in an unknown member of the object",
            review
                .replacen(
                    r#""spec": {"#,
                    &format!(r#""x": {deep_object}, "spec": {{"#),
                    1,
                )
                .into_bytes(),
        ),
        (
            "nested in an unknown member of the review",
            review
                .replacen(
                    r#""userInfo": {"#,
                    &format!(r#""x": {deep_array}, "userInfo": {{"#),
                    1,
                )
                .into_bytes(),
        ),
    ];
    for h2 in [false, true] {
        let alpn = if h2 { H2 } else { H1 };
        let config = with_alpn(&config, alpn);
        for (name, body) in &cases {
            let stream = bounded("connect", connect(webhook.addr, config.clone()))
                .await
                .unwrap();
            let body = Bytes::from(body.clone());
            let result = bounded(name, async {
                if h2 {
                    h2_post(&mut h2_client(stream).await?, "/mutate", body).await
                } else {
                    h1_post(stream, "/mutate", body).await
                }
            })
            .await;
            let (status, reason) = result.unwrap_or_else(|e| panic!("{name} (h2 {h2}): {e}"));
            let reason = String::from_utf8_lossy(&reason);
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{name} (h2 {h2}): {reason}"
            );
            assert_eq!(
                reason.lines().count(),
                1,
                "{name}: one-line reason: {reason:?}"
            );
            assert!(reason.len() < 400, "{name}: short reason: {reason:?}");
        }
    }
    for (name, body) in answered {
        let stream = connect(webhook.addr, config.clone()).await.unwrap();
        let (status, body) = bounded(name, h1_post(stream, "/mutate", body))
            .await
            .unwrap();
        assert!(
            is_good_answer(status, &body),
            "{name}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    // And the genuine review still gets its patch on the same server.
    let stream = connect(webhook.addr, config.clone()).await.unwrap();
    let (status, body) = bounded("review", h1_post(stream, "/mutate", REVIEW))
        .await
        .unwrap();
    assert!(
        is_good_answer(status, &body),
        "{status} {}",
        String::from_utf8_lossy(&body)
    );
    let invalid = r#"reviews_total{endpoint="mutate",operation="unknown",outcome="invalid"}"#;
    assert_eq!(webhook.counter(invalid), 2 * cases.len() as u64);

    assert_served(&prober.finish().await, Duration::from_secs(2));
    webhook.stop().await;
}

// === 2. oversized bodies ===

/// A body of `len` bytes streamed in 64 KiB chunks of one shared buffer, so the client itself
/// holds almost nothing of it.
fn streamed(len: usize) -> http_body_util::combinators::BoxBody<Bytes, std::io::Error> {
    let chunk = Bytes::from(vec![b' '; 64 * 1024]);
    let n = len / chunk.len();
    let chunks = std::iter::repeat_n(chunk, n).map(|c| Ok::<_, std::io::Error>(Frame::data(c)));
    StreamBody::new(futures_util::stream::iter(chunks)).boxed()
}

/// Posts `len` bytes over HTTP/2 (an early 413 is delivered to the client as a response, not a
/// reset connection) and returns the status.
async fn post_streamed(
    addr: SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
    len: usize,
) -> StatusCode {
    let stream = connect(addr, with_alpn(&config, H2)).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("https://localhost/mutate")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(streamed(len))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status();
    let _ = res.into_body().collect().await;
    status
}

#[tokio::test]
async fn oversized_bodies_get_413_and_memory_stays_flat() {
    let _alone = MEMORY.write().await;
    let dir = tempfile::tempdir().unwrap();
    let (webhook, config) = start_in(dir.path(), ServerOptions::default()).await;

    // Just over the limit, with a Content-Length (refused before it is read) and without.
    let over = MAX_BODY_BYTES + 64 * 1024;
    let stream = connect(webhook.addr, with_alpn(&config, H1)).await.unwrap();
    let result = bounded("h1 413", h1_post(stream, "/mutate", vec![b' '; over])).await;
    // hyper may see the early answer or the closed connection first; when it sees an answer, 413.
    if let Ok((status, reason)) = result {
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reason:?}");
    }
    assert_eq!(
        bounded("h2 413", post_streamed(webhook.addr, config.clone(), over)).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // Warm up (allocator arenas, TLS sessions), then measure: repeated 64 MiB uploads, two at a
    // time, must not raise the peak RSS by much more than the two 8 MiB buffers they may fill.
    let big = 64 * 1024 * 1024;
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(post_streamed(webhook.addr, config.clone(), big).await);
    }
    let before = rss_kib();
    reset_hwm();
    for _ in 0..8 {
        let (a, b) = tokio::join!(
            bounded("413", post_streamed(webhook.addr, config.clone(), big)),
            bounded("413", post_streamed(webhook.addr, config.clone(), big)),
        );
        statuses.extend([a, b]);
    }
    let (peak, after) = (vm_hwm_kib(), rss_kib());
    let mib = |kib: u64| kib / 1024;
    eprintln!(
        "rss before {} MiB, peak {} MiB, after {} MiB",
        mib(before),
        mib(peak),
        mib(after)
    );
    assert!(
        peak < before + 48 * 1024,
        "peak RSS {} MiB over {} MiB before",
        mib(peak),
        mib(before)
    );
    assert!(
        after < before + 16 * 1024,
        "RSS {} MiB after, {} MiB before",
        mib(after),
        mib(before)
    );
    assert!(
        statuses.iter().all(|s| *s == StatusCode::PAYLOAD_TOO_LARGE),
        "{statuses:?}"
    );

    // Still serving.
    let stream = connect(webhook.addr, config.clone()).await.unwrap();
    let (status, body) = bounded("review", h1_post(stream, "/mutate", REVIEW))
        .await
        .unwrap();
    assert!(is_good_answer(status, &body));
    webhook.stop().await;
}

// === 3. slowloris ===

#[tokio::test]
async fn heads_sent_one_byte_at_a_time_are_cut_off_by_the_header_timeout() {
    let _serial = MEMORY.read().await;
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_millis(800);
    let options = ServerOptions {
        header_read_timeout: timeout,
        ..Default::default()
    };
    let (webhook, config) = start_in(dir.path(), options).await;
    let prober = Prober::start(webhook.addr, config.clone());

    // 20 clients, each dripping a request head one byte every 20 ms: 100 bytes take 2 s, well past
    // the timeout, and every byte arrives long before a per-read timeout would fire.
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Pad: {}\r\n\r\n",
        REVIEW.len(),
        "a".repeat(200)
    );
    let drips = (0..20).map(|_| {
        let config = with_alpn(&config, H1);
        let head = head.clone();
        tokio::spawn(async move {
            let mut stream = connect(webhook.addr, config).await.unwrap();
            let started = Instant::now();
            let mut sent = 0;
            for byte in head.as_bytes() {
                if stream.write_all(&[*byte]).await.is_err() || stream.flush().await.is_err() {
                    break;
                }
                sent += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                if started.elapsed() > BOUND {
                    break;
                }
            }
            let (rest, _) = until_closed(&mut stream).await;
            (
                started.elapsed(),
                sent,
                String::from_utf8_lossy(&rest).into_owned(),
            )
        })
    });
    for drip in drips.collect::<Vec<_>>() {
        let (elapsed, sent, answer) = bounded("a slowloris client", drip).await.unwrap();
        assert!(
            sent < head.len(),
            "the whole head got through in {elapsed:?}"
        );
        assert!(!answer.contains(" 200 "), "{answer}");
        assert!(elapsed >= timeout, "{elapsed:?}");
        assert!(elapsed < timeout * 4, "cut off only after {elapsed:?}");
    }
    assert_served(&prober.finish().await, Duration::from_secs(2));
    webhook.stop().await;
}

// === 4. handshake floods ===

#[tokio::test]
async fn hundreds_of_unfinished_handshakes_are_cut_off_and_others_served() {
    let _serial = MEMORY.read().await;
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_millis(1500);
    let options = ServerOptions {
        handshake_timeout: timeout,
        ..Default::default()
    };
    let (webhook, config) = start_in(dir.path(), options).await;
    let prober = Prober::start(webhook.addr, config.clone());

    // 300 connections: silent ones, and ones that start a ClientHello record (a header announcing
    // 512 bytes and a few of them) and stop.
    let flood = 300;
    let started = Instant::now();
    let mut conns = Vec::new();
    for i in 0..flood {
        let mut tcp = bounded("connect", TcpStream::connect(webhook.addr))
            .await
            .unwrap();
        if i % 2 == 1 {
            tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
                .await
                .unwrap();
        }
        conns.push(tcp);
    }
    let closed = conns.into_iter().map(|mut tcp| {
        tokio::spawn(async move {
            let (got, _) = until_closed(&mut tcp).await;
            got
        })
    });
    for conn in closed.collect::<Vec<_>>() {
        let got = bounded("flood connection", conn).await.unwrap();
        // Nothing but (at most) a TLS alert record.
        assert!(got.is_empty() || got[0] == 0x15, "{got:?}");
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= timeout, "closed after {elapsed:?}");
    assert!(elapsed < timeout * 4, "closed only after {elapsed:?}");
    // Served promptly throughout: well under the handshake timeout the flood sat in.
    assert_served(&prober.finish().await, timeout);
    assert!(webhook.counter("tls_handshake_failures_total") >= flood);
    webhook.stop().await;
}

// === 5. plain HTTP and old TLS on the TLS port ===

#[tokio::test]
async fn plain_http_on_the_tls_port_is_refused() {
    let _serial = MEMORY.read().await;
    let dir = tempfile::tempdir().unwrap();
    let (webhook, config) = start_in(dir.path(), ServerOptions::default()).await;
    let prober = Prober::start(webhook.addr, config);

    for request in [
        format!(
            "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            REVIEW.len()
        )
        .into_bytes(),
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
    ] {
        let mut tcp = TcpStream::connect(webhook.addr).await.unwrap();
        tcp.write_all(&request).await.unwrap();
        let _ = tcp.write_all(REVIEW).await;
        let (got, elapsed) = until_closed(&mut tcp).await;
        assert!(!got.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&got));
        // A fatal alert at most, and at once: not after the 10 s handshake timeout.
        assert!(got.is_empty() || got[0] == 0x15, "{got:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }
    assert!(webhook.counter("tls_handshake_failures_total") >= 3);
    assert_served(&prober.finish().await, Duration::from_secs(2));
    webhook.stop().await;
}

/// A TLS 1.0/1.1-era ClientHello (no `supported_versions`, so its version is the highest it
/// speaks) offering RSA and ECDHE CBC suites, in a record of that version.
fn legacy_client_hello(version: [u8; 2]) -> Vec<u8> {
    // ECDHE-ECDSA-AES128-GCM (what the generated P-256 certificate and TLS 1.2 need), then the
    // CBC suites of the TLS 1.0 era.
    let suites: &[u8] = &[
        0xc0, 0x2b, 0xc0, 0x09, 0xc0, 0x13, 0xc0, 0x14, 0x00, 0x2f, 0x00, 0x35, 0x00, 0x0a,
    ];
    let mut ext = Vec::new();
    // server_name "localhost"
    let name = b"localhost";
    let mut sni = vec![0x00];
    sni.extend((name.len() as u16).to_be_bytes());
    sni.extend(name);
    let list = [((sni.len()) as u16).to_be_bytes().to_vec(), sni].concat();
    ext.extend([0x00, 0x00]);
    ext.extend((list.len() as u16).to_be_bytes());
    ext.extend(list);
    // supported_groups: secp256r1, x25519; ec_point_formats: uncompressed
    ext.extend([0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x17, 0x00, 0x1d]);
    ext.extend([0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    ext.extend([
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
    ]);

    let mut body = Vec::new();
    body.extend(version);
    body.extend([0x42; 32]); // random
    body.push(0); // session id
    body.extend((suites.len() as u16).to_be_bytes());
    body.extend(suites);
    body.extend([0x01, 0x00]); // compression: null
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);

    let mut hs = vec![0x01]; // ClientHello
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut record = vec![0x16];
    record.extend(version);
    record.extend((hs.len() as u16).to_be_bytes());
    record.extend(hs);
    record
}

#[tokio::test]
async fn tls10_and_tls11_client_hellos_are_refused_with_an_alert() {
    let _serial = MEMORY.read().await;
    let dir = tempfile::tempdir().unwrap();
    let (webhook, config) = start_in(dir.path(), ServerOptions::default()).await;
    let prober = Prober::start(webhook.addr, config);

    for (name, version) in [("TLS 1.0", [0x03, 0x01]), ("TLS 1.1", [0x03, 0x02])] {
        let mut tcp = TcpStream::connect(webhook.addr).await.unwrap();
        tcp.write_all(&legacy_client_hello(version)).await.unwrap();
        let (got, elapsed) = until_closed(&mut tcp).await;
        // One fatal alert record, protocol_version (70) or handshake_failure (40), then close:
        // no ServerHello.
        assert_eq!(got.len(), 7, "{name}: {got:02x?}");
        assert_eq!(got[0], 0x15, "{name}: an alert record, got {got:02x?}");
        assert_eq!(&got[3..5], &[0x00, 0x02], "{name}: {got:02x?}");
        assert_eq!(got[5], 2, "{name}: fatal: {got:02x?}");
        assert!([70, 40].contains(&got[6]), "{name}: alert {}", got[6]);
        assert!(elapsed < Duration::from_secs(2), "{name}: {elapsed:?}");
    }
    // The same hello claiming TLS 1.2 is answered with a ServerHello: the refusal above is about
    // the version, not a malformed message.
    let mut tcp = TcpStream::connect(webhook.addr).await.unwrap();
    tcp.write_all(&legacy_client_hello([0x03, 0x03]))
        .await
        .unwrap();
    let mut head = [0u8; 6];
    bounded("server hello", tcp.read_exact(&mut head))
        .await
        .unwrap();
    assert_eq!(
        (head[0], head[5]),
        (0x16, 0x02),
        "handshake record, ServerHello: {head:02x?}"
    );

    assert_served(&prober.finish().await, Duration::from_secs(2));
    webhook.stop().await;
}

// === 6. an HTTP/2 client that never reads ===

/// An HTTP/2 frame: 24-bit length, type, flags, stream id.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// HPACK for `POST https://localhost/mutate` without Huffman coding or indexing.
fn request_headers() -> Vec<u8> {
    let mut h = vec![0x83, 0x87]; // :method POST, :scheme https (static table)
    for (index, value) in [
        (0x04u8, "/mutate"),
        (0x01, "localhost"),
        (0x1f, "application/json"),
    ] {
        h.push(index); // literal without indexing, indexed name (4-bit prefix, 0x0f+ for 31)
        if index == 0x1f {
            h.pop();
            h.extend([0x0f, 0x10]); // content-type is static index 31
        }
        h.push(value.len() as u8);
        h.extend(value.as_bytes());
    }
    h
}

/// Connects with h2 and writes the preface, SETTINGS and `streams` complete POSTs, never reading.
async fn never_reading_h2(
    addr: SocketAddr,
    config: &std::sync::Arc<rustls::ClientConfig>,
    streams: u32,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut stream = connect(addr, with_alpn(config, H2)).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    let headers = request_headers();
    for i in 0..streams {
        let id = 2 * i + 1;
        out.extend(frame(0x1, 0x4, id, &headers)); // HEADERS, END_HEADERS
        // A tiny body (answered 400): the connection's flow-control window is 64 KiB until
        // the server's WINDOW_UPDATE, which this client never reads, and a client that sends past
        // it is dropped for that instead.
        out.extend(frame(0x0, 0x1, id, b"{}")); // DATA, END_STREAM
    }
    // The server may stop reading once its own writes back up; that must not stall the test.
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(&out)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.flush()).await;
    stream
}

#[tokio::test]
async fn an_http2_client_that_opens_streams_and_never_reads_does_not_hold_up_others() {
    let _serial = MEMORY.read().await;
    let dir = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        http2_keep_alive_interval: Some(Duration::from_millis(500)),
        http2_keep_alive_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let (webhook, config) = start_in(dir.path(), options).await;
    let prober = Prober::start(webhook.addr, config.clone());

    // Two clients that write without ever reading a byte: one opens as many streams as the
    // server allows (each a complete POST, answered into a connection nobody reads), the other
    // ten times as many. Answers, SETTINGS, pings and refusals pile up unread.
    let started = Instant::now();
    let mut at_limit = never_reading_h2(webhook.addr, &config, MAX_CONCURRENT_STREAMS).await;
    let mut over_limit = never_reading_h2(webhook.addr, &config, 10 * MAX_CONCURRENT_STREAMS).await;
    // Others are served while the streams sit unread.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = prober.finish().await;

    // The server gives up on both: on the first because it does not answer pings (reading now
    // finds the end of the connection, not an endless wait), on the second because the streams
    // past the limit are refused and a peer that keeps sending on refused streams is dropped.
    for conn in [&mut at_limit, &mut over_limit] {
        let (got, _) = until_closed(conn).await;
        assert!(!got.is_empty(), "answers, pings or GOAWAY were sent");
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "held for {elapsed:?}");
    assert_served(&stats, Duration::from_secs(2));
    webhook.stop().await;
}
