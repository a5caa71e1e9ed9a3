//! Every Kubernetes object in `manifests/` is accepted by the real API server (server-side
//! dry-run, `dryRun=All`). The directory is iterated, so files added later are covered without
//! touching this test; `policy.yaml` (not a Kubernetes object) and kustomization files are skipped.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{self, Render};

fn kubectl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(support::env("E2E_KUBECTL"))
        .args(["--kubeconfig", &support::env("E2E_KUBECONFIG")])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(support::manifests_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            (name.ends_with(".yaml") || name.ends_with(".yml"))
                && name != "policy.yaml"
                && !name.starts_with("kustomization.")
        })
        .collect();
    files.sort();
    files
}

/// Each file, with webhook configurations rendered as an installer would (URL on loopback,
/// caBundle filled), passes `kubectl apply --dry-run=server`, and nothing is stored.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn every_manifest_passes_server_side_dry_run() {
    let client = support::client().await;
    let ca =
        std::fs::read_to_string(format!("{}/ca.crt", support::env("E2E_WEBHOOK_CERTS"))).unwrap();
    let url = support::env("E2E_WEBHOOK_URL");
    let files = manifest_files();
    assert!(!files.is_empty(), "no manifests found");
    let dir = support::workdir().join("manifests-dry-run");
    std::fs::create_dir_all(&dir).unwrap();
    let mut checked = Vec::new();
    for file in files {
        let mut docs = support::yaml_documents(&file);
        for doc in &mut docs {
            // Objects of the webhook's own namespace need it to exist (no installer ran here).
            if let Some(ns) = doc["metadata"]["namespace"].as_str() {
                support::namespace(&client, ns).await;
            }
            // A distinct name, so "not stored" can be checked even where the driver registered the
            // same configurations.
            let name = format!(
                "{}-dry-run",
                doc["metadata"]["name"].as_str().unwrap_or_default()
            );
            support::render_one(
                doc,
                &Render {
                    name: &name,
                    base_url: &url,
                    ca_pem: &ca,
                    failure_policy: None,
                    only_namespace: None,
                },
            );
        }
        let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
        let rendered = dir.join(file.file_name().unwrap()).with_extension("json");
        std::fs::write(&rendered, serde_json::to_vec_pretty(&list).unwrap()).unwrap();
        let path = rendered.to_string_lossy();
        let (ok, stdout, stderr) =
            kubectl(&["apply", "--dry-run=server", "-o", "name", "-f", &path]);
        assert!(ok, "{}: {stderr}", file.display());
        assert_eq!(
            stdout.lines().count(),
            docs.len(),
            "{}: {stdout}",
            file.display()
        );
        for doc in &docs {
            let kind = doc["kind"].as_str().unwrap().to_lowercase();
            let name = doc["metadata"]["name"].as_str().unwrap();
            let mut get = vec![
                "get",
                kind.as_str(),
                name,
                "--ignore-not-found",
                "-o",
                "name",
            ];
            if let Some(ns) = doc["metadata"]["namespace"].as_str() {
                get.extend(["-n", ns]);
            }
            let (_, found, _) = kubectl(&get);
            assert!(found.trim().is_empty(), "dry-run stored {kind}/{name}");
            checked.push(format!("{kind}/{name}"));
        }
    }
    eprintln!("server-side dry-run accepted: {checked:?}");
}

/// `manifests/webhooks.yaml` exactly as shipped (service reference, empty caBundle) is valid too;
/// only the names change, so that the dry-run is a create and not a patch of the configurations
/// the driver registered (a strategic merge of `service` into their `url` would be invalid).
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn webhooks_manifest_as_shipped_passes_server_side_dry_run() {
    let mut docs = support::yaml_documents(&support::manifests_dir().join("webhooks.yaml"));
    for doc in &mut docs {
        doc["metadata"]["name"] = json!("dualstack-webhook-as-shipped");
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    let file = support::workdir().join("webhooks-as-shipped.json");
    std::fs::write(&file, serde_json::to_vec(&list).unwrap()).unwrap();
    let (ok, stdout, stderr) = kubectl(&[
        "apply",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        &file.to_string_lossy(),
    ]);
    assert!(ok, "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    let items = answer["items"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![answer.clone()]);
    assert_eq!(items.len(), 2, "{stdout}");
    for item in items {
        let hook = &item["webhooks"][0];
        assert_eq!(hook["clientConfig"]["service"]["port"], 443, "{item}");
        assert_eq!(hook["failurePolicy"], "Fail");
        assert_eq!(hook["timeoutSeconds"], 5);
        assert_eq!(hook["sideEffects"], "None");
    }
}
