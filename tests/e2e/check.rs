//! `dualstack-webhook check` against the truth: the verdicts it gives offline for a corpus of
//! Service manifests, compared with what a real kube-apiserver (and the webhook registered in it,
//! `failurePolicy: Fail`) does when each Service is created.
//!
//! Each test starts a harness and a webhook of its own (so no other test's Services or pinned
//! addresses interfere), both on the same service ranges, the webhook with `--watch-cluster` so
//! that it reads the namespaces' labels as `check --namespaces-from-cluster` does. The policy is
//! `tests/e2e/check/policy.yaml`: the fixtures' policy and the main e2e policy side by side.
//!
//! The corpus ([`corpus`]): the CREATE objects of the AdmissionReview fixtures of every cluster
//! shape (`tests/fixtures/*/{mutate,validate}`), deduplicated, renamed and with their pinned
//! addresses moved apart, plus hand-written Services: every `ipFamilyPolicy` × `ipFamilies` kind,
//! including the ones the API server refuses (two families under SingleStack, duplicates, unknown
//! values); ClusterIP, headless with and without selector, NodePort, LoadBalancer, ExternalName
//! (also with fields it may not have); pinned addresses (one family, both in either order, outside
//! the range, mismatched, not an address, the network address; two deliberate duplicate pairs,
//! the first holder of one in an exempt namespace);
//! and Services in each rule's namespaces: exempt (by name and by glob), matched by name glob, by
//! `types`, by `objectSelector`, by a `namespaceSelector` on labels (namespaces labelled in the
//! manifest, labelled only in the cluster, unlabelled) and on the name label alone.
//!
//! What is asserted, per Service, with `--service-cidrs` (the harness's) and
//! `--namespaces-from-cluster`: `deny` exactly when the webhook denied the create (and its message
//! is the denial's), `refused` exactly when the API server refused it itself, `warn` exactly when
//! the create came back with a warning (check's message among them), never `unknown`; for a
//! created Service the stored `type`, `ipFamilyPolicy` and `ipFamilies` equal the row's, and
//! `clusterIPs` have the same count and families, pinned ones equal. Without `--service-cidrs`
//! (with and without `--namespaces-from-cluster`): never `deny`/`refused` for a Service the API
//! server accepted, a definite verdict agrees with what the API server did, and every `unknown`
//! row says what to give (`give --service-cidrs`, or the namespace labels where they are
//! unknown). Every mismatch is listed in a table before the test fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

use crate::support::{self, Harness, Render, Watching, Webhook};

/// Dual-stack, IPv4 primary (the main harness's shape).
const DUAL_V4: &str = "10.96.0.0/16,fd00:10:96::/112";
/// Dual-stack, IPv6 primary.
const DUAL_V6: &str = "fd00:10:96::/112,10.96.0.0/16";
/// IPv4 only.
const V4_ONLY: &str = "10.96.0.0/16";

/// The message of every `unknown` row that depends on the service ranges.
const GIVE_CIDRS: &str = "give --service-cidrs";
/// ... and of every one that depends on namespace labels.
const GIVE_LABELS: &str = "--namespace-labels or --namespaces-from-cluster";

#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn check_tells_the_truth_dual_stack_ipv4_primary() {
    check_against_the_api_server("check-dual-v4", DUAL_V4).await;
}

#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn check_tells_the_truth_ipv4_only() {
    check_against_the_api_server("check-v4-only", V4_ONLY).await;
}

#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn check_tells_the_truth_dual_stack_ipv6_primary() {
    check_against_the_api_server("check-dual-v6", DUAL_V6).await;
}

/// `tests/e2e/check/policy.yaml`.
fn policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/check/policy.yaml")
}

// === the test ===

async fn check_against_the_api_server(tag: &str, cidrs: &str) {
    let corpus = corpus();
    assert_pins_apart(&corpus);
    let dir = support::workdir().join(tag);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("corpus.yaml");
    std::fs::write(&manifest, manifest_text(&corpus)).unwrap();

    let harness = Harness::start(&format!("{tag}-apiserver"), cidrs);
    let kubeconfig = harness.kubeconfig();
    let client = support::client_for(&kubeconfig).await;
    // The namespaces first, with their labels: the webhook lists them when it starts, and
    // `check --namespaces-from-cluster` reads them.
    for (ns, labels) in corpus_namespaces(&corpus) {
        support::labelled_namespace(&client, &ns, labels).await;
    }
    let policy = policy();
    let hook = Webhook::watching(
        &format!("{tag}-webhook"),
        &Watching {
            kubeconfig: &kubeconfig,
            cidrs: Some(cidrs),
            policy: &policy,
            wait_ready: true,
        },
    );
    let (ca, url) = (hook.ca_pem(), hook.base_url());
    let render = Render {
        name: "dualstack-webhook",
        base_url: &url,
        ca_pem: &ca,
        failure_policy: Some("Fail"),
        only_namespace: None,
        policy: Some(hook.policy()),
    };
    support::apply_webhooks(&client, &render).await;
    support::wait_mutating(&client, "apps", "PreferDualStack").await;

    // 1. check, offline but for the namespaces' labels: with the ranges, without, and without
    //    the cluster's labels too.
    let with_cidrs = run_check(&manifest, Some(cidrs), Some(&kubeconfig));
    let without_cidrs = run_check(&manifest, None, Some(&kubeconfig));
    let nothing_known = run_check(&manifest, None, None);

    // 2. the truth: create each Service, in the manifest's order.
    let mut truth = Vec::new();
    for case in &corpus {
        let svc: Service = serde_json::from_value(case.object.clone())
            .unwrap_or_else(|e| panic!("{}: {e}", case.key()));
        let (status, warnings, body) =
            support::create_with_warnings(&client, &case.namespace, &svc).await;
        truth.push(Outcome::of(status, warnings, &body));
    }

    // 3. compare.
    let mut mismatches: Vec<Mismatch> = Vec::new();
    let mut table = Vec::new();
    for (case, api) in corpus.iter().zip(&truth) {
        let row = with_cidrs.row(case);
        table.push([
            case.key(),
            case.origin.clone(),
            row.map_or_else(|| "(no row)".to_owned(), Row::summary),
            api.summary(),
        ]);
        let Some(row) = row else {
            mismatches.push(Mismatch::new(
                case,
                "with cidrs",
                "no row for this Service",
                None,
                api,
            ));
            continue;
        };
        for why in judge_with_cidrs(case, row, api) {
            mismatches.push(Mismatch::new(case, "with cidrs", &why, Some(row), api));
        }
        for (run, give) in [
            (&without_cidrs, "no cidrs"),
            (&nothing_known, "no cidrs, no cluster labels"),
        ] {
            let Some(row) = run.row(case) else {
                mismatches.push(Mismatch::new(
                    case,
                    give,
                    "no row for this Service",
                    None,
                    api,
                ));
                continue;
            };
            for why in judge_without_cidrs(row, api, run.labels_known(case)) {
                mismatches.push(Mismatch::new(case, give, &why, Some(row), api));
            }
        }
    }
    for run in [&with_cidrs, &without_cidrs, &nothing_known] {
        mismatches.extend(run.problems(&corpus));
    }

    print_table(
        &format!(
            "check vs the API server on {cidrs} ({} Services)",
            corpus.len()
        ),
        &[
            "SERVICE",
            "FROM",
            "CHECK (with --service-cidrs)",
            "API SERVER",
        ],
        &table,
    );
    let coverage = coverage(&with_cidrs, &without_cidrs, &nothing_known, &truth);
    if !mismatches.is_empty() || !coverage.is_empty() {
        let rows: Vec<[String; 5]> = mismatches
            .iter()
            .map(|m| {
                [
                    m.service.clone(),
                    m.run.to_owned(),
                    m.why.clone(),
                    m.check.clone(),
                    m.api.clone(),
                ]
            })
            .collect();
        print_table(
            &format!("{} mismatches on {cidrs}", mismatches.len()),
            &["SERVICE", "RUN", "WHY", "CHECK", "API SERVER"],
            &rows,
        );
        for missing in &coverage {
            println!("corpus does not cover: {missing}");
        }
        panic!(
            "check disagrees with the API server on {cidrs}: {} mismatches, {} coverage gaps \
             (tables above; manifest and logs in {})",
            mismatches.len(),
            coverage.len(),
            dir.display()
        );
    }
    drop(hook);
    drop(harness);
}

/// What is wrong with `row` (check with the ranges and the labels) against `api`.
fn judge_with_cidrs(case: &Case, row: &Row, api: &Outcome) -> Vec<String> {
    let mut why = Vec::new();
    let v = row.verdict.as_str();
    match v {
        "unknown" | "error" => why.push(format!("{v} although the ranges and labels are known")),
        _ => {}
    }
    match api {
        Outcome::Denied { message } => {
            if v != "deny" {
                why.push("the webhook denied it, check does not say deny".into());
            } else if !message.contains(&row.message) {
                why.push("check's denial message is not the webhook's".into());
            }
        }
        Outcome::Refused { .. } => {
            if v != "refused" {
                why.push("the API server refused it, check does not say refused".into());
            }
        }
        Outcome::Failed { .. } => why.push("the create failed for another reason".into()),
        Outcome::Created { stored, warnings } => {
            if matches!(v, "deny" | "refused") {
                why.push(format!("created, check says {v}"));
            }
            if (v == "warn") == warnings.is_empty() {
                why.push(if warnings.is_empty() {
                    "check says warn, the create had no warning".into()
                } else {
                    format!("the create warned, check says {v}")
                });
            } else if v == "warn" && !warnings.iter().any(|w| w == &row.message) {
                why.push("check's warning is not among the create's".into());
            }
            why.extend(stored_differences(case, row, stored));
        }
    }
    why
}

/// Where the stored Service differs from what check showed.
fn stored_differences(case: &Case, row: &Row, stored: &Value) -> Vec<String> {
    let mut why = Vec::new();
    let spec = &stored["spec"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default()
    };
    if text(&spec["type"]) != row.type_ {
        why.push(format!(
            "type: stored {}, check {}",
            spec["type"], row.type_
        ));
    }
    if text(&spec["ipFamilyPolicy"]) != row.ip_family_policy {
        why.push(format!(
            "ipFamilyPolicy: stored {:?}, check {:?}",
            text(&spec["ipFamilyPolicy"]),
            row.ip_family_policy
        ));
    }
    if list(&spec["ipFamilies"]) != row.ip_families {
        why.push(format!(
            "ipFamilies: stored {:?}, check {:?}",
            list(&spec["ipFamilies"]),
            row.ip_families
        ));
    }
    let stored_ips = list(&spec["clusterIPs"]);
    let families = |ips: &[String]| ips.iter().map(|ip| family(ip)).collect::<Vec<_>>();
    if families(&stored_ips) != families(&row.cluster_ips) {
        why.push(format!(
            "clusterIPs: stored {stored_ips:?}, check {:?}",
            row.cluster_ips
        ));
    } else {
        for (i, pinned) in case.pinned().iter().enumerate() {
            if stored_ips.get(i) != row.cluster_ips.get(i) {
                why.push(format!(
                    "pinned clusterIPs[{i}] {pinned}: stored {:?}, check {:?}",
                    stored_ips.get(i),
                    row.cluster_ips.get(i)
                ));
            }
        }
    }
    why
}

/// What is wrong with `row` (check without the ranges) against `api`. `labels_known`: whether
/// that run knew the namespace's labels.
fn judge_without_cidrs(row: &Row, api: &Outcome, labels_known: bool) -> Vec<String> {
    let mut why = Vec::new();
    let v = row.verdict.as_str();
    let failing = matches!(v, "deny" | "refused");
    match (v, api) {
        ("error", _) => why.push("error".into()),
        ("unknown", _) => {
            if !row.message.contains("give ") {
                why.push("unknown, but the message does not say what to give".into());
            }
            let cidrs = row.message.contains(GIVE_CIDRS);
            let labels = row.message.contains(GIVE_LABELS);
            if labels_known && !cidrs {
                why.push(format!(
                    "unknown with the labels known, message lacks {GIVE_CIDRS:?}"
                ));
            }
            if labels_known && labels {
                why.push("asks for the labels although they are known".into());
            }
            if !cidrs && !labels {
                why.push("unknown, but names neither the ranges nor the labels".into());
            }
        }
        (_, Outcome::Created { .. }) if failing => {
            why.push(format!("created, check says {v} without the ranges"));
        }
        (_, Outcome::Created { warnings, .. }) if (v == "warn") == warnings.is_empty() => {
            let had = if warnings.is_empty() {
                "had no"
            } else {
                "had a"
            };
            why.push(format!(
                "definite verdict {v}, but the create {had} warning"
            ));
        }
        (_, Outcome::Denied { .. }) if v != "deny" => {
            why.push(format!("definite verdict {v}, but the webhook denied it"));
        }
        (_, Outcome::Refused { .. }) if v != "refused" => {
            why.push(format!(
                "definite verdict {v}, but the API server refused it"
            ));
        }
        _ => {}
    }
    why
}

/// What the corpus fails to exercise (so a passing run proves something).
fn coverage(
    with_cidrs: &Run,
    without_cidrs: &Run,
    nothing_known: &Run,
    truth: &[Outcome],
) -> Vec<String> {
    let verdicts =
        |run: &Run| -> BTreeSet<String> { run.rows.iter().map(|r| r.verdict.clone()).collect() };
    let wanted = ["ok", "exempt", "warn", "audit", "deny", "refused"];
    let mut gaps: Vec<String> = Vec::new();
    let seen = verdicts(with_cidrs);
    for v in wanted {
        if !seen.contains(v) {
            gaps.push(format!("verdict {v} with --service-cidrs"));
        }
    }
    if !verdicts(without_cidrs).contains("unknown") {
        gaps.push("an unknown verdict without --service-cidrs".into());
    }
    if !nothing_known
        .rows
        .iter()
        .any(|r| r.verdict == "unknown" && r.message.contains(GIVE_LABELS))
    {
        gaps.push("an unknown verdict that depends on namespace labels".into());
    }
    let kinds: BTreeSet<&str> = truth.iter().map(Outcome::kind).collect();
    for k in ["created", "warned", "denied", "refused"] {
        if !kinds.contains(k) {
            gaps.push(format!("a create the API server {k}"));
        }
    }
    gaps
}

// === check's rows ===

/// One row of `check --output json`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    namespace: String,
    name: String,
    #[serde(rename = "type")]
    type_: String,
    ip_family_policy: String,
    ip_families: Vec<String>,
    #[serde(rename = "clusterIPs")]
    cluster_ips: Vec<String>,
    verdict: String,
    rules: Vec<String>,
    message: String,
}

impl Row {
    fn summary(&self) -> String {
        let mut s = format!(
            "{} {} [{}] [{}]",
            self.verdict,
            or_dash(&self.ip_family_policy),
            self.ip_families.join(","),
            self.cluster_ips.join(",")
        );
        if !self.rules.is_empty() {
            s.push_str(&format!(" rules={}", self.rules.join(",")));
        }
        if !self.message.is_empty() {
            s.push_str(&format!(": {}", self.message));
        }
        s
    }
}

/// One run of `check`.
struct Run {
    what: String,
    exit: Option<i32>,
    rows: Vec<Row>,
    /// Namespaces whose labels this run knew (from the cluster, or Namespace objects in the
    /// manifest); `None`: every namespace's.
    labels_known: Option<BTreeSet<String>>,
}

impl Run {
    fn row(&self, case: &Case) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.namespace == case.namespace && r.name == case.name)
    }

    fn labels_known(&self, case: &Case) -> bool {
        self.labels_known
            .as_ref()
            .is_none_or(|known| known.contains(&case.namespace))
    }

    /// Rows without a Service, Services with two rows, an exit code that does not follow the rows.
    fn problems(&self, corpus: &[Case]) -> Vec<Mismatch> {
        let mut out = Vec::new();
        let mut seen: HashMap<(String, String), usize> = HashMap::new();
        for r in &self.rows {
            *seen
                .entry((r.namespace.clone(), r.name.clone()))
                .or_default() += 1;
        }
        for ((ns, name), n) in &seen {
            let known = corpus.iter().any(|c| &c.namespace == ns && &c.name == name);
            if n > &1 || !known {
                out.push(Mismatch {
                    service: format!("{ns}/{name}"),
                    run: "check",
                    why: format!("{n} rows in `{}`, {known} in the corpus", self.what),
                    check: String::new(),
                    api: String::new(),
                });
            }
        }
        let fails = self
            .rows
            .iter()
            .any(|r| matches!(r.verdict.as_str(), "deny" | "refused" | "error"));
        if self.exit != Some(i32::from(fails)) {
            out.push(Mismatch {
                service: "(exit code)".into(),
                run: "check",
                why: format!(
                    "`{}` exited {:?}, failing rows: {fails}",
                    self.what, self.exit
                ),
                check: String::new(),
                api: String::new(),
            });
        }
        out
    }
}

/// Runs `check --policy P --output json [--service-cidrs C] [--namespaces-from-cluster] FILE`,
/// with `KUBECONFIG` only when `kubeconfig` is given.
fn run_check(manifest: &Path, cidrs: Option<&str>, kubeconfig: Option<&Path>) -> Run {
    let mut cmd = Command::new(support::env("E2E_WEBHOOK_BIN"));
    cmd.arg("check")
        .arg("--policy")
        .arg(policy())
        .args(["--output", "json"]);
    cmd.env_remove("KUBECONFIG")
        .env_remove("DUALSTACK_WEBHOOK_SERVICE_CIDRS");
    let mut what = String::from("check");
    if let Some(cidrs) = cidrs {
        cmd.args(["--service-cidrs", cidrs]);
        what.push_str(&format!(" --service-cidrs {cidrs}"));
    }
    if let Some(kubeconfig) = kubeconfig {
        cmd.arg("--namespaces-from-cluster")
            .env("KUBECONFIG", kubeconfig);
        what.push_str(" --namespaces-from-cluster");
    }
    let out = cmd.arg(manifest).output().expect("run check");
    // Kept beside the manifest for a failure's post-mortem.
    let saved = match (cidrs, kubeconfig) {
        (Some(_), _) => "check-with-cidrs.json",
        (None, Some(_)) => "check-without-cidrs.json",
        (None, None) => "check-nothing-known.json",
    };
    let _ = std::fs::write(manifest.with_file_name(saved), &out.stdout);
    let rows: Vec<Row> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`{what}`: {e}; exit {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let labels_known = kubeconfig.is_none().then(|| {
        manifest_namespaces()
            .into_iter()
            .map(|(ns, _)| ns.to_owned())
            .collect()
    });
    Run {
        what,
        exit: out.status.code(),
        rows,
        labels_known,
    }
}

// === the API server's answers ===

/// What the API server did with one create.
enum Outcome {
    /// 201: the stored object and the `Warning` headers' texts.
    Created {
        stored: Value,
        warnings: Vec<String>,
    },
    /// 403 from the validating webhook.
    Denied { message: String },
    /// Refused by the API server itself (422 Invalid).
    Refused { code: u16, message: String },
    /// Anything else (a webhook call that failed, ...): never expected.
    Failed { code: u16, message: String },
}

impl Outcome {
    fn of(status: u16, warnings: Vec<String>, body: &Value) -> Self {
        let message = body["message"].as_str().unwrap_or_default().to_owned();
        match status {
            201 => Outcome::Created {
                stored: body.clone(),
                warnings: warnings.iter().map(|w| warning_text(w)).collect(),
            },
            403 if message
                .contains("admission webhook \"validate.dualstack-webhook.io\" denied") =>
            {
                Outcome::Denied { message }
            }
            422 => Outcome::Refused {
                code: status,
                message,
            },
            code => Outcome::Failed { code, message },
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Outcome::Created { warnings, .. } if warnings.is_empty() => "created",
            Outcome::Created { .. } => "warned",
            Outcome::Denied { .. } => "denied",
            Outcome::Refused { .. } => "refused",
            Outcome::Failed { .. } => "failed",
        }
    }

    fn summary(&self) -> String {
        match self {
            Outcome::Created { stored, warnings } => {
                let spec = &stored["spec"];
                let list = |v: &Value| {
                    v.as_array()
                        .map(|a| {
                            a.iter()
                                .map(|s| s.as_str().unwrap_or_default())
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default()
                };
                let mut s = format!(
                    "created {} [{}] [{}]",
                    or_dash(spec["ipFamilyPolicy"].as_str().unwrap_or_default()),
                    list(&spec["ipFamilies"]),
                    list(&spec["clusterIPs"])
                );
                for w in warnings {
                    s.push_str(&format!("; warning: {w}"));
                }
                s
            }
            Outcome::Denied { message } => format!("denied: {message}"),
            Outcome::Refused { code, message } => format!("refused {code}: {message}"),
            Outcome::Failed { code, message } => format!("FAILED {code}: {message}"),
        }
    }
}

/// The text of a `Warning` header value (`299 - "text"`, quotes escaped).
fn warning_text(header: &str) -> String {
    let Some(quoted) = header
        .split_once(" - ")
        .map(|(_, rest)| rest.trim())
        .and_then(|q| q.strip_prefix('"'))
        .and_then(|q| q.strip_suffix('"'))
    else {
        return header.to_owned();
    };
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// `IPv4`, `IPv6`, `None` (headless) or the text itself.
fn family(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => "IPv4".into(),
        Ok(IpAddr::V6(_)) => "IPv6".into(),
        Err(_) => ip.to_owned(),
    }
}

// === mismatches ===

struct Mismatch {
    service: String,
    run: &'static str,
    why: String,
    check: String,
    api: String,
}

impl Mismatch {
    fn new(case: &Case, run: &'static str, why: &str, row: Option<&Row>, api: &Outcome) -> Self {
        Mismatch {
            service: format!("{} ({})", case.key(), case.origin),
            run,
            why: why.to_owned(),
            check: row.map(Row::summary).unwrap_or_default(),
            api: api.summary(),
        }
    }
}

/// Prints aligned columns (long cells cut at 160 characters; the manifest has the rest).
fn print_table<const N: usize>(title: &str, header: &[&str; N], rows: &[[String; N]]) {
    let cut = |s: &str| -> String {
        let one_line = s.replace('\n', " ");
        if one_line.chars().count() > 160 {
            one_line.chars().take(157).collect::<String>() + "..."
        } else {
            one_line
        }
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    println!("\n== {title}");
    let line = |cols: Vec<&str>| {
        let padded: Vec<String> = cols
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

// === the corpus ===

/// One Service of the corpus.
struct Case {
    /// Its namespace (`default` when the manifest names none).
    namespace: String,
    name: String,
    /// Where it comes from: a fixture's path, or `hand`.
    origin: String,
    /// The manifest.
    object: Value,
}

impl Case {
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The addresses the manifest pins (`clusterIPs`, else `clusterIP`; not `None` or empty).
    fn pinned(&self) -> Vec<String> {
        pinned(&self.object["spec"])
    }
}

fn pinned(spec: &Value) -> Vec<String> {
    let ips: Vec<String> = match spec["clusterIPs"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => spec["clusterIP"]
            .as_str()
            .map(str::to_owned)
            .into_iter()
            .collect(),
    };
    ips.into_iter()
        .filter(|ip| !ip.is_empty() && ip != "None")
        .collect()
}

/// Namespaces whose labels the rules read, labelled in the manifest (a Namespace object) and in
/// the cluster alike.
fn manifest_namespaces() -> Vec<(&'static str, Value)> {
    vec![
        (
            "e2e-nssel-public",
            json!({"exposure": "public", "team": "blue"}),
        ),
        ("e2e-nssel-internal", json!({"exposure": "internal"})),
    ]
}

/// Namespaces labelled only in the cluster: only `--namespaces-from-cluster` knows them.
/// (`e2e-nssel-plain` has no labels, and no Namespace object in the manifest either.)
fn cluster_only_namespaces() -> Vec<(&'static str, Value)> {
    vec![("e2e-nssel-cluster", json!({"exposure": "public"}))]
}

/// Every namespace of the corpus with its labels, the cluster's own left out.
fn corpus_namespaces(corpus: &[Case]) -> BTreeMap<String, Value> {
    let labelled: HashMap<&str, Value> = manifest_namespaces()
        .into_iter()
        .chain(cluster_only_namespaces())
        .collect();
    corpus
        .iter()
        .map(|c| c.namespace.as_str())
        .filter(|ns| !matches!(*ns, "default" | "kube-system"))
        .map(|ns| {
            let labels = labelled.get(ns).cloned().unwrap_or_else(|| json!({}));
            (ns.to_owned(), labels)
        })
        .collect()
}

/// The Namespace objects, then every Service, as one multi-document YAML file.
fn manifest_text(corpus: &[Case]) -> String {
    let mut docs: Vec<Value> = manifest_namespaces()
        .into_iter()
        .map(|(name, labels)| {
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": name, "labels": labels}})
        })
        .collect();
    docs.extend(corpus.iter().map(|c| c.object.clone()));
    let mut out =
        String::from("# Written by tests/e2e/check.rs: the corpus of `check` vs the API server.\n");
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&doc).unwrap());
    }
    out
}

/// No two Services pin the same address, except the deliberate duplicates (`*dup*`).
fn assert_pins_apart(corpus: &[Case]) {
    let mut by_ip: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    for case in corpus {
        for ip in case.pinned() {
            if let Ok(addr) = ip.parse::<IpAddr>() {
                by_ip.entry(addr).or_default().push(case.key());
            }
        }
    }
    for (ip, users) in by_ip {
        assert!(
            users.len() == 1 || users.iter().all(|u| u.contains("dup")),
            "{ip} is pinned by {users:?}"
        );
    }
}

/// The fixtures' CREATE objects, then the hand-written Services.
fn corpus() -> Vec<Case> {
    let mut corpus = fixture_services();
    corpus.extend(hand_written());
    let mut keys = BTreeSet::new();
    for case in &corpus {
        assert!(
            keys.insert(case.key()),
            "{} twice in the corpus",
            case.key()
        );
    }
    corpus
}

/// The objects of `tests/fixtures/*/{mutate,validate}/create-*.json` that are v1 Services,
/// deduplicated (same namespace and spec), renamed `fxNN-<fixture>`, without the fields a create
/// may not carry (`uid`, `resourceVersion`, `managedFields`, `generateName`), and with the
/// addresses they pin in the service ranges moved to ones no other Service of the corpus pins
/// (10.96.0.150+, fd00:10:96::a0+: the low 256 addresses of each range, which the API server's
/// allocator keeps for pinned addresses while others are free).
fn fixture_services() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files = Vec::new();
    for shape in std::fs::read_dir(&root).unwrap() {
        let shape = shape.unwrap().path();
        for endpoint in ["mutate", "validate"] {
            let Ok(entries) = std::fs::read_dir(shape.join(endpoint)) else {
                continue;
            };
            for f in entries {
                let f = f.unwrap().path();
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                if name.starts_with("create-")
                    && name.ends_with(".json")
                    && !name.ends_with(".expected.json")
                {
                    files.push(f);
                }
            }
        }
    }
    files.sort();
    let (v4_range, v6_range): (ipnet::IpNet, ipnet::IpNet) = (
        support::V4_RANGE.parse().unwrap(),
        support::V6_RANGE.parse().unwrap(),
    );
    let (mut next_v4, mut next_v6) = (150_u8, 0xa0_u16);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for file in files {
        let review: Value = serde_json::from_slice(&std::fs::read(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let request = &review["request"];
        let mut object = request["object"].clone();
        if request["operation"] != "CREATE"
            || object["apiVersion"] != "v1"
            || object["kind"] != "Service"
        {
            continue;
        }
        let namespace = request["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        if !seen.insert((namespace.clone(), object["spec"].to_string())) {
            continue;
        }
        let stem = file
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("create-")
            .to_owned();
        let mut name = format!("fx{:02}-{stem}", out.len());
        name.truncate(63);
        let name = name.trim_end_matches('-').to_owned();
        let meta = object["metadata"].as_object_mut().unwrap();
        for field in [
            "uid",
            "resourceVersion",
            "managedFields",
            "generateName",
            "creationTimestamp",
        ] {
            meta.remove(field);
        }
        meta.insert("name".into(), json!(name));
        meta.insert("namespace".into(), json!(namespace));
        // Pinned addresses in the ranges, moved apart (the same address keeps one replacement
        // within an object: clusterIP and clusterIPs[0] stay equal).
        let mut moved: HashMap<String, String> = HashMap::new();
        for ip in pinned(&object["spec"])
            .into_iter()
            .chain(object["spec"]["clusterIP"].as_str().map(str::to_owned))
        {
            let Ok(addr) = ip.parse::<IpAddr>() else {
                continue;
            };
            if moved.contains_key(&ip) {
                continue;
            }
            let new = if v4_range.contains(&addr) {
                next_v4 += 1;
                format!("10.96.0.{}", next_v4 - 1)
            } else if v6_range.contains(&addr) {
                next_v6 += 1;
                format!("fd00:10:96::{:x}", next_v6 - 1)
            } else {
                continue; // outside the ranges: refused wherever, left as it is
            };
            moved.insert(ip, new);
        }
        let spec = object["spec"].as_object_mut().unwrap();
        if let Some(ip) = spec.get_mut("clusterIP")
            && let Some(new) = ip.as_str().and_then(|s| moved.get(s))
        {
            *ip = json!(new);
        }
        if let Some(Value::Array(ips)) = spec.get_mut("clusterIPs") {
            for ip in ips {
                if let Some(new) = ip.as_str().and_then(|s| moved.get(s)) {
                    *ip = json!(new);
                }
            }
        }
        let origin = file.strip_prefix(&root).unwrap().display().to_string();
        out.push(Case {
            namespace,
            name,
            origin,
            object,
        });
    }
    assert!(out.len() >= 20, "only {} fixture Services", out.len());
    out
}

/// Services written for this test: `(namespace, name, spec over a selector and one port)`; a
/// `null` in the spec removes the field. Pinned addresses are 10.96.0.50–99 and
/// fd00:10:96::50–99, each used once but for the `dup` pair.
fn hand_written() -> Vec<Case> {
    // ExternalName, no selector (`null` removes the builder's), with `more` fields.
    let ext = |more: Value| {
        let mut spec =
            json!({"type": "ExternalName", "externalName": "db.example.com", "selector": null});
        spec.as_object_mut()
            .unwrap()
            .extend(more.as_object().unwrap().clone());
        spec
    };
    let table: Vec<(&str, &str, Value)> = vec![
        // --- apps: the policy's defaults only (PreferDualStack, [IPv6, IPv4]) ---
        ("apps", "plain", json!({})),
        ("apps", "empty-cluster-ip", json!({"clusterIP": ""})),
        ("apps", "single", json!({"ipFamilyPolicy": "SingleStack"})),
        (
            "apps",
            "single-v4",
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}),
        ),
        (
            "apps",
            "single-v6",
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]}),
        ),
        (
            "apps",
            "prefer",
            json!({"ipFamilyPolicy": "PreferDualStack"}),
        ),
        (
            "apps",
            "prefer-v4",
            json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4"]}),
        ),
        (
            "apps",
            "prefer-v6",
            json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6"]}),
        ),
        (
            "apps",
            "prefer-v4-v6",
            json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]}),
        ),
        (
            "apps",
            "require",
            json!({"ipFamilyPolicy": "RequireDualStack"}),
        ),
        (
            "apps",
            "require-v4",
            json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4"]}),
        ),
        (
            "apps",
            "require-v6-v4",
            json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}),
        ),
        ("apps", "families-v4", json!({"ipFamilies": ["IPv4"]})),
        ("apps", "families-v6", json!({"ipFamilies": ["IPv6"]})),
        (
            "apps",
            "families-v4-v6",
            json!({"ipFamilies": ["IPv4", "IPv6"]}),
        ),
        (
            "apps",
            "families-v6-v4",
            json!({"ipFamilies": ["IPv6", "IPv4"]}),
        ),
        // Refused by the API server wherever it runs.
        (
            "apps",
            "single-two-families",
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4", "IPv6"]}),
        ),
        (
            "apps",
            "families-repeated",
            json!({"ipFamilies": ["IPv4", "IPv4"]}),
        ),
        (
            "apps",
            "families-three",
            json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6", "IPv4"]}),
        ),
        ("apps", "family-unknown", json!({"ipFamilies": ["IPv5"]})),
        (
            "apps",
            "policy-unknown",
            json!({"ipFamilyPolicy": "BothPlease"}),
        ),
        // Types.
        ("apps", "headless", json!({"clusterIP": "None"})),
        (
            "apps",
            "headless-single-v4",
            json!({"clusterIP": "None", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}),
        ),
        (
            "apps",
            "headless-require",
            json!({"clusterIP": "None", "ipFamilyPolicy": "RequireDualStack"}),
        ),
        (
            "apps",
            "headless-no-selector",
            json!({"clusterIP": "None", "selector": null}),
        ),
        (
            "apps",
            "headless-no-selector-single",
            json!({"clusterIP": "None", "selector": null, "ipFamilyPolicy": "SingleStack"}),
        ),
        (
            "apps",
            "headless-clusterips",
            json!({"clusterIP": "None", "clusterIPs": ["None"]}),
        ),
        ("apps", "nodeport", json!({"type": "NodePort"})),
        (
            "apps",
            "nodeport-single-v4",
            json!({"type": "NodePort", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}),
        ),
        ("apps", "loadbalancer", json!({"type": "LoadBalancer"})),
        (
            "apps",
            "loadbalancer-v4-v6",
            json!({"type": "LoadBalancer", "ipFamilies": ["IPv4", "IPv6"]}),
        ),
        ("apps", "externalname", ext(json!({}))),
        (
            "apps",
            "externalname-policy",
            ext(json!({"ipFamilyPolicy": "SingleStack"})),
        ),
        (
            "apps",
            "externalname-families",
            ext(json!({"ipFamilies": ["IPv4"]})),
        ),
        (
            "apps",
            "externalname-cluster-ip",
            ext(json!({"clusterIP": "10.96.0.98"})),
        ),
        // Pinned addresses.
        ("apps", "pin-v4", json!({"clusterIP": "10.96.0.50"})),
        ("apps", "pin-v6", json!({"clusterIP": "fd00:10:96::50"})),
        (
            "apps",
            "pin-v4-single",
            json!({"clusterIP": "10.96.0.51", "ipFamilyPolicy": "SingleStack"}),
        ),
        (
            "apps",
            "pin-both-v6-first",
            json!({"clusterIP": "fd00:10:96::52", "clusterIPs": ["fd00:10:96::52", "10.96.0.52"]}),
        ),
        (
            "apps",
            "pin-both-v4-first",
            json!({"clusterIP": "10.96.0.53", "clusterIPs": ["10.96.0.53", "fd00:10:96::53"]}),
        ),
        (
            "apps",
            "pin-both-require",
            json!({"clusterIP": "10.96.0.54", "clusterIPs": ["10.96.0.54", "fd00:10:96::54"], "ipFamilyPolicy": "RequireDualStack"}),
        ),
        (
            "apps",
            "pin-v4-require",
            json!({"clusterIP": "10.96.0.55", "ipFamilyPolicy": "RequireDualStack"}),
        ),
        (
            "apps",
            "pin-v6-families-v6-v4",
            json!({"clusterIP": "fd00:10:96::56", "ipFamilies": ["IPv6", "IPv4"]}),
        ),
        (
            "apps",
            "pin-v4-families-v6-first",
            json!({"clusterIP": "10.96.0.57", "ipFamilies": ["IPv6", "IPv4"]}),
        ),
        ("apps", "pin-outside", json!({"clusterIP": "10.200.0.5"})),
        (
            "apps",
            "pin-outside-secondary",
            json!({"clusterIP": "10.96.0.58", "clusterIPs": ["10.96.0.58", "fd00:99::58"]}),
        ),
        (
            "apps",
            "pin-mismatch",
            json!({"clusterIP": "10.96.0.59", "clusterIPs": ["10.96.0.60"]}),
        ),
        (
            "apps",
            "pin-two-same-family",
            json!({"clusterIP": "10.96.0.61", "clusterIPs": ["10.96.0.61", "10.96.0.62"]}),
        ),
        (
            "apps",
            "pin-single-two-ips",
            json!({"ipFamilyPolicy": "SingleStack", "clusterIP": "10.96.0.63", "clusterIPs": ["10.96.0.63", "fd00:10:96::63"]}),
        ),
        (
            "apps",
            "pin-cluster-ips-only",
            json!({"clusterIPs": ["10.96.0.64"]}),
        ),
        ("apps", "pin-not-an-ip", json!({"clusterIP": "not-an-ip"})),
        (
            "apps",
            "pin-network-address",
            json!({"clusterIP": "10.96.0.0"}),
        ),
        (
            "apps",
            "pin-headless-and-ip",
            json!({"clusterIP": "None", "clusterIPs": ["None", "10.96.0.65"]}),
        ),
        // The deliberate duplicate: the second is refused ("provided IP is already allocated").
        ("apps", "pin-dup-first", json!({"clusterIP": "10.96.0.66"})),
        ("apps", "pin-dup-second", json!({"clusterIP": "10.96.0.66"})),
        // A second pair: the first holder is exempt (the webhook ignores it, the API server
        // does not), the second is refused all the same.
        (
            "e2e-exempt",
            "pin-dup-exempt",
            json!({"clusterIP": "10.96.0.74"}),
        ),
        (
            "apps",
            "pin-dup-after-exempt",
            json!({"clusterIP": "10.96.0.74"}),
        ),
        // No namespace in the manifest: `check --namespace` (default) and the API's default.
        ("", "no-namespace", json!({})),
        // --- e2e-deny: deny-single-stack (dualStack: true, Deny) ---
        ("e2e-deny", "plain", json!({})),
        (
            "e2e-deny",
            "single",
            json!({"ipFamilyPolicy": "SingleStack"}),
        ),
        (
            "e2e-deny",
            "prefer-v4",
            json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4"]}),
        ),
        (
            "e2e-deny",
            "pinned-single",
            json!({"clusterIP": "10.96.0.67", "ipFamilyPolicy": "SingleStack"}),
        ),
        (
            "e2e-deny",
            "pinned-prefer",
            json!({"clusterIP": "10.96.0.68"}),
        ),
        (
            "e2e-deny",
            "headless-single",
            json!({"clusterIP": "None", "ipFamilyPolicy": "SingleStack"}),
        ),
        ("e2e-deny", "externalname", ext(json!({}))),
        (
            "e2e-deny",
            "single-two-families",
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4", "IPv6"]}),
        ),
        // --- e2e-warn: warn-ipv4-primary (primaryFamily: IPv6, Warn) ---
        ("e2e-warn", "plain", json!({})),
        (
            "e2e-warn",
            "v4-first",
            json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]}),
        ),
        (
            "e2e-warn",
            "single-v4",
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}),
        ),
        ("e2e-warn", "pinned-v4", json!({"clusterIP": "10.96.0.69"})),
        (
            "e2e-warn",
            "single-v6",
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]}),
        ),
        // --- e2e-warn-single: warn-not-single-stack (ipFamilyPolicies: [SingleStack], Warn) ---
        ("e2e-warn-single", "plain", json!({})),
        (
            "e2e-warn-single",
            "single",
            json!({"ipFamilyPolicy": "SingleStack"}),
        ),
        // --- e2e-audit: audit-single-stack (dualStack: true, Audit) ---
        ("e2e-audit", "plain", json!({})),
        (
            "e2e-audit",
            "single",
            json!({"ipFamilyPolicy": "SingleStack"}),
        ),
        // --- exempt: by name, and by the glob exempt-* ---
        ("e2e-exempt", "plain", json!({})),
        (
            "e2e-exempt",
            "require-v4",
            json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4"]}),
        ),
        ("e2e-exempt", "pinned", json!({"clusterIP": "10.96.0.70"})),
        (
            "e2e-exempt",
            "single-two-families",
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4", "IPv6"]}),
        ),
        ("exempt-team", "plain", json!({})),
        (
            "exempt-team",
            "single",
            json!({"ipFamilyPolicy": "SingleStack"}),
        ),
        // --- e2e-legacy: defaults SingleStack [IPv4], requires SingleStack (Deny) ---
        ("e2e-legacy", "plain", json!({})),
        (
            "e2e-legacy",
            "prefer",
            json!({"ipFamilyPolicy": "PreferDualStack"}),
        ),
        (
            "e2e-legacy",
            "require",
            json!({"ipFamilyPolicy": "RequireDualStack"}),
        ),
        (
            "e2e-legacy",
            "single-v6",
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]}),
        ),
        ("e2e-legacy", "families-v6", json!({"ipFamilies": ["IPv6"]})),
        (
            "e2e-legacy",
            "pinned-v6",
            json!({"clusterIP": "fd00:10:96::71"}),
        ),
        // --- legacy (fixtures' rule: SingleStack IPv4 primary, Audit) ---
        (
            "legacy",
            "prefer",
            json!({"ipFamilyPolicy": "PreferDualStack"}),
        ),
        // --- e2e-lb: LoadBalancers default to and must be RequireDualStack (Deny) ---
        ("e2e-lb", "loadbalancer", json!({"type": "LoadBalancer"})),
        (
            "e2e-lb",
            "loadbalancer-single",
            json!({"type": "LoadBalancer", "ipFamilyPolicy": "SingleStack"}),
        ),
        (
            "e2e-lb",
            "loadbalancer-prefer",
            json!({"type": "LoadBalancer", "ipFamilyPolicy": "PreferDualStack"}),
        ),
        (
            "e2e-lb",
            "loadbalancer-pinned",
            json!({"type": "LoadBalancer", "clusterIP": "10.96.0.72"}),
        ),
        (
            "e2e-lb",
            "clusterip-single",
            json!({"ipFamilyPolicy": "SingleStack"}),
        ),
        (
            "e2e-lb",
            "nodeport-single",
            json!({"type": "NodePort", "ipFamilyPolicy": "SingleStack"}),
        ),
        // --- prod-web: the fixtures' rules by glob (LoadBalancer dual, IPv6 primary warned) ---
        ("prod-web", "loadbalancer", json!({"type": "LoadBalancer"})),
        (
            "prod-web",
            "loadbalancer-single",
            json!({"type": "LoadBalancer", "ipFamilyPolicy": "SingleStack"}),
        ),
        (
            "prod-web",
            "v4-first",
            json!({"ipFamilies": ["IPv4", "IPv6"]}),
        ),
        (
            "prod-web",
            "nodeport-single-v6",
            json!({"type": "NodePort", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]}),
        ),
        ("prod-web", "externalname", ext(json!({}))),
        // --- upgrade: upgradeExisting acts on UPDATE only ---
        (
            "upgrade",
            "single-v4",
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}),
        ),
        // --- namespaceSelector on labels (e2e-nssel-*) ---
        // public (exposure=public, team=blue; a Namespace object in the manifest)
        ("e2e-nssel-public", "plain", json!({})),
        (
            "e2e-nssel-public",
            "require",
            json!({"ipFamilyPolicy": "RequireDualStack"}),
        ),
        (
            "e2e-nssel-public",
            "single-v6",
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]}),
        ),
        (
            "e2e-nssel-public",
            "require-v4-first",
            json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]}),
        ),
        // internal (exposure=internal; in the manifest)
        (
            "e2e-nssel-internal",
            "v4-first",
            json!({"ipFamilies": ["IPv4", "IPv6"]}),
        ),
        (
            "e2e-nssel-internal",
            "single-v6",
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]}),
        ),
        // plain (no labels; no Namespace object): NotIn [internal] matches
        ("e2e-nssel-plain", "plain", json!({})),
        (
            "e2e-nssel-plain",
            "v4-first",
            json!({"ipFamilies": ["IPv4", "IPv6"]}),
        ),
        (
            "e2e-nssel-plain",
            "single-v6",
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]}),
        ),
        // cluster (exposure=public in the cluster only)
        ("e2e-nssel-cluster", "plain", json!({})),
        (
            "e2e-nssel-cluster",
            "single-v6",
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]}),
        ),
        // --- namespaceSelector on the name label alone ---
        ("e2e-byname", "plain", json!({})),
        (
            "e2e-byname",
            "v4-first",
            json!({"ipFamilies": ["IPv4", "IPv6"]}),
        ),
        // --- objectSelector (tier=edge) ---
        (
            "e2e-obj",
            "edge-single",
            json!({"ipFamilyPolicy": "SingleStack"}),
        ),
        ("e2e-obj", "edge-plain", json!({})),
        (
            "e2e-obj",
            "core-single",
            json!({"ipFamilyPolicy": "SingleStack"}),
        ),
    ];
    table
        .into_iter()
        .map(|(ns, name, spec)| {
            let mut object = serde_json::to_value(support::service(name, spec)).unwrap();
            if !ns.is_empty() {
                object["metadata"]["namespace"] = json!(ns);
            }
            if ns == "e2e-obj" {
                let tier = name.split('-').next().unwrap();
                object["metadata"]["labels"]["tier"] = json!(tier);
            }
            Case {
                namespace: if ns.is_empty() { "default" } else { ns }.to_owned(),
                name: name.to_owned(),
                origin: "hand".to_owned(),
                object,
            }
        })
        .collect()
}
