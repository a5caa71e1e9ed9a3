//! SIGTERM and SIGINT (or the caller's `stop` token) become a two-phase shutdown: first not
//! ready while still serving for `--shutdown-delay`, then one cancellation token that stops the
//! servers, which drain.
//!
//! Why the delay: Kubernetes sends SIGTERM and removes the pod from the Service's endpoints at
//! the same time, and the new endpoints take a moment to reach whatever routes the API server's
//! calls to the webhook's Service (kube-proxy, or the API server's own endpoint cache). A
//! webhook that closed its listener at once would refuse the connections still routed to it,
//! and under `failurePolicy: Fail` each refusal is a failed write. So it keeps accepting for the
//! delay; then its listener closes and its HTTP/2 connections get a GOAWAY, and the API server
//! reconnects to a pod still in the endpoints.

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Starts the shutdown sequence and returns the token that stops the servers.
///
/// On the first SIGTERM/SIGINT, or when `stop` is cancelled, `on_stopping` runs (readiness goes
/// off) and the servers keep serving for `delay`; then the returned token is cancelled. A second
/// signal during the delay cuts it short (Ctrl-C twice is quick). Each phase is logged once.
///
/// The signal handlers are installed before this returns: from here on a SIGTERM never takes
/// its default action (an immediate exit), not even before the task first runs. Cancelling
/// `stop` starts the sequence like a signal but does not cut the delay short.
pub fn spawn(
    stop: CancellationToken,
    delay: Duration,
    on_stopping: impl FnOnce() + Send + 'static,
) -> CancellationToken {
    let drain = CancellationToken::new();
    let signals = Signals::install();
    tokio::spawn(sequence(signals, stop, delay, on_stopping, drain.clone()));
    drain
}

async fn sequence(
    mut signals: Signals,
    stop: CancellationToken,
    delay: Duration,
    on_stopping: impl FnOnce(),
    drain: CancellationToken,
) {
    let cause = tokio::select! {
        name = signals.recv() => name,
        () = stop.cancelled() => "stop requested",
    };
    on_stopping();
    if !delay.is_zero() {
        info!(
            %cause,
            delay_secs = delay.as_secs_f64(),
            "shutting down: not ready, still serving for --shutdown-delay (send the signal again to skip)"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {
                info!("shutdown delay over: closing the listeners and draining");
            }
            name = signals.recv() => {
                info!(signal = name, "second signal: skipping the rest of the shutdown delay; draining");
            }
        }
    } else {
        info!(%cause, "shutting down: closing the listeners and draining");
    }
    drain.cancel();
}

/// SIGTERM and SIGINT as streams, so that the second one can be told from the first.
struct Signals {
    term: Option<Signal>,
    int: Option<Signal>,
}

impl Signals {
    fn install() -> Self {
        let install = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(error) => {
                warn!(%error, "cannot listen for {name}; it will not stop the server");
                None
            }
        };
        Self {
            term: install(SignalKind::terminate(), "SIGTERM"),
            int: install(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// Waits for the next SIGTERM or SIGINT and returns its name; never returns without either.
    async fn recv(&mut self) -> &'static str {
        async fn next(s: Option<&mut Signal>) {
            let fired = match s {
                Some(s) => s.recv().await.is_some(),
                None => false,
            };
            if !fired {
                // Not installed, or the driver is gone: this source never fires.
                std::future::pending::<()>().await;
            }
        }
        tokio::select! {
            () = next(self.term.as_mut()) => "SIGTERM",
            () = next(self.int.as_mut()) => "SIGINT",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// No signal handlers: a test process must not take over SIGTERM/SIGINT.
    fn no_signals() -> Signals {
        Signals {
            term: None,
            int: None,
        }
    }

    async fn run(delay: Duration) -> (CancellationToken, Arc<AtomicBool>, CancellationToken) {
        let (stop, drain) = (CancellationToken::new(), CancellationToken::new());
        let stopping = Arc::new(AtomicBool::new(false));
        let flag = stopping.clone();
        tokio::spawn(sequence(
            no_signals(),
            stop.clone(),
            delay,
            move || flag.store(true, Ordering::SeqCst),
            drain.clone(),
        ));
        tokio::task::yield_now().await;
        (stop, stopping, drain)
    }

    #[tokio::test(start_paused = true)]
    async fn stop_turns_readiness_off_at_once_and_drains_after_the_delay() {
        let (stop, stopping, drain) = run(Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!stopping.load(Ordering::SeqCst), "nothing before stop");
        assert!(!drain.is_cancelled());

        stop.cancel();
        tokio::task::yield_now().await;
        assert!(stopping.load(Ordering::SeqCst));
        assert!(!drain.is_cancelled(), "still serving during the delay");
        tokio::time::sleep(Duration::from_millis(4900)).await;
        assert!(!drain.is_cancelled(), "still serving during the delay");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(drain.is_cancelled(), "draining after the delay");
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_delay_drains_at_once() {
        let (stop, stopping, drain) = run(Duration::ZERO).await;
        stop.cancel();
        tokio::task::yield_now().await;
        assert!(stopping.load(Ordering::SeqCst));
        assert!(drain.is_cancelled());
    }
}
