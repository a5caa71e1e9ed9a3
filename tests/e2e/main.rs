//! End-to-end tests against a real kube-apiserver (k8s.io/kubernetes v1.37.2) and etcd from
//! `tests/apiserver`, with the release webhook registered with the configurations it registers
//! itself in a cluster (`dualstack-webhook webhook-configurations --policy`, with the
//! `matchConditions` generated from the policy it serves, sent to a loopback URL).
//!
//! Every test is `#[ignore]`d: plain `cargo test` has no API server. `make e2e` (the driver,
//! `tests/e2e/run.sh`) starts the harness and the webhook, registers the configurations and runs
//! `--ignored`. Tests cite the rules of `docs/k8s-service-rules.md` (R-numbers) they rely on.
//!
//! # Layout
//! - [`support`]: environment, client, builders, rendered configurations, processes, waits.
//! - [`setup`]: the driver's step that registers the main configurations (not a test of its own).
//! - [`defaults`], [`pinned`], [`types`], [`actions`], [`updates`]: the main harness (dual-stack,
//!   IPv4 primary) and the driver's webhook; each test has its own namespace or Service names.
//! - [`upgrade`]: the PreferDualStack lesson on its own IPv4-only harness, restarted dual-stack.
//! - [`variants`]: the policy on an IPv6-primary dual-stack harness of its own.
//! - [`failure`]: webhook down under Fail and Ignore, certificate rotation; an isolated webhook.
//! - [`nssel`]: `namespaceSelector` rules on the driver's webhook, which watches Namespaces.
//! - [`cluster`]: `--watch-cluster` on harnesses and webhooks of their own: readiness, ranges from
//!   ServiceCIDR objects, `--service-cidrs` winning, an API server outage, the 404 fallback.
//! - [`audit`]: `dualstack-webhook audit` against seeded Services on a harness of its own.
//! - [`check`]: `dualstack-webhook check`'s verdicts on a corpus of manifests against what a
//!   harness and webhook of their own do with each create (three cluster shapes).
//! - [`manifests`]: the kustomize base and overlays render and pass server-side dry-run.
//! - [`rollout`]: a rolling update behind a test proxy, `--shutdown-delay` against none.
//! - [`lifecycle`]: install, self-registration, rollout, upgrade, uninstall (Helm, kustomize).
//! - [`bench`]: `make bench-e2e` latency numbers (not run by `make e2e`).
//! - [`conditions`]: the `matchConditions` generated from the policy change the number of calls
//!   and nothing else (the fixtures and the suite's requests with and without them), and the
//!   calls per write with the shipped policy.
//! - [`export`]: `dualstack-webhook export`'s admission policies give the answers the webhook
//!   gives (the conditions corpus through both, CREATE and UPDATE), gaps aside, for every policy
//!   of the repository on three harnesses of its own (dual-stack either primary, IPv4-only).
//! - [`migrate`]: `dualstack-webhook migrate` converting an IPv4-only cluster restarted dual-stack:
//!   plan, apply in batches (interrupted and resumed, beside a concurrent writer), rollback;
//!   the same through the driver's webhook on the main harness, and its refusal stopping a run.
//! - [`regressions`]: webhook bugs the suite found, one test each, with their diagnosis.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod actions;
mod audit;
mod bench;
mod check;
mod cluster;
mod conditions;
mod defaults;
mod export;
mod failure;
mod lifecycle;
mod manifests;
mod migrate;
mod nssel;
mod pinned;
mod regressions;
mod reports;
mod rollout;
mod setup;
mod support;
mod types;
mod updates;
mod upgrade;
mod variants;
