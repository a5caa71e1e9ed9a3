//! Prometheus metrics: typed families registered on a caller-owned registry (no globals).
//!
//! Every series whose labels are known in advance is created at registration (at 0), so that a
//! scrape shows it before its first event and `rate()`/`increase()` see that first event: the
//! review outcomes the webhook configurations can cause, both endpoints, both reload results, both
//! watches; and, per rule of the policy in force, its findings on `/validate`
//! ([`Metrics::policy_loaded`]).

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::admission::{Endpoint, Outcome};
use crate::domain::engine::Finding;
use crate::domain::policy::{Action, Policy};
use kube::core::admission::Operation;

/// The `endpoint` label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are lower case on the wire
pub enum EndpointLabel {
    /// `POST /mutate`
    mutate,
    /// `POST /validate`
    validate,
}

/// The `outcome` label: what the webhook did with a review.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum OutcomeLabel {
    /// Allowed, nothing changed or flagged.
    allowed,
    /// Allowed with a JSON patch.
    patched,
    /// Allowed with warnings.
    warned,
    /// Denied.
    denied,
    /// The body was not an AdmissionReview (400).
    invalid,
    /// The body was over the limit (413).
    too_large,
    /// The body did not arrive in time (408).
    timed_out,
    /// The client reset the stream or closed the connection before the body was complete.
    cancelled,
    /// A large body while the memory budget had no room for it (503).
    busy,
}

/// Why a request got no review answer: the `outcome` values from `invalid` on.
pub type Refusal = OutcomeLabel;

/// The `operation` label: the request's operation, or `unknown` for a body that was not read.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms)] // label values are the API's operation names
pub enum OperationLabel {
    /// `CREATE`
    CREATE,
    /// `UPDATE`
    UPDATE,
    /// `DELETE`
    DELETE,
    /// `CONNECT`
    CONNECT,
    /// The body was not an AdmissionReview.
    #[allow(non_camel_case_types)]
    unknown,
}

/// Labels of `dualstack_webhook_reviews_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// The endpoint.
    pub endpoint: EndpointLabel,
    /// `CREATE`, `UPDATE`, ... or `unknown` for unreadable bodies.
    pub operation: OperationLabel,
    /// What the webhook answered.
    pub outcome: OutcomeLabel,
}

impl From<Endpoint> for EndpointLabel {
    fn from(endpoint: Endpoint) -> Self {
        match endpoint {
            Endpoint::Mutate => Self::mutate,
            Endpoint::Validate => Self::validate,
        }
    }
}

impl From<Outcome> for OutcomeLabel {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Allowed => Self::allowed,
            Outcome::Patched => Self::patched,
            Outcome::Warned => Self::warned,
            Outcome::Denied => Self::denied,
        }
    }
}

impl From<&Operation> for OperationLabel {
    fn from(operation: &Operation) -> Self {
        match operation {
            Operation::Create => Self::CREATE,
            Operation::Update => Self::UPDATE,
            Operation::Delete => Self::DELETE,
            Operation::Connect => Self::CONNECT,
        }
    }
}

/// Labels of `dualstack_webhook_review_duration_seconds`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// The endpoint.
    pub endpoint: EndpointLabel,
}

/// Labels of the reload counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `success` or `failure`.
    pub result: ReloadResult,
}

/// Result of a reload attempt.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ReloadResult {
    /// The new file was loaded and is in use.
    success,
    /// The new file was rejected; the last good one stays in use.
    failure,
}

/// A cluster watch.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum WatchResource {
    /// `networking.k8s.io/v1` ServiceCIDRs.
    servicecidrs,
    /// Namespaces.
    namespaces,
}

impl WatchResource {
    /// The Kubernetes kind, for messages.
    pub fn kind(self) -> &'static str {
        match self {
            Self::servicecidrs => "ServiceCIDR",
            Self::namespaces => "Namespace",
        }
    }
}

/// Labels of `dualstack_webhook_watch_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    /// The watch.
    pub resource: WatchResource,
}

/// Labels of `dualstack_webhook_findings_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    /// The endpoint whose decision had the finding (today only `/validate` reports findings).
    pub endpoint: EndpointLabel,
    /// The rule's name, from the policy (never from a request: the label's values are bounded).
    pub rule: String,
    /// The action the rule took: `Deny`, `Warn` or `Audit` (after the policy's `enforcement`).
    pub action: Action,
    /// The stored Service broke the rule already and the change did not make it worse: a
    /// grandfathered `Deny` warns instead of denying.
    pub grandfathered: bool,
}

/// Written as in the policy file: `Deny`, `Warn`, `Audit`.
impl EncodeLabelValue for Action {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        let value = match self {
            Self::Deny => "Deny",
            Self::Warn => "Warn",
            Self::Audit => "Audit",
        };
        std::fmt::Write::write_str(encoder, value)
    }
}

/// Labels of `dualstack_webhook_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The crate's version (`dualstack-webhook --version`).
    pub version: &'static str,
}

/// A gauge of seconds since the Unix epoch, with a fraction.
type Timestamp = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The webhook's metric families. Cheap to clone: every family is reference-counted.
#[derive(Clone, Debug)]
pub struct Metrics {
    reviews: Family<ReviewLabels, Counter>,
    review_duration: Family<EndpointLabels, Histogram>,
    findings: Family<FindingLabels, Counter>,
    policy_reloads: Family<ReloadLabels, Counter>,
    policy_generation: Gauge,
    policy_last_success: Timestamp,
    policy_last_successful: Gauge,
    certificate_reloads: Family<ReloadLabels, Counter>,
    certificate_not_after: Gauge,
    registrations: Family<ReloadLabels, Counter>,
    tls_handshake_failures: Counter,
    watch_errors: Family<WatchLabels, Counter>,
}

/// The review outcomes an endpoint can answer with: `/validate` never patches (R8.3).
const ANSWERS: [(EndpointLabel, &[OutcomeLabel]); 2] = {
    use OutcomeLabel::{allowed, denied, patched, warned};
    [
        (EndpointLabel::mutate, &[allowed, patched, warned, denied]),
        (EndpointLabel::validate, &[allowed, warned, denied]),
    ]
};

/// The operations the webhook configurations send (`src/registration/configuration.rs`); a DELETE or
/// CONNECT from a configuration of one's own gets its series at its first review.
const OPERATIONS: [OperationLabel; 2] = [OperationLabel::CREATE, OperationLabel::UPDATE];

/// Requests without a review answer.
const REFUSALS: [Refusal; 5] = [
    Refusal::invalid,
    Refusal::too_large,
    Refusal::timed_out,
    Refusal::cancelled,
    Refusal::busy,
];

// === impl Metrics ===

impl Metrics {
    /// Creates the families, registers them under the `dualstack_webhook` prefix and creates
    /// every series whose labels are known now.
    pub fn register(registry: &mut Registry) -> Self {
        let reg = registry.sub_registry_with_prefix("dualstack_webhook");
        reg.register(
            "build",
            "The running build: its version",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let metrics = Self {
            reviews: Family::default(),
            // 50 µs .. ~0.4 s: a decision takes microseconds; the tail shows scheduling stalls.
            review_duration: Family::new_with_constructor(
                (|| Histogram::new(exponential_buckets(0.000_05, 2.0, 14))) as fn() -> Histogram,
            ),
            findings: Family::default(),
            policy_reloads: Family::default(),
            policy_generation: Gauge::default(),
            policy_last_success: Timestamp::default(),
            policy_last_successful: Gauge::default(),
            certificate_reloads: Family::default(),
            certificate_not_after: Gauge::default(),
            registrations: Family::default(),
            tls_handshake_failures: Counter::default(),
            watch_errors: Family::default(),
        };
        let m = metrics.clone();
        reg.register(
            "reviews",
            "Admission reviews answered, by endpoint, operation and outcome",
            m.reviews,
        );
        reg.register(
            "review_duration_seconds",
            "Time from a complete request body to the encoded answer",
            m.review_duration,
        );
        reg.register(
            "findings",
            "Rule findings of the reviews, by endpoint, rule, action and whether grandfathered",
            m.findings,
        );
        reg.register(
            "policy_reloads",
            "Policy file reloads, by result (a failure keeps the last good policy)",
            m.policy_reloads,
        );
        reg.register(
            "policy_generation",
            "The policy in force: 1 for the one loaded at start, one more at each successful reload",
            m.policy_generation,
        );
        reg.register(
            "policy_last_reload_success_timestamp_seconds",
            "When the policy in force was loaded (at start or by a reload), in Unix seconds",
            m.policy_last_success,
        );
        reg.register(
            "policy_last_reload_successful",
            "1 if the last policy load or reload succeeded, 0 if it failed (the last good policy stays)",
            m.policy_last_successful,
        );
        reg.register(
            "certificate_reloads",
            "Serving certificate reloads, by result (a failure keeps the last good pair)",
            m.certificate_reloads,
        );
        reg.register(
            "certificate_not_after_timestamp_seconds",
            "When the serving certificate in use expires (its notAfter), in Unix seconds",
            m.certificate_not_after,
        );
        reg.register(
            "webhook_registrations",
            "Attempts to register the webhook configurations (serve --register-webhooks), by result",
            m.registrations,
        );
        reg.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            m.tls_handshake_failures,
        );
        reg.register(
            "watch_errors",
            "Cluster watch errors (the watch retries with backoff and keeps the last snapshot)",
            m.watch_errors,
        );
        metrics.create_known_series();
        metrics
    }

    /// Creates (at 0) the series whose labels are known before any event.
    fn create_known_series(&self) {
        for (endpoint, outcomes) in ANSWERS {
            for operation in OPERATIONS {
                for &outcome in outcomes {
                    let labels = ReviewLabels {
                        endpoint,
                        operation,
                        outcome,
                    };
                    self.reviews.get_or_create_owned(&labels);
                }
            }
            for outcome in REFUSALS {
                let labels = ReviewLabels {
                    endpoint,
                    operation: OperationLabel::unknown,
                    outcome,
                };
                self.reviews.get_or_create_owned(&labels);
            }
            self.review_duration
                .get_or_create_owned(&EndpointLabels { endpoint });
        }
        for result in [ReloadResult::success, ReloadResult::failure] {
            self.policy_reloads
                .get_or_create_owned(&ReloadLabels { result });
            self.certificate_reloads
                .get_or_create_owned(&ReloadLabels { result });
            self.registrations
                .get_or_create_owned(&ReloadLabels { result });
        }
        for resource in [WatchResource::servicecidrs, WatchResource::namespaces] {
            self.watch_errors
                .get_or_create_owned(&WatchLabels { resource });
        }
    }

    /// Counts one answered review and records how long it took.
    pub fn review(
        &self,
        endpoint: Endpoint,
        operation: &Operation,
        outcome: Outcome,
        seconds: f64,
    ) {
        let endpoint = EndpointLabel::from(endpoint);
        let labels = ReviewLabels {
            endpoint,
            operation: operation.into(),
            outcome: outcome.into(),
        };
        self.reviews.get_or_create(&labels).inc();
        self.review_duration
            .get_or_create(&EndpointLabels { endpoint })
            .observe(seconds);
    }

    /// Counts each finding of one review.
    pub fn findings(&self, endpoint: Endpoint, findings: &[Finding]) {
        for finding in findings {
            let labels = FindingLabels {
                endpoint: endpoint.into(),
                rule: finding.rule.clone(),
                action: finding.action,
                grandfathered: finding.grandfathered,
            };
            self.findings.get_or_create(&labels).inc();
        }
    }

    /// Counts a request that got no review answer (4xx; not timed).
    pub fn refused(&self, endpoint: Endpoint, refusal: Refusal) {
        let labels = ReviewLabels {
            endpoint: endpoint.into(),
            operation: OperationLabel::unknown,
            outcome: refusal,
        };
        self.reviews.get_or_create(&labels).inc();
    }

    /// A policy is in force, loaded at start (not counted as a reload): a new generation, the
    /// time, and its rules' finding series on `/validate` (with the action they take under the
    /// policy's `enforcement`, grandfathered or not). A rule's series stay after a reload drops
    /// the rule: they are counts of what happened.
    pub fn policy_loaded(&self, policy: &Policy) {
        self.policy_generation.inc();
        self.policy_last_success.set(unix_now());
        self.policy_last_successful.set(1);
        for rule in &policy.rules {
            for grandfathered in [false, true] {
                let labels = FindingLabels {
                    endpoint: EndpointLabel::validate,
                    rule: rule.name.clone(),
                    action: policy.enforcement.apply(rule.action),
                    grandfathered,
                };
                self.findings.get_or_create_owned(&labels);
            }
        }
    }

    /// A reload put this policy in force: counted as a success, and [`policy_loaded`](Self::policy_loaded).
    pub fn policy_reloaded(&self, policy: &Policy) {
        self.policy_reloads
            .get_or_create(&ReloadLabels {
                result: ReloadResult::success,
            })
            .inc();
        self.policy_loaded(policy);
    }

    /// A reload failed; the last good policy stays in force.
    pub fn policy_reload_failed(&self) {
        self.policy_reloads
            .get_or_create(&ReloadLabels {
                result: ReloadResult::failure,
            })
            .inc();
        self.policy_last_successful.set(0);
    }

    /// Counts a certificate reload attempt.
    pub fn certificate_reload(&self, result: ReloadResult) {
        self.certificate_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    /// Counts an attempt to register the webhook configurations.
    pub fn registration(&self, result: ReloadResult) {
        self.registrations
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    /// The serving certificate in use expires at `unix_seconds` (its `notAfter`).
    pub fn certificate_not_after(&self, unix_seconds: i64) {
        self.certificate_not_after.set(unix_seconds);
    }

    /// Counts a cluster watch error.
    pub fn watch_error(&self, resource: WatchResource) {
        self.watch_errors
            .get_or_create(&WatchLabels { resource })
            .inc();
    }

    /// Counts a failed or timed-out TLS handshake.
    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }
}

/// Seconds since the Unix epoch (0 on a clock set before it).
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Metrics on a private registry, for tests and offline commands.
impl Default for Metrics {
    fn default() -> Self {
        Self::register(&mut Registry::default())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::domain::engine::{Mutation, Violation};

    /// The OpenMetrics text of `registry`.
    fn text(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    /// The sample lines of a family whose value is not 0, sorted (a family's series come out in
    /// no particular order).
    fn counted<'t>(text: &'t str, family: &str) -> Vec<&'t str> {
        let mut lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("dualstack_webhook_{family}{{")))
            .filter(|l| !l.ends_with(" 0"))
            .collect();
        lines.sort_unstable();
        lines
    }

    #[test]
    fn reviews_count_by_endpoint_operation_and_outcome() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        for _ in 0..3 {
            metrics.review(
                Endpoint::Mutate,
                &Operation::Create,
                Outcome::Patched,
                0.001,
            );
        }
        metrics.review(Endpoint::Mutate, &Operation::Create, Outcome::Denied, 0.001);
        metrics.review(
            Endpoint::Validate,
            &Operation::Update,
            Outcome::Allowed,
            0.001,
        );
        metrics.review(
            Endpoint::Validate,
            &Operation::Delete,
            Outcome::Warned,
            0.001,
        );
        metrics.review(
            Endpoint::Validate,
            &Operation::Connect,
            Outcome::Allowed,
            0.001,
        );
        metrics.refused(Endpoint::Validate, Refusal::invalid);
        let text = text(&registry);
        let mut want = [
            r#"dualstack_webhook_reviews_total{endpoint="mutate",operation="CREATE",outcome="patched"} 3"#,
            r#"dualstack_webhook_reviews_total{endpoint="mutate",operation="CREATE",outcome="denied"} 1"#,
            r#"dualstack_webhook_reviews_total{endpoint="validate",operation="UPDATE",outcome="allowed"} 1"#,
            r#"dualstack_webhook_reviews_total{endpoint="validate",operation="DELETE",outcome="warned"} 1"#,
            r#"dualstack_webhook_reviews_total{endpoint="validate",operation="CONNECT",outcome="allowed"} 1"#,
            r#"dualstack_webhook_reviews_total{endpoint="validate",operation="unknown",outcome="invalid"} 1"#,
        ];
        want.sort_unstable();
        assert_eq!(counted(&text, "reviews_total"), want);
        // Refused requests are counted, not timed.
        for line in [
            r#"dualstack_webhook_review_duration_seconds_count{endpoint="mutate"} 4"#,
            r#"dualstack_webhook_review_duration_seconds_count{endpoint="validate"} 3"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in {text}");
        }
    }

    #[test]
    fn known_series_are_there_before_any_event() {
        let mut registry = Registry::default();
        let _metrics = Metrics::register(&mut registry);
        let text = text(&registry);
        let mut reviews: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("dualstack_webhook_reviews_total{"))
            .collect();
        reviews.sort_unstable();
        let mut want = Vec::new();
        for (endpoint, outcomes) in [
            ("mutate", &["allowed", "patched", "warned", "denied"][..]),
            ("validate", &["allowed", "warned", "denied"][..]),
        ] {
            for operation in ["CREATE", "UPDATE"] {
                for outcome in outcomes {
                    want.push(format!(
                        r#"dualstack_webhook_reviews_total{{endpoint="{endpoint}",operation="{operation}",outcome="{outcome}"}} 0"#
                    ));
                }
            }
            for outcome in ["invalid", "too_large", "timed_out", "cancelled", "busy"] {
                want.push(format!(
                    r#"dualstack_webhook_reviews_total{{endpoint="{endpoint}",operation="unknown",outcome="{outcome}"}} 0"#
                ));
            }
        }
        want.sort_unstable();
        assert_eq!(reviews, want);
        for line in [
            r#"dualstack_webhook_review_duration_seconds_count{endpoint="mutate"} 0"#,
            r#"dualstack_webhook_review_duration_seconds_count{endpoint="validate"} 0"#,
            r#"dualstack_webhook_policy_reloads_total{result="success"} 0"#,
            r#"dualstack_webhook_policy_reloads_total{result="failure"} 0"#,
            r#"dualstack_webhook_certificate_reloads_total{result="success"} 0"#,
            r#"dualstack_webhook_certificate_reloads_total{result="failure"} 0"#,
            r#"dualstack_webhook_webhook_registrations_total{result="success"} 0"#,
            r#"dualstack_webhook_webhook_registrations_total{result="failure"} 0"#,
            r#"dualstack_webhook_watch_errors_total{resource="servicecidrs"} 0"#,
            r#"dualstack_webhook_watch_errors_total{resource="namespaces"} 0"#,
            "dualstack_webhook_tls_handshake_failures_total 0",
            "dualstack_webhook_policy_generation 0",
            "dualstack_webhook_certificate_not_after_timestamp_seconds 0",
            concat!(
                r#"dualstack_webhook_build_info{version=""#,
                env!("CARGO_PKG_VERSION"),
                r#""} 1"#
            ),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in {text}");
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

    #[test]
    fn findings_count_by_rule_action_and_grandfathering() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let policy = Policy::from_yaml(
            "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\nrules:\n\
             - {name: dual, require: {dualStack: true}}\n\
             - {name: v6-first, require: {primaryFamily: IPv6}, action: Audit}\n",
        )
        .unwrap();
        metrics.policy_loaded(&policy);
        // Each rule's series on /validate, before any finding.
        let text0 = text(&registry);
        for line in [
            r#"dualstack_webhook_findings_total{endpoint="validate",rule="dual",action="Deny",grandfathered="false"} 0"#,
            r#"dualstack_webhook_findings_total{endpoint="validate",rule="dual",action="Deny",grandfathered="true"} 0"#,
            r#"dualstack_webhook_findings_total{endpoint="validate",rule="v6-first",action="Audit",grandfathered="false"} 0"#,
            r#"dualstack_webhook_findings_total{endpoint="validate",rule="v6-first",action="Audit",grandfathered="true"} 0"#,
        ] {
            assert!(text0.lines().any(|l| l == line), "{line} not in {text0}");
        }
        metrics.findings(
            Endpoint::Validate,
            &[
                finding("dual", Action::Deny, false),
                finding("v6-first", Action::Audit, false),
            ],
        );
        metrics.findings(Endpoint::Validate, &[finding("dual", Action::Deny, true)]);
        metrics.findings(
            Endpoint::Validate,
            &[finding("v6-first", Action::Audit, false)],
        );
        metrics.findings(Endpoint::Mutate, &[finding("dual", Action::Warn, false)]);
        let mut want = [
            r#"dualstack_webhook_findings_total{endpoint="validate",rule="dual",action="Deny",grandfathered="false"} 1"#,
            r#"dualstack_webhook_findings_total{endpoint="validate",rule="dual",action="Deny",grandfathered="true"} 1"#,
            r#"dualstack_webhook_findings_total{endpoint="validate",rule="v6-first",action="Audit",grandfathered="false"} 2"#,
            r#"dualstack_webhook_findings_total{endpoint="mutate",rule="dual",action="Warn",grandfathered="false"} 1"#,
        ];
        want.sort_unstable();
        assert_eq!(counted(&text(&registry), "findings_total"), want);
    }

    #[test]
    fn the_enforcement_mode_sets_the_action_of_a_rules_series() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let policy = Policy::from_yaml(
            "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\nenforcement: Audit\n\
             rules: [{name: dual, require: {dualStack: true}}]\n",
        )
        .unwrap();
        metrics.policy_loaded(&policy);
        let text = text(&registry);
        let line = r#"dualstack_webhook_findings_total{endpoint="validate",rule="dual",action="Audit",grandfathered="false"} 0"#;
        assert!(text.lines().any(|l| l == line), "{text}");
        assert!(!text.contains(r#"action="Deny""#), "{text}");
    }

    #[test]
    fn policy_generation_and_last_reload() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let value = |name: &str| -> f64 {
            let text = text(&registry);
            let prefix = format!("dualstack_webhook_{name} ");
            let found = text.lines().find_map(|l| l.strip_prefix(&prefix));
            found.unwrap().parse().unwrap()
        };
        let before = unix_now();
        metrics.policy_loaded(&Policy::default());
        assert_eq!(value("policy_generation"), 1.0);
        assert_eq!(value("policy_last_reload_successful"), 1.0);
        let loaded = value("policy_last_reload_success_timestamp_seconds");
        assert!(loaded >= before && loaded <= unix_now(), "{loaded}");
        metrics.policy_reload_failed();
        assert_eq!(value("policy_generation"), 1.0);
        assert_eq!(value("policy_last_reload_successful"), 0.0);
        assert_eq!(
            value("policy_last_reload_success_timestamp_seconds"),
            loaded
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
        metrics.policy_reloaded(&Policy::default());
        assert_eq!(value("policy_generation"), 2.0);
        assert_eq!(value("policy_last_reload_successful"), 1.0);
        assert!(value("policy_last_reload_success_timestamp_seconds") > loaded);
        let text = text(&registry);
        for line in [
            r#"dualstack_webhook_policy_reloads_total{result="success"} 1"#,
            r#"dualstack_webhook_policy_reloads_total{result="failure"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in {text}");
        }
    }
}
