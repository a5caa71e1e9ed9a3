//! Every fixture of `tests/fixtures/` through `admission::review` in-process (the same fixtures go over
//! curl and through the `review` command in `tests/fixtures.sh`). `UPDATE_FIXTURES=1 cargo test --test
//! fixtures` rewrites the expected answers, to be read in the diff before committing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use std::path::{Path, PathBuf};

use base64::Engine as _;
use dualstack_webhook::admission;
use dualstack_webhook::admission::Endpoint;
use dualstack_webhook::cluster::{Cluster, ServiceCidrs};
use dualstack_webhook::domain::policy::Policy;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn cluster(name: &str) -> Cluster {
    let args = std::fs::read_to_string(fixtures().join(format!("{name}.args"))).unwrap();
    let cidrs = args.lines().nth(1).map(|c| ServiceCidrs::parse(c).unwrap());
    Cluster::with_cidrs(cidrs)
}

/// The answer with the patch decoded, as the expected files hold it.
fn normalise(body: &[u8]) -> Value {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    if let Some(p) = v["response"]["patch"].as_str() {
        let ops = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
        v["response"]["patch"] = serde_json::from_slice(&ops).unwrap();
    }
    v
}

#[test]
fn every_fixture_answers_as_expected() {
    let policy_text = std::fs::read_to_string(fixtures().join("policy.yaml")).unwrap();
    let policy = Policy::from_yaml(&policy_text).unwrap();
    let update = std::env::var_os("UPDATE_FIXTURES").is_some();
    let mut checked = 0;
    let mut failures = Vec::new();
    for args in std::fs::read_dir(fixtures()).unwrap() {
        let path = args.unwrap().path();
        if path.extension().is_none_or(|e| e != "args") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let cluster = cluster(&name);
        for endpoint in ["mutate", "validate"] {
            let dir = fixtures().join(&name).join(endpoint);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut requests: Vec<PathBuf> = entries
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    p.to_str().unwrap().ends_with(".json")
                        && !p.to_str().unwrap().ends_with(".expected.json")
                })
                .collect();
            requests.sort();
            for request in requests {
                let body = std::fs::read(&request).unwrap();
                let ep = if endpoint == "mutate" {
                    Endpoint::Mutate
                } else {
                    Endpoint::Validate
                };
                let result = admission::review(ep, &body, &policy, &cluster);
                let case = request
                    .strip_prefix(fixtures())
                    .unwrap()
                    .display()
                    .to_string();
                let expected_txt = request.with_extension("expected.txt");
                checked += 1;
                if expected_txt.exists() {
                    let want = std::fs::read_to_string(&expected_txt).unwrap();
                    let reason = want.lines().nth(1).unwrap();
                    match result {
                        Err(e) if e.to_string().contains(reason) => {}
                        other => failures.push(format!(
                            "{case}: want an error with {reason:?}, got {other:?}"
                        )),
                    }
                    continue;
                }
                let got = normalise(&result.unwrap().body);
                let request_json: Value = serde_json::from_slice(&body).unwrap();
                if got["response"]["uid"] != request_json["request"]["uid"] {
                    failures.push(format!("{case}: uid not echoed"));
                }
                let expected_path = request.with_extension("expected.json");
                if update {
                    std::fs::write(
                        &expected_path,
                        serde_json::to_string_pretty(&got).unwrap() + "\n",
                    )
                    .unwrap();
                    continue;
                }
                let want: Value =
                    serde_json::from_slice(&std::fs::read(&expected_path).unwrap()).unwrap();
                if got != want {
                    failures.push(format!("{case}:\n got  {got}\n want {want}"));
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} fixtures found");
    assert!(
        failures.is_empty(),
        "{} of {checked} fixtures differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
