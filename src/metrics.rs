//! Prometheus metrics: typed families registered on a caller-owned registry (no globals).

use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Which admission endpoint answered.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are lower case on the wire
pub enum Endpoint {
    /// `POST /mutate`
    mutate,
    /// `POST /validate`
    validate,
}

/// What the webhook did with a review.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// Allowed, nothing changed or flagged.
    allowed,
    /// Allowed with a JSON patch.
    patched,
    /// Allowed with warnings or audit findings.
    warned,
    /// Denied.
    denied,
    /// The body was not an AdmissionReview (4xx answer).
    invalid,
}

/// The `operation` label: the request's operation, bounded to known values.
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
    /// Anything else a client sent (so a hostile client cannot grow the series without bound).
    #[allow(non_camel_case_types)]
    other,
}

/// Labels of `dualstack_webhook_reviews_total`. `Copy`, so counting a review allocates nothing.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// `CREATE`, `UPDATE`, ... or `unknown` for unreadable bodies.
    pub operation: OperationLabel,
    /// What the webhook answered.
    pub outcome: Outcome,
}

impl ReviewLabels {
    /// How many label sets there are: endpoints × operations × outcomes.
    const COUNT: usize = Endpoint::COUNT * OperationLabel::COUNT * Outcome::COUNT;

    /// This label set's place among the [`Self::COUNT`].
    fn index(self) -> usize {
        (self.endpoint.index() * OperationLabel::COUNT + self.operation.index()) * Outcome::COUNT
            + self.outcome.index()
    }
}

/// `COUNT` and `index` (the place in declaration order) of a label enum, for
/// [`ReviewLabels::index`]. The list must name every value: the match is exhaustive, and a repeated
/// value is an unreachable pattern.
macro_rules! label_places {
    ($label:ty: $($value:ident),+) => {
        impl $label {
            const COUNT: usize = [$(Self::$value),+].len();

            fn index(self) -> usize {
                match self {
                    $(Self::$value)|+ => self as usize,
                }
            }
        }
    };
}

label_places!(Endpoint: mutate, validate);
label_places!(OperationLabel: CREATE, UPDATE, DELETE, CONNECT, unknown, other);
label_places!(Outcome: allowed, patched, warned, denied, invalid);

/// The handles of the review series in use, by [`ReviewLabels::index`] and by endpoint.
#[derive(Debug)]
struct ReviewSeries {
    counts: [OnceLock<Counter>; ReviewLabels::COUNT],
    durations: [OnceLock<Histogram>; Endpoint::COUNT],
}

impl Default for ReviewSeries {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| OnceLock::new()),
            durations: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

/// Labels of `dualstack_webhook_review_duration_seconds`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// The endpoint.
    pub endpoint: Endpoint,
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
    /// Every review updates one series of each of the two families above. Their handles are kept
    /// here once a label set is first used: a family's lookup (a lock, hashing the labels) cost
    /// more than the increment. A series still appears in `/metrics` only once it has been used.
    review_series: Arc<ReviewSeries>,
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
            review_series: Arc::default(),
            policy_reloads,
            certificate_reloads,
            tls_handshake_failures,
        }
    }

    /// Counts one answered review and records how long it took.
    pub fn review(&self, endpoint: Endpoint, operation: &str, outcome: Outcome, seconds: f64) {
        // The operation comes from the request: only known values become label values, so a
        // hostile client cannot grow the series without bound.
        let operation = match operation {
            "CREATE" => OperationLabel::CREATE,
            "UPDATE" => OperationLabel::UPDATE,
            "DELETE" => OperationLabel::DELETE,
            "CONNECT" => OperationLabel::CONNECT,
            "unknown" => OperationLabel::unknown,
            _ => OperationLabel::other,
        };
        let labels = ReviewLabels {
            endpoint,
            operation,
            outcome,
        };
        let series = &self.review_series;
        series.counts[labels.index()]
            .get_or_init(|| self.reviews.get_or_create(&labels).clone())
            .inc();
        series.durations[endpoint.index()]
            .get_or_init(|| {
                (self.review_duration)
                    .get_or_create(&EndpointLabels { endpoint })
                    .clone()
            })
            .observe(seconds);
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
    fn operation_label_values_are_the_wire_names() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        for op in ["CREATE", "UPDATE", "DELETE", "CONNECT", "unknown", "PATCH"] {
            metrics.review(Endpoint::validate, op, Outcome::allowed, 0.001);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for op in ["CREATE", "UPDATE", "DELETE", "CONNECT", "unknown", "other"] {
            let line = format!(
                r#"dualstack_webhook_reviews_total{{endpoint="validate",operation="{op}",outcome="allowed"}} 1"#
            );
            assert!(text.contains(&line), "{line} not in {text}");
        }
        assert!(!text.contains("PATCH"));
    }

    #[test]
    fn every_review_label_set_has_its_own_series() {
        use std::collections::HashSet;
        let endpoints = [Endpoint::mutate, Endpoint::validate];
        let operations = [
            OperationLabel::CREATE,
            OperationLabel::UPDATE,
            OperationLabel::DELETE,
            OperationLabel::CONNECT,
            OperationLabel::unknown,
            OperationLabel::other,
        ];
        let outcomes = [
            Outcome::allowed,
            Outcome::patched,
            Outcome::warned,
            Outcome::denied,
            Outcome::invalid,
        ];
        let mut seen = HashSet::new();
        for endpoint in endpoints {
            for operation in operations {
                for outcome in outcomes {
                    let labels = ReviewLabels {
                        endpoint,
                        operation,
                        outcome,
                    };
                    assert!(labels.index() < ReviewLabels::COUNT, "{labels:?}");
                    assert!(seen.insert(labels.index()), "{labels:?} shares a series");
                }
            }
        }
    }

    #[test]
    fn cached_series_count_into_the_registry() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        for _ in 0..3 {
            metrics.review(Endpoint::mutate, "CREATE", Outcome::patched, 0.001);
        }
        metrics.review(Endpoint::mutate, "CREATE", Outcome::denied, 0.001);
        metrics.review(Endpoint::validate, "UPDATE", Outcome::patched, 0.001);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"dualstack_webhook_reviews_total{endpoint="mutate",operation="CREATE",outcome="patched"} 3"#,
            r#"dualstack_webhook_reviews_total{endpoint="mutate",operation="CREATE",outcome="denied"} 1"#,
            r#"dualstack_webhook_reviews_total{endpoint="validate",operation="UPDATE",outcome="patched"} 1"#,
            r#"dualstack_webhook_review_duration_seconds_count{endpoint="mutate"} 4"#,
            r#"dualstack_webhook_review_duration_seconds_count{endpoint="validate"} 1"#,
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
        // Only the series used appear.
        assert_eq!(
            text.matches("dualstack_webhook_reviews_total{").count(),
            3,
            "{text}"
        );
    }
}
