//! What an operator sees: `/metrics` (both formats, every series from start, findings, build,
//! certificate expiry, policy generation), the Audit log line, and the optional monitoring
//! manifests (`manifests/extras/`) checked against the metrics the webhook exposes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{Request, header};
use common::LogBuffer;
use dualstack_webhook::admission::{Answer, Endpoint, Outcome, Summary};
use dualstack_webhook::commands::certs;
use dualstack_webhook::domain::engine::{Finding, Mutation, Violation};
use dualstack_webhook::domain::policy::{Action, Policy};
use dualstack_webhook::metrics::Metrics;
use dualstack_webhook::policy_file::watch_policy;
use dualstack_webhook::server::admin::{self, Readiness};
use dualstack_webhook::server::{routes, tls};
use http_body_util::BodyExt as _;
use kube::core::admission::Operation;
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

const POLICY: &str = "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\nrules:
  - {name: dual, require: {dualStack: true}}
  - {name: v6-first, require: {primaryFamily: IPv6}, action: Audit}
";

/// Metrics as `serve` sets them up: registered, with the policy loaded at start.
fn metrics(policy: &Policy) -> (Metrics, Arc<Registry>) {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    metrics.policy_loaded(policy);
    (metrics, Arc::new(registry))
}

/// `GET /metrics` on the admin router, with this `Accept` header: the content type and the body.
async fn scrape(registry: &Arc<Registry>, accept: Option<&str>) -> (String, String) {
    let app = admin::router(registry.clone(), Readiness::default());
    let mut req = Request::builder().uri("/metrics");
    if let Some(accept) = accept {
        req = req.header(header::ACCEPT, accept);
    }
    let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let ctype = res.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (ctype, String::from_utf8(body.to_vec()).unwrap())
}

/// Asserts that each of `lines` is a whole line of `text`.
fn assert_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(text.lines().any(|l| l == *line), "{line:?} not in\n{text}");
    }
}

/// The value of the sample `name` (with its labels, as written), parsed.
fn value(text: &str, sample: &str) -> f64 {
    let prefix = format!("{sample} ");
    let found = text.lines().find_map(|l| l.strip_prefix(&prefix));
    found
        .unwrap_or_else(|| panic!("{sample} not in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn every_series_is_there_before_any_review() {
    let (_metrics, registry) = metrics(&Policy::from_yaml(POLICY).unwrap());
    let (_, text) = scrape(&registry, None).await;
    let version = env!("CARGO_PKG_VERSION");
    assert_lines(
        &text,
        &[
            &format!(r#"dualstack_webhook_build_info{{version="{version}"}} 1"#),
            r#"dualstack_webhook_reviews_total{endpoint="mutate",operation="CREATE",outcome="patched"} 0"#,
            r#"dualstack_webhook_reviews_total{endpoint="validate",operation="UPDATE",outcome="denied"} 0"#,
            r#"dualstack_webhook_reviews_total{endpoint="validate",operation="unknown",outcome="busy"} 0"#,
            r#"dualstack_webhook_review_duration_seconds_count{endpoint="mutate"} 0"#,
            r#"dualstack_webhook_findings_total{endpoint="validate",rule="dual",action="Deny",grandfathered="false"} 0"#,
            r#"dualstack_webhook_findings_total{endpoint="validate",rule="dual",action="Deny",grandfathered="true"} 0"#,
            r#"dualstack_webhook_findings_total{endpoint="validate",rule="v6-first",action="Audit",grandfathered="false"} 0"#,
            r#"dualstack_webhook_policy_reloads_total{result="failure"} 0"#,
            "dualstack_webhook_policy_generation 1",
            "dualstack_webhook_policy_last_reload_successful 1",
            r#"dualstack_webhook_certificate_reloads_total{result="failure"} 0"#,
            r#"dualstack_webhook_watch_errors_total{resource="namespaces"} 0"#,
            "dualstack_webhook_tls_handshake_failures_total 0",
        ],
    );
    // /validate never patches (R8.3): no series says it might.
    assert!(!text.contains(r#"endpoint="validate",operation="CREATE",outcome="patched""#));
}

#[tokio::test]
async fn the_format_follows_the_accept_header() {
    let (_metrics, registry) = metrics(&Policy::default());
    let prometheus = "text/plain; version=0.0.4; charset=utf-8";
    let openmetrics = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    // What Prometheus sends (scrape_protocols' default order).
    let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    for (accept, ctype) in [
        (None, prometheus),
        (Some("text/plain;version=0.0.4"), prometheus),
        (Some("*/*"), prometheus),
        (Some("application/openmetrics-text"), openmetrics),
        (Some(prometheus_accept), openmetrics),
    ] {
        let (got, text) = scrape(&registry, accept).await;
        assert_eq!(got, ctype, "Accept: {accept:?}");
        if ctype == prometheus {
            assert_lines(
                &text,
                &[
                    "# TYPE dualstack_webhook_reviews_total counter",
                    "# TYPE dualstack_webhook_build_info gauge",
                ],
            );
            assert!(!text.contains("# EOF"), "{text}");
        } else {
            assert_lines(
                &text,
                &[
                    "# TYPE dualstack_webhook_reviews counter",
                    "# TYPE dualstack_webhook_build info",
                ],
            );
            assert_eq!(text.lines().last(), Some("# EOF"), "{text}");
        }
        // The samples are the same in both.
        assert_lines(&text, &["dualstack_webhook_policy_generation 1"]);
    }
}

/// A `/validate` answer for `apps/web` with this outcome.
fn answer(outcome: Outcome, findings: &[Finding]) -> Answer {
    Answer {
        body: Vec::new(),
        outcome,
        operation: Operation::Create,
        summary: Summary {
            uid: "u-1".to_owned(),
            namespace: "apps".to_owned(),
            name: "web".to_owned(),
            dry_run: false,
            denied: None,
            findings: findings.to_vec(),
        },
    }
}

fn finding(rule: &str, action: Action, grandfathered: bool) -> Finding {
    Finding {
        rule: rule.to_owned(),
        action,
        written_action: action,
        violation: Violation::NotSingleStack {
            advice: Mutation::default(),
        },
        grandfathered,
    }
}

/// The log lines `f` writes at info and above (plain, without time or colours).
fn logged(f: impl FnOnce()) -> Vec<String> {
    let out = LogBuffer::default();
    tracing::subscriber::with_default(out.subscriber(), f);
    out.lines()
}

#[tokio::test]
async fn findings_are_counted_by_rule_and_action_and_audit_ones_logged() {
    let (metrics, registry) = metrics(&Policy::from_yaml(POLICY).unwrap());
    let audit = finding("v6-first", Action::Audit, false);
    let short = audit.violation.short();
    let target = "dualstack_webhook::server::routes";
    let service =
        r#"endpoint=Validate uid="u-1" namespace="apps" name="web" operation=Create dry_run=false"#;
    // An Audit-only review: allowed (a debug line), one Audit finding.
    let allowed = answer(Outcome::Allowed, std::slice::from_ref(&audit));
    metrics.findings(Endpoint::Validate, &allowed.summary.findings);
    assert_eq!(
        logged(|| routes::log(Endpoint::Validate, &allowed)),
        [format!(
            r#" INFO {target}: audit finding {service} rule="v6-first" finding={short:?}"#
        )]
    );
    // A denied review: counted, its Audit finding not logged again (the denial line names it).
    let mut denied = answer(
        Outcome::Denied,
        &[finding("dual", Action::Deny, false), audit.clone()],
    );
    denied.summary.denied = Some("rule dual: not dual-stack".to_owned());
    metrics.findings(Endpoint::Validate, &denied.summary.findings);
    assert_eq!(
        logged(|| routes::log(Endpoint::Validate, &denied)),
        [format!(
            r#" INFO {target}: denied {service} denial=Some("rule dual: not dual-stack")"#
        )]
    );
    // A grandfathered Deny: warned; the review's own line says so.
    let warned = answer(Outcome::Warned, &[finding("dual", Action::Deny, true)]);
    metrics.findings(Endpoint::Validate, &warned.summary.findings);
    assert_eq!(
        logged(|| routes::log(Endpoint::Validate, &warned)),
        [format!(
            r#" INFO {target}: allowed with warnings {service} denial=None"#
        )]
    );
    let (_, text) = scrape(&registry, None).await;
    assert_lines(
        &text,
        &[
            r#"dualstack_webhook_findings_total{endpoint="validate",rule="dual",action="Deny",grandfathered="false"} 1"#,
            r#"dualstack_webhook_findings_total{endpoint="validate",rule="dual",action="Deny",grandfathered="true"} 1"#,
            r#"dualstack_webhook_findings_total{endpoint="validate",rule="v6-first",action="Audit",grandfathered="false"} 2"#,
            r#"dualstack_webhook_findings_total{endpoint="validate",rule="v6-first",action="Audit",grandfathered="true"} 0"#,
        ],
    );
}

async fn wait_for(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    for _ in 0..250 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within 5 s");
}

/// The certificate's own `notAfter`, read with x509-parser.
fn not_after_of(pem_path: &Path) -> f64 {
    let pem = std::fs::read(pem_path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    cert.validity().not_after.timestamp() as f64
}

#[tokio::test]
async fn the_certificate_expiry_is_the_certificates_and_follows_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let paths = certs::generate(dir.path(), &[], &[]).unwrap();
    let resolver = tls::CertResolver::load(&paths.cert, &paths.key).unwrap();
    let (metrics, registry) = metrics(&Policy::default());
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(tls::watch_certificates(
        resolver,
        Duration::from_millis(20),
        metrics,
        stop.clone(),
    ));
    let gauge = "dualstack_webhook_certificate_not_after_timestamp_seconds";
    let first = not_after_of(&paths.cert);
    wait_for("the expiry of the loaded pair", async || {
        value(&scrape(&registry, None).await.1, gauge) == first
    })
    .await;

    // A new pair that expires at another time (generated with rcgen: 2031-06-30).
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2031, 6, 30);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(&paths.key, key.serialize_pem()).unwrap();
    std::fs::write(&paths.cert, cert.pem()).unwrap();
    let second = not_after_of(&paths.cert);
    assert_eq!(second, 1_940_544_000.0); // date -u -d 2031-06-30 +%s
    wait_for("the expiry of the reloaded pair", async || {
        value(&scrape(&registry, None).await.1, gauge) == second
    })
    .await;
    let (_, text) = scrape(&registry, None).await;
    assert_lines(
        &text,
        &[r#"dualstack_webhook_certificate_reloads_total{result="success"} 1"#],
    );
    stop.cancel();
    watcher.await.unwrap();
}

#[tokio::test]
async fn the_policy_generation_and_last_reload_move_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, POLICY).unwrap();
    let policy = Policy::from_yaml(POLICY).unwrap();
    let (metrics, registry) = metrics(&policy);
    let (_, text) = scrape(&registry, None).await;
    let loaded = value(
        &text,
        "dualstack_webhook_policy_last_reload_success_timestamp_seconds",
    );
    assert_eq!(value(&text, "dualstack_webhook_policy_generation"), 1.0);
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(watch_policy(
        path.clone(),
        POLICY.as_bytes().to_vec(),
        Arc::new(ArcSwap::from_pointee(policy)),
        None,
        Duration::from_millis(20),
        metrics,
        stop.clone(),
    ));

    // A broken file: no new generation, the last reload failed.
    std::fs::write(
        &path,
        format!("{POLICY}  - {{name: broken, action: Block}}\n"),
    )
    .unwrap();
    wait_for("the failed reload", async || {
        let text = scrape(&registry, None).await.1;
        value(&text, "dualstack_webhook_policy_last_reload_successful") == 0.0
    })
    .await;
    let (_, text) = scrape(&registry, None).await;
    assert_eq!(value(&text, "dualstack_webhook_policy_generation"), 1.0);
    let ts = "dualstack_webhook_policy_last_reload_success_timestamp_seconds";
    assert_eq!(value(&text, ts), loaded);

    // A good file with a new rule: generation 2, a later time, the new rule's series.
    std::fs::write(
        &path,
        format!("{POLICY}  - {{name: new, require: {{dualStack: true}}, action: Warn}}\n"),
    )
    .unwrap();
    wait_for("the reload", async || {
        let text = scrape(&registry, None).await.1;
        value(&text, "dualstack_webhook_policy_generation") == 2.0
    })
    .await;
    let (_, text) = scrape(&registry, None).await;
    assert!(value(&text, ts) > loaded, "{text}");
    assert_lines(
        &text,
        &[
            "dualstack_webhook_policy_last_reload_successful 1",
            r#"dualstack_webhook_policy_reloads_total{result="success"} 1"#,
            r#"dualstack_webhook_policy_reloads_total{result="failure"} 1"#,
            r#"dualstack_webhook_findings_total{endpoint="validate",rule="new",action="Warn",grandfathered="false"} 0"#,
        ],
    );
    stop.cancel();
    watcher.await.unwrap();
}

// === manifests/extras ===

/// Every document of a YAML file under the crate's root.
fn documents(path: &str) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join(path)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| <Value as serde::Deserialize>::deserialize(doc).unwrap())
        .collect()
}

fn only(path: &str, kind: &str) -> Value {
    let docs = documents(path);
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "{path}: one {kind}");
    found[0].clone()
}

/// The names of the webhook's metrics an expression uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("dualstack_webhook_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// Each alert uses only metrics the webhook exposes (with every series from start, each name
/// is in a fresh scrape): renaming a metric breaks this test, not the alert in production.
#[tokio::test]
async fn the_alerts_use_metrics_the_webhook_exposes() {
    let (_metrics, registry) = metrics(&Policy::from_yaml(POLICY).unwrap());
    let (_, text) = scrape(&registry, None).await;
    let exposed: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let rule = only("manifests/extras/prometheusrule.yaml", "PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    let mut alerts = BTreeSet::new();
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            let alert = r["alert"].as_str().unwrap();
            let expr = r["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{alert}: {expr}");
            for name in names {
                assert!(
                    exposed.contains(name.as_str()),
                    "{alert} uses {name}, not exposed:\n{text}"
                );
            }
            alerts.insert(alert.to_owned());
        }
    }
    let want = [
        "DualStackWebhookCertificateExpiresSoon",
        "DualStackWebhookCertificateReloadFailing",
        "DualStackWebhookPolicyReloadFailing",
        "DualStackWebhookRegistrationFailing",
        "DualStackWebhookWatchErrors",
    ];
    assert_eq!(alerts, want.map(str::to_owned).into());
    let expiry = &rule["spec"]["groups"][0]["rules"][0]["expr"];
    assert!(
        expiry.as_str().unwrap().contains("14 * 24 * 3600"),
        "{expiry}"
    );
}

/// The metrics Service selects the webhook's pods and reaches their admin port; the
/// ServiceMonitor selects that Service, in its namespace, on that port.
#[test]
fn the_service_monitor_scrapes_the_admin_port_of_the_webhook_pods() {
    let deployment = only("manifests/base/deployment.yaml", "Deployment");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let admin = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .expect("an admin port");
    assert!(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| *a == format!("--admin-listen=0.0.0.0:{}", admin["containerPort"])),
        "the admin port is where --admin-listen listens"
    );

    let service = only("manifests/extras/metrics-service.yaml", "Service");
    let namespace = &deployment["metadata"]["namespace"];
    assert_eq!(&service["metadata"]["namespace"], namespace);
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &pod_labels[key], value,
            "the Service selects the pods by {key}"
        );
    }
    let port = &service["spec"]["ports"][0];
    assert_eq!(port["targetPort"], "admin");

    let monitor = only("manifests/extras/servicemonitor.yaml", "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(&monitor["metadata"]["namespace"], namespace);
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"][0],
        *namespace
    );
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "selects the Service by {key}"
        );
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], port["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["scheme"], "http");
}
