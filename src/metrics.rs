//! Prometheus metrics: typed families registered on a caller-owned registry (no globals).

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::admission::{Endpoint, Outcome};
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

/// The webhook's metric families. Cheap to clone: every family is reference-counted.
#[derive(Clone, Debug)]
pub struct Metrics {
    reviews: Family<ReviewLabels, Counter>,
    review_duration: Family<EndpointLabels, Histogram>,
    policy_reloads: Family<ReloadLabels, Counter>,
    certificate_reloads: Family<ReloadLabels, Counter>,
    tls_handshake_failures: Counter,
    watch_errors: Family<WatchLabels, Counter>,
}

// === impl Metrics ===

impl Metrics {
    /// Creates the families and registers them under the `dualstack_webhook` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let reg = registry.sub_registry_with_prefix("dualstack_webhook");
        let reviews = Family::default();
        reg.register(
            "reviews",
            "Admission reviews answered, by endpoint, operation and outcome",
            reviews.clone(),
        );
        // 50 µs .. ~0.4 s: a decision takes microseconds; the tail shows scheduling stalls.
        let review_duration = Family::<EndpointLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.000_05, 2.0, 14))) as fn() -> Histogram,
        );
        reg.register(
            "review_duration_seconds",
            "Time from a complete request body to the encoded answer",
            review_duration.clone(),
        );
        let policy_reloads = Family::default();
        reg.register(
            "policy_reloads",
            "Policy file reloads, by result (a failure keeps the last good policy)",
            policy_reloads.clone(),
        );
        let certificate_reloads = Family::default();
        reg.register(
            "certificate_reloads",
            "Serving certificate reloads, by result (a failure keeps the last good pair)",
            certificate_reloads.clone(),
        );
        let tls_handshake_failures = Counter::default();
        reg.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            tls_handshake_failures.clone(),
        );
        let watch_errors = Family::default();
        reg.register(
            "watch_errors",
            "Cluster watch errors (the watch retries with backoff and keeps the last snapshot)",
            watch_errors.clone(),
        );
        Self {
            watch_errors,
            reviews,
            review_duration,
            policy_reloads,
            certificate_reloads,
            tls_handshake_failures,
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

    /// Counts a request that got no review answer (4xx; not timed).
    pub fn refused(&self, endpoint: Endpoint, refusal: Refusal) {
        let labels = ReviewLabels {
            endpoint: endpoint.into(),
            operation: OperationLabel::unknown,
            outcome: refusal,
        };
        self.reviews.get_or_create(&labels).inc();
    }

    /// Counts a policy reload attempt.
    pub fn policy_reload(&self, result: ReloadResult) {
        self.policy_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    /// Counts a certificate reload attempt.
    pub fn certificate_reload(&self, result: ReloadResult) {
        self.certificate_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
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
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        // A family's series come out in no particular order.
        let mut reviews: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("dualstack_webhook_reviews_total{"))
            .collect();
        reviews.sort_unstable();
        let mut want = [
            r#"dualstack_webhook_reviews_total{endpoint="mutate",operation="CREATE",outcome="patched"} 3"#,
            r#"dualstack_webhook_reviews_total{endpoint="mutate",operation="CREATE",outcome="denied"} 1"#,
            r#"dualstack_webhook_reviews_total{endpoint="validate",operation="UPDATE",outcome="allowed"} 1"#,
            r#"dualstack_webhook_reviews_total{endpoint="validate",operation="DELETE",outcome="warned"} 1"#,
            r#"dualstack_webhook_reviews_total{endpoint="validate",operation="CONNECT",outcome="allowed"} 1"#,
            r#"dualstack_webhook_reviews_total{endpoint="validate",operation="unknown",outcome="invalid"} 1"#,
        ];
        want.sort_unstable();
        assert_eq!(reviews, want);
        // Refused requests are counted, not timed.
        for line in [
            r#"dualstack_webhook_review_duration_seconds_count{endpoint="mutate"} 4"#,
            r#"dualstack_webhook_review_duration_seconds_count{endpoint="validate"} 3"#,
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
    }
}
