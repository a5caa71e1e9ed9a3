//! Changing the policy of a running release, rolled out Audit → Warn → Deny with `helm upgrade
//! --reuse-values --set-file policy=FILE` ([`installer`]'s constants, verbatim), while the write
//! stream goes on in `apps`. Before each step the operator's preview (`audit --enforcement deny`)
//! must list exactly the violating Services created so far; after each step the kubelet
//! emulation carries the new ConfigMap into the pods' volumes, every pod must reload it
//! (`dualstack_webhook_policy_generation`), and a violating create in `apps-strict` must then be
//! treated as the step says: Audit — created, no warning, counted and logged as `audit finding`;
//! Warn — created with the rule's warning; Deny — refused with the rule's message. A compliant
//! create in `apps-strict` succeeds at every step.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::installer;
use super::kubelet::Pod;
use super::{BOUND, Marks};
use crate::support::{self, Harness};

/// The namespace the added rule (`dual-stack-only`) applies to.
pub(super) const STRICT: &str = "apps-strict";
/// The added rule.
const RULE: &str = "dual-stack-only";
/// The policy ConfigMap the chart renders (and the pods mount).
const POLICY_CONFIGMAP: &str = "dualstack-webhook-policy";

/// The message a refused violating create gets, as the API server returns it (`{name}`: the
/// Service's name). Pinned from a run: the webhook's text, wrapped by the API server.
const DENY_MESSAGE: &str = "admission webhook \"validate.dualstack-webhook.io\" denied the request: \
     Service \"apps-strict/{name}\" violates the dual-stack policy: rule \"dual-stack-only\": \
     ipFamilyPolicy is SingleStack, allowed: RequireDualStack; set spec.ipFamilyPolicy: \
     RequireDualStack";
/// The warning a violating create gets under Warn, as the `Warning` header carries it.
const WARNING: &str = "299 - \"Service \\\"apps-strict/{name}\\\": rule \\\"dual-stack-only\\\": \
     ipFamilyPolicy SingleStack not allowed (set RequireDualStack)\"";

/// A rollout step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Audit,
    Warn,
    Deny,
}

/// What one step measured.
#[derive(Debug)]
pub(super) struct Step {
    mode: &'static str,
    /// What applied it: `helm upgrade` or `kubectl apply -k`.
    command: &'static str,
    /// The command took.
    took: Duration,
    /// From the end of the command to each pod's volume update, and to its reload.
    synced: Vec<(String, Duration)>,
    reloaded: Vec<(String, Duration)>,
}

/// Runs the rollout against `pods` (every pod of the release that runs now). Returns what each
/// step measured.
pub(super) async fn rollout(
    admin: &Client,
    harness: &Harness,
    work: &Path,
    pods: &[&Pod],
    marks: &mut Marks,
) -> Vec<Step> {
    let ns = installer::HELM_NAMESPACE;
    // The files: valid (lint exit 0, not even a warning), alike but for `enforcement`.
    let files = installer::write_policy_files(work);
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let without_mode = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("enforcement:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (text, mode) in texts.iter().zip(["Audit", "Warn", "Deny"]) {
        assert!(
            text.lines().any(|l| l == format!("enforcement: {mode}")),
            "the {mode} file does not say `enforcement: {mode}`"
        );
        assert_eq!(
            without_mode(text),
            without_mode(&texts[2]),
            "the rollout files must differ only in `enforcement`"
        );
    }
    let lint = tokio::task::block_in_place(|| {
        installer::output_helm_dir(harness, work, installer::POLICY_LINT)
    });
    assert_lint_clean(&lint, installer::POLICY_LINT);
    let all = format!(
        "dualstack-webhook lint {}",
        installer::ROLLOUT_FILES.join(" ")
    );
    let lint = tokio::task::block_in_place(|| installer::output_helm_dir(harness, work, &all));
    assert_lint_clean(&lint, &all);

    // A Service that the new rule will flag, created while the old policy is in force.
    support::namespace(admin, STRICT).await;
    let mut violators: Vec<String> = Vec::new();
    create_violating(admin, "strict-0", Mode::Audit, pods, true).await;
    violators.push("strict-0".into());

    let mut steps = Vec::new();
    let commands = [
        (
            Mode::Audit,
            installer::HELM_POLICY_AUDIT,
            &texts[0],
            &files[0],
            "strict-1",
        ),
        (
            Mode::Warn,
            installer::HELM_POLICY_WARN,
            &texts[1],
            &files[1],
            "strict-2",
        ),
        (
            Mode::Deny,
            installer::HELM_POLICY_DENY,
            &texts[2],
            &files[2],
            "strict-3",
        ),
    ];
    for (mode, command, text, file, violating) in commands {
        let label = format!("{mode:?}");
        // Preview: what enforcing would refuse, among the Services created so far.
        preview(harness, work, &violators);
        let generations = {
            let mut g = Vec::new();
            for pod in pods {
                g.push(pod.policy_generation().await);
            }
            g
        };
        marks.now(&format!("policy {label} (helm upgrade)"));
        let started = Instant::now();
        tokio::task::block_in_place(|| installer::run_helm_dir(harness, work, command));
        let done = marks.now(&format!("policy {label} upgraded"));
        let helm = done - started;
        check_release(admin, harness, work, ns, text).await;

        // Every pod has the new file and has reloaded it.
        let (synced, reloaded) = wait_step(pods, &generations, text, started, done).await;
        marks.now(&format!("policy {label} reloaded by every pod"));
        // The replicas register the match conditions of the new policy (its new rule): what
        // `webhook-configurations --policy` prints for it.
        wait_conditions(admin, file).await;
        marks.now(&format!("policy {label}: its match conditions registered"));
        // And its in-process defaults (the new rule's RequireDualStack), once the API server's
        // policy informer has them: until then a create gets the previous policy's defaults.
        wait_in_process_defaults(admin).await;
        marks.now(&format!("policy {label}: its in-process defaults applied"));

        // A compliant create: the rule's default makes it RequireDualStack.
        let ok = support::create_with_warnings(
            admin,
            STRICT,
            &support::service(&format!("ok-{}", label.to_lowercase()), json!({})),
        )
        .await;
        assert_eq!(ok.0, 201, "compliant create under {label}: {}", ok.2);
        assert_eq!(
            ok.2["spec"]["ipFamilyPolicy"], "RequireDualStack",
            "under {label}: {}",
            ok.2
        );
        assert!(ok.1.is_empty(), "compliant create warned: {:?}", ok.1);

        // The violating create.
        create_violating(admin, violating, mode, pods, false).await;
        if mode != Mode::Deny {
            violators.push(violating.into());
        }
        steps.push(Step {
            mode: match mode {
                Mode::Audit => "Audit",
                Mode::Warn => "Warn",
                Mode::Deny => "Deny",
            },
            command: "helm upgrade",
            took: helm,
            synced,
            reloaded,
        });
    }
    // After the rollout: the same Services would be refused (the refused one was never stored).
    preview(harness, work, &violators);
    steps
}

/// Waits until both configurations carry the match conditions generated from `policy`.
async fn wait_conditions(admin: &Client, policy: &Path) {
    let printed = support::render_webhooks(&support::Render {
        name: super::CONFIGURATIONS,
        base_url: "https://printed.invalid",
        ca_pem: "",
        failure_policy: None,
        only_namespace: None,
        policy: Some(policy),
    });
    let want: Vec<&Value> = printed
        .iter()
        .map(|doc| &doc["webhooks"][0]["matchConditions"])
        .collect();
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(admin.clone());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(admin.clone());
    let deadline = Instant::now() + BOUND;
    loop {
        let conditions = |doc: Value| doc["webhooks"][0]["matchConditions"].clone();
        let got = [
            conditions(
                serde_json::to_value(mutating.get(super::CONFIGURATIONS).await.unwrap()).unwrap(),
            ),
            conditions(
                serde_json::to_value(validating.get(super::CONFIGURATIONS).await.unwrap()).unwrap(),
            ),
        ];
        if got.iter().zip(&want).all(|(g, w)| g == *w) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the match conditions of {} were not registered within {BOUND:?}: {got:#?}",
            policy.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until a dry-run create in [`STRICT`] gets the new rule's default: the replicas applied
/// the new policy's in-process defaults and the API server's policy informer has them (with the
/// previous ones a create gets PreferDualStack, and no webhook call then sets RequireDualStack).
async fn wait_in_process_defaults(admin: &Client) {
    support::wait_mutating(admin, STRICT, "RequireDualStack").await;
}

/// Lint's output: exit 0, no error, no warning.
fn assert_lint_clean(out: &std::process::Output, command: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && stdout
                .lines()
                .any(|l| l.starts_with("0 errors, 0 warnings")),
        "{command}: exit {:?}\n{stdout}{stderr}",
        out.status.code()
    );
}

/// [`installer::POLICY_PREVIEW`]: exit 1, and a `deny` row for exactly `violators` (all in
/// `apps-strict`), none elsewhere.
fn preview(harness: &Harness, work: &Path, violators: &[String]) {
    let out = tokio::task::block_in_place(|| {
        installer::output_helm_dir(harness, work, installer::POLICY_PREVIEW)
    });
    let table = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}: exit code (1: some Service would be denied)\n{stderr}",
        installer::POLICY_PREVIEW
    );
    let denied: BTreeSet<(String, String)> = table
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().any(|w| w == "deny"))
        .map(|l| {
            let mut w = l.split_whitespace();
            (
                w.next().unwrap_or_default().to_owned(),
                w.next().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = violators
        .iter()
        .map(|n| (STRICT.to_owned(), n.clone()))
        .collect();
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("NAMESPACE") || l.starts_with(STRICT))
        .collect();
    assert_eq!(
        denied,
        want,
        "{} lists these Services as denied; the header and the rows of {STRICT}:\n{}",
        installer::POLICY_PREVIEW,
        rows.join("\n")
    );
    eprintln!(
        "lifecycle: preview ({} Services judged): deny rows {:?}\n{}",
        table.lines().count().saturating_sub(1),
        denied,
        rows.join("\n")
    );
}

/// What the release holds after a `--reuse-values` step: the values of the earlier commands
/// (`certificates.mode`, `replicas`) kept, `policy` the new file, the ConfigMap its content.
async fn check_release(admin: &Client, harness: &Harness, work: &Path, ns: &str, text: &str) {
    let out = tokio::task::block_in_place(|| {
        installer::output_helm_dir(
            harness,
            work,
            "helm get values dualstack-webhook -n platform-system -o json",
        )
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let values: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            &values["certificates"]["mode"],
            &values["replicas"],
            values["policy"].as_str()
        ),
        (&json!("self-managed"), &json!(2), Some(text)),
        "the release's values after --reuse-values: {values:#}"
    );
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), ns);
    let deployment = deployments.get("dualstack-webhook").await.unwrap();
    assert_eq!(
        deployment.spec.as_ref().and_then(|s| s.replicas),
        Some(2),
        "replicas after --reuse-values"
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(admin.clone(), ns);
    let cm = configmaps.get(POLICY_CONFIGMAP).await.unwrap();
    assert_eq!(
        cm.data
            .unwrap_or_default()
            .get("policy.yaml")
            .map(String::as_str),
        Some(text),
        "ConfigMap {POLICY_CONFIGMAP}"
    );
}

/// Every pod's policy volume updated after `started` and the policy `text` reloaded (once) by
/// every pod: (volume updated, reloaded) per pod, each after `done` (the command's end).
async fn wait_step(
    pods: &[&Pod],
    generations: &[f64],
    text: &str,
    started: Instant,
    done: Instant,
) -> (Vec<(String, Duration)>, Vec<(String, Duration)>) {
    let mut synced = Vec::new();
    let mut reloaded = Vec::new();
    let seen = wait_reload(pods, generations, text).await;
    for (pod, at) in pods.iter().zip(seen) {
        reloaded.push((pod.name.clone(), at.saturating_duration_since(done)));
        let sync = pod
            .synced()
            .into_iter()
            .rfind(|s| s.volume == "policy")
            .expect("the policy volume was never updated");
        assert!(
            sync.at >= started,
            "{}: the volume was not updated",
            pod.name
        );
        synced.push((pod.name.clone(), sync.at.saturating_duration_since(done)));
    }
    (synced, reloaded)
}

/// Waits until every pod has reloaded (its generation one past `before`, polled every 50 ms)
/// and its policy file holds `text` (through the kubelet's `..data` symlink); when each was first
/// seen reloaded.
async fn wait_reload(pods: &[&Pod], before: &[f64], text: &str) -> Vec<Instant> {
    let start = Instant::now();
    let mut seen: Vec<Option<Instant>> = vec![None; pods.len()];
    while seen.iter().any(Option::is_none) {
        for (i, pod) in pods.iter().enumerate() {
            if seen[i].is_some() {
                continue;
            }
            let generation = pod.policy_generation().await;
            if generation > before[i] {
                seen[i] = Some(Instant::now());
                let file = pod.dir.join("volumes/policy/policy.yaml");
                assert_eq!(
                    std::fs::read_link(&file).ok().as_deref(),
                    Some(Path::new("..data/policy.yaml")),
                    "{}: policy.yaml is not the kubelet's symlink",
                    pod.name
                );
                assert_eq!(
                    std::fs::read_to_string(&file).ok().as_deref(),
                    Some(text),
                    "{}: reloaded, but its file is not the new policy",
                    pod.name
                );
                assert_eq!(
                    generation,
                    before[i] + 1.0,
                    "{}: reloaded more than once",
                    pod.name
                );
            } else {
                assert!(
                    start.elapsed() < BOUND,
                    "{} has not reloaded the policy {BOUND:?} after the upgrade (generation \
                     {generation}):\n{}",
                    pod.name,
                    pod.log()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen.into_iter().flatten().collect()
}

/// The sum over the pods of the rule's `/validate` findings counted as `action`.
async fn findings(pods: &[&Pod], action: &str) -> f64 {
    let mut sum = 0.0;
    for pod in pods {
        sum += support::metric(
            &pod.metrics().await,
            "dualstack_webhook_findings_total{",
            &[
                "endpoint=\"validate\"",
                &format!("rule=\"{RULE}\""),
                &format!("action=\"{action}\""),
            ],
        );
    }
    sum
}

/// Creates `name` in `apps-strict` asking for SingleStack (which the added rule forbids), and
/// asserts what `mode` does with it; `before_rule`: the old policy, which has no such rule, is in
/// force (the create succeeds, quietly).
async fn create_violating(
    admin: &Client,
    name: &str,
    mode: Mode,
    pods: &[&Pod],
    before_rule: bool,
) {
    let svc: Service = support::service(name, json!({"ipFamilyPolicy": "SingleStack"}));
    let audited = findings(pods, "Audit").await;
    let (code, warnings, body) = support::create_with_warnings(admin, STRICT, &svc).await;
    if before_rule {
        assert_eq!(code, 201, "{name} under the old policy: {body}");
        assert!(
            warnings.is_empty(),
            "{name} under the old policy: {warnings:?}"
        );
        return;
    }
    match mode {
        Mode::Audit => {
            assert_eq!(code, 201, "{name} under Audit: {body}");
            assert!(warnings.is_empty(), "Audit must not warn: {warnings:?}");
            assert_eq!(body["spec"]["ipFamilyPolicy"], "SingleStack", "{body}");
            let counted = findings(pods, "Audit").await;
            assert_eq!(
                counted,
                audited + 1.0,
                "findings_total{{rule=\"{RULE}\",action=\"Audit\"}} over the pods"
            );
            let line = support::eventually(
                &format!("an `audit finding` log line for {name}"),
                || async {
                    pods.iter().find_map(|p| {
                        p.log()
                            .lines()
                            .find(|l| {
                                l.contains("audit finding")
                                    && l.contains(&format!("\"{name}\""))
                                    && l.contains(RULE)
                            })
                            .map(str::to_owned)
                    })
                },
            )
            .await;
            eprintln!("lifecycle: Audit: {name} created; logged: {line}");
        }
        Mode::Warn => {
            assert_eq!(code, 201, "{name} under Warn: {body}");
            let want = WARNING.replace("{name}", name);
            assert_eq!(warnings, vec![want], "the warning of {name} under Warn");
            eprintln!("lifecycle: Warn: {name} created; Warning: {}", warnings[0]);
        }
        Mode::Deny => {
            let message = body["message"].as_str().unwrap_or_default();
            eprintln!("lifecycle: Deny: {name} refused ({code}): {message}");
            assert_eq!(code, 403, "{name} under Deny: {body}");
            assert_eq!(message, DENY_MESSAGE.replace("{name}", name), "{body}");
            assert!(warnings.is_empty(), "{warnings:?}");
        }
    }
}

// === kustomize: the policy overlay (examples/kustomize-policy) ===

/// The namespace of the policy overlay's observable: a `prod-*` namespace without the label
/// `exposure: internal`, where the shipped rule [`PROD_RULE`] (Deny) judges NodePort and
/// LoadBalancer Services.
const PROD: &str = "prod-shop";
/// The shipped policy's Deny rule that the example overlay's `enforcement: Warn` turns from a
/// refusal into a warning.
const PROD_RULE: &str = "public-lb-dual-stack";
/// How the shipped policy refuses [`prod_service`] in [`PROD`] (`{name}`: the Service's name), as
/// the API server returns it. Pinned from a run.
const PROD_DENY_MESSAGE: &str = "admission webhook \"validate.dualstack-webhook.io\" denied the \
     request: Service \"prod-shop/{name}\" violates the dual-stack policy: rule \
     \"public-lb-dual-stack\": ipFamilyPolicy is SingleStack, allowed: PreferDualStack, \
     RequireDualStack; set spec.ipFamilyPolicy: PreferDualStack; the Service has one IP family, \
     must be dual-stack; set spec.ipFamilyPolicy: RequireDualStack (or PreferDualStack) and leave \
     spec.ipFamilies unset or list both families";
/// The warnings the same create gets under the overlay's `enforcement: Warn`, as the `Warning`
/// headers carry them, for the Service `prod-after` (the webhook cuts each message to under 120
/// characters, so the first one ends in `…`). Pinned from a run.
const PROD_WARNINGS: [&str; 2] = [
    "299 - \"Service \\\"prod-shop/prod-after\\\": rule \\\"public-lb-dual-stack\\\": \
     ipFamilyPolicy SingleStack not allowed (set PreferDualSta…\"",
    "299 - \"Service \\\"prod-shop/prod-after\\\": rule \\\"public-lb-dual-stack\\\": single-stack \
     but dual-stack required\"",
];

/// The operator changes the policy of a kustomize installation with the pods running, by the
/// README's commands ([`installer`]'s constants, verbatim, in the checkout `work`): copies the
/// example overlay, lints its policy, `kubectl apply -k` it. The example as shipped is
/// `manifests/policy.yaml` with `enforcement: Warn` (checked: nothing else differs). Asserted:
/// the overlay renders the webhook configurations first (its own `sortOptions`) and the policy
/// ConfigMap with the overlay's file, unhashed; before the apply a SingleStack NodePort in
/// `prod-shop` is refused by [`PROD_RULE`]; the apply patches the ConfigMap and leaves the
/// Deployment's generation alone (no rollout, no restart); the ConfigMap then holds the
/// overlay's policy with the base's labels; every pod reloads it once (its policy volume updated,
/// `dualstack_webhook_policy_generation` +1); and the same create is then stored, with the
/// rule's warning. What the step measured is returned.
pub(super) async fn kustomize_overlay(
    admin: &Client,
    harness: &Harness,
    work: &Path,
    pods: &[&Pod],
    marks: &mut Marks,
) -> Step {
    let ns = installer::KUSTOMIZE_NAMESPACE;
    let overlay = installer::KUSTOMIZE_POLICY_DIR;
    // The example's policy is the shipped one with `enforcement: Warn`, nothing else.
    let repo = installer::repo();
    let example = std::fs::read_to_string(
        repo.join(installer::KUSTOMIZE_POLICY_EXAMPLE)
            .join("policy.yaml"),
    )
    .unwrap();
    let shipped = std::fs::read_to_string(repo.join("manifests/policy.yaml")).unwrap();
    let from_api_version = |t: &str| -> Vec<String> {
        t.lines()
            .skip_while(|l| !l.starts_with("apiVersion:"))
            .map(str::to_owned)
            .collect()
    };
    let want: Vec<String> = from_api_version(&shipped)
        .into_iter()
        .map(|l| {
            if l == "# enforcement: Deny" {
                "enforcement: Warn".to_owned()
            } else {
                l
            }
        })
        .collect();
    assert!(
        want.iter().any(|l| l == "enforcement: Warn"),
        "manifests/policy.yaml no longer has the line `# enforcement: Deny`"
    );
    assert_eq!(
        from_api_version(&example),
        want,
        "{}/policy.yaml must be manifests/policy.yaml with `enforcement: Warn` (from \
         `apiVersion:` on)",
        installer::KUSTOMIZE_POLICY_EXAMPLE
    );

    // The operator's copy of the example, and its lint.
    tokio::task::block_in_place(|| {
        installer::copy_policy_example(work);
        installer::run_kustomize_dir(harness, work, installer::KUSTOMIZE_POLICY_COPY);
    });
    let text = std::fs::read_to_string(work.join(overlay).join("policy.yaml")).unwrap();
    assert_eq!(text, example, "the copy's policy.yaml");
    let lint = tokio::task::block_in_place(|| {
        installer::output_kustomize_dir(harness, work, installer::KUSTOMIZE_POLICY_LINT)
    });
    assert_lint_clean(&lint, installer::KUSTOMIZE_POLICY_LINT);

    // What the overlay renders (kustomize's default load restrictor: the base overlay is a
    // directory outside it, which that allows): the defaults' binding and the configurations first,
    // the policy replaced.
    let render = format!("kubectl kustomize {overlay}");
    let out =
        tokio::task::block_in_place(|| installer::output_kustomize_dir(harness, work, &render));
    assert!(
        out.status.success(),
        "{render}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = work.join("my-policy-rendered.yaml");
    std::fs::write(&rendered, &out.stdout).unwrap();
    let docs = support::yaml_documents(&rendered);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds[..3],
        [
            "MutatingAdmissionPolicyBinding",
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration"
        ],
        "{render}: the in-process defaults' binding and the webhook configurations must come \
         first (`kubectl delete -k` order): {kinds:?}"
    );
    let policies: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "ConfigMap").collect();
    assert_eq!(policies.len(), 1, "{render}: {kinds:?}");
    assert_eq!(
        (
            policies[0]["metadata"]["name"].as_str(),
            policies[0]["data"]["policy.yaml"].as_str()
        ),
        (Some(POLICY_CONFIGMAP), Some(text.as_str())),
        "{render}: the policy ConfigMap"
    );

    // Before: the shipped policy refuses a SingleStack NodePort in prod-shop.
    support::namespace(admin, PROD).await;
    let (code, warnings, body) =
        support::create_with_warnings(admin, PROD, &prod_service("prod-before")).await;
    let message = body["message"].as_str().unwrap_or_default().to_owned();
    eprintln!("lifecycle: shipped policy: {PROD}/prod-before refused ({code}): {message}");
    assert_eq!(
        code, 403,
        "{PROD}/prod-before under the shipped policy: {body}"
    );
    assert_eq!(
        message,
        PROD_DENY_MESSAGE.replace("{name}", "prod-before"),
        "{body}"
    );
    assert!(warnings.is_empty(), "{warnings:?}");

    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), ns);
    let generation = |d: Deployment| d.metadata.generation;
    let deployment_before = generation(deployments.get("dualstack-webhook").await.unwrap());
    let mut generations = Vec::new();
    for pod in pods {
        generations.push(pod.policy_generation().await);
    }
    marks.now("policy Warn (kubectl apply -k the policy overlay)");
    let started = Instant::now();
    let out = tokio::task::block_in_place(|| {
        installer::output_kustomize_dir(harness, work, installer::KUSTOMIZE_POLICY_APPLY)
    });
    let done = marks.now("policy Warn applied");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}: {stdout}{}",
        installer::KUSTOMIZE_POLICY_APPLY,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "lifecycle: {}:\n{stdout}",
        installer::KUSTOMIZE_POLICY_APPLY
    );
    // The ConfigMap is patched. (kubectl also says `configured` for the Secret, the
    // PriorityClass, the Deployment and the PodDisruptionBudget at every re-apply of the
    // self-managed install, its own `kubectl apply -k` included, although nothing of theirs
    // changes: the Deployment's generation below shows it.)
    assert!(
        stdout
            .lines()
            .any(|l| l == format!("configmap/{POLICY_CONFIGMAP} configured")),
        "{}: the policy ConfigMap was not changed",
        installer::KUSTOMIZE_POLICY_APPLY
    );
    assert_eq!(
        generation(deployments.get("dualstack-webhook").await.unwrap()),
        deployment_before,
        "the Deployment changed: its pods would restart"
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(admin.clone(), ns);
    let cm = configmaps.get(POLICY_CONFIGMAP).await.unwrap();
    assert_eq!(
        cm.metadata
            .labels
            .unwrap_or_default()
            .get("app.kubernetes.io/name")
            .map(String::as_str),
        Some("dualstack-webhook"),
        "ConfigMap {POLICY_CONFIGMAP}: the base's label"
    );
    assert_eq!(
        cm.data
            .unwrap_or_default()
            .get("policy.yaml")
            .map(String::as_str),
        Some(text.as_str()),
        "ConfigMap {POLICY_CONFIGMAP} after {}",
        installer::KUSTOMIZE_POLICY_APPLY
    );

    // Every pod has the new file and has reloaded it.
    let (synced, reloaded) = wait_step(pods, &generations, &text, started, done).await;
    marks.now("policy Warn reloaded by every pod");

    // After: the same create is stored, with the rule's warning.
    let (code, warnings, body) =
        support::create_with_warnings(admin, PROD, &prod_service("prod-after")).await;
    eprintln!("lifecycle: Warn: {PROD}/prod-after created ({code}); warnings: {warnings:?}");
    assert_eq!(
        code, 201,
        "{PROD}/prod-after under the overlay's policy: {body}"
    );
    assert_eq!(body["spec"]["ipFamilyPolicy"], "SingleStack", "{body}");
    assert_eq!(
        warnings, PROD_WARNINGS,
        "{PROD}/prod-after: the warnings of {PROD_RULE}"
    );
    Step {
        mode: "Warn (examples/my-policy)",
        command: "kubectl apply -k",
        took: done - started,
        synced,
        reloaded,
    }
}

/// A SingleStack NodePort Service: in `prod-shop` it breaks [`PROD_RULE`] (which allows only
/// PreferDualStack and RequireDualStack for NodePort and LoadBalancer Services there).
fn prod_service(name: &str) -> Service {
    support::service(
        name,
        json!({"type": "NodePort", "ipFamilyPolicy": "SingleStack"}),
    )
}

/// One line per step: the command's time, each pod's volume update and reload after it.
pub(super) fn report(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| {
            let each = |v: &[(String, Duration)]| {
                v.iter()
                    .map(|(p, d)| format!("{p} {} ms", d.as_millis()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "  {}: {} {} ms; after it: volume updated {}; reloaded {}",
                s.mode,
                s.command,
                s.took.as_millis(),
                each(&s.synced),
                each(&s.reloaded)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
