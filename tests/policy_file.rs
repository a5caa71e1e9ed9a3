//! The files the webhook and `check` read, made hostile: a policy path that stops being readable
//! or never ends, documents nested 100 k levels deep, directory symlink loops. Each is refused
//! quickly, with a message naming the path and the limit, and a reload keeps the last good policy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use std::collections::HashSet;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dualstack_webhook::domain::policy::Policy;
use dualstack_webhook::metrics::Metrics;
use dualstack_webhook::policy_file::{lint_warnings, load_policy, log_warnings, watch_policy};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_dualstack-webhook");
const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/policy.yaml");
const HEADER: &str = "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n";
/// Generous for a loaded CI machine; before the limits these took 30 s to hours (or memory).
const BOUND: Duration = Duration::from_secs(10);
const DEEP: usize = 100_000;

// === the binary ===

/// Runs the binary, killing it (and failing) if it has not exited within [`BOUND`].
fn run(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > BOUND {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{args:?} did not finish within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Asserts exit code 2, nothing on stdout, and exactly `dualstack-webhook: {message}` on stderr.
#[track_caller]
fn assert_fails_with(out: &Output, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr, format!("dualstack-webhook: {message}\n"));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}

#[test]
fn an_endless_policy_file_is_refused_at_start_after_1_mib() {
    let message = "policy file /dev/zero (--policy) is larger than 1 MiB";
    assert_fails_with(&run(&["review", "--policy", "/dev/zero"]), message);
    assert_fails_with(&run(&["check", "--policy", "/dev/zero", POLICY]), message);
    let serve = run(&[
        "serve",
        "--policy",
        "/dev/zero",
        "--tls-cert",
        "x",
        "--tls-key",
        "y",
        "--listen",
        "127.0.0.1:1",
    ]);
    assert_fails_with(&serve, message);
}

#[test]
fn a_deeply_nested_policy_is_refused_at_start_with_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    // 200 KB; 30 s of libyaml's time before the limit (release build).
    let body = format!("{HEADER}rules: {}{}\n", "[".repeat(DEEP), "]".repeat(DEEP));
    std::fs::write(&path, body).unwrap();
    let path = path.to_str().unwrap();
    assert_fails_with(
        &run(&["review", "--policy", path]),
        &format!("invalid policy file {path} (--policy): nested deeper than 64 levels at line 3"),
    );
}

#[test]
fn check_refuses_a_deeply_nested_manifest_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: apps}\n\
         spec: {selector: {a: b}, ports: [{port: 80}]}\n",
    )
    .unwrap();
    let deep = dir.path().join("b.yaml");
    let body = format!(
        "apiVersion: v1\nkind: List\nitems: {}{}\n",
        "[".repeat(DEEP),
        "]".repeat(DEEP)
    );
    std::fs::write(&deep, body).unwrap();
    // The deep document is a row of its own, refused before it is parsed; the rest is judged.
    let out = run(&[
        "check",
        "--policy",
        POLICY,
        "--output",
        "json",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unreadable document fails the check"
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["name"], "a");
    assert_eq!(rows[1]["file"], deep.to_str().unwrap());
    assert_eq!(rows[1]["verdict"], "error");
    assert_eq!(
        rows[1]["message"],
        "nested deeper than 128 levels at line 3"
    );
    // Block nesting, 100 k levels in 200 KB; alone, nothing is read (exit 2).
    std::fs::write(&deep, "- ".repeat(DEEP) + "x\n").unwrap();
    assert_fails_with(
        &run(&["check", "--policy", POLICY, deep.to_str().unwrap()]),
        &format!(
            "nothing to check: {}: nested deeper than 128 levels at line 1",
            deep.display()
        ),
    );
}

#[test]
fn check_refuses_a_manifest_over_16_mib() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(16 * 1024 * 1024 + 1).unwrap();
    assert_fails_with(
        &run(&["check", "--policy", POLICY, big.to_str().unwrap()]),
        &format!("nothing to check: {}: larger than 16 MiB", big.display()),
    );
}

/// A Service manifest named `name`, compliant with the test policy.
fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: apps}}\n\
         spec: {{selector: {{a: b}}, ports: [{{port: 80}}]}}\n"
    )
}

/// The names of the Services `check --output json` judged.
fn judged(out: &Output) -> Vec<String> {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn check_refuses_a_directory_symlink_loop_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("manifests");
    let sub = root.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("a.yaml"), service("a")).unwrap();
    // Two links back up: without loop detection, 2^40 paths before the kernel's ELOOP limit.
    symlink("..", sub.join("loop-a")).unwrap();
    symlink("..", sub.join("loop-b")).unwrap();
    // Each loop is a row of its own; the Service is judged once.
    let out = run(&[
        "check",
        "--policy",
        POLICY,
        "--output",
        "json",
        root.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let loops: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r["verdict"] == "error")
        .map(|r| (r["file"].as_str().unwrap(), r["message"].as_str().unwrap()))
        .collect();
    let back_to_root = format!("a symlink loop leads back to {}", root.display());
    let (a, b) = (sub.join("loop-a"), sub.join("loop-b"));
    assert_eq!(
        loops,
        [
            (a.to_str().unwrap(), back_to_root.as_str()),
            (b.to_str().unwrap(), back_to_root.as_str())
        ]
    );
    assert_eq!(rows.iter().filter(|r| r["name"] == "a").count(), 1);
}

#[test]
fn check_follows_symlinks_that_do_not_loop() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    let root = dir.path().join("manifests");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(elsewhere.join("b.yaml"), service("b")).unwrap();
    std::fs::write(root.join("a.yaml"), service("a")).unwrap();
    symlink(&elsewhere, root.join("linked")).unwrap();
    // A second link to the same directory: read once.
    symlink(&elsewhere, root.join("linked-again")).unwrap();
    let out = run(&[
        "check",
        "--policy",
        POLICY,
        "--output",
        "json",
        root.to_str().unwrap(),
    ]);
    assert_eq!(judged(&out), ["a", "b"]);
}

// === reload ===

/// Log lines written while it is the default subscriber (this test's thread only).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn lines(&self, level: &str) -> Vec<String> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with(level))
            .map(str::to_owned)
            .collect()
    }

    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || logs.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A policy file watched every 20 ms, as `serve` watches it.
struct Watched {
    policy: Arc<ArcSwap<Policy>>,
    registry: Registry,
    token: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Watched {
    fn start(path: &Path, loaded: &str) -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let policy = Arc::new(ArcSwap::from_pointee(Policy::from_yaml(loaded).unwrap()));
        let token = CancellationToken::new();
        let task = tokio::spawn(watch_policy(
            path.to_owned(),
            loaded.as_bytes().to_vec(),
            policy.clone(),
            None,
            Duration::from_millis(20),
            metrics,
            token.clone(),
        ));
        Self {
            policy,
            registry,
            token,
            task,
        }
    }

    /// `dualstack_webhook_policy_reloads_total{result}`, 0 if absent.
    fn reloads(&self, result: &str) -> u64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        let series = format!("dualstack_webhook_policy_reloads_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |n| n.parse().unwrap())
    }

    async fn wait_for(&self, what: &str, cond: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            assert!(start.elapsed() < BOUND, "{what}: not within {BOUND:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Checked after too: a watcher that blocks this runtime's only thread delays the loop.
        assert!(start.elapsed() < BOUND, "{what}: not within {BOUND:?}");
    }

    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(BOUND, self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

fn policy_with(ip_family_policy: &str) -> String {
    format!("{HEADER}defaults: {{ipFamilyPolicy: {ip_family_policy}}}\n")
}

/// Points the symlink `link` at `target` in one step, as `ln -sfT` does.
fn repoint(link: &Path, target: &Path) {
    let tmp = link.with_extension("tmp");
    symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

/// Replaces the file at `path` in one step: the watcher never sees half of it.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Lets the watcher poll ~10 more times.
async fn a_few_polls() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_dangling_policy_symlink_is_logged_and_counted_once_and_the_last_good_policy_stays() {
    let logs = Logs::default();
    let _guard = logs.install();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("v1.yaml");
    let path = dir.path().join("policy.yaml");
    let v1 = policy_with("SingleStack");
    std::fs::write(&target, &v1).unwrap();
    symlink(&target, &path).unwrap();
    let watched = Watched::start(&path, &v1);

    std::fs::remove_file(&target).unwrap();
    watched
        .wait_for("the failure counted", |w| w.reloads("failure") == 1)
        .await;
    a_few_polls().await;
    assert_eq!(watched.reloads("failure"), 1, "once, not at every poll");
    assert_eq!(watched.reloads("success"), 0);
    assert_eq!(**watched.policy.load(), Policy::from_yaml(&v1).unwrap());
    let p = path.display();
    assert_eq!(
        logs.lines(" WARN"),
        [format!(
            " WARN policy reload failed; keeping the last good policy path={p} \
             error=cannot read policy file {p} (--policy): No such file or directory (os error 2)"
        )]
    );

    // A different failure is news: a file too large (here, pointing at /dev/zero).
    repoint(&path, Path::new("/dev/zero"));
    watched
        .wait_for("the second failure counted", |w| w.reloads("failure") == 2)
        .await;
    a_few_polls().await;
    assert_eq!(watched.reloads("failure"), 2);
    assert_eq!(
        logs.lines(" WARN")[1],
        format!(
            " WARN policy reload failed; keeping the last good policy path={p} \
             error=policy file {p} (--policy) is larger than 1 MiB"
        )
    );

    // Readable and valid again: in force, counted, and the recovery said at info.
    let v2 = policy_with("PreferDualStack");
    std::fs::write(&target, &v2).unwrap();
    repoint(&path, &target);
    watched
        .wait_for("the recovery counted", |w| w.reloads("success") == 1)
        .await;
    assert_eq!(**watched.policy.load(), Policy::from_yaml(&v2).unwrap());
    assert_eq!(
        logs.lines(" INFO"),
        [format!(
            " INFO policy file is valid again; policy reloaded path={p} rules=0"
        )]
    );
    assert_eq!(watched.reloads("failure"), 2);
    watched.stop().await;
}

/// Lays out version `version` of a ConfigMap volume holding `policy.yaml`, as the kubelet does,
/// and points `..data` at it with an atomic rename.
fn configmap_version(root: &Path, version: &str, text: &str) {
    std::fs::create_dir(root.join(version)).unwrap();
    std::fs::write(root.join(version).join("policy.yaml"), text).unwrap();
    symlink(version, root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
}

#[tokio::test]
async fn a_configmap_data_swap_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().to_owned();
    let v1 = policy_with("SingleStack");
    configmap_version(&root, "..2024_01", &v1);
    symlink("..data/policy.yaml", root.join("policy.yaml")).unwrap();
    let watched = Watched::start(&root.join("policy.yaml"), &v1);

    let v2 = policy_with("PreferDualStack");
    configmap_version(&root, "..2024_02", &v2);
    std::fs::remove_dir_all(root.join("..2024_01")).unwrap();
    watched
        .wait_for("the new version in force", |w| w.reloads("success") == 1)
        .await;
    a_few_polls().await;
    assert_eq!(**watched.policy.load(), Policy::from_yaml(&v2).unwrap());
    assert_eq!(watched.reloads("success"), 1);
    assert_eq!(watched.reloads("failure"), 0);
    watched.stop().await;
}

#[tokio::test]
async fn a_policy_reloaded_as_deeply_nested_is_refused_quickly_and_the_last_good_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    let v1 = policy_with("SingleStack");
    std::fs::write(&path, &v1).unwrap();
    let watched = Watched::start(&path, &v1);
    let deep = format!(
        "{HEADER}rules: {}{}\n",
        "{a: ".repeat(DEEP),
        "}".repeat(DEEP)
    );
    replace(&path, &deep);
    // Within the bound: 66 s of libyaml's time before the limit, on an async worker.
    watched
        .wait_for("the failure counted", |w| w.reloads("failure") == 1)
        .await;
    a_few_polls().await;
    assert_eq!(watched.reloads("failure"), 1);
    assert_eq!(**watched.policy.load(), Policy::from_yaml(&v1).unwrap());
    watched.stop().await;
}

// === lint warnings ===

/// `serve` refuses a policy with a lint error (as any invalid policy) and logs its warnings: at
/// load, then at each reload the warnings the policy it replaces did not have, once each (an
/// edit that only moves a warning to another line does not repeat it).
#[tokio::test]
async fn lint_warnings_are_logged_at_load_and_new_ones_once_at_reload() {
    let logs = Logs::default();
    let _guard = logs.install();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    let p = path.display();
    let v1 = format!("{HEADER}rules: [{{name: a, match: {{types: []}}}}]\n");
    std::fs::write(&path, &v1).unwrap();
    // At load, as `serve` does it.
    let (policy, bytes) = load_policy(&path).unwrap();
    log_warnings(
        &path,
        &lint_warnings(&bytes, &policy, None),
        &mut HashSet::new(),
    );
    let empty_types = |line: usize| {
        format!(
            " WARN policy lint warning path={p} line={line} field=rules[0].match.types \
             warning=is empty: the rule never applies"
        )
    };
    assert_eq!(logs.lines(" WARN"), [empty_types(3)]);

    let watched = Watched::start(&path, &v1);
    // The same warning two lines down, and a new one: only the new one is logged.
    let v2 = format!(
        "{HEADER}# moved\n\nrules:\n  - {{name: a, match: {{types: []}}}}\n  \
         - {{name: b, exclude: {{namespaces: []}}}}\n"
    );
    replace(&path, &v2);
    watched
        .wait_for("the reload counted", |w| w.reloads("success") == 1)
        .await;
    a_few_polls().await;
    assert_eq!(
        logs.lines(" WARN"),
        [
            empty_types(3),
            format!(
                " WARN policy lint warning path={p} line=7 field=rules[1].exclude.namespaces \
                 warning=is empty: the exclude never applies"
            ),
        ]
    );
    // A policy with a lint error is refused like any invalid one; the last good stays.
    replace(
        &path,
        &format!("{HEADER}rules: [{{name: a, exclude: {{}}}}]\n"),
    );
    watched
        .wait_for("the failure counted", |w| w.reloads("failure") == 1)
        .await;
    assert_eq!(**watched.policy.load(), Policy::from_yaml(&v2).unwrap());
    assert_eq!(
        logs.lines(" WARN")[2],
        format!(
            " WARN policy reload failed; keeping the last good policy path={p} error=invalid \
             policy file {p} (--policy): rules[0].exclude (line 3): must give at least one \
             condition: an empty exclude would exclude every Service"
        )
    );
    watched.stop().await;
}
