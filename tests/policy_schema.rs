//! The policy's JSON Schema: `docs/policy.schema.json` is what the types generate (`UPDATE_SCHEMA=1
//! cargo test --test policy_schema` rewrites it), every example policy in the repository is valid
//! against it, and it refuses unknown fields and unknown enum values, as the webhook does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use dualstack_webhook::domain::policy::{Policy, json_schema};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SCHEMA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/policy.schema.json");

fn generated() -> String {
    serde_json::to_string_pretty(&json_schema()).unwrap() + "\n"
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&json_schema()).unwrap()
}

/// The errors of the schema on a YAML document, one line each (`/rules/0/action: ...`).
fn schema_errors(yaml: &str) -> Vec<String> {
    let instance: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
    validator()
        .iter_errors(&instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let generated = generated();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(SCHEMA_FILE, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(SCHEMA_FILE).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/policy.schema.json is not the schema the policy types generate; rewrite it with \
         `UPDATE_SCHEMA=1 cargo test --test policy_schema`"
    );
}

/// The example policies of the repository: the shipped example, the fixtures' and the e2e ones.
fn example_policies() -> Vec<std::path::PathBuf> {
    let mut paths = vec![
        format!("{ROOT}/manifests/policy.yaml").into(),
        format!("{ROOT}/tests/fixtures/policy.yaml").into(),
    ];
    let mut e2e: Vec<_> = std::fs::read_dir(format!("{ROOT}/tests/e2e"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("policy") && name.ends_with(".yaml")
        })
        .collect();
    e2e.sort();
    assert!(!e2e.is_empty(), "tests/e2e/policy*.yaml");
    paths.extend(e2e);
    paths
}

#[test]
fn every_example_policy_is_valid_against_the_schema() {
    for path in example_policies() {
        let text = std::fs::read_to_string(&path).unwrap();
        // The webhook reads it too: the schema is not stricter or looser on these.
        Policy::from_yaml(&text).unwrap();
        assert_eq!(
            schema_errors(&text),
            Vec::<String>::new(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn the_schema_refuses_what_the_webhook_refuses() {
    const HEADER: &str = "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n";
    let cases = [
        (
            "rules: [{name: a, acton: Deny}]\n",
            "/rules/0: Additional properties are not allowed ('acton' was unexpected)",
        ),
        (
            "rules: [{name: a, action: Block}]\n",
            "/rules/0/action: \"Block\" is not valid under any of the schemas listed in the 'oneOf' keyword",
        ),
        (
            "enforcement: Enforce\n",
            "/enforcement: \"Enforce\" is not valid under any of the schemas listed in the \
             'oneOf' keyword",
        ),
        (
            "defaults: {ipFamilyPolicy: DualStack}\n",
            "/defaults/ipFamilyPolicy: \"DualStack\" is not valid under any of the schemas listed \
             in the 'oneOf' keyword",
        ),
        (
            "rules: [{name: a, exclude: {namspaces: [x]}}]\n",
            "/rules/0/exclude: Additional properties are not allowed ('namspaces' was unexpected)",
        ),
        (
            "exemptNamespaces: [\"legacy-[abc\"]\n",
            "/exemptNamespaces/0: \"legacy-[abc\" does not match \"^[a-z0-9*?-]+$\"",
        ),
    ];
    for (body, error) in cases {
        let text = format!("{HEADER}{body}");
        assert!(Policy::from_yaml(&text).is_err(), "{body}");
        assert_eq!(schema_errors(&text), [error], "{body}");
    }
    assert_eq!(
        schema_errors("apiVersion: v1\nkind: DualStackPolicy\n"),
        ["/apiVersion: \"dualstack-webhook/v1alpha1\" was expected"]
    );
    assert_eq!(
        schema_errors("kind: DualStackPolicy\n"),
        [": \"apiVersion\" is a required property"]
    );
}
