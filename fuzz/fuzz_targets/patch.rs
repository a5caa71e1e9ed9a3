//! The patch builder: an arbitrary `engine::Mutation` (any strings, any families) applied with
//! `json_patch::patch` to an arbitrary Service-shaped object (spec absent, null, empty or full,
//! with members the webhook does not model). The patch must apply and set exactly the mutation.
#![no_main]

use arbitrary::Arbitrary;
use dualstack_webhook::domain::engine::Mutation;
use dualstack_webhook::domain::service::{IpFamily, IpFamilyPolicy};
use dualstack_webhook_fuzz::check_patch;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

#[derive(Arbitrary, Debug)]
struct Input {
    policy: Option<u8>,
    families: Option<Vec<bool>>,
    spec: SpecShape,
    extra: Vec<(String, String)>,
    labels: Vec<(String, String)>,
}

#[derive(Arbitrary, Debug)]
enum SpecShape {
    Absent,
    Null,
    Empty,
    Full {
        cluster_ip: Option<String>,
        families: Vec<String>,
        extra: Vec<(String, String)>,
    },
}

fn members(pairs: &[(String, String)]) -> Map<String, Value> {
    pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect()
}

fuzz_target!(|input: Input| {
    let mutation = Mutation {
        ip_family_policy: input.policy.map(|p| {
            [
                IpFamilyPolicy::SingleStack,
                IpFamilyPolicy::PreferDualStack,
                IpFamilyPolicy::RequireDualStack,
            ][usize::from(p) % 3]
        }),
        ip_families: input.families.map(|f| {
            f.into_iter()
                .map(|v6| if v6 { IpFamily::IPv6 } else { IpFamily::IPv4 })
                .collect()
        }),
    };
    let mut object = members(&input.extra);
    object.insert("apiVersion".into(), json!("v1"));
    object.insert("kind".into(), json!("Service"));
    object.insert(
        "metadata".into(),
        json!({"name": "web", "namespace": "apps", "labels": Value::Object(members(&input.labels))}),
    );
    match input.spec {
        SpecShape::Absent => {}
        SpecShape::Null => {
            object.insert("spec".into(), Value::Null);
        }
        SpecShape::Empty => {
            object.insert("spec".into(), json!({}));
        }
        SpecShape::Full {
            cluster_ip,
            families,
            extra,
        } => {
            let mut spec = members(&extra);
            if let Some(ip) = cluster_ip {
                spec.insert("clusterIP".into(), json!(ip));
            }
            spec.insert("ipFamilies".into(), json!(families));
            object.insert("spec".into(), Value::Object(spec));
        }
    }
    check_patch(&mutation, &Value::Object(object));
});
