//! The operator's commands, exactly as the README gives them: each is a constant the test runs
//! verbatim (with `KUBECONFIG` pointing at the harness), from the directory the README assumes —
//! a checkout of the repository — played by a work directory so nothing lands in the tree: for
//! Helm, `WORK/helm` with `charts` a symlink to the repository's (the certificates and the policy
//! files are written there), for kustomize a copy of the repository's `manifests/` (so
//! `generate.sh`'s files stay out of the tree) and, for the policy overlay, of
//! `examples/kustomize-policy`. [`assert_commands_in_readme`] checks that the
//! README still gives every one of them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::cluster;
use crate::support::{self, Harness};

// === Helm (charts/dualstack-webhook) ===

/// The Helm release's namespace (not the chart's default: the Service name the API server dials,
/// `dualstack-webhook.platform-system.svc`, must follow it).
pub(super) const HELM_NAMESPACE: &str = "platform-system";

/// Install, step 1: a CA and a serving certificate for `dualstack-webhook.platform-system.svc`
/// (into `./certs`).
pub(super) const HELM_CERTS: &str =
    "dualstack-webhook certs --out certs --namespace platform-system";
/// Install, step 2: the namespace, so the Secret can go in before the release.
pub(super) const HELM_NAMESPACE_CREATE: &str = "kubectl create namespace platform-system";
/// Install, step 2b: Pod Security `restricted` for the namespace, as `manifests/base` labels its
/// own (the chart's pods comply; the harness runs no pods, so here it is only applied).
pub(super) const HELM_NAMESPACE_LABEL: &str =
    "kubectl label namespace platform-system pod-security.kubernetes.io/enforce=restricted";
/// Install, step 3: the serving certificate and the CA the webhook registers as its `caBundle`
/// (`certificates.mode=self-managed` mounts the Secret `dualstack-webhook-tls`).
pub(super) const HELM_SECRET: &str = "kubectl -n platform-system create secret generic dualstack-webhook-tls --type kubernetes.io/tls --from-file=tls.crt=certs/tls.crt --from-file=tls.key=certs/tls.key --from-file=ca.crt=certs/ca.crt";
/// Install, step 4: the release. The configurations are created empty: the webhook fills them
/// once a replica is ready and reachable, so no write fails while the pods start. (No `--wait`
/// here: the test's pods are not the Deployment's.)
pub(super) const HELM_INSTALL: &str = "helm install dualstack-webhook charts/dualstack-webhook -n platform-system --create-namespace --set certificates.mode=self-managed";
/// Upgrade (here: two replicas). Helm does not own the configurations' `webhooks`, so the upgrade
/// leaves the registration alone.
pub(super) const HELM_UPGRADE: &str = "helm upgrade dualstack-webhook charts/dualstack-webhook -n platform-system --set certificates.mode=self-managed --set replicas=2";
/// Uninstall: Helm deletes the webhook configurations first, while the pods still serve, so no
/// write fails on the way out either. The Secret and the namespace stay (not the release's).
pub(super) const HELM_UNINSTALL: &str = "helm uninstall dualstack-webhook -n platform-system";

// === Changing the policy, rolled out Audit -> Warn -> Deny (Helm) ===

/// The policy file the operator writes (the policy to enforce in the end; here the same as
/// `policy-deny.yaml`): [`POLICY_LINT`] and [`POLICY_PREVIEW`] read it.
pub(super) const MY_POLICY: &str = "my-policy.yaml";
/// The rollout's three files: `my-policy.yaml` with `enforcement: Audit`, `Warn`, `Deny`, and
/// nothing else changed.
pub(super) const ROLLOUT_FILES: [&str; 3] =
    ["policy-audit.yaml", "policy-warn.yaml", "policy-deny.yaml"];

/// Check the policy file before it goes in: errors exit 1 (a refused policy would keep the last
/// good one in force in the pods), warnings are printed, exit 0.
pub(super) const POLICY_LINT: &str = "dualstack-webhook lint my-policy.yaml";
/// What enforcing the policy would refuse among the Services the cluster has now (`KUBECONFIG`):
/// one row per Service, exit 1 when any would be denied. `--enforcement deny` judges as if the
/// file said `enforcement: Deny`, so it previews the last step whatever the file's mode. Run it
/// before each step.
pub(super) const POLICY_PREVIEW: &str =
    "dualstack-webhook audit --policy my-policy.yaml --enforcement deny";
/// Rollout step 1: the policy in Audit mode. Nothing is refused, nothing warned; each violation
/// is counted (`dualstack_webhook_findings_total{action="Audit"}`) and logged (`audit finding`).
/// `--reuse-values` keeps the release's other values (`certificates.mode`, `replicas`); only the
/// ConfigMap changes, and the pods reload it without a restart once the kubelet has updated
/// their volume (`dualstack_webhook_policy_generation` counts the reloads).
pub(super) const HELM_POLICY_AUDIT: &str = "helm upgrade dualstack-webhook charts/dualstack-webhook -n platform-system --reuse-values --set-file policy=policy-audit.yaml";
/// Rollout step 2: Warn. Still nothing refused; whoever writes a violating Service gets a
/// warning (kubectl prints `Warning: Service "NS/NAME": rule "...": ...`).
pub(super) const HELM_POLICY_WARN: &str = "helm upgrade dualstack-webhook charts/dualstack-webhook -n platform-system --reuse-values --set-file policy=policy-warn.yaml";
/// Rollout step 3: Deny. Every rule acts as written: a violating create or update is refused
/// with the rule's message.
pub(super) const HELM_POLICY_DENY: &str = "helm upgrade dualstack-webhook charts/dualstack-webhook -n platform-system --reuse-values --set-file policy=policy-deny.yaml";

// === kustomize (manifests/overlays/self-managed) ===

/// The namespace of the kustomize manifests.
pub(super) const KUSTOMIZE_NAMESPACE: &str = "dualstack-webhook";

/// Install, step 1: `certs/` and `cabundle.yaml` of the self-managed overlay.
pub(super) const KUSTOMIZE_GENERATE: &str = "manifests/overlays/self-managed/generate.sh";
/// Install, step 2 (and every upgrade: the same command). The configurations are applied empty;
/// `kubectl apply` never owned their `webhooks`, so a later apply leaves the registration alone.
pub(super) const KUSTOMIZE_APPLY: &str = "kubectl apply -k manifests/overlays/self-managed";
/// Uninstall: the configurations are deleted first (kustomize `sortOptions`), while the pods
/// still serve. `--wait=false`: the namespace's deletion finishes only once its pods are gone.
pub(super) const KUSTOMIZE_DELETE: &str =
    "kubectl delete -k manifests/overlays/self-managed --wait=false";

// === The emergency runbook ===

/// Step 1 of the runbook (Service writes fail with `failed calling webhook`): unregister. Existing
/// Services are untouched; the pods never re-create the configurations. Step 3 re-creates them
/// empty with the installer's apply, and the running pods fill them again.
pub(super) const EMERGENCY_UNREGISTER: &str =
    "kubectl delete mutatingwebhookconfiguration,validatingwebhookconfiguration dualstack-webhook";

// === Changing the policy with kustomize (examples/kustomize-policy) ===

/// The operator's own overlay: a copy of the example, kept two directories below the checkout's
/// root so that its `resources: [../../manifests/overlays/self-managed]` still resolves. The
/// operator then edits `examples/my-policy/policy.yaml` (the test applies the example's as
/// shipped: the shipped policy with `enforcement: Warn`).
pub(super) const KUSTOMIZE_POLICY_COPY: &str = "cp -R examples/kustomize-policy examples/my-policy";
/// Check the overlay's policy before applying it (exit 1 on errors; a refused policy would keep
/// the last good one in force in the pods).
pub(super) const KUSTOMIZE_POLICY_LINT: &str =
    "dualstack-webhook lint examples/my-policy/policy.yaml";
/// The policy overlay applied: the self-managed install with the ConfigMap
/// `dualstack-webhook-policy` replaced (`behavior: replace`, no hash suffix), so only the
/// ConfigMap changes; the Deployment is unchanged (no restart) and the pods reload the policy once
/// the kubelet has updated their volume. From then on this is the installation's apply command.
pub(super) const KUSTOMIZE_POLICY_APPLY: &str = "kubectl apply -k examples/my-policy";

/// Every operator command above, as the README must give it.
pub(super) const ALL_COMMANDS: [&str; 19] = [
    HELM_CERTS,
    HELM_NAMESPACE_CREATE,
    HELM_NAMESPACE_LABEL,
    HELM_SECRET,
    HELM_INSTALL,
    HELM_UPGRADE,
    POLICY_LINT,
    POLICY_PREVIEW,
    HELM_POLICY_AUDIT,
    HELM_POLICY_WARN,
    HELM_POLICY_DENY,
    HELM_UNINSTALL,
    KUSTOMIZE_GENERATE,
    KUSTOMIZE_APPLY,
    KUSTOMIZE_DELETE,
    KUSTOMIZE_POLICY_COPY,
    KUSTOMIZE_POLICY_LINT,
    KUSTOMIZE_POLICY_APPLY,
    EMERGENCY_UNREGISTER,
];

/// Asserts that the repository's README.md gives every operator command ([`ALL_COMMANDS`])
/// verbatim: as a line of its own (a code block; a leading `$ ` allowed) or in backticks. So the
/// commands the README tells operators to run are the ones this test runs.
pub(super) fn assert_commands_in_readme() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let missing: Vec<&str> = ALL_COMMANDS
        .iter()
        .copied()
        .filter(|command| {
            let as_line = readme.lines().any(|l| {
                let l = l.trim();
                l == *command || l.strip_prefix("$ ") == Some(command)
            });
            !as_line && !readme.contains(&format!("`{command}`"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "README.md does not give these operator commands verbatim (the lifecycle test runs \
         them; each as a line of its own in a code block, or in backticks):\n{}",
        missing.join("\n")
    );
}

/// How the webhook is installed.
#[derive(Clone, Copy, Debug)]
pub(super) enum Installer {
    Helm,
    Kustomize,
}

impl Installer {
    /// The namespace it installs into.
    pub(super) fn namespace(self) -> &'static str {
        match self {
            Self::Helm => HELM_NAMESPACE,
            Self::Kustomize => KUSTOMIZE_NAMESPACE,
        }
    }

    /// Installs (the Helm chart or the self-managed overlay), with `work` for the files the
    /// operator keeps (certificates, the manifests' copy, helm's caches).
    pub(super) fn install(self, harness: &Harness, work: &Path) {
        std::fs::create_dir_all(work).unwrap();
        match self {
            Self::Helm => {
                // Every step in `WORK/helm`, the operator's checkout: `certs/` and the policy
                // files there, `charts` the repository's.
                let dir = helm_dir(work);
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).unwrap();
                std::os::unix::fs::symlink(repo().join("charts"), dir.join("charts")).unwrap();
                run(harness, work, &dir, HELM_CERTS);
                run(harness, work, &dir, HELM_NAMESPACE_CREATE);
                run(harness, work, &dir, HELM_NAMESPACE_LABEL);
                run(harness, work, &dir, HELM_SECRET);
                run(harness, work, &dir, HELM_INSTALL);
            }
            Self::Kustomize => {
                copy_manifests(work);
                run(harness, work, work, KUSTOMIZE_GENERATE);
                run(harness, work, work, KUSTOMIZE_APPLY);
            }
        }
    }

    /// The upgrade: `helm upgrade` with two replicas, or the same `kubectl apply -k` again.
    pub(super) fn upgrade(self, harness: &Harness, work: &Path) {
        match self {
            Self::Helm => run(harness, work, &helm_dir(work), HELM_UPGRADE),
            Self::Kustomize => run(harness, work, work, KUSTOMIZE_APPLY),
        }
    }

    /// The removal.
    pub(super) fn uninstall(self, harness: &Harness, work: &Path) {
        match self {
            Self::Helm => run(harness, work, &helm_dir(work), HELM_UNINSTALL),
            Self::Kustomize => run(harness, work, work, KUSTOMIZE_DELETE),
        }
    }
}

pub(super) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Helm operator's directory (see the module's doc).
pub(super) fn helm_dir(work: &Path) -> PathBuf {
    work.join("helm")
}

/// The test's rollout files (`tests/e2e/lifecycle/policy-*.yaml`) written where the operator
/// keeps them: `policy-audit.yaml`, `policy-warn.yaml`, `policy-deny.yaml`, and `my-policy.yaml`
/// (the policy to enforce: the Deny one). Returns the three rollout files' paths there.
pub(super) fn write_policy_files(work: &Path) -> Vec<PathBuf> {
    let dir = helm_dir(work);
    let source = repo().join("tests/e2e/lifecycle");
    let files: Vec<PathBuf> = ROLLOUT_FILES
        .iter()
        .map(|name| {
            let to = dir.join(name);
            std::fs::copy(source.join(name), &to).unwrap_or_else(|e| panic!("copy {name}: {e}"));
            to
        })
        .collect();
    std::fs::copy(&files[2], dir.join(MY_POLICY)).unwrap();
    files
}

/// Runs one of the Helm operator's commands in [`helm_dir`]; it must exit 0.
pub(super) fn run_helm_dir(harness: &Harness, work: &Path, command: &str) {
    run(harness, work, &helm_dir(work), command);
}

/// Runs one of the Helm operator's commands in [`helm_dir`]; whatever it exits with.
pub(super) fn output_helm_dir(harness: &Harness, work: &Path, command: &str) -> Output {
    output(harness, work, &helm_dir(work), command)
}

/// The example overlay's directory in the repository.
pub(super) const KUSTOMIZE_POLICY_EXAMPLE: &str = "examples/kustomize-policy";
/// The operator's copy ([`KUSTOMIZE_POLICY_COPY`]), relative to the checkout (here: `work`).
pub(super) const KUSTOMIZE_POLICY_DIR: &str = "examples/my-policy";

/// `WORK/examples/kustomize-policy`: the repository's example, where the checkout has it (so the
/// operator's [`KUSTOMIZE_POLICY_COPY`] runs as written); no earlier copy left.
pub(super) fn copy_policy_example(work: &Path) {
    let examples = work.join("examples");
    let _ = std::fs::remove_dir_all(&examples);
    std::fs::create_dir_all(&examples).unwrap();
    let ok = Command::new("cp")
        .arg("-R")
        .arg(repo().join(KUSTOMIZE_POLICY_EXAMPLE))
        .arg(work.join(KUSTOMIZE_POLICY_EXAMPLE))
        .status()
        .unwrap();
    assert!(ok.success(), "cp -R {KUSTOMIZE_POLICY_EXAMPLE}");
}

/// Runs one of the kustomize operator's commands in `work` (the checkout); it must exit 0.
pub(super) fn run_kustomize_dir(harness: &Harness, work: &Path, command: &str) {
    run(harness, work, work, command);
}

/// Runs one of the kustomize operator's commands in `work`; whatever it exits with.
pub(super) fn output_kustomize_dir(harness: &Harness, work: &Path, command: &str) -> Output {
    output(harness, work, work, command)
}

/// `cp -R manifests WORK/manifests`, without files an earlier `generate.sh` left in the tree.
fn copy_manifests(work: &Path) {
    let to = work.join("manifests");
    let _ = std::fs::remove_dir_all(&to);
    let ok = Command::new("cp")
        .arg("-R")
        .arg(repo().join("manifests"))
        .arg(&to)
        .status()
        .unwrap();
    assert!(ok.success(), "cp -R manifests");
    let overlay = to.join("overlays/self-managed");
    let _ = std::fs::remove_dir_all(overlay.join("certs"));
    let _ = std::fs::remove_file(overlay.join("cabundle.yaml"));
}

/// Runs one operator command (split on whitespace: no argument has a space) in `cwd` with
/// `KUBECONFIG` set to the harness's: `kubectl` and `helm` are the harness's, `dualstack-webhook`
/// the release binary (`generate.sh` finds it through `DUALSTACK_WEBHOOK`), `cp` the system's;
/// helm's caches live under `work`.
fn run(harness: &Harness, work: &Path, cwd: &Path, command: &str) {
    let out = output(harness, work, cwd, command);
    assert!(
        out.status.success(),
        "{command}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// [`run`], whatever the command exits with.
fn output(harness: &Harness, work: &Path, cwd: &Path, command: &str) -> Output {
    let command: Vec<&str> = command.split_whitespace().collect();
    let program = match command[0] {
        "kubectl" => PathBuf::from(support::env("E2E_KUBECTL")),
        "helm" => cluster::helm_bin(),
        "dualstack-webhook" => PathBuf::from(support::env("E2E_WEBHOOK_BIN")),
        "cp" => PathBuf::from("cp"),
        script => cwd.join(script),
    };
    eprintln!("lifecycle: $ (cd {}; {})", cwd.display(), command.join(" "));
    Command::new(&program)
        .args(&command[1..])
        .current_dir(cwd)
        .env("KUBECONFIG", harness.kubeconfig())
        .env("DUALSTACK_WEBHOOK", support::env("E2E_WEBHOOK_BIN"))
        .env("HELM_CACHE_HOME", work.join("helm-home/cache"))
        .env("HELM_CONFIG_HOME", work.join("helm-home/config"))
        .env("HELM_DATA_HOME", work.join("helm-home/data"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}
