//! The HTTPS accept loop: per-connection TLS handshake under a timeout, HTTP/1.1 and HTTP/2, graceful drain.
//!
//! The accept loop only accepts: each connection gets its own task, in which the TLS handshake
//! runs under a timeout, so a slow or silent client cannot hold up the others (this is why the
//! handshake is not done inside an `axum::serve::Listener`, which axum awaits sequentially).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::metrics::Metrics;

/// Timeouts of the HTTPS server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// How long a client may take to complete the TLS handshake after connecting.
    pub handshake_timeout: Duration,
    /// How long an HTTP/1.1 client may take to send a complete request head.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown before their connections are closed.
    /// Kubernetes sends SIGKILL 30 s after SIGTERM by default, so this leaves a margin.
    pub drain_timeout: Duration,
}

impl Default for ServerOptions {
    /// 10 s, 10 s and 25 s: kube-apiserver's default webhook timeout is 10 s, so a client that
    /// needs longer to say anything is not a healthy API server.
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(25),
        }
    }
}

/// How long to pause accepting after a resource error such as EMFILE: the listener stays
/// readable, so retrying at once would spin on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` over TLS on `listener` until `shutdown` is cancelled.
///
/// On shutdown it stops accepting (the listener is closed, so new connections are refused), asks
/// every connection to finish its in-flight requests (HTTP/1.1 `Connection: close`, HTTP/2
/// GOAWAY), waits up to `options.drain_timeout`, closes whatever is left, and returns.
/// Accept errors are logged and do not stop the server.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    options: ServerOptions,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let conn = Conn {
        acceptor: TlsAcceptor::from(tls),
        http: Arc::new(http_builder(&options)),
        service: TowerToHyperService::new(app),
        handshake_timeout: options.handshake_timeout,
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
    app: Router,
    shutdown: CancellationToken,
) -> io::Result<()> {
    info!(addr = ?listener.local_addr().ok(), "serving http");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

fn http_builder(options: &ServerOptions) -> auto::Builder<TokioExecutor> {
    let mut http = auto::Builder::new(TokioExecutor::new());
    // The header read timeout (slowloris protection) only runs with a timer.
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    http.http2().timer(TokioTimer::new());
    http
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
struct Conn {
    acceptor: TlsAcceptor,
    http: Arc<auto::Builder<TokioExecutor>>,
    service: TowerToHyperService<Router>,
    handshake_timeout: Duration,
    metrics: Metrics,
}

// === impl Conn ===

impl Conn {
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
        debug!(
            version = ?session.protocol_version(),
            alpn = ?session.alpn_protocol().map(String::from_utf8_lossy),
            "tls handshake complete"
        );

        let conn = self.http.serve_connection(TokioIo::new(tls), self.service);
        match watcher.watch(conn).await {
            Ok(()) => debug!("connection closed"),
            Err(error) => debug!(%error, "connection closed with error"),
        }
    }
}
