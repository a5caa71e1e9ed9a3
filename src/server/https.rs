//! The accept loop of both listeners: the webhook's HTTPS port and the plain-HTTP admin port.
//!
//! One loop serves either, generic over how an accepted TCP stream is prepared (`Prepare`): a
//! TLS handshake under a timeout, or nothing. Either way the loop only accepts: each connection
//! gets its own task, in which the handshake runs, so a slow or silent client cannot hold up the
//! others (this is why the handshake is not done inside an `axum::serve::Listener`, which axum
//! awaits sequentially). Both listeners get the same protections:
//!
//! - a header read timeout, a longer HTTP/1.1 keep-alive idle limit between requests, and
//!   HTTP/2 pings (`deadline`);
//! - a cap on a request head's size ([`MAX_HEAD_BYTES`], [`MAX_HEADER_LIST_BYTES`]);
//! - a cap on open connections per listener and per client IP address. At the listener's cap a
//!   new connection takes the place of the oldest one that has sent no request in the 250 ms or
//!   more since it was accepted (a TLS handshake or a first request head still under way), or,
//!   when there is none, waits (the loop stops accepting and new connections wait in the
//!   kernel's listen backlog); past an address's cap connections are closed at once
//!   ([`ServerOptions`]).
//!
//! # Memory
//!
//! What one connection holds at most, measured with the `serve --dev` binary (debug build) and
//! 100–120 connections of each kind (`tests/limits.rs` asserts what floods of them add):
//!
//! | connection | measured | counted |
//! |---|---|---|
//! | TLS handshake under way (rustls buffers a ClientHello of up to 64 KiB) | 77 KiB | 80 KiB |
//! | HTTPS, HTTP/1.1: TLS, a head of up to [`MAX_HEAD_BYTES`], one request | 53 KiB | 80 KiB |
//! | HTTPS, HTTP/2 without requests | 51 KiB | 56 KiB |
//! | … and [`MAX_CONCURRENT_STREAMS`] requests, 32 KB of bodies unread | 277 KiB | 328 KiB |
//! | admin, HTTP/1.1: a head of up to [`MAX_HEAD_BYTES`], one request | 32 KiB | 40 KiB |
//!
//! An HTTP/2 request holds its head while the router has it: at most [`MAX_HEADER_LIST_BYTES`]
//! on the wire, but some 6 times that decoded when it is made of a hundred empty fields (a field
//! counts 32 bytes and more on the wire, and takes about 200 in memory): 24 KiB measured, 26
//! counted. Its connection also holds up to [`H2_WINDOW_BYTES`] of request bodies not yet read.
//! So an HTTP/2 connection holds at most 56 + 64 + 8 × 26 = 328 KiB, and the listeners together
//! at most [`MAX_CONNECTIONS`] × 328 KiB = 41 MiB (10 MiB if no client speaks HTTP/2) and
//! [`ADMIN_MAX_CONNECTIONS`] × 40 KiB = 5 MiB, whatever clients do; one client address at most
//! [`MAX_CONNECTIONS_PER_IP`] × 328 KiB = 10 MiB. Bodies, once read, are the router's budget.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::BoxError;
use crate::metrics::Metrics;

mod deadline;

use deadline::{ReadDeadline, Requests};

/// Timeouts and caps of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// How long a client may take to complete the TLS handshake after connecting (TLS only).
    pub handshake_timeout: Duration,
    /// How long an HTTP/1.1 client may take to send a complete request head (the first one from
    /// when the connection is ready, later ones from their first byte), and an HTTP/2 client its
    /// connection preface.
    pub header_read_timeout: Duration,
    /// How long an HTTP/1.1 connection may wait between an answer and the next request.
    pub keep_alive_timeout: Duration,
    /// How long in-flight requests may run after shutdown before their connections are closed.
    /// Kubernetes sends SIGKILL 30 s after SIGTERM by default, so this leaves a margin.
    pub drain_timeout: Duration,
    /// How often an HTTP/2 connection is pinged (`None`: never). A peer that stops reading, or
    /// vanishes without a FIN, otherwise holds its connection, task and buffered answers forever,
    /// and holds up a drain until `drain_timeout`.
    pub http2_keep_alive_interval: Option<Duration>,
    /// How long an HTTP/2 ping may go unanswered before the connection is closed.
    pub http2_keep_alive_timeout: Duration,
    /// The most connections the listener holds open at once. At the cap a new connection takes
    /// the place of the oldest one that has sent no request in the 250 ms or more since it was
    /// accepted, which is closed; when there is none, the accept loop waits for one to close or
    /// to qualify, and new connections wait in the kernel's listen backlog (128 for a listener
    /// bound by tokio or the standard library; past it the kernel drops SYNs and clients retry
    /// after 1 s).
    pub max_connections: usize,
    /// The most connections one client IP address may hold open at once; more are closed as soon
    /// as they are accepted, so that one client cannot take all of `max_connections`.
    pub max_connections_per_ip: usize,
    /// Whether loopback clients are exempt from `max_connections_per_ip` (by default they are).
    /// A proxy in the pod (a service mesh's sidecar) connects from a loopback address on behalf
    /// of every client, the API server included: a cap on that address would be a second, smaller
    /// `max_connections`. Tests that stand for pods with 127.0.0.0/8 addresses turn this off.
    pub loopback_exempt_from_per_ip: bool,
}

impl Default for ServerOptions {
    /// The webhook port's. Timeouts 10 s, 10 s and 25 s: kube-apiserver's default webhook timeout
    /// is 10 s, so a client that needs longer to say anything is not a healthy API server.
    /// Keep-alive 120 s: longer than kube-apiserver's own idle limit for its pooled connections
    /// (Go's `IdleConnTimeout`, 90 s, set by `k8s.io/apimachinery/pkg/util/net`), so the API server
    /// is always the one to close an idle connection and never sends a review on one the
    /// webhook is closing (`deadline`). HTTP/2 pings every 20 s with 20 s to answer: Go's
    /// HTTP/2 client (kube-apiserver's) answers pings on its own, so only a stuck or vanished peer
    /// is cut off, within 40 s. Caps: [`MAX_CONNECTIONS`], [`MAX_CONNECTIONS_PER_IP`].
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(120),
            drain_timeout: Duration::from_secs(25),
            http2_keep_alive_interval: Some(Duration::from_secs(20)),
            http2_keep_alive_timeout: Duration::from_secs(20),
            max_connections: MAX_CONNECTIONS,
            max_connections_per_ip: MAX_CONNECTIONS_PER_IP,
            loopback_exempt_from_per_ip: true,
        }
    }
}

impl ServerOptions {
    /// The admin port's: the same timeouts but a keep-alive limit of 10 s, and the caps
    /// [`ADMIN_MAX_CONNECTIONS`] and [`ADMIN_MAX_CONNECTIONS_PER_IP`]. Its clients (the kubelet's
    /// probes, Prometheus) reconnect over plain HTTP for next to nothing.
    pub fn admin() -> Self {
        Self {
            keep_alive_timeout: Duration::from_secs(10),
            max_connections: ADMIN_MAX_CONNECTIONS,
            max_connections_per_ip: ADMIN_MAX_CONNECTIONS_PER_IP,
            ..Self::default()
        }
    }
}

/// HTTP/1.1: the largest request head (request line and headers) read, hyper's `max_buf_size`
/// (its default is about 400 KiB, which let 300 connections hold 120 MiB). kube-apiserver's
/// AdmissionReview POST head, and the kubelet's and Prometheus's GETs on the admin port, are each
/// well under 1 KiB; 16 KiB leaves room for what a proxy in between adds (forwarding and tracing
/// headers, a client certificate). A longer head is answered 431 and the connection closed as
/// soon as 16 KiB have arrived. (It is also the most hyper reads at once of a body.)
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// HTTP/2: the largest request header list (`SETTINGS_MAX_HEADER_LIST_SIZE`, RFC 9113 §6.5.2:
/// names and values plus 32 bytes a field; hyper's default is 16 KiB). kube-apiserver's list for
/// a review is about 600 bytes (ten fields, a trace context included); 4 KiB is six times that.
/// Smaller than [`MAX_HEAD_BYTES`] because an HTTP/2 connection holds up to
/// [`MAX_CONCURRENT_STREAMS`] of them at once, and because a list of a hundred empty fields
/// takes some 6 times its size in memory (24 KiB). h2 also stops buffering a header block's
/// CONTINUATION frames at this size.
pub const MAX_HEADER_LIST_BYTES: u32 = 4 * 1024;

/// The most HTTP/2 streams (requests) one connection may have open at once (hyper's default is
/// 200). Streams past it are refused, not queued, and Go's HTTP/2 client (kube-apiserver's)
/// opens another connection rather than exceed it. An API server has a few reviews in flight at
/// a time (a review takes well under a millisecond), so 8 per connection is ample, and it bounds
/// what one connection can make the webhook hold: 8 request heads (the module doc).
pub const MAX_CONCURRENT_STREAMS: u32 = 8;

/// HTTP/2 flow-control windows, per stream and per connection: how much request data a client
/// may send that the webhook has not read yet (hyper's default is 1 MiB, the protocol's 64 KiB;
/// a connection's window cannot start lower). A stream whose body is not being read (the router
/// waits for room in its budget) holds what arrived: this caps that at 64 KiB per connection,
/// 8 MiB over [`MAX_CONNECTIONS`] instead of 128 MiB. An AdmissionReview is a few KiB; a 3 MiB
/// one takes a few dozen window updates, on a LAN well under a millisecond each.
pub const H2_WINDOW_BYTES: u32 = 64 * 1024;

/// HTTP/2: how many streams a client may open and reset before the webhook has accepted them
/// (the "rapid reset" attack, CVE-2023-44487) before the connection is closed. h2's default, made
/// explicit: the webhook accepts a stream as soon as its headers are in, so a well-behaved client
/// that cancels requests (kube-apiserver at its webhook timeout) never has any pending.
const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

/// HTTP/2: how many streams the webhook may reset because of the client's protocol errors, over
/// the connection's life, before it closes the connection ("MadeYouReset", CVE-2025-8671; hyper's
/// default is 1024). Refused streams count too. A correct client causes none, so a small number
/// costs a broken client a reconnect and an attacker its connection sooner.
const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 64;

/// The webhook port's cap on open connections. kube-apiserver keeps one or a few HTTP/2
/// connections per API server (another per [`MAX_CONCURRENT_STREAMS`] reviews in flight), and an
/// HA control plane has a handful of API servers: tens of connections. 128 is several times that,
/// and bounds what connections hold to 41 MiB (the module doc). Connections that send nothing
/// give their place up to new ones after 250 ms, so a flood of them does not lock the
/// API servers out.
pub const MAX_CONNECTIONS: usize = 128;

/// The webhook port's cap per client IP address: it takes 4 addresses (pods) to fill
/// [`MAX_CONNECTIONS`] with connections that send requests. API servers may reach the webhook
/// from a single address (SNAT, or the konnectivity agents of a managed control plane), so this
/// must still cover all of theirs: 32 is several connections for each of a handful of API
/// servers.
pub const MAX_CONNECTIONS_PER_IP: usize = 32;

/// The admin port's cap on open connections. Its clients are the kubelet (a new connection per
/// probe) and one or two Prometheus replicas (a keep-alive connection each): under ten. 128
/// leaves room for more scrapers and bounds them to 5 MiB. Connections that have sent nothing, or
/// part of a first request head, give their place up to new ones after 250 ms, so a
/// flood of them does not keep the kubelet's probes out.
pub const ADMIN_MAX_CONNECTIONS: usize = 128;

/// The admin port's cap per client IP address: the kubelet's probes come from the node's address
/// and each scraper from its own, a few connections each.
pub const ADMIN_MAX_CONNECTIONS_PER_IP: usize = 8;

/// How long to pause accepting after a resource error such as EMFILE: the listener stays
/// readable, so retrying at once would spin on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a connection may send no request before, at the connection cap, a new connection
/// may take its place. A client sends its request right after the TLS handshake: within a few
/// milliseconds in a cluster, within 250 ms at a 150 ms round trip (TLS 1.3 takes one, the request
/// half of one more). Under a flood of connections that send nothing, a new one waits at most
/// this long (the kubelet's probes give up after 1 s), and the listener takes up to
/// `max_connections` / 250 ms = 512 new connections a second.
const QUIET_GRACE: Duration = Duration::from_millis(250);

/// At most one "at the connection cap" warning per this long: under a flood it would otherwise
/// be logged for every connection.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// What [`serve_tls`] and [`serve_plain`] serve: a tower service of HTTP requests (the webhook's,
/// the admin port's, or a test's), cloned for every connection.
pub trait HttpsService:
    tower::Service<
        Request<Incoming>,
        Response = Response<Self::Body>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
    /// The answers' body.
    type Body: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> HttpsService for S
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error: Into<BoxError>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    type Body = B;
}

/// Serves `app` over TLS on `listener` until `shutdown` is cancelled.
///
/// On shutdown it stops accepting (the listener is closed, so new connections are refused), asks
/// every connection to finish its in-flight requests (HTTP/1.1 `Connection: close`, HTTP/2
/// GOAWAY), waits up to `options.drain_timeout`, closes whatever is left, and returns.
/// Accept errors are logged and do not stop the server.
pub async fn serve_tls<S: HttpsService>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: S,
    options: ServerOptions,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let tls = Tls {
        acceptor: TlsAcceptor::from(tls),
        timeout: options.handshake_timeout,
        metrics,
    };
    serve(listener, tls, app, options, shutdown).await
}

/// Serves `app` over plain HTTP/1.1 on `listener` (the admin port: probes and metrics) until
/// `shutdown` is cancelled, with the same timeouts, caps and drain as [`serve_tls`].
///
/// HTTP/1.1 only: the kubelet and Prometheus speak it, and telling cleartext HTTP/2 apart would
/// mean reading the first bytes outside the header read timeout.
pub async fn serve_plain<S: HttpsService>(
    listener: TcpListener,
    app: S,
    options: ServerOptions,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve(listener, Plain, app, options, shutdown).await
}

async fn serve<P: Prepare, S: HttpsService>(
    listener: TcpListener,
    prepare: P,
    app: S,
    options: ServerOptions,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let conn = Conn {
        prepare,
        http: Arc::new(HttpBuilders::new(&options)),
        service: app,
        header_read_timeout: options.header_read_timeout,
        keep_alive_timeout: options.keep_alive_timeout,
    };
    let mut limits = Limits::new(&options);
    let graceful = GracefulShutdown::new();
    let mut conns = JoinSet::new();
    match listener.local_addr() {
        Ok(addr) => info!(%addr, protocol = P::NAME, "serving"),
        Err(error) => info!(%error, protocol = P::NAME, "serving; its address is unknown"),
    }

    loop {
        let (stream, client_addr) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(error) = done
                    && error.is_panic()
                {
                    error!(%error, "connection task panicked");
                }
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error, &shutdown).await;
                    continue;
                }
            },
        };
        let Some(ip_slot) = limits.per_ip.acquire(client_addr.ip()) else {
            // Dropping the stream closes it: the client may retry once it has closed others.
            let max = limits.per_ip.max;
            debug!(client.addr = %client_addr, max, "too many connections from one address");
            continue;
        };
        let slot = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            slot = limits.slot() => slot,
        };
        // The watcher is taken here, before the handshake, so that a connection accepted just
        // before shutdown still sees the shutdown signal once it starts serving.
        let watcher = graceful.watcher();
        let span = info_span!("conn", client.addr = %client_addr);
        let held = Held {
            _slot: slot,
            _ip_slot: ip_slot,
            state: limits.track(),
        };
        conns.spawn(conn.clone().serve(stream, watcher, held).instrument(span));
    }

    drop(listener);
    drain(graceful, conns, options.drain_timeout).await;
    Ok(())
}

/// One HTTP builder per protocol, chosen by the ALPN result (HTTP/1.1 for plain connections).
///
/// `auto::Builder` left to itself sniffs the first 24 bytes to tell HTTP/2 from HTTP/1.1, and
/// that read has no timeout: a client that completes TLS and then sends a few bytes or none
/// would escape the header read timeout. HTTP/2 over TLS must be negotiated by ALPN (RFC 9113
/// §3.2), so the choice is made from the handshake and the read deadline starts at once.
struct HttpBuilders {
    http1: auto::Builder<InConnectionSpan>,
    http2: auto::Builder<InConnectionSpan>,
}

impl HttpBuilders {
    fn new(options: &ServerOptions) -> Self {
        let mut http = auto::Builder::new(InConnectionSpan);
        // hyper's header timer is also its keep-alive limit: `deadline` keeps both instead.
        http.http1()
            .header_read_timeout(None)
            .max_buf_size(MAX_HEAD_BYTES);
        http.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(options.http2_keep_alive_interval)
            .keep_alive_timeout(options.http2_keep_alive_timeout)
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_header_list_size(MAX_HEADER_LIST_BYTES)
            .initial_stream_window_size(H2_WINDOW_BYTES)
            .initial_connection_window_size(H2_WINDOW_BYTES)
            .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
            .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESET_STREAMS);
        Self {
            http1: http.clone().http1_only(),
            http2: http.http2_only(),
        }
    }

    fn get(&self, h2: bool) -> &auto::Builder<InConnectionSpan> {
        if h2 { &self.http2 } else { &self.http1 }
    }
}

/// hyper's executor: tokio's, keeping the span of the task that spawns. hyper runs each HTTP/2
/// stream as a task of its own, spawned from its connection's task: with this the stream's events
/// carry the connection's span (`conn{client.addr=…}`), as an HTTP/1.1 request's do.
#[derive(Clone, Copy, Debug)]
struct InConnectionSpan;

impl<F> hyper::rt::Executor<F> for InConnectionSpan
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(future.in_current_span());
    }
}

/// Logs a failed `accept` and, for errors that will repeat at once, pauses.
async fn accept_failed(error: io::Error, shutdown: &CancellationToken) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    ) {
        // The client went away between SYN and accept: nothing to do.
        debug!(%error, "failed to accept connection");
        return;
    }
    warn!(%error, backoff = ?ACCEPT_BACKOFF, "failed to accept connection");
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
    }
}

async fn drain(graceful: GracefulShutdown, mut conns: JoinSet<()>, timeout: Duration) {
    info!(connections = conns.len(), "draining connections");
    if tokio::time::timeout(timeout, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            connections = conns.len(),
            ?timeout,
            "drain timed out; closing connections"
        );
    }
    // Aborts what the drain left (only after a timeout) and waits for the tasks to end.
    conns.shutdown().await;
    debug!("server stopped");
}

// === connection caps ===

/// The listener's connection caps: a slot per open connection, and a count per client address.
///
/// At the cap, a new connection takes the slot of the oldest connection that has sent no request
/// in the [`QUIET_GRACE`] or more since it was accepted (its TLS handshake or its first request
/// head still under way), which is closed: a client that completes a handshake and sends its
/// request at once never loses its place, and connections that only sit there, however many,
/// delay the others by at most the grace. When every open connection has sent a request, the new
/// one waits for a slot (the accept loop waits with it, and further connections wait in the
/// kernel's listen backlog).
struct Limits {
    slots: Arc<Semaphore>,
    max: usize,
    per_ip: Arc<PerIp>,
    /// Connections in the order they were accepted, from the oldest that had sent no request
    /// when last looked at.
    quiet: VecDeque<Weak<ConnState>>,
    last_full_warning: Option<Instant>,
}

impl Limits {
    fn new(options: &ServerOptions) -> Self {
        // A cap of 0 would never accept anything: treat it as 1.
        let max = options.max_connections.max(1);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            per_ip: Arc::new(PerIp {
                max: options.max_connections_per_ip.max(1),
                exempt_loopback: options.loopback_exempt_from_per_ip,
                open: Mutex::new(HashMap::new()),
            }),
            quiet: VecDeque::new(),
            last_full_warning: None,
        }
    }

    /// A slot for a new connection: a free one, or the one the oldest quiet connection gives up
    /// once it has been quiet for [`QUIET_GRACE`], or the next one freed. Cancel-safe.
    async fn slot(&mut self) -> OwnedSemaphorePermit {
        loop {
            if let Ok(slot) = self.slots.clone().try_acquire_owned() {
                return slot;
            }
            self.warn_full();
            // The oldest connection still quiet (those before it have sent a request or are gone).
            while (self.quiet.front()).is_some_and(|c| c.upgrade().is_none_or(|c| !c.is_quiet())) {
                self.quiet.pop_front();
            }
            let oldest = self.quiet.front().and_then(Weak::upgrade);
            let evictable = oldest.as_ref().map(|c| c.accepted + QUIET_GRACE);
            let grace = async move {
                match evictable {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            // The semaphore is never closed: `acquire_owned` only ever returns a slot.
            tokio::select! {
                slot = self.slots.clone().acquire_owned() => if let Ok(slot) = slot {
                    return slot;
                },
                () = grace => if let Some(conn) = oldest
                    && conn.evict()
                {
                    self.quiet.pop_front();
                    // Its slot comes back as soon as its task sees the eviction.
                    if let Ok(slot) = self.slots.clone().acquire_owned().await {
                        return slot;
                    }
                },
            }
        }
    }

    fn warn_full(&mut self) {
        if (self.last_full_warning).is_none_or(|at| at.elapsed() >= FULL_WARNING_INTERVAL) {
            self.last_full_warning = Some(Instant::now());
            warn!(
                max = self.max,
                "at the connection cap: new connections take the places of connections that have \
                 sent no request, or wait"
            );
        }
    }

    /// Starts tracking a new connection.
    fn track(&mut self) -> Arc<ConnState> {
        // Forget connections that are gone or have sent a request (they never become quiet
        // again), so the queue is never much longer than the cap.
        if self.quiet.len() >= self.max {
            (self.quiet).retain(|conn| conn.upgrade().is_some_and(|conn| conn.is_quiet()));
        }
        let state = Arc::new(ConnState {
            phase: AtomicU8::new(ConnState::QUIET),
            evicted: CancellationToken::new(),
            accepted: Instant::now(),
        });
        self.quiet.push_back(Arc::downgrade(&state));
        state
    }
}

/// Whether a connection has sent a request yet, and its eviction signal.
#[derive(Debug)]
struct ConnState {
    phase: AtomicU8,
    evicted: CancellationToken,
    accepted: Instant,
}

impl ConnState {
    const QUIET: u8 = 0;
    const SERVED: u8 = 1;
    const EVICTED: u8 = 2;

    fn is_quiet(&self) -> bool {
        self.phase.load(Ordering::Acquire) == Self::QUIET
    }

    /// Marks the connection as having sent a request (unless it is being evicted).
    fn served(&self) {
        let _ = (self.phase).compare_exchange(
            Self::QUIET,
            Self::SERVED,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Evicts the connection if it has still sent no request; whether it did.
    fn evict(&self) -> bool {
        let evicted = (self.phase)
            .compare_exchange(
                Self::QUIET,
                Self::EVICTED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if evicted {
            self.evicted.cancel();
        }
        evicted
    }
}

/// What a connection holds while it is open: its slot, its place under its address's cap, and
/// its state.
struct Held {
    _slot: OwnedSemaphorePermit,
    _ip_slot: IpSlot,
    state: Arc<ConnState>,
}

/// Open connections per client address (only addresses with at least one).
struct PerIp {
    max: usize,
    exempt_loopback: bool,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    /// A place for one more connection from `ip`, or `None` if it has `max` already.
    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        // An IPv4 client of a dual-stack socket appears as ::ffff:a.b.c.d: count it as a.b.c.d.
        let ip = ip.to_canonical();
        if self.exempt_loopback && ip.is_loopback() {
            return Some(IpSlot { counted: None, ip });
        }
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            counted: Some(self.clone()),
            ip,
        })
    }
}

/// One connection's place in [`PerIp`] (if it is counted), given back when dropped.
struct IpSlot {
    counted: Option<Arc<PerIp>>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let Some(per_ip) = &self.counted else { return };
        let mut open = (per_ip.open.lock()).unwrap_or_else(PoisonError::into_inner);
        if let Entry::Occupied(mut n) = open.entry(self.ip) {
            *n.get_mut() -= 1;
            if *n.get() == 0 {
                n.remove();
            }
        }
    }
}

// === connection preparation ===

/// How an accepted TCP stream becomes the stream HTTP is served on.
trait Prepare: Clone + Send + Sync + 'static {
    /// What the logs call the listener.
    const NAME: &'static str;
    /// The prepared stream.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The stream and whether it speaks HTTP/2, or `None` (logged here) to close the connection.
    fn prepare(&self, stream: TcpStream) -> impl Future<Output = Option<(Self::Io, bool)>> + Send;

    /// Called when the connection is closed before `prepare` is done (evicted).
    fn abandoned(&self) {}
}

/// A TLS handshake under a timeout; HTTP/2 if ALPN chose it.
#[derive(Clone)]
struct Tls {
    acceptor: TlsAcceptor,
    timeout: Duration,
    metrics: Metrics,
}

impl Prepare for Tls {
    const NAME: &'static str = "https";
    type Io = TlsStream<TcpStream>;

    async fn prepare(&self, stream: TcpStream) -> Option<(Self::Io, bool)> {
        let tls = match tokio::time::timeout(self.timeout, self.acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                debug!(%error, "tls handshake failed");
                self.metrics.tls_handshake_failed();
                return None;
            }
            Err(_) => {
                debug!(timeout = ?self.timeout, "tls handshake timed out");
                self.metrics.tls_handshake_failed();
                return None;
            }
        };
        let (_, session) = tls.get_ref();
        let h2 = session.alpn_protocol() == Some(b"h2");
        debug!(version = ?session.protocol_version(), h2, "tls handshake complete");
        Some((tls, h2))
    }

    /// A handshake cut off to make room for another connection failed, as one that timed out.
    fn abandoned(&self) {
        self.metrics.tls_handshake_failed();
    }
}

/// Plain HTTP/1.1.
#[derive(Clone)]
struct Plain;

impl Prepare for Plain {
    const NAME: &'static str = "http";
    type Io = TcpStream;

    async fn prepare(&self, stream: TcpStream) -> Option<(Self::Io, bool)> {
        Some((stream, false))
    }
}

// === impl Conn ===

/// What every connection task needs; cloned per connection.
#[derive(Clone)]
struct Conn<P, S> {
    prepare: P,
    http: Arc<HttpBuilders>,
    service: S,
    header_read_timeout: Duration,
    keep_alive_timeout: Duration,
}

impl<P: Prepare, S: HttpsService> Conn<P, S> {
    /// Serves one connection until it ends or is evicted; `held` is given back then.
    async fn serve(self, stream: TcpStream, watcher: Watcher, held: Held) {
        // Requests and answers are small: don't let Nagle hold them back.
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "failed to set TCP_NODELAY");
        }
        let evicted = held.state.evicted.clone();
        let prepared = tokio::select! {
            prepared = self.prepare.prepare(stream) => prepared,
            () = evicted.cancelled() => {
                self.prepare.abandoned();
                debug!("closed before the handshake was done, for a new connection");
                return;
            }
        };
        let Some((io, h2)) = prepared else {
            return;
        };
        let requests = Arc::<Requests>::default();
        let io = if h2 {
            ReadDeadline::http2(io, self.header_read_timeout)
        } else {
            let (head, keep_alive) = (self.header_read_timeout, self.keep_alive_timeout);
            ReadDeadline::http1(io, requests.clone(), head, keep_alive)
        };
        let service = TowerToHyperService::new(MarkServed {
            inner: self.service,
            state: held.state.clone(),
            requests,
        });
        let conn = self
            .http
            .get(h2)
            .serve_connection(TokioIo::new(io), service);
        tokio::select! {
            result = watcher.watch(conn) => match result {
                Ok(()) => debug!("connection closed"),
                Err(error) => debug!(%error, "connection closed with error"),
            },
            () = evicted.cancelled() => debug!("closed before a request, for a new connection"),
        }
    }
}

/// The connection's service, marking the connection as having sent a request at the first one,
/// and counting the requests it answers for the connection's read deadline.
#[derive(Clone)]
struct MarkServed<S> {
    inner: S,
    state: Arc<ConnState>,
    requests: Arc<Requests>,
}

impl<S: HttpsService> tower::Service<Request<Incoming>> for MarkServed<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        self.state.served();
        let open = self.requests.open();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(open);
            answer
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let options = ServerOptions::default();
        assert_eq!(options.handshake_timeout, Duration::from_secs(10));
        assert_eq!(options.header_read_timeout, Duration::from_secs(10));
        assert_eq!(options.keep_alive_timeout, Duration::from_secs(120));
        assert_eq!(options.drain_timeout, Duration::from_secs(25));
        assert_eq!(options.max_connections, MAX_CONNECTIONS);
        assert_eq!(options.max_connections_per_ip, MAX_CONNECTIONS_PER_IP);
        assert!(options.loopback_exempt_from_per_ip);
        let admin = ServerOptions::admin();
        assert_eq!(admin.max_connections, ADMIN_MAX_CONNECTIONS);
        assert_eq!(admin.max_connections_per_ip, ADMIN_MAX_CONNECTIONS_PER_IP);
        assert_eq!(admin.header_read_timeout, options.header_read_timeout);
        assert_eq!(admin.keep_alive_timeout, Duration::from_secs(10));
    }

    #[test]
    fn per_ip_slots_are_counted_per_address_and_given_back() {
        let per_ip = Arc::new(PerIp {
            max: 2,
            exempt_loopback: true,
            open: Mutex::new(HashMap::new()),
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let a_mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "fd00::1".parse().unwrap();
        let first = per_ip.acquire(a).unwrap();
        // The same address seen through a dual-stack socket counts as the same client.
        let second = per_ip.acquire(a_mapped).unwrap();
        assert!(per_ip.acquire(a).is_none());
        let other = per_ip.acquire(b).unwrap();
        drop(first);
        let third = per_ip.acquire(a).unwrap();
        drop((second, third, other));
        // Addresses without connections are forgotten: the map stays as small as the connections.
        assert!(per_ip.open.lock().unwrap().is_empty());
    }

    #[test]
    fn loopback_clients_are_exempt_unless_told_otherwise() {
        let exempt = Arc::new(PerIp {
            max: 1,
            exempt_loopback: true,
            open: Mutex::new(HashMap::new()),
        });
        let local: IpAddr = "127.0.0.6".parse().unwrap();
        let slots: Vec<_> = (0..3).map(|_| exempt.acquire(local).unwrap()).collect();
        assert!(exempt.open.lock().unwrap().is_empty());
        let counted = Arc::new(PerIp {
            max: 1,
            exempt_loopback: false,
            open: Mutex::new(HashMap::new()),
        });
        let _one = counted.acquire(local).unwrap();
        assert!(counted.acquire(local).is_none());
        drop(slots);
    }
}
