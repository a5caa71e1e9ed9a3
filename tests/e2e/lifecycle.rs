//! The operator's whole lifecycle on a real API server, with Service writes throughout and not one
//! failed: install before any pod runs, the first pod registers the webhook once it is ready and
//! reachable, a rolling update and an installer upgrade keep it registered, the uninstall removes
//! it while a pod still serves. Once with Helm (`charts/dualstack-webhook` in `platform-system`),
//! once with kustomize (`manifests/overlays/self-managed` in `dualstack-webhook`).
//!
//! The harness has no kubelet, controller-manager or kube-proxy, so the test plays them (see the
//! submodules): [`kubelet`] starts "pods" from the Deployment as the API server stores it (its
//! args and env, the Secret and ConfigMap files, the ServiceAccount's token — RBAC is what the
//! manifests grant); [`endpoints`] keeps one EndpointSlice per pod, ready as the pod's `/readyz`
//! says every second, terminating the moment the pod is deleted; the API server runs with
//! `--enable-aggregator-routing=true` ([`cluster`]), so it dials a webhook Service at those
//! endpoints; it also keeps the pods' Secret and ConfigMap volumes in sync with the API server,
//! as the kubelet does, so an edited policy reaches the running pods' files. [`stream`] creates a
//! Service every 50 ms in namespace `apps`; [`observer`] reads the two configurations and the
//! in-process defaults (binding and policy) every 50 ms.
//! [`installer`] holds the operator's commands, verbatim, and checks the README gives them.
//!
//! After the upgrade (two replicas: pod 2 and pod 3) each run changes the policy ([`policy`]),
//! with the stream still running and no create in `apps` failing. Helm rolls a new rule out
//! Audit → Warn → Deny, and in `apps-strict` each step does what it says from the moment every
//! pod has reloaded. Kustomize applies the example policy overlay (`examples/kustomize-policy`: the
//! shipped policy with `enforcement: Warn`) as the README says: only the ConfigMap changes, every
//! pod reloads it, and a SingleStack NodePort in `prod-shop`, refused before, is then created
//! with the warning of the shipped rule `public-lb-dual-stack`.
//!
//! What the stored Services show: the cluster is dual-stack IPv4-first, so a create that left the
//! fields unset and was not mutated is SingleStack `[IPv4]` (the API server's default) and one
//! that was carries the shipped policy's defaults, PreferDualStack `[IPv6, IPv4]`
//! (`manifests/policy.yaml`): set in-process once a pod applied the defaults' policy, by `/mutate`
//! before that. Every fifth create sets the fields itself, IPv4 first, and is stored as sent;
//! while the webhook is registered `/validate` is called for it (the `prefer-ipv6-first` rule),
//! so the webhook is on the write path throughout.
//!
//! The API server reads the configurations through an informer, so a create that starts just
//! after a change may still see the old set: creates within [`INFORMER_LAG`] of a change may go
//! either way (the run prints the switch-over it measured), every other create must be as the
//! configurations were.

mod cluster;
mod endpoints;
mod installer;
mod kubelet;
mod observer;
mod policy;
mod runbook;
mod stream;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use serde_json::json;

use self::endpoints::EndpointsController;
use self::installer::Installer;
use self::kubelet::Pod;
use self::observer::{Observer, Sample, State};
use self::stream::{Stream, Write};
use crate::support::{self, Render};

/// The name of both configurations (`--register-webhooks`).
const CONFIGURATIONS: &str = "dualstack-webhook";
/// The webhook's Service (`--service`).
const SERVICE: &str = "dualstack-webhook";
/// What a pod logs when it has filled the configurations (`src/registration/registrar.rs`).
const REGISTERED_LOG: &str = "registered the webhook configurations";
/// How long after the configurations change a create may still be judged by the old ones.
const INFORMER_LAG: Duration = Duration::from_secs(1);
/// The namespace of the write stream.
const APPS: &str = "apps";
/// Bound for a pod to become ready, to register, for the configurations to go.
const BOUND: Duration = Duration::from_secs(30);
/// Bound for a pod to exit after SIGTERM: the Deployment's terminationGracePeriodSeconds.
const GRACE: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e harness: make e2e"]
async fn helm_install_rollout_upgrade_uninstall_fails_no_write() {
    lifecycle("lifecycle-helm", Installer::Helm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e harness: make e2e"]
async fn kustomize_apply_rollout_reapply_delete_fails_no_write() {
    lifecycle("lifecycle-kustomize", Installer::Kustomize).await;
}

/// The lifecycle's steps, each with when it happened.
#[derive(Default)]
struct Marks(Vec<(String, Instant)>);

impl Marks {
    fn add(&mut self, what: &str, at: Instant) -> Instant {
        eprintln!(
            "lifecycle: [{:>7.3}s] {what}",
            self.0
                .first()
                .map_or(0.0, |(_, t0)| at.duration_since(*t0).as_secs_f64())
        );
        self.0.push((what.to_owned(), at));
        at
    }

    fn now(&mut self, what: &str) -> Instant {
        self.add(what, Instant::now())
    }

    fn start(&self) -> Instant {
        self.0[0].1
    }

    /// `t` relative to every step: `+1.234s after X` / `-0.100s before Y`.
    fn relative(&self, t: Instant) -> String {
        self.0
            .iter()
            .map(|(what, at)| format!("{} {what}", signed(t, *at)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn timeline(&self) -> String {
        let mut sorted = self.0.clone();
        sorted.sort_by_key(|(_, at)| *at);
        sorted
            .iter()
            .map(|(what, at)| format!("  {:>8} {what}", signed(*at, self.start())))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `t - from` in seconds, signed.
fn signed(t: Instant, from: Instant) -> String {
    if t >= from {
        format!("+{:.3}s", t.duration_since(from).as_secs_f64())
    } else {
        format!("-{:.3}s", from.duration_since(t).as_secs_f64())
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

async fn lifecycle(name: &str, installer: Installer) {
    installer::assert_commands_in_readme();
    let ns = installer.namespace();
    let harness = cluster::start_harness(name);
    let work = support::workdir().join(format!("{name}-work"));
    let admin = support::client_for(&harness.kubeconfig()).await;
    let node_ip = cluster::node_ipv4();
    let apps = support::namespace(&admin, APPS).await;
    let mut marks = Marks::default();
    marks.now("stream start");
    let observer = Observer::start(admin.clone(), CONFIGURATIONS);
    let stream = Stream::start(apps, "s");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 1. Install before any pod runs: the configurations exist, empty, and nothing changes for
    //    the writes.
    marks.now("install");
    // Blocking (the CLI runs to completion): off the runtime's workers, so the stream goes on.
    tokio::task::block_in_place(|| installer.install(&harness, &work));
    let installed = marks.now("installed");
    observer
        .wait(
            "configurations and in-process defaults' binding created empty",
            installed,
            BOUND,
            |s| s.all(State::Empty),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let so_far = stream.snapshot();
    let failed: Vec<&Write> = so_far.iter().filter(|w| w.failed()).collect();
    assert!(
        failed.is_empty(),
        "creates failed after the install, before any pod: {failed:#?}"
    );
    assert!(
        so_far.iter().all(|w| w.undefaulted() || w.as_sent()),
        "a create was mutated before any pod ran"
    );
    let unfilled: Vec<Sample> = observer
        .samples()
        .into_iter()
        .filter(|s| s.at > installed && !s.unknown())
        .collect();
    assert!(
        unfilled.iter().all(|s| s.all(State::Empty)),
        "the configurations must stay empty until a pod registers them: {:?}",
        unfilled.iter().find(|s| !s.all(State::Empty))
    );

    // 2. Pod 1 starts, becomes ready, its endpoint is published; it registers the webhook.
    let endpoints = EndpointsController::start(admin.clone(), ns, node_ip);
    let mut pod1 = Pod::start(&admin, &harness, ns, "pod-1").await;
    marks.now("pod-1 started");
    eprintln!("lifecycle: pod-1 runs {}", pod1.args.join(" "));
    endpoints.add(&pod1).await;
    let ready1 = wait_ready(&mut pod1).await;
    marks.add("pod-1 /readyz 200", ready1);
    let published1 = endpoints.wait_ready("pod-1", BOUND).await;
    marks.add("pod-1 endpoint ready (write started)", published1);
    let (filled, _) = observer
        .wait("configurations filled", installed, BOUND, |s| {
            s.both(State::Filled)
        })
        .await;
    let filled_at = marks.add("configurations filled (first seen)", filled.at);
    // Then the pod applies the in-process defaults' policy.
    let (applied, _) = observer
        .wait("in-process defaults applied", installed, BOUND, |s| {
            s.all(State::Filled)
        })
        .await;
    let applied_at = marks.add("in-process defaults applied (first seen)", applied.at);
    // Mutation depends on the MutatingWebhookConfiguration alone, which the pod patches first:
    // the last sample that saw it empty.
    let before_filled = last_sample(&observer, filled_at, State::Empty);
    // Causality, not timing: the fill is seen after the pod was first ready and after the write
    // that made its endpoint ready had started.
    assert!(
        filled_at > ready1 && filled_at > published1,
        "the configurations were filled before pod-1 was ready and reachable: {}",
        marks.timeline()
    );
    check_registration(&observer, &pod1, ns);

    tokio::time::sleep(Duration::from_secs(3)).await;

    // 3. Rolling update: pod 2 comes up, pod 1 is deleted; then the installer's upgrade.
    let mut pod2 = Pod::start(&admin, &harness, ns, "pod-2").await;
    marks.now("pod-2 started");
    endpoints.add(&pod2).await;
    let ready2 = wait_ready(&mut pod2).await;
    marks.add("pod-2 /readyz 200", ready2);
    let published2 = endpoints.wait_ready("pod-2", BOUND).await;
    marks.add("pod-2 endpoint ready (write started)", published2);
    let served1 = pod1.validate_reviews().await;
    endpoints.terminate("pod-1").await;
    pod1.sigterm();
    marks.now("pod-1 deleted (endpoint terminating, SIGTERM)");
    let took = pod1.wait_exit(GRACE).await;
    assert!(took.is_some(), "pod-1 still runs {GRACE:?} after SIGTERM");
    let pod1_exited = marks.now("pod-1 exited");
    endpoints.remove("pod-1").await;
    marks.now("upgrade");
    tokio::task::block_in_place(|| installer.upgrade(&harness, &work));
    let upgraded = marks.now("upgraded");
    // The second replica (Helm: `replicas=2`; kustomize: the rollout's next pod).
    let mut pod3 = Pod::start(&admin, &harness, ns, "pod-3").await;
    marks.now("pod-3 started");
    endpoints.add(&pod3).await;
    let ready3 = wait_ready(&mut pod3).await;
    marks.add("pod-3 /readyz 200", ready3);
    let published3 = endpoints.wait_ready("pod-3", BOUND).await;
    marks.add("pod-3 endpoint ready (write started)", published3);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 3b. Change the policy on both pods. Helm: rolled out Audit -> Warn -> Deny. Kustomize: the
    //     example policy overlay (`examples/kustomize-policy`, Warn) copied and applied.
    let rollout = match installer {
        Installer::Helm => {
            policy::rollout(&admin, &harness, &work, &[&pod2, &pod3], &mut marks).await
        }
        Installer::Kustomize => vec![
            policy::kustomize_overlay(&admin, &harness, &work, &[&pod2, &pod3], &mut marks).await,
        ],
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let since_fill: Vec<Sample> = observer
        .samples()
        .into_iter()
        .filter(|s| s.at >= filled_at && !s.unknown())
        .collect();
    assert!(
        since_fill
            .iter()
            .all(|s| s.both(State::Filled) && (s.at < applied_at || s.defaults == State::Filled)),
        "the configurations lost their webhooks or the in-process defaults their policy after \
         the fill (rollout or upgrade): {:?} (upgrade {} after the fill)",
        since_fill.iter().find(
            |s| !(s.both(State::Filled) && (s.at < applied_at || s.defaults == State::Filled))
        ),
        signed(upgraded, filled_at)
    );

    // 4. Remove while pod 2 still serves; then pod 2 goes, as the namespace's pods would.
    let uninstall_at = marks.now("uninstall");
    tokio::task::block_in_place(|| installer.uninstall(&harness, &work));
    marks.now("uninstalled");
    let (gone, _) = observer
        .wait(
            "configurations and in-process defaults' binding deleted",
            uninstall_at,
            BOUND,
            |s| s.all(State::Absent),
        )
        .await;
    let gone_at = marks.add("configurations gone (first seen)", gone.at);
    let before_gone = last_sample(&observer, gone_at, State::Filled);
    for pod in [&mut pod2, &mut pod3] {
        assert!(
            pod.is_running() && pod.readyz().await == Some(200),
            "{} must still serve when the configurations are gone",
            pod.name
        );
    }
    // No namespace controller runs here: after `kubectl delete -k` the namespace stays
    // Terminating (its finalizer is never removed) and nothing deletes the pods; the test does
    // what the namespace controller, the garbage collector and the kubelet would: delete pods 2
    // and 3.
    let served2 = pod2.validate_reviews().await + pod3.validate_reviews().await;
    for pod in [&mut pod2, &mut pod3] {
        endpoints.terminate(&pod.name).await;
        pod.sigterm();
    }
    marks.now("pods 2 and 3 deleted (endpoints terminating, SIGTERM)");
    for pod in [&mut pod2, &mut pod3] {
        let took = pod.wait_exit(GRACE).await;
        assert!(
            took.is_some(),
            "{} still runs {GRACE:?} after SIGTERM",
            pod.name
        );
        endpoints.remove(&pod.name).await;
    }
    marks.now("pods 2 and 3 exited");
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let phase = namespaces
        .get_opt(ns)
        .await
        .unwrap()
        .and_then(|n| n.status?.phase);
    eprintln!("lifecycle: namespace {ns} after the removal: {phase:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = stream.stop().await;
    marks.now("stream stop");
    observer.stop();

    // 5. The verdict over the whole run.
    let errors = endpoints.errors().await;
    assert!(errors.is_empty(), "endpoints controller: {errors:?}");
    let phases = Phases {
        ready1,
        before_filled: before_filled.at,
        filled_at,
        uninstall_at,
        before_gone: before_gone.at,
        gone_at,
    };
    report(name, &marks, &phases, &writes, &endpoints.published().await);
    eprintln!(
        "lifecycle {name}: policy changes (after each command: the kubelet's volume update, the \
         pod's reload):\n{}",
        policy::report(&rollout)
    );
    verdict(&marks, &phases, &writes);
    // The API server really called the pods: pod 1 before its deletion, and pods 2 and 3 — the
    // only ones left — for every create that set its fields IPv4 first while registered after
    // pod 1 exited (`/validate`; the others' defaults are set in-process, no call).
    let after_pod1: usize = writes
        .iter()
        .filter(|w| w.as_sent() && w.start > pod1_exited + INFORMER_LAG && w.end < uninstall_at)
        .count();
    eprintln!(
        "lifecycle {name}: /validate CREATE reviews: pod-1 {served1} before its SIGTERM, pods 2 \
         and 3 {served2} before their SIGTERM ({after_pod1} IPv4-first creates while registered \
         after pod-1 exited)"
    );
    assert!(served1 > 0.0, "pod-1 never served a review");
    assert!(
        served2 >= after_pod1 as f64 && after_pod1 > 0,
        "pods 2 and 3 served {served2} reviews, but {after_pod1} IPv4-first creates were made \
         while registered after pod-1 exited"
    );
    for pod in [&pod1, &pod2, &pod3] {
        assert!(
            pod.log().contains(REGISTERED_LOG),
            "{} never logged {REGISTERED_LOG:?}:\n{}",
            pod.name,
            pod.log()
        );
    }
}

/// The last sample before `until` that saw the MutatingWebhookConfiguration in `state`.
fn last_sample(observer: &Observer, until: Instant, state: State) -> Sample {
    observer
        .samples()
        .into_iter()
        .rfind(|s| s.at < until && s.mutating == state)
        .unwrap_or_else(|| panic!("no sample saw the MutatingWebhookConfiguration {state:?}"))
}

/// Polls the pod's `/readyz` every 20 ms until it answers 200; when it first did.
async fn wait_ready(pod: &mut Pod) -> Instant {
    let start = Instant::now();
    loop {
        if pod.readyz().await == Some(200) {
            return Instant::now();
        }
        assert!(pod.is_running(), "{} exited:\n{}", pod.name, pod.log());
        assert!(
            start.elapsed() < BOUND,
            "{} not ready after {BOUND:?}:\n{}",
            pod.name,
            pod.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What was registered: the Service in the pod's namespace, the CA bundle the pod was given
/// (`--ca-bundle`, the Secret's `ca.crt`), `failurePolicy` from `--failure-policy`.
fn check_registration(observer: &Observer, pod: &Pod, ns: &str) {
    let (mutating, validating) = observer.first_filled().expect("filled configurations");
    let flag = |name: &str| {
        pod.args
            .iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_owned))
    };
    let bundle = flag("ca-bundle").map(|path| std::fs::read(path).unwrap());
    let failure_policy = flag("failure-policy");
    // The match conditions are those `webhook-configurations --policy` prints for the policy the
    // pod serves: the generated configuration is what an install ships.
    let policy = flag("policy").expect("the Deployment passes --policy");
    let printed = support::render_webhooks(&Render {
        name: "printed",
        base_url: "https://printed.invalid",
        ca_pem: "",
        failure_policy: None,
        only_namespace: None,
        policy: Some(Path::new(&policy)),
    });
    for (doc, printed) in [(&mutating, &printed[0]), (&validating, &printed[1])] {
        let conditions = &doc["webhooks"][0]["matchConditions"];
        assert!(conditions.is_array(), "no matchConditions: {doc:#}");
        assert_eq!(conditions, &printed["webhooks"][0]["matchConditions"]);
    }
    for (doc, path) in [(&mutating, "/mutate"), (&validating, "/validate")] {
        let hooks = doc["webhooks"].as_array().unwrap();
        assert_eq!(hooks.len(), 1, "{doc:#}");
        let hook = &hooks[0];
        let service = &hook["clientConfig"]["service"];
        assert_eq!(
            (
                service["namespace"].as_str(),
                service["name"].as_str(),
                service["path"].as_str()
            ),
            (Some(ns), Some(SERVICE), Some(path)),
            "{hook:#}"
        );
        if let Some(bundle) = &bundle {
            let registered = base64::engine::general_purpose::STANDARD
                .decode(
                    hook["clientConfig"]["caBundle"]
                        .as_str()
                        .unwrap_or_default(),
                )
                .unwrap();
            assert_eq!(&registered, bundle, "caBundle is not the pod's --ca-bundle");
        }
        if let Some(fp) = &failure_policy {
            assert_eq!(hook["failurePolicy"], json!(fp), "{hook:#}");
        }
        // The webhook's own namespace is never sent to it.
        let selector = hook["namespaceSelector"].to_string();
        assert!(
            selector.contains(ns),
            "namespaceSelector skips {ns}: {selector}"
        );
    }
}

/// The instants the verdict is judged against.
struct Phases {
    /// Pod 1's first `/readyz` 200.
    ready1: Instant,
    /// The last sample that saw the MutatingWebhookConfiguration empty.
    before_filled: Instant,
    /// When they were first seen filled.
    filled_at: Instant,
    /// When the uninstall command started.
    uninstall_at: Instant,
    /// The last sample that saw the MutatingWebhookConfiguration filled.
    before_gone: Instant,
    /// When they were first seen gone.
    gone_at: Instant,
}

impl Phases {
    /// Before registration: ended before pod 1 was ready, or before the last sample that saw
    /// the MutatingWebhookConfiguration empty. Never mutated.
    fn before(&self, w: &Write) -> bool {
        w.end < self.ready1 || w.end < self.before_filled
    }

    /// Registered: started [`INFORMER_LAG`] after the fill was seen, ended before the uninstall
    /// started. Always mutated.
    fn during(&self, w: &Write) -> bool {
        w.start > self.filled_at + INFORMER_LAG && w.end < self.uninstall_at
    }

    /// Removed: started [`INFORMER_LAG`] after the configurations were seen gone. Never mutated.
    fn after(&self, w: &Write) -> bool {
        w.start > self.gone_at + INFORMER_LAG
    }
}

/// The numbers of the run: creates per phase, the switch-overs the informer lag allowed.
fn report(
    name: &str,
    marks: &Marks,
    p: &Phases,
    writes: &[Write],
    published: &[endpoints::Published],
) {
    let count = |f: &dyn Fn(&Write) -> bool| writes.iter().filter(|w| f(w)).count();
    // The switch-overs: the API server's informer has a change at most this long after it.
    let last_undefaulted_in = writes
        .iter()
        .filter(|w| w.undefaulted() && w.end < p.uninstall_at)
        .map(|w| w.start)
        .max();
    let first_defaulted = writes.iter().find(|w| w.defaulted()).map(|w| w.start);
    let last_defaulted = writes
        .iter()
        .filter(|w| w.defaulted())
        .map(|w| w.start)
        .max();
    let first_undefaulted_out = writes
        .iter()
        .filter(|w| w.undefaulted() && w.start >= p.uninstall_at)
        .map(|w| w.start)
        .min();
    let since = |t: Option<Instant>, from: Instant| t.map_or("-".into(), |t| signed(t, from));
    let latency: Vec<Duration> = writes.iter().map(|w| w.end - w.start).collect();
    let max_latency = latency.iter().max().copied().unwrap_or_default();
    let mean_latency =
        latency.iter().sum::<Duration>() / u32::try_from(latency.len().max(1)).unwrap();
    eprintln!(
        "lifecycle {name}: {} creates, {} failed, {} mutated, {} not; mean {} ms, max {} ms\n\
         timeline (from the stream's start):\n{}\n\
         creates: before registration {} (none mutated), registered {} (all mutated), after \
         removal {} (none mutated), in the switch-over windows {}\n\
         pod-1: /readyz 200 -> endpoint ready written {} ms -> configurations seen filled {} ms \
         after /readyz (last seen empty {} ms after)\n\
         informer lag in: the first mutated create started {} after the last sample that saw \
         the configurations empty (the lag is at most that), the last unmutated one {} after \
         they were seen filled\n\
         informer lag out: the first unmutated create started {} after the last sample that \
         saw the configurations, the last mutated one {} after they were seen gone\n\
         endpoint writes: {:?}",
        writes.len(),
        count(&Write::failed),
        count(&Write::defaulted),
        count(&Write::undefaulted),
        ms(mean_latency),
        ms(max_latency),
        marks.timeline(),
        count(&|w| p.before(w)),
        count(&|w| p.during(w)),
        count(&|w| p.after(w)),
        count(&|w| !p.before(w) && !p.during(w) && !p.after(w)),
        ms(published
            .iter()
            .find(|e| e.pod == "pod-1" && e.conditions.0)
            .map_or(Duration::ZERO, |e| e.at.saturating_duration_since(p.ready1))),
        ms(p.filled_at - p.ready1),
        ms(p.before_filled.saturating_duration_since(p.ready1)),
        since(first_defaulted, p.before_filled),
        since(last_undefaulted_in, p.filled_at),
        since(first_undefaulted_out, p.before_gone),
        since(last_defaulted, p.gone_at),
        published
            .iter()
            .map(|e| format!(
                "{} {} ready={} serving={} terminating={}",
                signed(e.at, marks.start()),
                e.pod,
                e.conditions.0,
                e.conditions.1,
                e.conditions.2
            ))
            .collect::<Vec<_>>(),
    );
}

/// Zero failed creates; every create as the configurations were when it ran.
fn verdict(marks: &Marks, p: &Phases, writes: &[Write]) {
    let describe = |w: &Write| {
        format!(
            "{} started {} ({}), took {} ms: {:?}",
            w.name,
            signed(w.start, marks.start()),
            marks.relative(w.start),
            ms(w.end - w.start),
            w.outcome
        )
    };
    let failed: Vec<String> = writes.iter().filter(|w| w.failed()).map(describe).collect();
    assert!(
        failed.is_empty(),
        "{} of {} creates failed:\n{}\ntimeline:\n{}",
        failed.len(),
        writes.len(),
        failed.join("\n"),
        marks.timeline()
    );
    let odd: Vec<String> = writes
        .iter()
        .filter(|w| !w.defaulted() && !w.undefaulted() && !w.as_sent())
        .map(describe)
        .collect();
    assert!(
        odd.is_empty(),
        "creates stored neither way:\n{}",
        odd.join("\n")
    );
    let wrong =
        |phase: &str, in_phase: &dyn Fn(&Write) -> bool, ok: &dyn Fn(&Write) -> bool, min| {
            // The phases decide only what the creates that left the fields unset get.
            let all: Vec<&Write> = writes
                .iter()
                .filter(|w| !w.checked && in_phase(w))
                .collect();
            let bad: Vec<String> = all.iter().filter(|w| !ok(w)).map(|w| describe(w)).collect();
            assert!(
                bad.is_empty(),
                "{phase}: {} of {} creates wrong:\n{}\ntimeline:\n{}",
                bad.len(),
                all.len(),
                bad.join("\n"),
                marks.timeline()
            );
            assert!(
                all.len() >= min,
                "{phase}: only {} creates (at least {min} expected)",
                all.len()
            );
        };
    wrong(
        "before registration (not mutated)",
        &|w| p.before(w),
        &Write::undefaulted,
        20,
    );
    wrong(
        "registered (mutated)",
        &|w| p.during(w),
        &Write::defaulted,
        100,
    );
    wrong(
        "after removal (not mutated)",
        &|w| p.after(w),
        &Write::undefaulted,
        20,
    );
    assert!(
        writes.len() >= 300,
        "only {} creates over the whole run",
        writes.len()
    );
}
