//! `dualstack-webhook export` (issue 18): the policy as in-process admission policies does what
//! the webhook does, through the real API server.
//!
//! [`same_answers_from_the_webhook_and_the_exported_policies`]: for each policy of the table, the
//! corpus of the conditions test ([`conditions`]: every Service of `tests/fixtures/**` and the
//! e2e suite's request shapes, CREATE and UPDATE) is replayed twice, case by case: in the
//! namespaces `e2e-iso-cn-*`, sent to a webhook of the test's own serving the policy (watching
//! the harness: its ranges, namespace labels), and in `e2e-iso-ce-*`, bound to the policy's
//! export for the harness's ranges and sent to no webhook. The answers must be the same: status,
//! stored `ipFamilyPolicy`/`ipFamilies`/`clusterIPs` (and the rest of the stored view), the rules
//! a denial names, and the rules the warnings name (grandfathered or not). The messages
//! themselves differ by the API server's prefix ("admission webhook … denied the request" vs
//! "ValidatingAdmissionPolicy … denied request"), and audit annotations are the webhook's alone.
//! What the export names as a gap is not compared (the table says what, and why).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use kube::Client;
use serde_json::{Value, json};

use crate::conditions::{self, Arm, Case, Pool, Run, WITHOUT};
use crate::support::{self, OWN_WEBHOOK_LABEL};

const TEST: &str = "export";
/// The exported policies' arm: its namespaces are bound to them, and sent to no webhook.
const EXPORTED: Arm = Arm {
    tag: "ce",
    conditions: false,
};

/// A policy to compare, and what its export names as gaps, left out of the comparison.
struct Subject {
    /// The policy file, from the repository's root.
    policy: &'static str,
    /// Logical namespaces whose rules have a gap (`upgradeExisting`): their cases are not replayed.
    gap_namespaces: &'static [&'static str],
    /// The webhook's warnings of a gap (text they contain): not compared.
    gap_warnings: &'static [&'static str],
}

/// The repository's policies that fit the test's namespaces (`e2e-iso-c?-*`): the conditions
/// test's, which holds every rule kind. `manifests/policy.yaml` reads `prod-*` and `legacy`, which
/// the corpus has only under the arms' prefixes; its export is the committed example, checked by
/// tests/cli.rs.
const SUBJECTS: &[Subject] = &[Subject {
    policy: "tests/e2e/conditions/policy.yaml",
    // rule "upgrade-opt-in": upgradeExisting is not exported.
    gap_namespaces: &["upgrade"],
    // restoreDroppedFields: the warning of a type change that unfreezes PreferDualStack.
    gap_warnings: &["changing the type lets the API server add"],
}];

/// `export --policy POLICY --service-cidrs <the harness's> --allow-partial`: the documents, with
/// names of the test's own and bound only to the exported arm's namespaces; and the gaps.
fn exported(policy: &Path) -> (Vec<Value>, String) {
    let ranges = format!("{},{}", support::V4_RANGE, support::V6_RANGE);
    let out = Command::new(support::env("E2E_WEBHOOK_BIN"))
        .args(["export", "--policy"])
        .arg(policy)
        .args(["--service-cidrs", &ranges, "--allow-partial"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "export: {stderr}");
    let file = support::workdir().join("exported-policies.yaml");
    std::fs::write(&file, &out.stdout).unwrap();
    let mut docs = support::yaml_documents(&file);
    for doc in &mut docs {
        let name = format!("e2e-{TEST}-{}", doc["metadata"]["name"].as_str().unwrap());
        doc["metadata"]["name"] = json!(name);
        if doc["kind"].as_str().unwrap().ends_with("Binding") {
            let policy = format!("e2e-{TEST}-{}", doc["spec"]["policyName"].as_str().unwrap());
            doc["spec"]["policyName"] = json!(policy);
            doc["spec"]["matchResources"] = json!({"namespaceSelector": {
                "matchLabels": {OWN_WEBHOOK_LABEL: EXPORTED.label(TEST)}}});
        }
    }
    (docs, stderr)
}

/// `kubectl apply` or `delete` of `docs` (as one List).
fn kubectl(verb: &str, docs: &[Value]) {
    let file: PathBuf = support::workdir().join("exported-policies.json");
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    std::fs::write(&file, serde_json::to_vec(&list).unwrap()).unwrap();
    let out = Command::new(support::env("E2E_KUBECTL"))
        .args(["--kubeconfig", &support::env("E2E_KUBECONFIG"), verb, "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {verb}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until the API server runs the exported policies: the defaults and a denial.
async fn wait_active(client: &Client) {
    let ns = |name: &str| format!("e2e-iso-{}-{name}", EXPORTED.tag);
    support::wait_mutating(client, &ns("defaults"), "PreferDualStack").await;
    conditions::wait_denying(client, &ns("deny")).await;
    let warn = ns("warn");
    support::eventually("the exported validating policy warns", || async {
        let probe = support::service("probe", json!({"ipFamilies": ["IPv4"]}));
        let (status, warnings, _) = support::create_with_warnings(client, &warn, &probe).await;
        let req = kube::core::Request::new(format!("/api/v1/namespaces/{warn}/services"))
            .delete("probe", &Default::default())
            .unwrap();
        support::send_raw(client, req).await;
        (status == 201 && !warnings.is_empty()).then_some(())
    })
    .await;
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
fn differences(case: &Case, webhook: &Run, export: &Run, subject: &Subject) -> Vec<String> {
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
            |r: &conditions::Reply| format!("{:?}", rules_named(&r.warnings, subject.gap_warnings));
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

/// Every subject's corpus through the webhook and through its export: the same answers.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn same_answers_from_the_webhook_and_the_exported_policies() {
    let client = support::client().await;
    let mut summary = String::new();
    let mut mismatches = Vec::new();
    for subject in SUBJECTS {
        let (fixtures, _) = conditions::fixture_cases();
        let cases: Vec<Case> = fixtures
            .into_iter()
            .chain(conditions::suite_cases())
            .filter(|c| !subject.gap_namespaces.contains(&c.namespace.as_str()))
            .collect();
        // The namespaces first: the webhook lists their labels when it starts.
        conditions::namespaces(&client, TEST, &cases, &[WITHOUT, EXPORTED]).await;
        let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join(subject.policy);
        let hook = conditions::watching_webhook("export-webhook", &policy);
        conditions::register(&client, &hook, TEST, WITHOUT).await;
        support::wait_mutating(&client, "e2e-iso-cn-defaults", "PreferDualStack").await;
        let (docs, gaps) = exported(&policy);
        kubectl("apply", &docs);
        wait_active(&client).await;

        let mut pool = Pool::new();
        let (mut denied, mut warned) = (0, 0);
        for case in &cases {
            let webhook = conditions::replay(&client, &hook, WITHOUT, case, &mut pool).await;
            let export = conditions::replay(&client, &hook, EXPORTED, case, &mut pool).await;
            denied += webhook.replies.iter().filter(|r| r.status == 403).count();
            warned += webhook
                .replies
                .iter()
                .filter(|r| !r.warnings.is_empty())
                .count();
            let calls: u32 = export.replies.iter().map(|r| r.calls[0] + r.calls[1]).sum();
            assert_eq!(
                calls, 0,
                "the exported arm reached the webhook: {}",
                case.name
            );
            mismatches.extend(differences(case, &webhook, &export, subject));
        }
        kubectl("delete", &docs);
        support::delete_webhooks(&client, &WITHOUT.config(TEST)).await;
        let requests: usize = cases.iter().map(|c| c.steps.len()).sum();
        writeln!(
            summary,
            "export: {}: {} cases, {requests} requests in each arm; the webhook denied {denied}, \
             warned {warned}; gaps of the export (not compared):\n{gaps}",
            subject.policy,
            cases.len(),
        )
        .unwrap();
        assert!(denied > 0 && warned > 0, "{summary}");
    }
    conditions::report("export-summary.txt", &summary);
    assert!(
        mismatches.is_empty(),
        "{} differences between the webhook and the exported policies:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
