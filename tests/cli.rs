//! The binary's subcommands as users and scripts call them: exit codes, output, messages.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_dualstack-webhook");
const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/policy.yaml");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn run(args: &[&str], stdin: &[u8]) -> Output {
    run_command(Command::new(BIN).args(args), stdin)
}

fn run_command(command: &mut Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child may exit before reading (e.g. on a bad flag): a broken pipe is not the test's failure.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

/// Asserts that the command failed with exit code 2, wrote nothing on stdout, and wrote exactly
/// `dualstack-webhook: {message}` as one line on stderr.
#[track_caller]
fn assert_fails_with(out: &Output, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr, format!("dualstack-webhook: {message}\n"));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}

/// A policy file with `body` in a new temporary directory (kept alive by the returned guard).
fn policy_file(body: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, body).unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

const HEADER: &str = "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n";

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: prod-a, labels: {exposure: public}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod-a}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 443}]
---
apiVersion: v1
kind: Service
metadata: {name: legacy-lb, namespace: prod-a}
spec:
  type: LoadBalancer
  ipFamilyPolicy: SingleStack
  selector: {app: old}
  ports: [{port: 80}]
---
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Service
    metadata: {name: db, namespace: apps}
    spec: {type: ExternalName, externalName: db.example.com}
  - apiVersion: v1
    kind: Service
    metadata: {name: pinned, namespace: apps}
    spec: {clusterIP: 10.200.0.1, selector: {app: p}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ignored}
"#;

#[test]
fn check_judges_manifests_as_the_cluster_would() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("services.yaml"), MANIFESTS).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run(
        &[
            "check",
            "--policy",
            POLICY,
            "--service-cidrs",
            "10.96.0.0/16,fd00:10:96::/112",
            "--output",
            "json",
            d,
        ],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a Deny violation fails the check"
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    // Mutated to the rule's RequireDualStack, allocated IPv6 first: compliant.
    assert_eq!(row("web")["verdict"], "ok");
    assert_eq!(row("web")["ipFamilyPolicy"], "RequireDualStack");
    assert_eq!(
        row("web")["ipFamilies"],
        serde_json::json!(["IPv6", "IPv4"])
    );
    assert_eq!(row("legacy-lb")["verdict"], "deny");
    assert!(
        row("legacy-lb")["message"]
            .as_str()
            .unwrap()
            .contains("public-lb-dual-stack")
    );
    assert_eq!(row("db")["verdict"], "ok");
    assert_eq!(row("pinned")["verdict"], "refused");
    assert_eq!(
        rows.as_array().unwrap().len(),
        4,
        "Deployments and non-manifests are skipped"
    );

    let table = run(
        &[
            "check",
            "--policy",
            POLICY,
            "--service-cidrs",
            "10.96.0.0/16,fd00:10:96::/112",
            d,
        ],
        b"",
    );
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.starts_with("FILE"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("legacy-lb") && l.contains("deny")),
        "{text}"
    );
}

#[test]
fn check_passes_compliant_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ok.yaml");
    std::fs::write(&file, "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: apps}\nspec: {selector: {a: b}, ports: [{port: 80}]}\n").unwrap();
    let out = run(&["check", "--policy", POLICY, file.to_str().unwrap()], b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn review_answers_on_stdout_and_refuses_non_reviews_with_one_line() {
    let request = std::fs::read(format!(
        "{FIXTURES}/dual-v4/validate/create-deny-single-stack-lb.json"
    ))
    .unwrap();
    let out = run(
        &["review", "--policy", POLICY, "--endpoint", "validate"],
        &request,
    );
    assert_eq!(out.status.code(), Some(0), "a denial is still an answer");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["response"]["allowed"], false);

    let out = run(&["review", "--policy", POLICY], b"{not json");
    assert_fails_with(
        &out,
        "malformed AdmissionReview: key must be a string at line 1 column 2",
    );
}

#[test]
fn a_missing_policy_file_is_named_with_its_flag() {
    let out = run(&["review", "--policy", "/nonexistent.yaml"], b"{}");
    assert_fails_with(
        &out,
        "cannot read policy file /nonexistent.yaml (--policy): No such file or directory (os error 2)",
    );
}

#[test]
fn a_broken_policy_names_the_field_and_line() {
    let (_dir, policy) = policy_file(&format!("{HEADER}rules:\n  - name: a\n    acton: Deny\n"));
    let message = format!(
        "invalid policy file {policy} (--policy): rules[0]: unknown field `acton`, expected one of \
         `name`, `match`, `exclude`, `require`, `defaults`, `upgradeExisting`, `action` at line 5 column 5"
    );
    let out = run(&["review", "--policy", &policy], b"{}");
    assert_fails_with(&out, &message);
    // serve refuses to start on it, before binding anything.
    let out = run(
        &[
            "serve",
            "--policy",
            &policy,
            "--tls-cert",
            "x",
            "--tls-key",
            "y",
            "--listen",
            "127.0.0.1:1",
        ],
        b"",
    );
    assert_fails_with(&out, &message);
}

#[test]
fn a_policy_of_valid_yaml_but_invalid_meaning_names_the_field() {
    let (_dir, policy) = policy_file(&format!("{HEADER}rules:\n  - name: a\n  - name: a\n"));
    let out = run(&["review", "--policy", &policy], b"{}");
    assert_fails_with(
        &out,
        &format!(
            "invalid policy file {policy} (--policy): rules[1].name (line 5): \"a\" is used by an earlier rule"
        ),
    );
}

/// An empty policy file is the empty policy: allowed, no patch, on both endpoints, where the test
/// policy would patch the first request and deny the second.
#[test]
fn an_empty_policy_file_changes_nothing_and_denies_nothing() {
    for body in ["", "# dual-stack policy: none yet\n"] {
        let (_dir, policy) = policy_file(body);
        for (endpoint, fixture) in [
            ("mutate", "mutate/create-clusterip-defaults.json"),
            ("validate", "validate/create-deny-single-stack-lb.json"),
        ] {
            let request = std::fs::read(format!("{FIXTURES}/dual-v4/{fixture}")).unwrap();
            let out = run(
                &["review", "--policy", &policy, "--endpoint", endpoint],
                &request,
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stderr),
                "",
                "{body:?} {fixture}"
            );
            assert_eq!(out.status.code(), Some(0));
            let request: serde_json::Value = serde_json::from_slice(&request).unwrap();
            let mut answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            // kube's AdmissionResponse writes an empty `status` on an allowed answer.
            let response = answer["response"].as_object_mut().unwrap();
            if response.get("status") == Some(&serde_json::json!({})) {
                response.remove("status");
            }
            assert_eq!(
                answer["response"],
                serde_json::json!({"uid": request["request"]["uid"], "allowed": true}),
                "{body:?} {fixture}"
            );
        }
    }
}

#[test]
fn check_names_a_missing_path() {
    let out = run(&["check", "--policy", POLICY, "/nonexistent"], b"");
    assert_fails_with(
        &out,
        "nothing to check: /nonexistent: No such file or directory (os error 2)",
    );
}

/// Runs the binary with a kubeconfig that does not exist, no `~/.kube/config` and outside a pod.
fn without_a_cluster(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    run_command(
        Command::new(BIN)
            .args(args)
            .env("KUBECONFIG", "/nonexistent")
            .env("HOME", home.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT"),
        b"",
    )
}

/// Without a kubeconfig (and outside a pod) `audit` says so in one short line, not kube's nested
/// account of both attempts.
#[test]
fn audit_without_a_cluster_says_what_to_set() {
    let out = without_a_cluster(&["audit", "--policy", POLICY]);
    assert_fails_with(
        &out,
        "no cluster to audit: cannot read kubeconfig /nonexistent: No such file or directory \
         (os error 2); set KUBECONFIG or run in a pod",
    );
}

#[test]
fn certs_writes_a_ca_and_a_san_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "certs",
            "--out",
            dir.path().to_str().unwrap(),
            "--dns",
            "webhook.example",
            "--ip",
            "10.0.0.1",
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
}

#[test]
fn serve_refuses_missing_certificates_with_the_path() {
    let out = run(
        &[
            "serve",
            "--policy",
            POLICY,
            "--tls-cert",
            "/nonexistent/tls.crt",
            "--tls-key",
            "/nonexistent/tls.key",
            "--listen",
            "127.0.0.1:1",
        ],
        b"",
    );
    assert_fails_with(
        &out,
        "cannot read certificate /nonexistent/tls.crt (--tls-cert): No such file or directory (os error 2)",
    );
}

#[test]
fn certs_name_the_namespace_the_webhook_runs_in() {
    use dualstack_webhook::registration::trust::verify_serving;
    use rustls::pki_types::UnixTime;

    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "certs",
            "--out",
            dir.path().to_str().unwrap(),
            "--namespace",
            "platform-system",
        ],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let cert = std::fs::read(dir.path().join("tls.crt")).unwrap();
    for host in [
        "dualstack-webhook.platform-system.svc",
        "dualstack-webhook.platform-system.svc.cluster.local",
        "localhost",
    ] {
        assert_eq!(
            verify_serving(&ca, &cert, host, UnixTime::now()),
            Ok(()),
            "{host}"
        );
    }
    let other = verify_serving(
        &ca,
        &cert,
        "dualstack-webhook.dualstack-webhook.svc",
        UnixTime::now(),
    );
    assert!(other.is_err(), "{other:?}");
}

#[test]
fn webhook_configurations_prints_what_serve_registers() {
    use base64::Engine as _;

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let out = run(
        &[
            "webhook-configurations",
            "--namespace",
            "platform-system",
            "--ca-bundle",
            ca.to_str().unwrap(),
            "--failure-policy",
            "Ignore",
        ],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<serde_json::Value> = text
        .split("---\n")
        .map(|doc| serde_yaml_ng::from_str(doc).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration"
        ]
    );
    let bundle = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&ca).unwrap());
    for (doc, path) in docs.iter().zip(["/mutate", "/validate"]) {
        let hook = &doc["webhooks"][0];
        assert_eq!(doc["metadata"]["name"], "dualstack-webhook");
        assert_eq!(
            hook["clientConfig"],
            serde_json::json!({
                "service": {"namespace": "platform-system", "name": "dualstack-webhook", "path": path, "port": 443},
                "caBundle": bundle
            })
        );
        assert_eq!(hook["failurePolicy"], "Ignore");
        assert_eq!(
            hook["namespaceSelector"]["matchExpressions"][0]["values"],
            serde_json::json!(["kube-system", "platform-system"])
        );
    }
}

#[test]
fn webhook_configurations_with_a_policy_carry_its_match_conditions() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\nexemptNamespaces: [legacy]\n",
    )
    .unwrap();
    let args = ["webhook-configurations", "--url", "https://127.0.0.1:8443"];
    let with = run(
        &[&args[..], &["--policy", policy.to_str().unwrap()]].concat(),
        b"",
    );
    assert!(with.status.success(), "{with:?}");
    let docs = |out: &std::process::Output| -> Vec<serde_json::Value> {
        String::from_utf8(out.stdout.clone())
            .unwrap()
            .split("---\n")
            .map(|doc| serde_yaml_ng::from_str(doc).unwrap())
            .collect()
    };
    // A policy with nothing to do: neither webhook is ever called, and the exemption is named.
    let exempt = serde_json::json!({"name": "namespace-not-exempt", "expression": "!(request.namespace == 'legacy')"});
    let with = docs(&with);
    for (doc, own) in with.iter().zip(["may-patch", "may-find-violation"]) {
        assert_eq!(
            doc["webhooks"][0]["matchConditions"],
            serde_json::json!([exempt, {"name": own, "expression": "false"}])
        );
    }
    // Then the in-process defaults and their binding: with no defaults to set, a policy that
    // does nothing.
    let kinds: Vec<(&str, &str)> = with
        .iter()
        .map(|d| {
            let name = d["metadata"]["name"].as_str().unwrap();
            (d["kind"].as_str().unwrap(), name)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("MutatingWebhookConfiguration", "dualstack-webhook"),
            ("ValidatingWebhookConfiguration", "dualstack-webhook"),
            ("MutatingAdmissionPolicy", "dualstack-webhook-defaults"),
            (
                "MutatingAdmissionPolicyBinding",
                "dualstack-webhook-defaults"
            ),
        ]
    );
    assert_eq!(
        with[2]["spec"]["matchConditions"],
        serde_json::json!([{"name": "no-defaults", "expression": "false"}])
    );
    assert_eq!(
        with[3]["spec"]["paramRef"],
        serde_json::json!({"name": "kubernetes", "parameterNotFoundAction": "Allow"})
    );
    // Without --policy: no conditions, every Service write is sent, and no in-process defaults.
    let without = run(&args, b"");
    assert_eq!(docs(&without).len(), 2);
    for doc in docs(&without) {
        assert_eq!(doc["webhooks"][0].get("matchConditions"), None, "{doc}");
    }
    let missing = dir.path().join("missing.yaml");
    let out = run(
        &[&args[..], &["--policy", missing.to_str().unwrap()]].concat(),
        b"",
    );
    assert_fails_with(
        &out,
        &format!(
            "cannot read policy file {} (--policy): No such file or directory (os error 2)",
            missing.display()
        ),
    );
}

#[test]
fn registering_without_a_namespace_says_what_to_set() {
    let out = run_command(
        Command::new(BIN)
            .args(["webhook-configurations"])
            .env_remove("POD_NAMESPACE"),
        b"",
    );
    assert_fails_with(
        &out,
        "--namespace (or POD_NAMESPACE) is needed: the namespace the webhook and its Service run in",
    );
}

const SHIPPED_POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/policy.yaml");
/// `export` of the shipped policy, for the e2e harness's ranges.
const EXPORTED_EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/admission-policies/policy.yaml"
);
const EXAMPLE_RANGES: &str = "10.96.0.0/16,fd00:10:96::/112";

#[test]
fn export_without_gaps_prints_the_policies_and_exits_0() {
    let (_dir, policy) = policy_file(&format!(
        "{HEADER}defaults: {{ipFamilyPolicy: PreferDualStack}}\n\
         rules:\n  - {{name: v6, require: {{primaryFamily: IPv6}}, action: Warn}}\n"
    ));
    let out = run(
        &[
            "export",
            "--policy",
            &policy,
            "--service-cidrs",
            EXAMPLE_RANGES,
        ],
        b"",
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let kinds: Vec<&str> = stdout.lines().filter(|l| l.starts_with("kind: ")).collect();
    assert_eq!(
        kinds,
        [
            "kind: MutatingAdmissionPolicy",
            "kind: MutatingAdmissionPolicyBinding",
            "kind: ValidatingAdmissionPolicy",
            "kind: ValidatingAdmissionPolicyBinding",
        ]
    );
}

#[test]
fn export_with_gaps_names_each_and_prints_nothing_unless_partial_is_allowed() {
    let (_dir, policy) = policy_file(&format!(
        "{HEADER}rules:\n  - {{name: up, upgradeExisting: true}}\n  \
         - {{name: v6, require: {{primaryFamily: IPv6}}}}\n"
    ));
    let gaps = "dualstack-webhook: export: rule \"up\": upgradeExisting is not exported: adding the \
                secondary family on UPDATE, with its warning, is the webhook's alone\n";
    let unknown = "dualstack-webhook: export: rule \"v6\": the cluster's service ranges are not \
                   given (--service-cidrs): its defaults and requirements act as on a cluster of \
                   unknown ranges, as the webhook does only when it does not watch them\n";
    let refused = "dualstack-webhook: export: not printed: the admission policies would do less \
                   than the webhook (--allow-partial prints them anyway)\n";

    let out = run(&["export", "--policy", &policy], b"");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("{unknown}{gaps}{refused}")
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");

    let args = [
        "export",
        "--policy",
        &policy,
        "--service-cidrs",
        EXAMPLE_RANGES,
    ];
    let out = run(&[&args[..], &["--allow-partial"]].concat(), b"");
    assert_eq!(String::from_utf8_lossy(&out.stderr), gaps);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("kind: ValidatingAdmissionPolicy\n"));
}

#[test]
fn export_names_a_missing_policy_file_with_its_flag() {
    let out = run(&["export", "--policy", "/nonexistent.yaml"], b"");
    assert_fails_with(
        &out,
        "cannot read policy file /nonexistent.yaml (--policy): No such file or directory (os error 2)",
    );
}

/// `migrate` reads a cluster as `audit` does, and says so in one line when there is none.
#[test]
fn migrate_without_a_cluster_says_what_to_set() {
    for extra in [&[][..], &["--apply"], &["--rollback", "--apply"]] {
        let out = without_a_cluster(&[&["migrate", "--policy", POLICY], extra].concat());
        assert_fails_with(
            &out,
            "no cluster to migrate: cannot read kubeconfig /nonexistent: No such file or \
             directory (os error 2); set KUBECONFIG or run in a pod",
        );
    }
}

/// `migrate`'s argument errors, as clap words them (exit 2, nothing on stdout).
#[test]
fn migrate_refuses_bad_arguments() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["migrate", "--policy", POLICY, "--batch", "0"],
            "error: invalid value '0' for '--batch <BATCH>': 0 is not in 1..=4294967295\n\n\
             For more information, try '--help'.\n",
        ),
        (
            &["migrate", "--policy", POLICY, "--pause", "5 minutes"],
            "error: invalid value '5 minutes' for '--pause <PAUSE>': \"5 minutes\" is not a \
             duration (e.g. 500ms, 30s, 2m)\n\nFor more information, try '--help'.\n",
        ),
        (
            &["migrate", "--policy", POLICY, "--output", "sarif"],
            "error: invalid value 'sarif' for '--output <OUTPUT>'\n  \
             [possible values: table, json]\n\nFor more information, try '--help'.\n",
        ),
        (
            &["migrate"],
            "error: the following required arguments were not provided:\n  \
             --policy <POLICY>\n\nUsage: dualstack-webhook migrate --policy <POLICY>\n\n\
             For more information, try '--help'.\n",
        ),
    ];
    for (args, message) in cases {
        let out = run(args, b"");
        assert_eq!(String::from_utf8_lossy(&out.stderr), message, "{args:?}");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    }
}

/// A missing policy file is named before any cluster is read.
#[test]
fn migrate_names_a_missing_policy_file() {
    let out = run(&["migrate", "--policy", "/nonexistent.yaml"], b"");
    assert_fails_with(
        &out,
        "cannot read policy file /nonexistent.yaml (--policy): No such file or directory (os error 2)",
    );
}

/// The committed example is `export` of the shipped policy, its gaps in the header: regenerate it
/// with `BLESS=1 cargo test --test cli export_of_the_shipped_policy`.
#[test]
fn export_of_the_shipped_policy_is_the_committed_example() {
    let out = run(
        &[
            "export",
            "--policy",
            SHIPPED_POLICY,
            "--service-cidrs",
            EXAMPLE_RANGES,
            "--allow-partial",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(0));
    let mut want = format!(
        "# `dualstack-webhook export --policy manifests/policy.yaml --service-cidrs {EXAMPLE_RANGES} \
         --allow-partial`:\n# manifests/policy.yaml as in-process admission policies (Kubernetes \
         1.36+), for a cluster of these\n# service ranges. Kept current by tests/cli.rs. What they \
         do not do as the webhook does:\n"
    );
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        want.push_str(&format!(
            "#   {}\n",
            line.trim_start_matches("dualstack-webhook: export: ")
        ));
    }
    want.push_str(&String::from_utf8_lossy(&out.stdout));
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(std::path::Path::new(EXPORTED_EXAMPLE).parent().unwrap()).unwrap();
        std::fs::write(EXPORTED_EXAMPLE, &want).unwrap();
    }
    let committed = std::fs::read_to_string(EXPORTED_EXAMPLE).unwrap_or_default();
    assert!(
        committed == want,
        "{EXPORTED_EXAMPLE} is not the export of manifests/policy.yaml: regenerate it with \
         BLESS=1 cargo test --test cli export_of_the_shipped_policy"
    );
}
