//! Micro-benchmarks of one review end to end in process: decode + decide + patch + encode
//! ([`admission::review`]) on `/mutate` for a small, a typical (the load benchmark's, ~3.7 KB) and a
//! large (40 ports, 30 annotations, ~18 KB) Service CREATE, under the example policy on a dual-stack
//! cluster. Run with `cargo bench --bench review` (or `make bench-micro`); compare before and after a
//! change with criterion's `--save-baseline` / `--baseline`.

#![allow(clippy::expect_used)] // a benchmark that cannot set itself up should stop loudly

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};

use dualstack_webhook::admission;
use dualstack_webhook::admission::Endpoint;
use dualstack_webhook::cluster::{Cluster, ServiceCidrs};
use dualstack_webhook::domain::policy::Policy;

const POLICY: &str = include_str!("../manifests/policy.yaml");

const REVIEWS: [(&str, &[u8]); 3] = [
    ("small", include_bytes!("../bench/data/review-small.json")),
    (
        "typical",
        include_bytes!("../bench/data/review-typical.json"),
    ),
    ("large", include_bytes!("../bench/data/review-large.json")),
];

fn review(c: &mut Criterion) {
    let policy = Policy::from_yaml(POLICY).expect("the example policy loads");
    let cidrs = ServiceCidrs::parse("10.96.0.0/16,fd00:10:96::/112").expect("valid CIDRs");
    let cluster = Cluster::with_cidrs(Some(cidrs));
    let mut group = c.benchmark_group("review/mutate");
    for (name, body) in REVIEWS {
        // Every body must be answered with a patch, or the benchmark measures the wrong path.
        let answer = admission::review(Endpoint::Mutate, body, &policy, &cluster)
            .expect("the review is answered");
        assert!(
            answer.body.windows(9).any(|w| w == b"JSONPatch"),
            "{name}: not patched"
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), body, |b, body| {
            b.iter(|| admission::review(Endpoint::Mutate, black_box(body), &policy, &cluster));
        });
    }
    group.finish();
}

// The macro's generated `pub fn benches` has no doc comment to carry.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::review);
}
use group::benches;
criterion_main!(benches);
