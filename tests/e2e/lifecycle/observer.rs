//! Watches the two admission configurations and the in-process defaults (binding and policy) the
//! way an operator's `kubectl get` would, every [`POLL`], and keeps every sample's state with its
//! instant: when they were filled and when they were gone is then known to within a poll.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde_json::Value;
use tokio::task::JoinHandle;

/// How often both configurations are read.
pub(super) const POLL: Duration = Duration::from_millis(50);

/// One configuration's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// Not found (404).
    Absent,
    /// Present with no `webhooks`.
    Empty,
    /// Present with webhooks.
    Filled,
    /// The read failed.
    Unknown,
}

/// One sample: when the reads ended, (mutating, validating), and the in-process defaults:
/// `Absent` without their binding, `Empty` with the binding alone, `Filled` with the policy
/// a pod applies too.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sample {
    pub(super) at: Instant,
    pub(super) mutating: State,
    pub(super) validating: State,
    pub(super) defaults: State,
}

impl Sample {
    pub(super) fn both(&self, state: State) -> bool {
        self.mutating == state && self.validating == state
    }

    /// A read failed: the sample says nothing.
    pub(super) fn unknown(&self) -> bool {
        [self.mutating, self.validating, self.defaults].contains(&State::Unknown)
    }

    /// The configurations and the in-process defaults all in `state`.
    pub(super) fn all(&self, state: State) -> bool {
        self.both(state) && self.defaults == state
    }
}

/// The poller; it stops when dropped.
pub(super) struct Observer {
    samples: Arc<Mutex<Vec<Sample>>>,
    /// The first filled configurations seen, as JSON (mutating, validating).
    filled: Arc<Mutex<Option<(Value, Value)>>>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Observer {
    /// Starts polling configurations `name` with `client` (admin).
    pub(super) fn start(client: Client, name: &str) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let filled = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(poll(
            client,
            name.to_owned(),
            samples.clone(),
            filled.clone(),
            stop.clone(),
        ));
        Observer {
            samples,
            filled,
            stop,
            task,
        }
    }

    /// Every sample so far.
    pub(super) fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// The configurations as first seen filled.
    pub(super) fn first_filled(&self) -> Option<(Value, Value)> {
        self.filled.lock().unwrap().clone()
    }

    /// Waits for the first sample after `after` where `pred` holds, at most `bound`; returns it
    /// and the sample before it.
    pub(super) async fn wait(
        &self,
        what: &str,
        after: Instant,
        bound: Duration,
        pred: impl Fn(&Sample) -> bool,
    ) -> (Sample, Option<Sample>) {
        let start = Instant::now();
        loop {
            {
                let samples = self.samples.lock().unwrap();
                if let Some(i) = samples.iter().position(|s| s.at > after && pred(s)) {
                    return (samples[i], i.checked_sub(1).map(|j| samples[j]));
                }
                if let Some(last) = samples.last() {
                    assert!(
                        start.elapsed() < bound,
                        "{what}: not after {bound:?}; last sample {last:?}"
                    );
                }
            }
            assert!(start.elapsed() < bound * 2, "{what}: the observer is stuck");
            tokio::time::sleep(POLL / 2).await;
        }
    }

    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn poll(
    client: Client,
    name: String,
    samples: Arc<Mutex<Vec<Sample>>>,
    filled: Arc<Mutex<Option<(Value, Value)>>>,
    stop: Arc<AtomicBool>,
) {
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let defaults = |kind: &str| -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
        Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
    };
    let binding = defaults("MutatingAdmissionPolicyBinding");
    let policy = defaults("MutatingAdmissionPolicy");
    let defaults_name = format!("{name}-defaults");
    while !stop.load(Ordering::SeqCst) {
        let (m, v, b, p) = tokio::join!(
            mutating.get_opt(&name),
            validating.get_opt(&name),
            binding.get_opt(&defaults_name),
            policy.get_opt(&defaults_name)
        );
        let m = m.map(|o| o.map(|c| serde_json::to_value(c).unwrap()));
        let v = v.map(|o| o.map(|c| serde_json::to_value(c).unwrap()));
        let sample = Sample {
            at: Instant::now(),
            mutating: state(&m),
            validating: state(&v),
            defaults: match (b, p) {
                (Ok(None), _) => State::Absent,
                (Ok(Some(_)), Ok(None)) => State::Empty,
                (Ok(Some(_)), Ok(Some(_))) => State::Filled,
                _ => State::Unknown,
            },
        };
        if sample.both(State::Filled) {
            let mut first = filled.lock().unwrap();
            if first.is_none()
                && let (Ok(Some(m)), Ok(Some(v))) = (m, v)
            {
                *first = Some((m, v));
            }
        }
        samples.lock().unwrap().push(sample);
        tokio::time::sleep(POLL).await;
    }
}

fn state(read: &Result<Option<Value>, kube::Error>) -> State {
    match read {
        Ok(None) => State::Absent,
        Ok(Some(c)) if c["webhooks"].as_array().is_some_and(|w| !w.is_empty()) => State::Filled,
        Ok(Some(_)) => State::Empty,
        Err(_) => State::Unknown,
    }
}
