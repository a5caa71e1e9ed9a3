//! The write stream: one Service create every [`EVERY`] through an admin client for the whole
//! lifecycle, each recorded with its start and end, success or error, and the dual-stack fields
//! the API server stored. Most leave the dual-stack fields unset (the policy's defaults, in-process
//! or by `/mutate`, decide what is stored); every [`CHECKED_EVERY`]th sets them itself, IPv4
//! first, which the policies' `prefer-ipv6-first` rule flags: a write `/validate` is called for
//! while the webhook is registered (Warn or Audit, never refused), so the webhook stays on the
//! write path the whole time and a failure to answer it would fail a create.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::support;

/// A create starts every 50 ms, or as soon as the previous one ends if it took longer.
pub(super) const EVERY: Duration = Duration::from_millis(50);
/// Every this many creates, one sets the fields itself (IPv4 first).
const CHECKED_EVERY: usize = 5;
/// A create that has not ended by then is a failure (the webhook's timeout is 5 s).
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// One create.
#[derive(Clone, Debug)]
pub(super) struct Write {
    pub(super) name: String,
    /// Whether it set the fields itself, IPv4 first (else it left them unset).
    pub(super) checked: bool,
    pub(super) start: Instant,
    pub(super) end: Instant,
    /// The stored (ipFamilyPolicy, ipFamilies), or the error.
    pub(super) outcome: Result<(String, Vec<String>), String>,
}

impl Write {
    /// A create that left the fields unset, created with the shipped policy's defaults (the
    /// in-process defaults or the webhook set them).
    pub(super) fn defaulted(&self) -> bool {
        !self.checked
            && matches!(&self.outcome, Ok((policy, families))
            if policy == "PreferDualStack" && *families == support::fams(&["IPv6", "IPv4"]))
    }

    /// A create that left the fields unset, created as the API server defaults a Service that
    /// says nothing on this cluster: SingleStack on its primary family. Nothing set them.
    pub(super) fn undefaulted(&self) -> bool {
        !self.checked
            && matches!(&self.outcome, Ok((policy, families))
            if policy == "SingleStack" && *families == support::fams(&["IPv4"]))
    }

    /// A create that set the fields itself, stored as sent.
    pub(super) fn as_sent(&self) -> bool {
        self.checked
            && matches!(&self.outcome, Ok((policy, families))
            if policy == "PreferDualStack" && *families == support::fams(&["IPv4", "IPv6"]))
    }

    pub(super) fn failed(&self) -> bool {
        self.outcome.is_err()
    }
}

/// The running stream.
pub(super) struct Stream {
    stop: Arc<AtomicBool>,
    writes: Arc<Mutex<Vec<Write>>>,
    task: Option<JoinHandle<()>>,
}

impl Stream {
    /// Starts creating `<prefix>-<i>` Services (no dual-stack field set) in `api`'s namespace.
    pub(super) fn start(api: Api<Service>, prefix: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(run(api, prefix.to_owned(), stop.clone(), writes.clone()));
        Stream {
            stop,
            writes,
            task: Some(task),
        }
    }

    /// The creates so far.
    pub(super) fn snapshot(&self) -> Vec<Write> {
        self.writes.lock().unwrap().clone()
    }

    /// Stops after the create in flight and returns every create.
    pub(super) async fn stop(mut self) -> Vec<Write> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            task.await.expect("the write stream panicked");
        }
        self.snapshot()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(
    api: Api<Service>,
    prefix: String,
    stop: Arc<AtomicBool>,
    writes: Arc<Mutex<Vec<Write>>>,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let name = format!("{prefix}-{i}");
        let checked = i % CHECKED_EVERY == CHECKED_EVERY - 1;
        let spec = if checked {
            json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]})
        } else {
            json!({})
        };
        let svc = support::service(&name, spec);
        let start = Instant::now();
        let result =
            tokio::time::timeout(CREATE_TIMEOUT, api.create(&PostParams::default(), &svc)).await;
        let end = Instant::now();
        let outcome = match result {
            Ok(Ok(stored)) => {
                let (policy, families, _, _) = support::stack(&stored);
                Ok((policy.unwrap_or_default(), families))
            }
            // The API server repeats its message in the details: the first part is enough.
            Ok(Err(e)) => Err(e.to_string().chars().take(300).collect()),
            Err(_) => Err(format!("no answer within {CREATE_TIMEOUT:?}")),
        };
        writes.lock().unwrap().push(Write {
            name,
            checked,
            start,
            end,
            outcome,
        });
        i += 1;
    }
}
