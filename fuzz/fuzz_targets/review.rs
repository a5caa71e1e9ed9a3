//! Review decoding: arbitrary bytes as an AdmissionReview body, under the example policy, on each
//! cluster shape and without `--service-cidrs`. Seeds: tests/fixtures/**/*.json.
#![no_main]

use std::sync::LazyLock;

use dualstack_webhook::cluster::Cluster;
use dualstack_webhook::domain::policy::Policy;
use dualstack_webhook_fuzz::{CLUSTERS, check_review, cluster, example_policy};
use libfuzzer_sys::fuzz_target;

static SETUP: LazyLock<(Policy, Vec<Cluster>)> = LazyLock::new(|| {
    let clusters = (0..CLUSTERS.len())
        .map(|i| cluster(u8::try_from(i).ok()).0)
        .chain([cluster(None).0])
        .collect();
    (example_policy(), clusters)
});

fuzz_target!(|data: &[u8]| {
    let (policy, clusters) = &*SETUP;
    for cluster in clusters {
        check_review(data, policy, cluster);
    }
});
