//! The JSON skipper alone: arbitrary bytes as one JSON value, judged against serde_json (it never
//! skips to an end serde_json would refuse, and skips every value serde_json accepts). Seeds:
//! tests/fixtures/**/*.json.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(disagreement) = dualstack_webhook::json_skip::disagreement(data) {
        panic!("{disagreement}: {:?}", String::from_utf8_lossy(data));
    }
});
