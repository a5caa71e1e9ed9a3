//! SIGTERM and SIGINT become one cancellation token.

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Cancels `token` on the first SIGTERM or SIGINT.
pub fn on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(error) => {
                    warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                    let _ = tokio::signal::ctrl_c().await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: draining"),
            _ = tokio::signal::ctrl_c() => info!("SIGINT: draining"),
        }
        token.cancel();
    });
}
