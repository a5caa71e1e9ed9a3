//! `make bench-e2e`: what admission adds to a Service write through kube-apiserver, seven ways in one
//! interleaved run against the same API server. Prints numbers and asserts none of them (a loaded
//! 2-core machine makes timings a report, not a test); it does assert that each arm did what it
//! claims (the stored stacks, and the webhook calls counted by the API server and the webhooks).
//!
//! Arms (only one arm's admission objects are registered at a time):
//! - `none`: no admission; the client leaves the dual-stack fields unset (SingleStack, IPv4);
//! - `explicit`: no admission; the client sets PreferDualStack + `[IPv6, IPv4]` itself;
//! - `MAP`: `bench/mutating-admission-policy.yaml`, the webhook's defaults in-process;
//! - `do-nothing`: a webhook with the empty policy (allowed, no patch), registered without
//!   matchConditions: the floor of the webhook mechanism, two calls per write;
//! - `shipped`: a webhook with `manifests/policy.yaml`, registered as `webhook-configurations
//!   --policy` prints it and `serve --register-webhooks` registers it with the manifests: the
//!   matchConditions generated from the policy, and its CREATE defaults as an in-process
//!   MutatingAdmissionPolicy (param: the `kubernetes` ServiceCIDR);
//! - `conditions-only`: the same webhook with its conditions, without the in-process defaults
//!   (what shipped before them);
//! - `shipped-unconditioned`: the same webhook registered without either (what shipped before the
//!   conditions);
//! - `exported`: `examples/admission-policies/policy.yaml`, the shipped policy as `export` writes
//!   it (MutatingAdmissionPolicy + ValidatingAdmissionPolicies), in-process, no webhook.
//!
//! Operations: Service CREATEs (fields unset unless the arm says otherwise) and label-only UPDATEs
//! (a JSON merge patch adding one label to a Service the arm just created). Each run writes
//! `E2E_BENCH_N` Services per arm in blocks of [`BLOCK`], the arms taking turns ([`order`]) so
//! that load from other processes on the machine falls on all of them alike; `E2E_BENCH_RUNS`
//! runs follow one unreported warm-up round. Before each block the arm's objects are registered
//! and two dry-run probes show that the API server applies them (and, before that, that it
//! stopped applying the previous arm's).
//!
//! The webhooks are registered at `https://127.0.0.1:PORT`, where kube-apiserver speaks HTTP/2; in a
//! cluster (a Service reference) it speaks HTTP/1.1, which `DISABLE_HTTP2=1 make bench-e2e` gives
//! the harness's API server too. Results and what they say: `bench/README.md`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::support::{self, Render, Watching, Webhook};

/// Writes per arm and operation between two arm switches.
const BLOCK: usize = 50;
/// Writes per arm and operation in the unreported warm-up round.
const WARM_UP: usize = 10;
/// The namespace every Service of the benchmark is written in.
const NS: &str = "e2e-bench";

#[tokio::test]
#[ignore = "benchmark: make bench-e2e"]
async fn service_write_latency() {
    let n = env_count("E2E_BENCH_N", 300);
    let runs = env_count("E2E_BENCH_RUNS", 3);
    let bench = Bench::start().await;
    let mut current = None;
    bench.run("warm", WARM_UP, &mut current).await;
    let mut results = Vec::with_capacity(runs);
    for i in 1..=runs {
        let run = bench.run(&format!("r{i}"), n, &mut current).await;
        run.print(&format!("run {i} of {runs}"), n);
        run.check();
        results.push(run);
    }
    summary(&results, n);
    bench.print_connections();
    bench.switch(current, Arm::None).await;
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a count"))
    })
}

// === arms ===

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Arm {
    None,
    Explicit,
    Map,
    DoNothing,
    Shipped,
    ConditionsOnly,
    ShippedUnconditioned,
    Exported,
}

const ARMS: [Arm; 8] = [
    Arm::None,
    Arm::Explicit,
    Arm::Map,
    Arm::DoNothing,
    Arm::Shipped,
    Arm::ConditionsOnly,
    Arm::ShippedUnconditioned,
    Arm::Exported,
];

/// The two webhook processes, as indices into [`Bench::hooks`].
#[derive(Clone, Copy)]
enum Hook {
    DoNothing = 0,
    Shipped = 1,
}

impl Arm {
    fn label(self) -> &'static str {
        match self {
            Arm::None => "none",
            Arm::Explicit => "explicit",
            Arm::Map => "MAP",
            Arm::DoNothing => "do-nothing",
            Arm::Shipped => "shipped",
            Arm::ConditionsOnly => "conditions-only",
            Arm::ShippedUnconditioned => "shipped-unconditioned",
            Arm::Exported => "exported",
        }
    }

    /// The spec a create sends (merged over `support::service`'s).
    fn spec(self) -> Value {
        match self {
            Arm::Explicit => {
                json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"]})
            }
            _ => json!({}),
        }
    }

    /// Whether admission defaults a create that leaves the fields unset.
    fn defaults(self) -> bool {
        matches!(
            self,
            Arm::Map
                | Arm::Shipped
                | Arm::ConditionsOnly
                | Arm::ShippedUnconditioned
                | Arm::Exported
        )
    }

    /// The webhook process the arm's configurations send reviews to.
    fn hook(self) -> Option<Hook> {
        match self {
            Arm::DoNothing => Some(Hook::DoNothing),
            Arm::Shipped | Arm::ConditionsOnly | Arm::ShippedUnconditioned => Some(Hook::Shipped),
            Arm::None | Arm::Explicit | Arm::Map | Arm::Exported => None,
        }
    }

    /// What the probes see once the API server applies this arm's objects (with the defaults
    /// in-process, /mutate is not called).
    fn seen(self) -> Seen {
        let mut called = [(false, false); 2];
        if let Some(hook) = self.hook() {
            called[hook as usize] = (self != Arm::Shipped, true);
        }
        Seen {
            defaulted: self.defaults(),
            called,
        }
    }

    /// Asserts that a Service the arm created or updated has the stack the arm claims:
    /// PreferDualStack `[IPv6, IPv4]` with two IPs where it or the client set the fields,
    /// SingleStack `[IPv4]` (the API server's default here) otherwise.
    fn check(self, svc: &Service) {
        let (policy, families, _, ips) = support::stack(svc);
        let (want_policy, want_families): (&str, &[&str]) =
            if self.defaults() || self == Arm::Explicit {
                ("PreferDualStack", &["IPv6", "IPv4"])
            } else {
                ("SingleStack", &["IPv4"])
            };
        assert_eq!(
            (policy.as_deref(), families, ips.len()),
            (
                Some(want_policy),
                support::fams(want_families),
                want_families.len()
            ),
            "{}: {:?}",
            self.label(),
            svc.metadata.name
        );
    }
}

/// The arms' turns in block `block`: rotated by one each block and reversed every other block,
/// so that each arm follows different arms. What ran just before may matter: in a fixed cyclic
/// order (shipped always right after do-nothing, shipped-unconditioned right after shipped), the
/// shipped creates came out slower than shipped-unconditioned's in two invocations of three,
/// despite one webhook call fewer.
fn order(block: usize) -> [Arm; 8] {
    let mut arms = ARMS;
    arms.rotate_left(block % ARMS.len());
    if block % 2 == 1 {
        arms.reverse();
    }
    arms
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Create,
    Update,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
        }
    }

    /// The `operation` label of the metrics.
    fn verb(self) -> &'static str {
        match self {
            Op::Create => "CREATE",
            Op::Update => "UPDATE",
        }
    }
}

/// What two dry-run creates show about the admission the API server applies now: whether it
/// defaults a Service that leaves the fields unset, and, per webhook process, whether its
/// /mutate and /validate were called.
#[derive(Debug, PartialEq)]
struct Seen {
    defaulted: bool,
    called: [(bool, bool); 2],
}

// === the benchmark's cluster side ===

/// An admission object of an arm, with the API it is written through.
struct Object {
    api: Api<DynamicObject>,
    object: DynamicObject,
}

impl Object {
    /// Resolves the document's kind through discovery (all of them are cluster-scoped).
    async fn new(client: &Client, doc: Value) -> Self {
        let object: DynamicObject = serde_json::from_value(doc).expect("admission object");
        let types = object.types.as_ref().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(types).expect("apiVersion");
        let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("discover {gvk:?}: {e}"));
        Object {
            api: Api::all_with(client.clone(), &resource),
            object,
        }
    }

    fn name(&self) -> &str {
        self.object.metadata.name.as_deref().expect("metadata.name")
    }

    async fn apply(&self) {
        let params = PatchParams::apply(support::MANAGER).force();
        self.api
            .patch(self.name(), &params, &Patch::Apply(&self.object))
            .await
            .unwrap_or_else(|e| panic!("apply {}: {e}", self.name()));
    }

    async fn delete(&self) {
        match self.api.delete(self.name(), &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => panic!("delete {}: {e}", self.name()),
        }
    }
}

/// What `webhook-configurations --url` prints for `hook` under `name`, with `--policy` when given:
/// the configurations, and with `in_process` the in-process defaults that follow them.
fn configurations(
    hook: &Webhook,
    name: &str,
    policy: Option<&Path>,
    in_process: bool,
) -> Vec<Value> {
    let (base_url, ca_pem) = (hook.base_url(), hook.ca_pem());
    let render = Render {
        name,
        base_url: &base_url,
        ca_pem: &ca_pem,
        failure_policy: None,
        only_namespace: None,
        policy,
    };
    let mut docs = support::render_webhooks(&render);
    if in_process {
        docs.extend(support::render_in_process_defaults(&render));
    }
    docs
}

struct Bench {
    client: Client,
    api: Api<Service>,
    /// Indexed by [`Hook`].
    hooks: [Webhook; 2],
    objects: BTreeMap<Arm, Vec<Object>>,
}

impl Bench {
    /// Starts the two webhooks and renders every arm's objects; registers nothing.
    async fn start() -> Self {
        let client = support::client().await;
        let api = support::namespace(&client, NS).await;
        let bench_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/bench");
        let shipped_policy = support::manifests_dir().join("policy.yaml");
        let do_nothing = Webhook::start(
            "bench-do-nothing",
            &support::env("E2E_SERVICE_CIDRS"),
            &bench_dir.join("empty-policy.yaml"),
        );
        // As the Deployment runs it: ranges and namespace labels from the cluster.
        let shipped = Webhook::watching(
            "bench-shipped",
            &Watching {
                kubeconfig: Path::new(&support::env("E2E_KUBECONFIG")),
                cidrs: None,
                policy: &shipped_policy,
                wait_ready: true,
            },
        );
        let docs = [
            (
                Arm::Map,
                support::yaml_documents(&bench_dir.join("mutating-admission-policy.yaml")),
            ),
            (
                Arm::DoNothing,
                configurations(&do_nothing, "bench-do-nothing", None, false),
            ),
            (
                Arm::Shipped,
                configurations(&shipped, "bench-shipped", Some(&shipped_policy), true),
            ),
            (
                Arm::ConditionsOnly,
                configurations(
                    &shipped,
                    "bench-conditions-only",
                    Some(&shipped_policy),
                    false,
                ),
            ),
            (
                Arm::ShippedUnconditioned,
                configurations(&shipped, "bench-shipped-unconditioned", None, false),
            ),
            (
                Arm::Exported,
                support::yaml_documents(
                    &Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("examples/admission-policies/policy.yaml"),
                ),
            ),
        ];
        let mut objects = BTreeMap::new();
        for (arm, docs) in docs {
            let mut resolved = Vec::new();
            for doc in docs {
                resolved.push(Object::new(&client, doc).await);
            }
            objects.insert(arm, resolved);
        }
        Bench {
            client,
            api,
            hooks: [do_nothing, shipped],
            objects,
        }
    }

    fn objects(&self, arm: Arm) -> &[Object] {
        self.objects.get(&arm).map_or(&[], Vec::as_slice)
    }

    /// Unregisters `from`'s objects, waits until the API server no longer applies them,
    /// registers `to`'s and waits until it applies them.
    async fn switch(&self, from: Option<Arm>, to: Arm) {
        for object in from.map_or(&[][..], |arm| self.objects(arm)) {
            object.delete().await;
        }
        self.settle(Arm::None).await;
        for object in self.objects(to) {
            object.apply().await;
        }
        self.settle(to).await;
    }

    /// Waits until the probes see what `arm` does (configuration changes reach the API server
    /// through informers).
    async fn settle(&self, arm: Arm) {
        let want = arm.seen();
        let what = format!(
            "the API server applies {}'s admission: {want:?}",
            arm.label()
        );
        support::eventually(&what, || async {
            (self.probe().await == want).then_some(())
        })
        .await;
    }

    /// Two dry-run creates: one leaving the fields unset (defaulted?), one SingleStack `[IPv4]`,
    /// which the shipped policy's `prefer-ipv6-first` rule warns about (so its /validate must be
    /// called, with or without conditions). Reads the webhooks' review counters around them.
    async fn probe(&self) -> Seen {
        let before = self.reviews();
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let unset = support::service("probe-unset", json!({}));
        let ipv4 = support::service(
            "probe-ipv4",
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}),
        );
        let unset = self.api.create(&dry, &unset).await.expect("dry-run probe");
        self.api.create(&dry, &ipv4).await.expect("dry-run probe");
        let after = self.reviews();
        Seen {
            defaulted: support::policy_of(&unset) == "PreferDualStack",
            called: [0, 1].map(|i| (after[i].0 > before[i].0, after[i].1 > before[i].1)),
        }
    }

    /// Each webhook's (/mutate, /validate) review counts.
    fn reviews(&self) -> [(f64, f64); 2] {
        self.hooks.each_ref().map(|hook| {
            let text = hook.metrics();
            let count = |endpoint: &str| {
                let label = format!("endpoint=\"{endpoint}\"");
                support::metric(&text, "dualstack_webhook_reviews_total{", &[&label])
            };
            (count("mutate"), count("validate"))
        })
    }

    /// The API server's and both webhooks' metrics.
    async fn scrape(&self) -> Scrape {
        let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
        let apiserver = self
            .client
            .request_text(request)
            .await
            .expect("GET /metrics");
        let hooks = self.hooks.iter().map(Webhook::metrics).collect();
        Scrape { apiserver, hooks }
    }

    /// Each webhook's TLS handshakes so far, and how many of them negotiated HTTP/2 (from its
    /// log: `run.sh bench` has the accept loop log at debug level).
    fn handshakes(&self) -> [(usize, usize); 2] {
        self.hooks.each_ref().map(|hook| {
            let log = std::fs::read_to_string(hook.dir.join("webhook.log")).unwrap();
            let done: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("tls handshake complete"))
                .collect();
            let h2 = done.iter().filter(|l| l.contains("h2=true")).count();
            (done.len(), h2)
        })
    }

    /// Connections over the whole benchmark: each webhook's TLS handshakes next to the reviews
    /// they carried (warm-up and probes included).
    fn print_connections(&self) {
        let reviews = self.reviews();
        for (i, (all, h2)) in self.handshakes().into_iter().enumerate() {
            let name = ["do-nothing", "shipped"][i];
            println!(
                "{name} webhook: {all} TLS handshakes ({h2} HTTP/2) for {} reviews since it started",
                reviews[i].0 + reviews[i].1
            );
        }
    }

    /// One run: `per_arm` writes per arm and operation, in blocks, the arms rotating.
    async fn run(&self, tag: &str, per_arm: usize, current: &mut Option<Arm>) -> Run {
        let mut run = Run::default();
        let handshakes = self.handshakes();
        for block in 0..per_arm.div_ceil(BLOCK) {
            let size = BLOCK.min(per_arm - block * BLOCK);
            for arm in order(block) {
                self.switch(current.replace(arm), arm).await;
                let prefix = format!("{}-{tag}-{block}", arm.label().to_lowercase());
                self.block(arm, &prefix, size, &mut run).await;
            }
        }
        let after = self.handshakes();
        run.handshakes =
            [0, 1].map(|i| (after[i].0 - handshakes[i].0, after[i].1 - handshakes[i].1));
        run
    }

    /// `size` creates, then a label update of each, measured; then the Services are deleted.
    async fn block(&self, arm: Arm, prefix: &str, size: usize, run: &mut Run) {
        let names: Vec<String> = (0..size).map(|i| format!("{prefix}-{i}")).collect();
        let before = self.scrape().await;
        let created = self.creates(arm, &names).await;
        let middle = self.scrape().await;
        let updated = self.updates(arm, &names).await;
        let after = self.scrape().await;
        // Read back: what was stored, not only what the create answered.
        arm.check(&self.api.get(&names[0]).await.expect("read back"));
        run.add(
            arm,
            Op::Create,
            created,
            Counts::between(&before, &middle, Op::Create),
        );
        run.add(
            arm,
            Op::Update,
            updated,
            Counts::between(&middle, &after, Op::Update),
        );
        self.api
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await
            .expect("delete the block's Services");
    }

    async fn creates(&self, arm: Arm, names: &[String]) -> Vec<Duration> {
        let mut times = Vec::with_capacity(names.len());
        for name in names {
            let svc = support::service(name, arm.spec());
            let start = Instant::now();
            let stored = support::create(&self.api, &svc).await;
            times.push(start.elapsed());
            arm.check(&stored);
        }
        times
    }

    async fn updates(&self, arm: Arm, names: &[String]) -> Vec<Duration> {
        let mut times = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let patch = json!({"metadata": {"labels": {"bench-rev": i.to_string()}}});
            let start = Instant::now();
            let stored = support::merge_patch(&self.api, name, patch).await;
            times.push(start.elapsed());
            arm.check(&stored);
            let labels = stored.metadata.labels.unwrap_or_default();
            assert_eq!(labels.get("bench-rev"), Some(&i.to_string()), "{name}");
        }
        times
    }
}

// === metrics ===

/// The `/metrics` texts of the API server and of both webhooks.
struct Scrape {
    apiserver: String,
    hooks: Vec<String>,
}

/// A figure read from the metrics, summed over label values not named.
#[derive(Clone, Copy)]
enum Fig {
    /// The API server's calls of mutating webhooks
    /// (`apiserver_admission_webhook_admission_duration_seconds`, `type="admit"`).
    MutateCalls,
    /// … of validating webhooks (`type="validating"`).
    ValidateCalls,
    /// The seconds it spent in them.
    MutateCallSeconds,
    ValidateCallSeconds,
    /// The seconds of its admission steps (`apiserver_admission_step_admission_duration_seconds`),
    /// every plugin included: admit (mutating) and validate.
    AdmitSeconds,
    ValidateSeconds,
    /// matchConditions evaluations (`apiserver_admission_match_condition_evaluation_seconds`),
    /// webhooks' and policies', and their seconds.
    Conditions,
    ConditionSeconds,
    /// Calls matchConditions left out (`apiserver_admission_match_condition_exclusions_total`).
    Excluded,
    /// MutatingAdmissionPolicy evaluations (`apiserver_mutating_admission_policy_check_total`).
    PolicyChecks,
    /// The webhooks' own reviews (`dualstack_webhook_reviews_total`), /mutate and /validate.
    MutateReviews,
    ValidateReviews,
    /// Their own time, from a complete body to the encoded answer
    /// (`dualstack_webhook_review_duration_seconds`).
    MutateReviewSeconds,
    ValidateReviewSeconds,
}

const FIGS: [Fig; 14] = [
    Fig::MutateCalls,
    Fig::ValidateCalls,
    Fig::MutateCallSeconds,
    Fig::ValidateCallSeconds,
    Fig::AdmitSeconds,
    Fig::ValidateSeconds,
    Fig::Conditions,
    Fig::ConditionSeconds,
    Fig::Excluded,
    Fig::PolicyChecks,
    Fig::MutateReviews,
    Fig::ValidateReviews,
    Fig::MutateReviewSeconds,
    Fig::ValidateReviewSeconds,
];

impl Fig {
    /// Where it is read: (from the API server, else from the webhooks; the metric; a label; whether
    /// the metric has an `operation` label: without one the figure counts whatever happened
    /// during the phase).
    fn source(self) -> (bool, &'static str, &'static str, bool) {
        const CALLS: &str = "apiserver_admission_webhook_admission_duration_seconds_count";
        const CALL_SECONDS: &str = "apiserver_admission_webhook_admission_duration_seconds_sum";
        const STEPS: &str = "apiserver_admission_step_admission_duration_seconds_sum";
        const CONDITIONS: &str = "apiserver_admission_match_condition_evaluation_seconds_count";
        const CONDITION_SECONDS: &str =
            "apiserver_admission_match_condition_evaluation_seconds_sum";
        const REVIEWS: &str = "dualstack_webhook_reviews_total";
        const REVIEW_SECONDS: &str = "dualstack_webhook_review_duration_seconds_sum";
        const ADMIT: &str = r#"type="admit""#;
        const VALIDATING: &str = r#"type="validating""#;
        const MUTATE: &str = r#"endpoint="mutate""#;
        const VALIDATE: &str = r#"endpoint="validate""#;
        match self {
            Fig::MutateCalls => (true, CALLS, ADMIT, true),
            Fig::ValidateCalls => (true, CALLS, VALIDATING, true),
            Fig::MutateCallSeconds => (true, CALL_SECONDS, ADMIT, true),
            Fig::ValidateCallSeconds => (true, CALL_SECONDS, VALIDATING, true),
            Fig::AdmitSeconds => (true, STEPS, ADMIT, true),
            Fig::ValidateSeconds => (true, STEPS, r#"type="validate""#, true),
            Fig::Conditions => (true, CONDITIONS, "", true),
            Fig::ConditionSeconds => (true, CONDITION_SECONDS, "", true),
            Fig::Excluded => (
                true,
                "apiserver_admission_match_condition_exclusions_total",
                "",
                true,
            ),
            Fig::PolicyChecks => (
                true,
                "apiserver_mutating_admission_policy_check_total",
                "",
                false,
            ),
            Fig::MutateReviews => (false, REVIEWS, MUTATE, true),
            Fig::ValidateReviews => (false, REVIEWS, VALIDATE, true),
            Fig::MutateReviewSeconds => (false, REVIEW_SECONDS, MUTATE, false),
            Fig::ValidateReviewSeconds => (false, REVIEW_SECONDS, VALIDATE, false),
        }
    }

    /// Its value in `scrape` for `op` (summed over both webhooks).
    fn read(self, scrape: &Scrape, op: Op) -> f64 {
        let (apiserver, metric, label, by_operation) = self.source();
        let operation = format!("operation=\"{}\"", op.verb());
        let labels: Vec<&str> = [label, &operation][..1 + usize::from(by_operation)]
            .iter()
            .copied()
            .filter(|l| !l.is_empty())
            .collect();
        // The brace: `…_seconds_sum` is also the start of `…_seconds_summary_sum`.
        let prefix = format!("{metric}{{");
        if apiserver {
            support::metric(&scrape.apiserver, &prefix, &labels)
        } else {
            scrape
                .hooks
                .iter()
                .map(|text| support::metric(text, &prefix, &labels))
                .sum()
        }
    }
}

/// Every [`Fig`] over a phase (differences of two scrapes), or summed over phases.
#[derive(Clone, Copy, Default)]
struct Counts([f64; FIGS.len()]);

impl std::ops::Index<Fig> for Counts {
    type Output = f64;
    fn index(&self, fig: Fig) -> &f64 {
        &self.0[fig as usize]
    }
}

impl Counts {
    fn between(before: &Scrape, after: &Scrape, op: Op) -> Self {
        Counts(FIGS.map(|fig| fig.read(after, op) - fig.read(before, op)))
    }

    fn add(&mut self, other: &Counts) {
        for (sum, v) in self.0.iter_mut().zip(other.0) {
            *sum += v;
        }
    }
}

// === results ===

/// One arm's writes of one operation in a run.
#[derive(Default)]
struct Phase {
    times: Vec<Duration>,
    counts: Counts,
}

impl Phase {
    /// Nearest-rank percentile, in ms.
    fn pct(&self, p: f64) -> f64 {
        let mut sorted = self.times.clone();
        sorted.sort();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        ms(sorted[rank.clamp(1, sorted.len()) - 1])
    }

    fn mean(&self) -> f64 {
        ms(self.times.iter().sum::<Duration>()) / self.times.len() as f64
    }

    /// A count per write.
    fn per_write(&self, fig: Fig) -> f64 {
        self.counts[fig] / self.times.len() as f64
    }

    /// Webhook calls per write, as the API server counts them.
    fn calls(&self) -> f64 {
        self.per_write(Fig::MutateCalls) + self.per_write(Fig::ValidateCalls)
    }

    /// Mean ms of `seconds` per `count` ("-" without any).
    fn mean_of(&self, seconds: Fig, count: Fig) -> String {
        if self.counts[count] == 0.0 {
            "-".to_owned()
        } else {
            format!("{:.3}", 1000.0 * self.counts[seconds] / self.counts[count])
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(Default)]
struct Run {
    phases: BTreeMap<(Arm, Op), Phase>,
    /// Per webhook ([`Hook`]): TLS handshakes during the run, and how many negotiated HTTP/2.
    handshakes: [(usize, usize); 2],
}

impl Run {
    fn add(&mut self, arm: Arm, op: Op, times: Vec<Duration>, counts: Counts) {
        let phase = self.phases.entry((arm, op)).or_default();
        phase.times.extend(times);
        phase.counts.add(&counts);
    }

    fn phase(&self, arm: Arm, op: Op) -> &Phase {
        &self.phases[&(arm, op)]
    }

    /// The p50 of `arm` over `base`'s.
    fn ratio(&self, arm: Arm, base: Arm, op: Op) -> f64 {
        self.phase(arm, op).pct(50.0) / self.phase(base, op).pct(50.0)
    }

    /// Asserts that every arm did what it claims: no webhook calls without webhooks, exactly one
    /// /mutate and one /validate call per write without conditions, at most that with them, the
    /// API server's count equal to the webhooks' own, and the MutatingAdmissionPolicy evaluated
    /// once per create and never on update (the stored stacks are checked write by write).
    fn check(&self) {
        for (&(arm, op), phase) in &self.phases {
            let what = format!("{} {}", arm.label(), op.label());
            let c = &phase.counts;
            let n = phase.times.len() as f64;
            let calls = (c[Fig::MutateCalls], c[Fig::ValidateCalls]);
            assert_eq!(
                calls.0 + calls.1,
                c[Fig::MutateReviews] + c[Fig::ValidateReviews],
                "{what}: the API server's webhook calls and the webhooks' reviews"
            );
            match arm {
                Arm::None | Arm::Explicit | Arm::Map | Arm::Exported => {
                    assert_eq!(calls, (0.0, 0.0), "{what}");
                }
                Arm::DoNothing | Arm::ShippedUnconditioned => assert_eq!(calls, (n, n), "{what}"),
                Arm::ConditionsOnly => {
                    assert!(calls.0 <= n && calls.1 <= n, "{what}: {calls:?}")
                }
                // The defaults in-process: no /mutate call; /validate only where a rule may fire.
                Arm::Shipped => assert!(calls.0 == 0.0 && calls.1 <= n, "{what}: {calls:?}"),
            }
            if arm == Arm::Map {
                let want = if op == Op::Create { n } else { 0.0 };
                assert_eq!(c[Fig::PolicyChecks], want, "{what}: policy evaluations");
            }
        }
    }

    fn print(&self, title: &str, n: usize) {
        println!();
        println!(
            "bench-e2e {title}: {n} writes per arm and operation, blocks of {BLOCK}, arms rotating (ms)"
        );
        println!(
            "{:<22} {:<6} {:>7} {:>7} {:>7}  {:>5} {:>13}  {:>7} {:>8}",
            "arm", "op", "p50", "p99", "mean", "calls", "(m + v)", "p50/MAP", "p50/none"
        );
        for (&(arm, op), phase) in &self.phases {
            println!(
                "{:<22} {:<6} {:>7.2} {:>7.2} {:>7.2}  {:>5.2} {:>13}  {:>7.2} {:>8.2}",
                arm.label(),
                op.label(),
                phase.pct(50.0),
                phase.pct(99.0),
                phase.mean(),
                phase.calls(),
                format!(
                    "({:.2} + {:.2})",
                    phase.per_write(Fig::MutateCalls),
                    phase.per_write(Fig::ValidateCalls)
                ),
                self.ratio(arm, Arm::Map, op),
                self.ratio(arm, Arm::None, op),
            );
        }
        self.print_breakdown();
    }

    /// Where the time goes, from the metrics: the API server's admission steps per write, its
    /// webhook calls and the webhooks' own reviews per call, calls left out by matchConditions and
    /// policy evaluations per write, TLS handshakes over the run.
    fn print_breakdown(&self) {
        println!(
            "where the time goes, from /metrics (ms): the API server's admission steps per write \
             (admit, validate; every plugin), its webhook calls per call (m, v), the webhooks' own \
             time per review, matchConditions evaluated per write and ms each, calls they left out \
             per write, MutatingAdmissionPolicy evaluations per write"
        );
        println!(
            "{:<22} {:<6} {:>6} {:>8}  {:>6} {:>6}  {:>7} {:>9}  {:>4} {:>7} {:>8}  {:>4}",
            "arm",
            "op",
            "admit",
            "validate",
            "call:m",
            "call:v",
            "/mutate",
            "/validate",
            "cond",
            "cond ms",
            "excluded",
            "MAP"
        );
        for (&(arm, op), p) in &self.phases {
            let step = |fig| 1000.0 * p.counts[fig] / p.times.len() as f64;
            println!(
                "{:<22} {:<6} {:>6.3} {:>8.3}  {:>6} {:>6}  {:>7} {:>9}  {:>4.1} {:>7} {:>8.2}  {:>4.2}",
                arm.label(),
                op.label(),
                step(Fig::AdmitSeconds),
                step(Fig::ValidateSeconds),
                p.mean_of(Fig::MutateCallSeconds, Fig::MutateCalls),
                p.mean_of(Fig::ValidateCallSeconds, Fig::ValidateCalls),
                p.mean_of(Fig::MutateReviewSeconds, Fig::MutateReviews),
                p.mean_of(Fig::ValidateReviewSeconds, Fig::ValidateReviews),
                p.per_write(Fig::Conditions),
                p.mean_of(Fig::ConditionSeconds, Fig::Conditions),
                p.per_write(Fig::Excluded),
                p.per_write(Fig::PolicyChecks),
            );
        }
        let [(dn, dn_h2), (sh, sh_h2)] = self.handshakes;
        println!(
            "TLS handshakes during the run: do-nothing webhook {dn} ({dn_h2} HTTP/2), shipped webhook {sh} ({sh_h2} HTTP/2)"
        );
    }
}

/// The median and min–max of each arm's p50 and ratios over the runs.
fn summary(runs: &[Run], n: usize) {
    println!();
    println!(
        "bench-e2e summary: {} runs of {n} writes per arm and operation; median [min–max] over the runs",
        runs.len()
    );
    println!(
        "{:<22} {:<6} {:>22} {:>18} {:>18} {:>6}",
        "arm", "op", "p50 (ms)", "p50/MAP", "p50/none", "calls"
    );
    for op in [Op::Create, Op::Update] {
        for arm in ARMS {
            let of = |f: &dyn Fn(&Run) -> f64| spread(runs.iter().map(f).collect());
            println!(
                "{:<22} {:<6} {:>22} {:>18} {:>18} {:>6.2}",
                arm.label(),
                op.label(),
                of(&|r| r.phase(arm, op).pct(50.0)),
                of(&|r| r.ratio(arm, Arm::Map, op)),
                of(&|r| r.ratio(arm, Arm::None, op)),
                runs.iter().map(|r| r.phase(arm, op).calls()).sum::<f64>() / runs.len() as f64,
            );
        }
    }
}

/// "median [min–max]".
fn spread(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    let median = if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    };
    format!(
        "{median:.2} [{:.2}–{:.2}]",
        values[0],
        values[values.len() - 1]
    )
}
