//! `dualstack-webhook export` (issue 18): the policy as in-process admission policies does what
//! the webhook does, through the real API server, on every cluster shape the suite starts and for
//! every policy in the repository.
//!
//! [`same_answers_from_the_webhook_and_the_exported_policies`]: for each cluster shape
//! ([`SHAPES`]: dual-stack IPv4-primary as the main harness, dual-stack IPv6-primary as
//! `variants::`, IPv4-only as `upgrade::`), a harness of the test's own (one at a time: the
//! shapes' policies read namespaces by exact name, `legacy`, `e2e-deny`, which on the main harness
//! are the driver's), and on it, for each policy of [`SUBJECTS`], the whole corpus of the
//! conditions test ([`conditions`]: every Service of `tests/fixtures/**` and the e2e suite's
//! request shapes, CREATE and UPDATE) replayed three times, in the same namespaces, one arm after
//! the other:
//!
//! 1. the webhook arm: a webhook of the test's own serving the policy and watching that harness
//!    (`--watch-cluster`: its ranges and namespace labels), registered without conditions for the
//!    namespaces labelled `export-cn`;
//! 2. its configurations deleted, the namespaces relabelled `export-cd`, the webhook as `serve
//!    --register-webhooks` registers it: its conditions, and its CREATE defaults in-process (the
//!    MutatingAdmissionPolicy `webhook-configurations --policy` prints, param that harness's
//!    `kubernetes` ServiceCIDR); the unset probe must be defaulted without a `/mutate` call
//!    wherever the webhook arm defaulted it;
//! 3. those deleted, the namespaces relabelled `export-ce`, the exported arm: `export --policy
//!    POLICY --service-cidrs <that harness's ranges>`, its bindings restricted to those
//!    namespaces, and no webhook (a request that reaches it fails the test).
//!
//! Each subject maps the corpus's logical namespaces to names its globs and exact names match
//! (`prod-*`, `legacy`, `e2e-deny`, …; `nssel-*` carry the `exposure` label its selectors read),
//! so the rules are exercised, not only the defaults: each Deny or Warn rule of a subject must be
//! named by the webhook arm's denials or warnings on every shape where it can fire (the
//! `primaryFamily: IPv6` and `dualStack` checks, and `ipFamilyPolicies: [RequireDualStack]`, are
//! judged only on a dual-stack cluster, docs/policy.md), and every subject's defaults must have
//! set `PreferDualStack` in some namespace (a dry-run create with the fields unset). Between the
//! arms, dry-run probes in every namespace must converge to the webhook's answers (the API
//! server's informers pick the policies and the labels up within a second or two).
//!
//! The answers must be the same (arm 2 against arm 1: everything, the same webhook answering what
//! reaches it): status, stored `ipFamilyPolicy`/`ipFamilies`/`clusterIPs` (and
//! the rest of the stored view), the rules a denial names, and the rules the warnings name
//! (grandfathered or not). The messages themselves differ by the API server's prefix ("admission
//! webhook … denied the request" vs "ValidatingAdmissionPolicy … denied request"), and audit
//! annotations are the webhook's alone (Audit rules are therefore compared only by what they do to
//! the stored fields). What the export names as a gap is not compared (the table says what, and
//! why). Pinned IPs: each arm of each subject takes fresh ones from a block of the ranges of its
//! own ([`Pool::in_block`]).
//!
//! No subset: the whole corpus on every shape for every subject takes ~225 s of test on the 2-core
//! machine (three harness starts of ~5 s included). Not replayed: `manifests/base/policy.yaml` and
//! the chart's `files/policy.yaml` (byte for byte `manifests/policy.yaml`, asserted), and the
//! policies of other tests' own (`tests/fixtures/policy.yaml`, whose rules the conditions policy
//! holds under its globs; `tests/e2e/check/`, `tests/e2e/lifecycle/`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kube::Client;
use serde_json::{Value, json};

use crate::conditions::{self, Arm, Case, Pool, Run, Step, WITHOUT};
use crate::support::{self, Harness, OWN_WEBHOOK_LABEL, Watching, Webhook};

const TEST: &str = "export";
/// The webhook's arm: its namespaces are served by the test's webhook.
const WEBHOOK: Arm = WITHOUT;
/// The exported policies' arm: its namespaces are bound to them, and sent to no webhook.
const EXPORTED: Arm = Arm {
    tag: "ce",
    conditions: false,
    in_process_defaults: false,
};
/// The webhook as `serve --register-webhooks` registers it: its match conditions, and its CREATE
/// defaults in-process beside it (the binding's param: the harness's `kubernetes` ServiceCIDR).
const IN_PROCESS: Arm = Arm {
    tag: "cd",
    conditions: true,
    in_process_defaults: true,
};

/// A cluster shape: a harness of the test's own with these service ranges.
struct Shape {
    /// The harness's work dir name.
    name: &'static str,
    /// `--service-cidrs`, primary first.
    ranges: &'static str,
    /// Whether the cluster has both families (the `primaryFamily: IPv6` and `dualStack` checks,
    /// and `ipFamilyPolicies: [RequireDualStack]`, are judged only then).
    dual_stack: bool,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "export-v4-primary",
        ranges: "10.96.0.0/16,fd00:10:96::/112",
        dual_stack: true,
    },
    Shape {
        name: "export-v6-primary",
        ranges: "fd00:10:96::/112,10.96.0.0/16",
        dual_stack: true,
    },
    Shape {
        name: "export-v4-only",
        ranges: "10.96.0.0/16",
        dual_stack: false,
    },
];

/// A policy to compare, where its rules match, and what its export names as gaps.
struct Subject {
    /// The policy file, from the repository's root.
    policy: &'static str,
    /// Files identical to it, not replayed again (checked byte for byte).
    same_as: &'static [&'static str],
    /// The namespace a logical namespace of the corpus is replayed in.
    namespace: fn(&str) -> String,
    /// Logical namespaces whose rules have a gap (`upgradeExisting`): their cases are not replayed.
    gap_namespaces: &'static [&'static str],
    /// The webhook's warnings of a gap (text they contain): not compared.
    gap_warnings: &'static [&'static str],
    /// Its Deny and Warn rules, each with whether it can fire only on a dual-stack cluster: each
    /// must be named at least once on every shape where it can.
    rules: &'static [(&'static str, bool)],
}

/// restoreDroppedFields: the warning of a type change that unfreezes PreferDualStack.
const TYPE_CHANGE_WARNING: &str = "changing the type lets the API server add";

fn same_name(logical: &str) -> String {
    logical.to_owned()
}

/// Every DualStackPolicy of the repository (`examples/admission-policies/policy.yaml` is an
/// export, `tests/fixtures/policy.yaml` the fixtures' unit-test policy whose rules the conditions
/// policy holds, and `tests/e2e/check/`, `lifecycle/` policies of their own tests).
const SUBJECTS: &[Subject] = &[
    Subject {
        // Every rule kind, its globs `e2e-iso-c?-…`.
        policy: "tests/e2e/conditions/policy.yaml",
        same_as: &[],
        namespace: |logical| format!("e2e-iso-{}-{logical}", EXPORTED.tag),
        // rule "upgrade-opt-in": upgradeExisting is not exported.
        gap_namespaces: &["upgrade"],
        gap_warnings: &[TYPE_CHANGE_WARNING],
        rules: &[
            ("public-lb-dual-stack", false),
            ("ipv6-primary", true),
            ("deny-single-stack", true),
            ("warn-ipv4-primary", true),
            ("public-must-be-dual", true),
            ("not-internal-ipv6-first", true),
            ("frontend-dual-stack", true),
            ("legacy-label-single-stack", false),
        ],
    },
    Subject {
        // `prod-*`, `legacy`: the corpus's own logical names (the fixtures were written for it).
        policy: "manifests/policy.yaml",
        same_as: &[
            "manifests/base/policy.yaml",
            "charts/dualstack-webhook/files/policy.yaml",
        ],
        namespace: same_name,
        gap_namespaces: &[],
        gap_warnings: &[TYPE_CHANGE_WARNING],
        rules: &[("public-lb-dual-stack", false), ("prefer-ipv6-first", true)],
    },
    Subject {
        // manifests/policy.yaml with `enforcement: Warn`: its Deny rule warns.
        policy: "examples/kustomize-policy/policy.yaml",
        same_as: &[],
        namespace: same_name,
        gap_namespaces: &[],
        gap_warnings: &[TYPE_CHANGE_WARNING],
        rules: &[("public-lb-dual-stack", false), ("prefer-ipv6-first", true)],
    },
    Subject {
        // Exact names `e2e-deny`, `e2e-lb`, …: `e2e-<logical>`, `prod-lb` as `e2e-lb`. Its
        // upgradeExisting rule reads `e2e-opt-in`, which no case is mapped to (a gap).
        policy: "tests/e2e/policy.yaml",
        same_as: &[],
        namespace: |logical| match logical {
            "prod-lb" => "e2e-lb".to_owned(),
            _ => format!("e2e-{logical}"),
        },
        gap_namespaces: &[],
        gap_warnings: &[TYPE_CHANGE_WARNING],
        rules: &[
            ("deny-single-stack", true),
            ("warn-ipv4-primary", true),
            ("legacy-ipv4-only", false),
            // allows only RequireDualStack: judges nothing on a single-stack cluster
            ("public-lb-require-dual", true),
            ("public-must-be-dual", true),
            ("not-internal-ipv6-first", true),
        ],
    },
    Subject {
        // Defaults only, every namespace but kube-system and dualstack-webhook.
        policy: "tests/e2e/policy-isolated.yaml",
        same_as: &[],
        namespace: same_name,
        gap_namespaces: &[],
        gap_warnings: &[],
        rules: &[],
    },
];

/// A harness of the test's own: its client, kubeconfig and shape.
struct Cluster<'a> {
    client: Client,
    kubeconfig: PathBuf,
    shape: &'a Shape,
}

/// `export --policy POLICY --service-cidrs RANGES --allow-partial`: the documents, with names of
/// the test's own (`e2e-export-<n>-…`) and bound only to the exported arm's namespaces (the
/// exclusions they carry stay); and the gaps.
fn exported(policy: &Path, ranges: &str, n: usize) -> (Vec<Value>, String) {
    let out = Command::new(support::env("E2E_WEBHOOK_BIN"))
        .args(["export", "--policy"])
        .arg(policy)
        .args(["--service-cidrs", ranges, "--allow-partial"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "export: {stderr}");
    let file = support::workdir().join("exported-policies.yaml");
    std::fs::write(&file, &out.stdout).unwrap();
    let mut docs = support::yaml_documents(&file);
    let ours = |name: &Value| json!(format!("e2e-{TEST}-{n}-{}", name.as_str().unwrap()));
    for doc in &mut docs {
        doc["metadata"]["name"] = ours(&doc["metadata"]["name"]);
        if doc["kind"].as_str().unwrap().ends_with("Binding") {
            doc["spec"]["policyName"] = ours(&doc["spec"]["policyName"]);
            let requirement = json!({"key": OWN_WEBHOOK_LABEL, "operator": "In", "values": [EXPORTED.label(TEST)]});
            support::restrict_namespaces(&mut doc["spec"]["matchResources"], requirement);
        }
    }
    (docs, stderr)
}

/// `kubectl apply` or `delete` of `docs` (as one List) on the harness of `kubeconfig`.
fn kubectl(kubeconfig: &Path, verb: &str, docs: &[Value]) {
    let file: PathBuf = support::workdir().join("exported-policies.json");
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    std::fs::write(&file, serde_json::to_vec(&list).unwrap()).unwrap();
    let out = Command::new(support::env("E2E_KUBECTL"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([verb, "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {verb}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rules a text names (`rule "x"`), each marked when grandfathered; other warnings whole.
fn rules_named(texts: &[String], ignored: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    // A `Warning` header quotes its text: `299 - "Service \"ns/x\": rule \"r\": …"`.
    let texts = texts.iter().map(|t| t.replace("\\\"", "\""));
    for text in texts.filter(|t| !ignored.iter().any(|i| t.contains(i))) {
        let mut found = false;
        for (at, _) in text.match_indices("rule \"") {
            let rest = &text[at + 6..];
            let name = rest.split('"').next().unwrap_or_default();
            let grandfathered = text[..at].ends_with("grandfathered by ");
            out.insert(format!(
                "{}{name}",
                if grandfathered { "grandfathered " } else { "" }
            ));
            found = true;
        }
        if !found {
            out.insert(text);
        }
    }
    out
}

/// The differences between the webhook's run and the export's of one case.
fn differences(case: &Case, webhook: &Run, export: &Run, gap_warnings: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut differ = |what: String, a: String, b: String| {
        if a != b {
            out.push(format!(
                "{}/{} ({}) — {what}:\n  webhook: {a}\n  export:  {b}",
                case.namespace, case.name, case.origin
            ));
        }
    };
    for (i, step) in case.steps.iter().enumerate() {
        let [a, b] = [&webhook.replies[i], &export.replies[i]];
        let at = |field: &str| format!("step {} ({}): {field}", i + 1, step.verb());
        differ(at("status"), a.status.to_string(), b.status.to_string());
        differ(at("answer"), a.stored.clone(), b.stored.clone());
        let warned =
            |r: &conditions::Reply| format!("{:?}", rules_named(&r.warnings, gap_warnings));
        differ(at("warnings"), warned(a), warned(b));
        if a.status == 403 || b.status == 403 {
            // A policy reports its first failed validation; the webhook every denied rule.
            let [denied_a, denied_b] =
                [a, b].map(|r| rules_named(std::slice::from_ref(&r.message), &[]));
            let named = denied_b.iter().next().is_some_and(|r| denied_a.contains(r));
            differ(
                at("rule denied"),
                format!("{denied_a:?}"),
                if named {
                    format!("{denied_a:?}")
                } else {
                    format!("{denied_b:?}")
                },
            );
        }
    }
    differ(
        "stored at the end".to_owned(),
        webhook.final_state.clone(),
        export.final_state.clone(),
    );
    out
}

/// Dry-run creates in `ns` that every kind of rule answers: unset, SingleStack, IPv4 only, a
/// single-stack LoadBalancer.
fn probes(ns: &str) -> Vec<Case> {
    let specs = [
        json!({}),
        json!({"ipFamilyPolicy": "SingleStack"}),
        json!({"ipFamilies": ["IPv4"]}),
        json!({"type": "LoadBalancer", "ipFamilyPolicy": "SingleStack"}),
    ];
    specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            let name = format!("probe-{i}");
            let object = serde_json::to_value(support::service(&name, spec)).unwrap();
            Case {
                name,
                origin: "probe".to_owned(),
                namespace: ns.to_owned(),
                steps: vec![Step::DryRunCreate(object)],
            }
        })
        .collect()
}

/// The first `count` probes' runs in every namespace.
async fn probe_all(
    client: &Client,
    hook: &Webhook,
    namespaces: &[String],
    count: usize,
) -> Vec<(Case, Run)> {
    let mut out = Vec::new();
    let mut pool = Pool::new();
    for ns in namespaces {
        for probe in probes(ns).into_iter().take(count) {
            let run = conditions::replay_in(client, hook, ns, &probe, &mut pool).await;
            out.push((probe, run));
        }
    }
    out
}

/// The probes of every namespace and the webhook arm's answers to them.
struct Probed<'a> {
    client: &'a Client,
    hook: &'a Webhook,
    namespaces: &'a [String],
    webhook: &'a [(Case, Run)],
}

impl Probed<'_> {
    /// Probes until the arm now registered gives the webhook arm's answers and `check` (probe,
    /// webhook's run, this arm's) finds nothing: the API server's informers pick admission
    /// objects and labels up within a second or two.
    async fn converge(
        &self,
        what: &str,
        gap_warnings: &[&str],
        check: impl Fn(&Case, &Run, &Run) -> Option<&'static str>,
    ) {
        let deadline = Instant::now() + support::WAIT;
        loop {
            let runs = probe_all(self.client, self.hook, self.namespaces, usize::MAX).await;
            let mut pending: Vec<String> = Vec::new();
            for ((probe, webhook), (_, run)) in self.webhook.iter().zip(&runs) {
                pending.extend(differences(probe, webhook, run, gap_warnings));
                if let Some(problem) = check(probe, webhook, run) {
                    pending.push(format!("{}/{}: {problem}", probe.namespace, probe.name));
                }
            }
            if pending.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what} never gave the webhook's answers to the probes:\n{}",
                pending.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// (Re)labels every namespace for `arm`, with the labels its logical namespace's rules read.
async fn label(client: &Client, namespaces: &BTreeMap<String, String>, arm: Arm) {
    for (ns, logical) in namespaces {
        let mut labels = conditions::namespace_labels(logical);
        labels[OWN_WEBHOOK_LABEL] = json!(arm.label(TEST));
        support::labelled_namespace(client, ns, labels).await;
    }
}

/// What one subject on one shape came to.
struct Outcome {
    mismatches: Vec<String>,
    /// How often the webhook arm named each rule (denials and warnings, grandfathered or not).
    named: BTreeMap<String, usize>,
    /// Namespaces whose unset probe got `PreferDualStack` from the webhook.
    defaulted: usize,
    summary: String,
}

/// The subject's corpus on the cluster through its webhook, then through its export.
async fn compare(cluster: &Cluster<'_>, subject: &Subject, n: usize) -> Outcome {
    let client = &cluster.client;
    let (fixtures, _) = conditions::fixture_cases();
    let cases: Vec<Case> = fixtures
        .into_iter()
        .chain(conditions::suite_cases())
        .filter(|c| !subject.gap_namespaces.contains(&c.namespace.as_str()))
        .collect();
    // Real name -> logical name.
    let namespaces: BTreeMap<String, String> = cases
        .iter()
        .map(|c| ((subject.namespace)(&c.namespace), c.namespace.clone()))
        .collect();
    let names: Vec<String> = namespaces.keys().cloned().collect();
    let in_ns = |case: &Case| (subject.namespace)(&case.namespace);

    // 1. The webhook: the namespaces first (it lists their labels when it starts).
    label(client, &namespaces, WEBHOOK).await;
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join(subject.policy);
    let hook = Webhook::watching(
        &format!("{}-webhook-{n}", cluster.shape.name),
        &Watching {
            kubeconfig: &cluster.kubeconfig,
            cidrs: None,
            policy: &policy,
            wait_ready: true,
        },
    );
    conditions::register(client, &hook, TEST, WEBHOOK).await;
    // Called for every namespace but kube-system, which its configurations exclude.
    let served: Vec<String> = names
        .iter()
        .filter(|ns| *ns != "kube-system")
        .cloned()
        .collect();
    support::eventually("the webhook called for every namespace", || async {
        let runs = probe_all(client, &hook, &served, 1).await;
        runs.iter()
            .all(|(_, run)| run.replies[0].calls[0] > 0)
            .then_some(())
    })
    .await;
    let webhook_probes = probe_all(client, &hook, &names, usize::MAX).await;
    let mut pool = Pool::in_block(3 * n as u8);
    let mut webhook_runs = Vec::new();
    for case in &cases {
        webhook_runs
            .push(conditions::replay_in(client, &hook, &in_ns(case), case, &mut pool).await);
    }

    // 2. The webhook as `serve --register-webhooks` registers it: its conditions, and its CREATE
    //    defaults in-process (param: this harness's `kubernetes` ServiceCIDR). The same answers,
    //    and a create the defaults complete never reaches /mutate.
    support::delete_webhooks(client, &WEBHOOK.config(TEST)).await;
    label(client, &namespaces, IN_PROCESS).await;
    conditions::register(client, &hook, TEST, IN_PROCESS).await;
    let probed = Probed {
        client,
        hook: &hook,
        namespaces: &names,
        webhook: &webhook_probes,
    };
    let what = format!(
        "{} on {}: the webhook with its in-process defaults",
        subject.policy, cluster.shape.name
    );
    probed
        .converge(&what, &[], |probe, webhook, shipped| {
            let defaulted = webhook.replies[0].stored.contains("\"PreferDualStack\"");
            (probe.name == "probe-0" && defaulted && shipped.replies[0].calls[0] != 0)
                .then_some("not defaulted in-process")
        })
        .await;
    let mut pool = Pool::in_block(3 * n as u8 + 1);
    let mut mismatches = Vec::new();
    let mut mutate_calls = [0, 0];
    for (case, webhook) in cases.iter().zip(&webhook_runs) {
        let shipped = conditions::replay_in(client, &hook, &in_ns(case), case, &mut pool).await;
        for (run, calls) in [webhook, &shipped].into_iter().zip(&mut mutate_calls) {
            *calls += run.replies.iter().map(|r| r.calls[0]).sum::<u32>();
        }
        mismatches.extend(
            differences(case, webhook, &shipped, &[])
                .into_iter()
                .map(|m| {
                    format!(
                        "{} on {} with in-process defaults: {m}",
                        subject.policy, cluster.shape.name
                    )
                }),
        );
    }
    support::delete_webhooks(client, &IN_PROCESS.config(TEST)).await;

    // 3. The export, and no webhook.
    label(client, &namespaces, EXPORTED).await;
    let (docs, gaps) = exported(&policy, cluster.shape.ranges, n);
    kubectl(&cluster.kubeconfig, "apply", &docs);
    let what = format!(
        "{} on {}: the exported policies",
        subject.policy, cluster.shape.name
    );
    probed
        .converge(&what, subject.gap_warnings, |_, _, export| {
            (export.replies[0].calls != [0, 0]).then_some("the webhook was called")
        })
        .await;
    let mut pool = Pool::in_block(3 * n as u8 + 2);
    for (case, webhook) in cases.iter().zip(&webhook_runs) {
        let export = conditions::replay_in(client, &hook, &in_ns(case), case, &mut pool).await;
        let calls: u32 = export.replies.iter().map(|r| r.calls[0] + r.calls[1]).sum();
        assert_eq!(
            calls, 0,
            "the exported arm reached the webhook: {}",
            case.name
        );
        mismatches.extend(
            differences(case, webhook, &export, subject.gap_warnings)
                .into_iter()
                .map(|m| format!("{} on {}: {m}", subject.policy, cluster.shape.name)),
        );
    }
    kubectl(&cluster.kubeconfig, "delete", &docs);
    drop(hook);

    // What the webhook arm exercised.
    let mut named = BTreeMap::new();
    let (mut denied, mut warned) = (0, 0);
    for reply in webhook_runs.iter().flat_map(|r| &r.replies) {
        let mut texts = reply.warnings.clone();
        warned += usize::from(!reply.warnings.is_empty());
        if reply.status == 403 {
            denied += 1;
            texts.push(reply.message.clone());
        }
        for rule in rules_named(&texts, subject.gap_warnings) {
            let rule = rule.trim_start_matches("grandfathered ").to_owned();
            *named.entry(rule).or_insert(0) += 1;
        }
    }
    let defaulted = webhook_probes
        .iter()
        .filter(|(probe, run)| {
            probe.name == "probe-0" && run.replies[0].stored.contains("\"PreferDualStack\"")
        })
        .count();
    let requests: usize = cases.iter().map(|c| c.steps.len()).sum();
    let mut summary = String::new();
    writeln!(
        summary,
        "export: {} on {} ({}): {} cases in {} namespaces, {requests} requests in each arm; the \
         webhook denied {denied}, warned {warned}, defaulted the unset probe to PreferDualStack in \
         {defaulted} namespaces; rules named: {named:?}; /mutate calls without conditions {}, as \
         shipped (conditions and in-process defaults) {}; gaps of the export (not compared):\n{gaps}",
        subject.policy,
        cluster.shape.name,
        cluster.shape.ranges,
        cases.len(),
        names.len(),
        mutate_calls[0],
        mutate_calls[1],
    )
    .unwrap();
    Outcome {
        mismatches,
        named,
        defaulted,
        summary,
    }
}

/// Every subject's corpus through the webhook and through its export, on every shape: the same
/// answers, on Services the rules match.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn same_answers_from_the_webhook_and_the_exported_policies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for subject in SUBJECTS {
        for same in subject.same_as {
            assert_eq!(
                std::fs::read(root.join(same)).unwrap(),
                std::fs::read(root.join(subject.policy)).unwrap(),
                "{same} is no longer {}: replay it too",
                subject.policy
            );
        }
    }
    let mut summary = String::new();
    let mut mismatches = Vec::new();
    let mut unexercised = Vec::new();
    for shape in SHAPES {
        let harness = Harness::start(shape.name, shape.ranges);
        let cluster = Cluster {
            client: support::client_for(&harness.kubeconfig()).await,
            kubeconfig: harness.kubeconfig(),
            shape,
        };
        for (n, subject) in SUBJECTS.iter().enumerate() {
            let outcome = compare(&cluster, subject, n).await;
            summary.push_str(&outcome.summary);
            mismatches.extend(outcome.mismatches);
            for (rule, dual_stack_only) in subject.rules {
                if (shape.dual_stack || !dual_stack_only) && !outcome.named.contains_key(*rule) {
                    unexercised.push(format!("{} on {}: {rule}", subject.policy, shape.name));
                }
            }
            if outcome.defaulted == 0 {
                unexercised.push(format!(
                    "{} on {}: its defaults",
                    subject.policy, shape.name
                ));
            }
        }
        drop(harness);
    }
    conditions::report("export-summary.txt", &summary);
    assert!(
        mismatches.is_empty(),
        "{} differences between the webhook and the exported policies:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // The comparison means something: every rule that can fire did, on the webhook's side.
    assert!(
        unexercised.is_empty(),
        "never named by the webhook arm:\n{}\n{summary}",
        unexercised.join("\n")
    );
}
