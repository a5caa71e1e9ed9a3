//! Read deadlines of one connection: what a client sends first (an HTTP/1.1 request head, an HTTP/2
//! preface) must arrive in time, and an HTTP/1.1 connection waits between requests for a separate,
//! longer keep-alive limit.
//!
//! hyper's own HTTP/1.1 `header_read_timeout` cannot tell the two apart: its timer starts whenever
//! hyper waits for a head, so it is also the keep-alive idle limit. At 10 s that closed the API
//! server's pooled connections in any cluster writing Services less often than that: every call
//! then paid a new TCP and TLS handshake (1.87 ms against 0.70 ms on a reused connection, measured
//! through kube-apiserver by `tests/e2e/bench/idle-connection.sh`), and a call sent just as the
//! webhook closed the connection failed (Go does not resend a POST it has written), which
//! `failurePolicy: Fail` turns into a refused write. So hyper's timer is off and this wrapper keeps
//! both limits.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tracing::debug;

/// Length of the HTTP/2 client connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
pub(super) const H2_PREFACE_LEN: usize = 24;

/// The requests of one connection the service has received, and those it is still answering
/// ([`OpenRequest`] counts one). A request may come and go between two reads (its body was in
/// hyper's buffer), so reads compare the count received rather than only look at the open ones.
/// An answer wakes the connection's reader: hyper may write it and wait without reading again, and
/// the keep-alive limit starts only when the reader sees the connection idle.
#[derive(Debug, Default)]
pub(super) struct Requests {
    received: AtomicU64,
    open: AtomicUsize,
    reader: AtomicWaker,
}

impl Requests {
    /// Counts a request, open until the returned guard is dropped (answered or cancelled).
    pub(super) fn open(self: &Arc<Self>) -> OpenRequest {
        self.received.fetch_add(1, Ordering::AcqRel);
        self.open.fetch_add(1, Ordering::AcqRel);
        OpenRequest(Arc::clone(self))
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Acquire)
    }

    fn any_open(&self) -> bool {
        self.open.load(Ordering::Acquire) > 0
    }
}

/// One open request of [`Requests`].
#[derive(Debug)]
pub(super) struct OpenRequest(Arc<Requests>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.reader.wake();
    }
}

/// Fails reads with `TimedOut` when a deadline passes while the client owes the webhook bytes.
/// Writes pass through.
pub(super) struct ReadDeadline<I> {
    io: I,
    watch: Watch,
    timer: Pin<Box<Sleep>>,
}

enum Watch {
    /// HTTP/2: the rest of the connection preface, then nothing (HTTP/2 pings watch the peer).
    Preface { remaining: usize },
    /// HTTP/1.1, through each request's life.
    Http1 {
        requests: Arc<Requests>,
        /// How many requests the service had received at the last read.
        seen: u64,
        head_timeout: Duration,
        keep_alive_timeout: Duration,
        phase: Phase,
    },
    /// Nothing left to watch.
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// A head is due: the first one from when the connection is ready, a later one from its
    /// first byte.
    Head,
    /// The service has a request: its body has its own timeout, the answer is the webhook's.
    Answering,
    /// Between requests: a keep-alive connection the client may reuse.
    Idle,
}

// === impl ReadDeadline ===

impl<I> ReadDeadline<I> {
    /// An HTTP/2 connection: the preface within `timeout`.
    pub(super) fn http2(io: I, timeout: Duration) -> Self {
        Self {
            io,
            watch: Watch::Preface {
                remaining: H2_PREFACE_LEN,
            },
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// An HTTP/1.1 connection: each request head within `head_timeout` (the first from now),
    /// and at most `keep_alive_timeout` between an answer and the next request.
    pub(super) fn http1(
        io: I,
        requests: Arc<Requests>,
        head_timeout: Duration,
        keep_alive_timeout: Duration,
    ) -> Self {
        Self {
            io,
            watch: Watch::Http1 {
                requests,
                seen: 0,
                head_timeout,
                keep_alive_timeout,
                phase: Phase::Head,
            },
            timer: Box::pin(tokio::time::sleep(head_timeout)),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ReadDeadline<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // A request answered since the last read: the connection is idle from now.
        if let Watch::Http1 {
            requests,
            seen,
            keep_alive_timeout,
            phase,
            ..
        } = &mut this.watch
        {
            requests.reader.register(cx.waker());
            let received = requests.received();
            if requests.any_open() {
                *phase = Phase::Answering;
            } else if *phase == Phase::Answering || received != *seen {
                *phase = Phase::Idle;
                this.timer
                    .as_mut()
                    .reset(Instant::now() + *keep_alive_timeout);
            }
            *seen = received;
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        let watching = match &mut this.watch {
            Watch::Off => false,
            Watch::Preface { remaining } => {
                if let Poll::Ready(Ok(())) = read {
                    let n = buf.filled().len() - before;
                    *remaining = remaining.saturating_sub(n);
                    // Done once the preface is in, or at EOF (hyper handles that).
                    if *remaining == 0 || n == 0 {
                        this.watch = Watch::Off;
                    }
                }
                matches!(this.watch, Watch::Preface { .. })
            }
            Watch::Http1 {
                head_timeout,
                phase,
                ..
            } => {
                if *phase == Phase::Idle
                    && matches!(read, Poll::Ready(Ok(())))
                    && buf.filled().len() > before
                {
                    // The next request has begun: its head is due.
                    *phase = Phase::Head;
                    this.timer.as_mut().reset(Instant::now() + *head_timeout);
                }
                *phase != Phase::Answering
            }
        };
        if watching && read.is_pending() && this.timer.as_mut().poll(cx).is_ready() {
            debug!("read deadline passed");
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        read
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ReadDeadline<I> {
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
    use std::sync::atomic::AtomicBool;
    use std::task::{Wake, Waker};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const HEAD: Duration = Duration::from_millis(100);
    const KEEP_ALIVE: Duration = Duration::from_secs(120);

    async fn read(io: &mut ReadDeadline<DuplexStream>) -> io::Result<usize> {
        let mut buf = [0u8; 64];
        io.read(&mut buf).await
    }

    /// Reads until the deadline fails the read; how long that took.
    async fn time_until_timed_out(io: &mut ReadDeadline<DuplexStream>) -> Duration {
        let started = Instant::now();
        let error = read(io).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        started.elapsed()
    }

    /// An HTTP/1.1 connection's client end, its requests and its server end.
    fn http1() -> (DuplexStream, Arc<Requests>, ReadDeadline<DuplexStream>) {
        let (client, server) = tokio::io::duplex(64);
        let requests = Arc::<Requests>::default();
        let io = ReadDeadline::http1(server, requests.clone(), HEAD, KEEP_ALIVE);
        (client, requests, io)
    }

    #[tokio::test(start_paused = true)]
    async fn silent_h2_peer_times_out() {
        let (_client, server) = tokio::io::duplex(64);
        let mut io = ReadDeadline::http2(server, HEAD);
        assert_eq!(time_until_timed_out(&mut io).await, HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn partial_preface_times_out() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = ReadDeadline::http2(server, HEAD);
        client.write_all(b"PRI * HTTP/2.0").await.unwrap();
        assert_eq!(read(&mut io).await.unwrap(), 14);
        assert_eq!(
            read(&mut io).await.unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
    }

    #[tokio::test(start_paused = true)]
    async fn full_preface_clears_the_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = ReadDeadline::http2(server, HEAD);
        client.write_all(&[b'x'; H2_PREFACE_LEN]).await.unwrap();
        assert_eq!(read(&mut io).await.unwrap(), H2_PREFACE_LEN);
        // Idle far past the deadline, then more data: still readable.
        tokio::time::sleep(KEEP_ALIVE * 10).await;
        client.write_all(b"later").await.unwrap();
        assert_eq!(read(&mut io).await.unwrap(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn silent_http1_client_times_out_at_the_head_timeout() {
        let (_client, _requests, mut io) = http1();
        assert_eq!(time_until_timed_out(&mut io).await, HEAD);
    }

    /// One request's life: its head, an answer that takes longer than the head timeout, the
    /// keep-alive wait, the next head, and a client that goes quiet after its first bytes.
    #[tokio::test(start_paused = true)]
    async fn http1_keeps_a_connection_between_requests_and_times_each_head() {
        let (mut client, requests, mut io) = http1();
        client.write_all(b"POST /mutate").await.unwrap();
        assert_eq!(read(&mut io).await.unwrap(), 12);

        // The head is in and the service has it: reads wait without a deadline.
        let open = requests.open();
        let answering = tokio::time::timeout(KEEP_ALIVE * 2, read(&mut io)).await;
        assert!(answering.is_err(), "{answering:?}");
        drop(open);

        // Answered: idle for just under the keep-alive limit, then the next request.
        let idle = tokio::spawn(async move {
            tokio::time::sleep(KEEP_ALIVE - Duration::from_millis(1)).await;
            client.write_all(b"POST").await.unwrap();
            client
        });
        assert_eq!(read(&mut io).await.unwrap(), 4);
        let _client = idle.await.unwrap();
        // Its head stalls: cut off at the head timeout from its first byte.
        assert_eq!(time_until_timed_out(&mut io).await, HEAD);
    }

    /// hyper may read a whole request in one read, answer it and wait without reading again: the
    /// answer must wake the reader, or nothing would ever close the idle connection.
    #[tokio::test(start_paused = true)]
    async fn an_answer_wakes_the_reader_and_starts_the_keep_alive_limit() {
        struct Flag(AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let (mut client, requests, mut io) = http1();
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 64];
        let mut read_buf = ReadBuf::new(&mut buf);
        let first = Pin::new(&mut io).poll_read(&mut cx, &mut read_buf);
        assert!(matches!(first, Poll::Ready(Ok(()))) && read_buf.filled().len() == 18);
        let open = requests.open();
        tokio::time::sleep(HEAD * 3).await;
        assert!(!flag.0.load(Ordering::SeqCst));
        drop(open);
        assert!(
            flag.0.load(Ordering::SeqCst),
            "the answer did not wake the reader"
        );
        // Idle from the answer: closed at the keep-alive limit.
        assert_eq!(time_until_timed_out(&mut io).await, KEEP_ALIVE);
    }
}
