//! Reloads the policy file when its content changes; a broken file keeps the last good policy.
//!
//! The file is polled by content, not watched by inotify: a ConfigMap volume updates through a
//! `..data` symlink swap that never writes the old file, and polling a small file is cheap.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::domain::policy::{Policy, PolicyError};
use crate::metrics::{Metrics, ReloadResult};

/// Why the policy file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read policy file {0} (--policy): {1}")]
    Read(PathBuf, #[source] std::io::Error),
    /// The file is not a valid policy.
    #[error("invalid policy file {0} (--policy): {1}")]
    Invalid(PathBuf, #[source] PolicyError),
}

/// Reads and parses a policy file.
pub fn load_policy(path: &std::path::Path) -> Result<(Policy, Vec<u8>), LoadError> {
    let bytes = std::fs::read(path).map_err(|e| LoadError::Read(path.to_owned(), e))?;
    let text = String::from_utf8_lossy(&bytes);
    let policy = Policy::from_yaml(&text).map_err(|e| LoadError::Invalid(path.to_owned(), e))?;
    Ok((policy, bytes))
}

/// Polls `path` every `every`; on a change that parses, swaps the policy in; on one that does not,
/// logs once and counts the failure, keeping the last good policy.
pub async fn watch_policy(
    path: PathBuf,
    loaded: Vec<u8>,
    policy: Arc<ArcSwap<Policy>>,
    every: Duration,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut last_seen = loaded;
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let Ok(bytes) = tokio::fs::read(&path).await else {
            // A missing file during a ConfigMap swap is transient; keep the policy and try again.
            continue;
        };
        if bytes == last_seen {
            continue;
        }
        last_seen = bytes.clone();
        let text = String::from_utf8_lossy(&bytes);
        match Policy::from_yaml(&text) {
            Ok(new) => {
                info!(path = %path.display(), rules = new.rules.len(), "policy reloaded");
                policy.store(Arc::new(new));
                metrics.policy_reload(ReloadResult::success);
            }
            Err(error) => {
                warn!(path = %path.display(), %error, "policy reload failed; keeping the last good policy");
                metrics.policy_reload(ReloadResult::failure);
            }
        }
    }
}
