//! The HTTPS accept loop: per-connection TLS handshake under a timeout, HTTP/1.1 and HTTP/2, graceful drain.
//!
//! The accept loop only accepts: each connection gets its own task, in which the TLS handshake
//! runs under a timeout, so a slow or silent client cannot hold up the others (this is why the
//! handshake is not done inside an `axum::serve::Listener`, which axum awaits sequentially).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::BoxError;
use crate::metrics::Metrics;

/// Timeouts of the HTTPS server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// How long a client may take to complete the TLS handshake after connecting.
    pub handshake_timeout: Duration,
    /// How long an HTTP/1.1 client may take to send a complete request head (the first one from
    /// when the handshake completes, later ones from when the previous answer was sent, so this
    /// is also the keep-alive idle limit), and an HTTP/2 client its connection preface.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown before their connections are closed.
    /// Kubernetes sends SIGKILL 30 s after SIGTERM by default, so this leaves a margin.
    pub drain_timeout: Duration,
    /// How often an HTTP/2 connection is pinged (`None`: never). A peer that stops reading, or
    /// vanishes without a FIN, otherwise holds its connection, task and buffered answers forever,
    /// and holds up a drain until `drain_timeout`.
    pub http2_keep_alive_interval: Option<Duration>,
    /// How long an HTTP/2 ping may go unanswered before the connection is closed.
    pub http2_keep_alive_timeout: Duration,
}

impl Default for ServerOptions {
    /// 10 s, 10 s and 25 s: kube-apiserver's default webhook timeout is 10 s, so a client that
    /// needs longer to say anything is not a healthy API server. HTTP/2 pings every 20 s with
    /// 20 s to answer: Go's HTTP/2 client (kube-apiserver's) answers pings on its own, so only a
    /// stuck or vanished peer is cut off, within 40 s.
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(25),
            http2_keep_alive_interval: Some(Duration::from_secs(20)),
            http2_keep_alive_timeout: Duration::from_secs(20),
        }
    }
}

/// The most HTTP/2 streams one connection may have open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 200;

/// How long to pause accepting after a resource error such as EMFILE: the listener stays
/// readable, so retrying at once would spin on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What [`serve_tls`] serves: a tower service of HTTP requests (the webhook's, or a test's),
/// cloned for every connection.
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
    let conn = Conn {
        acceptor: TlsAcceptor::from(tls),
        http: Arc::new(HttpBuilders::new(&options)),
        service: TowerToHyperService::new(app),
        handshake_timeout: options.handshake_timeout,
        header_read_timeout: options.header_read_timeout,
        metrics,
    };
    let graceful = GracefulShutdown::new();
    let mut conns = JoinSet::new();
    info!(addr = ?listener.local_addr().ok(), "serving https");

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
        // The watcher is taken here, before the handshake, so that a connection accepted just
        // before shutdown still sees the shutdown signal once it starts serving.
        let watcher = graceful.watcher();
        let span = info_span!("conn", client.addr = %client_addr);
        conns.spawn(conn.clone().serve(stream, watcher).instrument(span));
    }

    drop(listener);
    drain(graceful, conns, options.drain_timeout).await;
    Ok(())
}

/// Serves `app` over plain HTTP on `listener` (the admin port: health and metrics) until
/// `shutdown` is cancelled, then lets in-flight requests finish.
pub async fn serve_plain(
    listener: TcpListener,
    app: axum::Router,
    shutdown: CancellationToken,
) -> io::Result<()> {
    info!(addr = ?listener.local_addr().ok(), "serving http");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// One HTTP builder per protocol, chosen by the ALPN result.
///
/// `auto::Builder` left to itself sniffs the first 24 bytes to tell HTTP/2 from HTTP/1.1, and
/// that read has no timeout: a client that completes TLS and then sends a few bytes or none
/// would escape the header read timeout. HTTP/2 over TLS must be negotiated by ALPN (RFC 9113
/// §3.2), so the choice is made from the handshake and the HTTP/1.1 timer starts at once.
struct HttpBuilders {
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

impl HttpBuilders {
    fn new(options: &ServerOptions) -> Self {
        let mut http = auto::Builder::new(TokioExecutor::new());
        // The header read timeout (slowloris protection) only runs with a timer.
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_read_timeout);
        http.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(options.http2_keep_alive_interval)
            .keep_alive_timeout(options.http2_keep_alive_timeout)
            // hyper's default, made explicit: the most requests one connection may have in flight
            // (each may buffer up to the body limit). Streams past it are refused, not queued.
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
        Self {
            http1: http.clone().http1_only(),
            http2: http.http2_only(),
        }
    }

    fn get(&self, h2: bool) -> &auto::Builder<TokioExecutor> {
        if h2 { &self.http2 } else { &self.http1 }
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
    info!(connections = conns.len(), "draining https connections");
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
    debug!("https server stopped");
}

/// What every connection task needs; cloned per connection.
#[derive(Clone)]
struct Conn<S> {
    acceptor: TlsAcceptor,
    http: Arc<HttpBuilders>,
    service: TowerToHyperService<S>,
    handshake_timeout: Duration,
    header_read_timeout: Duration,
    metrics: Metrics,
}

// === impl Conn ===

impl<S: HttpsService> Conn<S> {
    async fn serve(self, stream: TcpStream, watcher: Watcher) {
        // Requests and answers are small: don't let Nagle hold them back.
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "failed to set TCP_NODELAY");
        }
        let handshake = tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream));
        let tls = match handshake.await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                debug!(%error, "tls handshake failed");
                self.metrics.tls_handshake_failed();
                return;
            }
            Err(_) => {
                debug!(timeout = ?self.handshake_timeout, "tls handshake timed out");
                self.metrics.tls_handshake_failed();
                return;
            }
        };
        let (_, session) = tls.get_ref();
        let h2 = session.alpn_protocol() == Some(b"h2");
        debug!(version = ?session.protocol_version(), h2, "tls handshake complete");

        // hyper's HTTP/1.1 header timer covers a silent HTTP/1.1 client; nothing in hyper times
        // out an HTTP/2 client that never sends its connection preface, so do it here.
        let preface = if h2 { H2_PREFACE_LEN } else { 0 };
        let io = PrefaceDeadline::new(tls, preface, self.header_read_timeout);
        let http = self.http.get(h2);
        let conn = http.serve_connection(TokioIo::new(io), self.service);
        match watcher.watch(conn).await {
            Ok(()) => debug!("connection closed"),
            Err(error) => debug!(%error, "connection closed with error"),
        }
    }
}

/// Length of the HTTP/2 client connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
const H2_PREFACE_LEN: usize = 24;

/// Fails reads with `TimedOut` unless the first `remaining` bytes arrive before a deadline, then
/// gets out of the way. Writes pass through.
struct PrefaceDeadline<I> {
    io: I,
    remaining: usize,
    deadline: Option<Pin<Box<Sleep>>>,
}

// === impl PrefaceDeadline ===

impl<I> PrefaceDeadline<I> {
    fn new(io: I, remaining: usize, timeout: Duration) -> Self {
        let deadline = (remaining > 0).then(|| Box::pin(tokio::time::sleep(timeout)));
        Self {
            io,
            remaining,
            deadline,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for PrefaceDeadline<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(deadline) = &mut this.deadline else {
            return read;
        };
        match read {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                this.remaining = this.remaining.saturating_sub(n);
                // Done once the preface is in, or at EOF (hyper handles that).
                if this.remaining == 0 || n == 0 {
                    this.deadline = None;
                }
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                debug!("http/2 preface read timed out");
                return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
            }
            _ => {}
        }
        read
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for PrefaceDeadline<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // Real time: paused time would need tokio's `test-util` feature just for these.
    const TIMEOUT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn silent_peer_times_out() {
        let (client, server) = tokio::io::duplex(64);
        let mut io = PrefaceDeadline::new(server, H2_PREFACE_LEN, TIMEOUT);
        let mut buf = [0u8; 64];
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }

    #[tokio::test]
    async fn partial_preface_times_out() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = PrefaceDeadline::new(server, H2_PREFACE_LEN, TIMEOUT);
        client.write_all(b"PRI * HTTP/2.0").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(io.read(&mut buf).await.unwrap(), 14);
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn full_preface_clears_the_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = PrefaceDeadline::new(server, H2_PREFACE_LEN, TIMEOUT);
        client.write_all(&[b'x'; H2_PREFACE_LEN]).await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(io.read(&mut buf).await.unwrap(), H2_PREFACE_LEN);
        // Idle well past the deadline, then more data: still readable.
        tokio::time::sleep(TIMEOUT * 2).await;
        client.write_all(b"later").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 5);
    }

    #[tokio::test]
    async fn no_preface_means_no_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = PrefaceDeadline::new(server, 0, TIMEOUT);
        tokio::time::sleep(TIMEOUT * 2).await;
        client.write_all(b"GET").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(io.read(&mut buf).await.unwrap(), 3);
    }

    #[test]
    fn defaults() {
        let options = ServerOptions::default();
        assert_eq!(options.handshake_timeout, Duration::from_secs(10));
        assert_eq!(options.header_read_timeout, Duration::from_secs(10));
        assert_eq!(options.drain_timeout, Duration::from_secs(25));
    }
}
