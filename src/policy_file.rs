//! Reads the policy file, and reloads it when its content changes; a broken file keeps the last
//! good policy.
//!
//! The file is polled by content, not watched by inotify: a ConfigMap volume updates through a
//! `..data` symlink swap that never writes the old file, and polling a small file is cheap. Each
//! poll opens the path afresh, so it follows the symlinks to wherever they point now.

use std::collections::HashSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cluster::ServiceCidrs;
use crate::domain::policy::limits::POLICY_MAX_BYTES;
use crate::domain::policy::lint::{self, LintFinding, Severity};
use crate::domain::policy::{Policy, PolicyError};
use crate::domain::yaml_lines::Lines;
use crate::metrics::Metrics;

/// Why the policy file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read policy file {0} (--policy): {1}")]
    Read(PathBuf, #[source] std::io::Error),
    /// The file is larger than [`POLICY_MAX_BYTES`] (or endless, like `/dev/zero`).
    #[error("policy file {0} (--policy) is larger than {max} MiB", max = POLICY_MAX_BYTES >> 20)]
    TooLarge(PathBuf),
    /// The file is not a valid policy.
    #[error("invalid policy file {0} (--policy): {1}")]
    Invalid(PathBuf, #[source] PolicyError),
}

/// Reads and parses a policy file; returns the policy and the bytes it was read from.
pub fn load_policy(path: &Path) -> Result<(Policy, Vec<u8>), LoadError> {
    let bytes = read(path)?;
    Ok((parse(path, &bytes)?, bytes))
}

/// Reads a policy file: at most [`POLICY_MAX_BYTES`], plus one byte to tell a larger file.
pub fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    let failed = |e| LoadError::Read(path.to_owned(), e);
    let file = std::fs::File::open(path).map_err(failed)?;
    read_at_most(file, POLICY_MAX_BYTES)
        .map_err(failed)?
        .ok_or_else(|| LoadError::TooLarge(path.to_owned()))
}

/// At most `max` bytes of `reader`, or `None` when it holds more: reading stops one byte past
/// `max`, so an endless source (`/dev/zero`) is refused as soon as it is too large. Policy files,
/// manifests and test suites are all read through this.
pub fn read_at_most(reader: impl std::io::Read, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader.take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Policy, LoadError> {
    Policy::from_yaml(&String::from_utf8_lossy(bytes))
        .map_err(|e| LoadError::Invalid(path.to_owned(), e))
}

/// The lint warnings of a policy read from `bytes` (its errors refused it already), for a cluster
/// of these ranges (unknown: every shape). Blocking: runs the engine a few times per rule.
pub fn lint_warnings(
    bytes: &[u8],
    policy: &Policy,
    cidrs: Option<&ServiceCidrs>,
) -> Vec<LintFinding> {
    let text = String::from_utf8_lossy(bytes);
    let mut findings = lint::lint(policy, &Lines::of(&text), cidrs);
    findings.retain(|f| f.severity == Severity::Warning);
    findings
}

/// Logs at `warn` each of a policy's lint warnings that the policy it replaces did not have
/// (`logged`, which becomes this policy's): a warning is told once, not at every reload. Its
/// line is left out of the comparison, so that an edit above it does not repeat it.
pub fn log_warnings(path: &Path, warnings: &[LintFinding], logged: &mut HashSet<String>) {
    let mut now = HashSet::new();
    for w in warnings {
        let key = format!("{}: {}", w.field, w.message);
        if !logged.contains(&key) {
            warn!(
                path = %path.display(),
                line = w.line,
                field = %w.field,
                warning = %w.message,
                "policy lint warning"
            );
        }
        now.insert(key);
    }
    *logged = now;
}

/// What the last poll found at the path. A poll that finds the same again is not news, so a
/// failure is logged and counted once, not at every poll.
#[derive(Default)]
enum Seen {
    /// Nothing yet (or forgotten).
    #[default]
    Nothing,
    /// This content, whether it parsed or not.
    Content(Vec<u8>),
    /// The file could not be read, for this reason (the error's text).
    Unreadable(String),
}

/// A policy read anew, with its lint warnings; or why it was not.
type Reloaded = Result<(Policy, Vec<LintFinding>), LoadError>;

/// Reads the path and, if it changed since `seen` (which it updates), parses and lints it: `None`
/// when nothing changed. Blocking: file I/O, parsing up to 1 MiB of YAML, and the lint.
fn poll(path: &Path, seen: &mut Seen, cidrs: Option<&ServiceCidrs>) -> Option<Reloaded> {
    match read(path) {
        Ok(bytes) => {
            if matches!(seen, Seen::Content(last) if *last == bytes) {
                return None;
            }
            let parsed = parse(path, &bytes).map(|p| {
                let warnings = lint_warnings(&bytes, &p, cidrs);
                (p, warnings)
            });
            *seen = Seen::Content(bytes);
            Some(parsed)
        }
        Err(error) => {
            let cause = error.to_string();
            if matches!(seen, Seen::Unreadable(last) if *last == cause) {
                return None;
            }
            *seen = Seen::Unreadable(cause);
            Some(Err(error))
        }
    }
}

/// Polls `path` every `every`. A change that parses is swapped in, counted as a success (a new
/// [policy generation](Metrics::policy_reloaded)) and logged at `info` (saying so when it ends a
/// failure), and its lint warnings that the policy it replaces did not have are logged at `warn`.
/// Every distinct failure (unreadable, dangling symlink, too large, invalid) is logged once at
/// `warn` and counted once; the last good policy stays in force. `loaded` is the content the
/// current policy was read from (its warnings were logged when it was loaded). Linted for a
/// cluster of `cidrs` (`None`: every shape of cluster).
pub async fn watch_policy(
    path: PathBuf,
    loaded: Vec<u8>,
    policy: Arc<ArcSwap<Policy>>,
    cidrs: Option<ServiceCidrs>,
    every: Duration,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut logged = HashSet::new();
    let current = lint_warnings(&loaded, &policy.load(), cidrs.as_ref());
    let keys = current
        .iter()
        .map(|w| format!("{}: {}", w.field, w.message));
    logged.extend(keys);
    let mut seen = Seen::Content(loaded);
    let mut failing = false;
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        // Off the async workers: reading may block (a network volume), parsing takes milliseconds.
        let polled = tokio::task::spawn_blocking({
            let path = path.clone();
            let mut seen = std::mem::take(&mut seen);
            let cidrs = cidrs.clone();
            move || {
                let change = poll(&path, &mut seen, cidrs.as_ref());
                (seen, change)
            }
        })
        .await;
        let change = match polled {
            Ok((now, change)) => {
                seen = now;
                change
            }
            // The poll panicked; `seen` is forgotten, so the next poll reads the file afresh.
            Err(error) => {
                warn!(path = %path.display(), %error, "policy file poll failed");
                continue;
            }
        };
        match change {
            None => {}
            Some(Ok((new, warnings))) => {
                let rules = new.rules.len();
                if failing {
                    info!(path = %path.display(), rules, "policy file is valid again; policy reloaded");
                } else {
                    info!(path = %path.display(), rules, "policy reloaded");
                }
                log_warnings(&path, &warnings, &mut logged);
                failing = false;
                metrics.policy_reloaded(&new);
                policy.store(Arc::new(new));
            }
            Some(Err(error)) => {
                failing = true;
                warn!(path = %path.display(), %error, "policy reload failed; keeping the last good policy");
                metrics.policy_reload_failed();
            }
        }
    }
}
