//! `matchConditions` generated from the policy (`webhook-configurations --policy`) change how many
//! calls reach the webhook, and nothing else (issue 17, point 2).
//!
//! [`same_answers_with_and_without_conditions`]: one webhook process (`conditions/policy.yaml`,
//! every rule kind) registered twice on the main harness, without conditions for the namespaces
//! `e2e-iso-cn-*` and with them for `e2e-iso-cw-*` (a namespace label picks the configuration; the
//! driver's configurations skip both). Every request of the corpus — each Service of
//! `tests/fixtures/**` (the CREATE, or the old object's CREATE then the UPDATE or DELETE), and the
//! request shapes of the e2e suite — is replayed in both, case by case, the Service deleted after
//! each; the answers must be equal: status and whole message, stored dual-stack fields and labels,
//! `Warning` headers and the webhook's audit annotations. Pinned IPs stay meaningful: outside the
//! ranges as they are, inside them (where the fixtures pin) replaced by fresh IPs of the same
//! family and band in each arm ([`Pool`]), the answers read with the case's own IPs.
//!
//! [`shipped_policy_calls_per_write`]: calls per write with `manifests/policy.yaml`, counted on
//! the webhook's `/metrics`: a create leaving the fields unset 1 (mutate), a create that sets them
//! at most 1, a label-only update 0; writes that break a rule still reach `/validate` and get the
//! same answer as without conditions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use kube::Client;
use kube::api::{DeleteParams, GetParams, Patch, PatchParams, PostParams};
use kube::core::Request;
use serde_json::{Value, json};

use crate::support::{self, OWN_WEBHOOK_LABEL, RawReply, Render, Watching, Webhook};

/// The webhooks' names: the prefix of their audit annotation keys.
const WEBHOOK_NAMES: [&str; 2] = [
    "mutate.dualstack-webhook.io/",
    "validate.dualstack-webhook.io/",
];

// === the two registrations ===

/// One registration of the test's webhook: its configurations serve the namespaces labelled
/// `OWN_WEBHOOK_LABEL=<label>`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Arm {
    /// `cn` (no conditions) or `cw` (with): in namespace names.
    pub(crate) tag: &'static str,
    /// `--policy` when rendering.
    pub(crate) conditions: bool,
    /// With the in-process defaults `webhook-configurations --policy` prints after the
    /// configurations (as `serve --register-webhooks` fills them in), bound to the same namespaces.
    pub(crate) in_process_defaults: bool,
}

pub(crate) const WITHOUT: Arm = Arm {
    tag: "cn",
    conditions: false,
    in_process_defaults: false,
};
const WITH: Arm = Arm {
    tag: "cw",
    conditions: true,
    in_process_defaults: false,
};
/// As `serve --register-webhooks` registers the webhook in a cluster: the conditions and the
/// in-process defaults.
const SHIPPED: Arm = Arm {
    tag: "cs",
    conditions: true,
    in_process_defaults: true,
};

impl Arm {
    pub(crate) fn label(self, test: &str) -> String {
        format!("{test}-{}", self.tag)
    }

    /// Both configurations' name.
    pub(crate) fn config(self, test: &str) -> String {
        format!("e2e-{test}-{}", self.tag)
    }
}

/// Registers `hook` for the namespaces labelled `OWN_WEBHOOK_LABEL=<arm's label>`, with the
/// conditions of the policy it serves or without conditions.
pub(crate) async fn register(client: &Client, hook: &Webhook, test: &str, arm: Arm) {
    let (ca, url, name) = (hook.ca_pem(), hook.base_url(), arm.config(test));
    let render = Render {
        name: &name,
        base_url: &url,
        ca_pem: &ca,
        failure_policy: Some("Fail"),
        only_namespace: None,
        policy: arm.conditions.then(|| hook.policy()),
    };
    let mut docs = support::render_webhooks(&render);
    let mut conditions = 0;
    for doc in &mut docs {
        for webhook in doc["webhooks"].as_array_mut().into_iter().flatten() {
            conditions += webhook["matchConditions"].as_array().map_or(0, Vec::len);
            support::restrict_namespaces(
                webhook,
                json!({"key": OWN_WEBHOOK_LABEL, "operator": "In", "values": [arm.label(test)]}),
            );
        }
    }
    assert_eq!(
        conditions > 0,
        arm.conditions,
        "matchConditions in the configurations rendered {} --policy: {docs:#?}",
        if arm.conditions { "with" } else { "without" }
    );
    if arm.in_process_defaults {
        for mut doc in support::render_in_process_defaults(&render) {
            if doc["kind"] == "MutatingAdmissionPolicyBinding" {
                support::restrict_namespaces(
                    &mut doc["spec"]["matchResources"],
                    json!({"key": OWN_WEBHOOK_LABEL, "operator": "In", "values": [arm.label(test)]}),
                );
            }
            docs.push(doc);
        }
    }
    support::apply_webhook_documents(client, docs).await;
}

/// Shows `text` in the driver's output even when the test passes (a write to stderr itself is not
/// captured by the test harness) and keeps it in the work dir as `file`.
pub(crate) fn report(file: &str, text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
    std::fs::write(support::workdir().join(file), text).unwrap();
}

/// Reviews the webhook answered so far: (mutate, validate).
fn reviews(hook: &Webhook) -> [u32; 2] {
    let text = hook.metrics();
    ["mutate", "validate"].map(|endpoint| {
        let label = format!("endpoint=\"{endpoint}\"");
        support::metric(&text, "dualstack_webhook_reviews_total", &[&label]) as u32
    })
}

/// Writes both arms' namespace names alike (`e2e-iso-c?-…`, `calls-c?`), so that answers compare.
pub(crate) fn normalize(text: &str) -> String {
    text.replace("e2e-iso-cn-", "e2e-iso-c?-")
        .replace("e2e-iso-cw-", "e2e-iso-c?-")
        .replace("e2e-iso-ce-", "e2e-iso-c?-")
        .replace("calls-cn", "calls-c?")
        .replace("calls-cw", "calls-c?")
        .replace("calls-cs", "calls-c?")
}

// === requests ===

/// One request of a case, sent to the case's Service in the arm's namespace.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// POST this object.
    Create(Value),
    /// POST with `dryRun=All`.
    DryRunCreate(Value),
    /// PUT this object (with the stored `resourceVersion`).
    Put(Value),
    /// GET, remove these `spec` fields, PUT.
    PutDropping(&'static [&'static str]),
    /// JSON merge patch.
    Patch(Value),
    /// JSON merge patch with `dryRun=All`.
    DryRunPatch(Value),
    /// Server-side apply (field manager `e2e-gitops`, forced).
    Apply(Value),
    /// DELETE (not sent to the webhooks: their rules name CREATE and UPDATE).
    Delete,
}

impl Step {
    pub(crate) fn verb(&self) -> &'static str {
        match self {
            Self::Create(_) => "create",
            Self::DryRunCreate(_) => "create (dry run)",
            Self::Put(_) => "put",
            Self::PutDropping(_) => "put (fields dropped)",
            Self::Patch(_) => "patch",
            Self::DryRunPatch(_) => "patch (dry run)",
            Self::Apply(_) => "apply",
            Self::Delete => "delete",
        }
    }

    /// The object or patch it sends.
    fn object(&self) -> Option<&Value> {
        match self {
            Self::Create(o)
            | Self::DryRunCreate(o)
            | Self::Put(o)
            | Self::Apply(o)
            | Self::Patch(o)
            | Self::DryRunPatch(o) => Some(o),
            Self::PutDropping(_) | Self::Delete => None,
        }
    }
}

/// A Service's requests, in a logical namespace (`e2e-iso-c?-<namespace>` in each arm).
#[derive(Debug)]
pub(crate) struct Case {
    /// The Service's name (a fixture's object with `generateName` gets the API server's).
    pub(crate) name: String,
    /// Where it comes from: a fixture's path, or the e2e module whose request shapes it replays.
    pub(crate) origin: String,
    /// The logical namespace.
    pub(crate) namespace: String,
    pub(crate) steps: Vec<Step>,
}

impl Case {
    /// The IPs the requests pin: compared as they are (others by family only, they are allocated).
    fn pinned(&self) -> BTreeSet<String> {
        let mut ips = BTreeSet::new();
        for object in self.steps.iter().filter_map(Step::object) {
            let spec = &object["spec"];
            let listed = spec["clusterIPs"].as_array().into_iter().flatten();
            for ip in std::iter::once(&spec["clusterIP"]).chain(listed) {
                if let Some(ip) = ip.as_str() {
                    ips.insert(ip.to_owned());
                }
            }
        }
        ips
    }
}

/// A Service `name` with one port and a selector, `spec` merged over it, `labels` added.
fn svc(name: &str, spec: Value) -> Value {
    serde_json::to_value(support::service(name, spec)).unwrap()
}

fn labelled(name: &str, labels: Value, spec: Value) -> Value {
    let mut object = svc(name, spec);
    for (k, v) in labels.as_object().unwrap() {
        object["metadata"]["labels"][k] = v.clone();
    }
    object
}

fn case(namespace: &str, name: &str, origin: &str, steps: Vec<Step>) -> Case {
    Case {
        name: name.to_owned(),
        origin: origin.to_owned(),
        namespace: namespace.to_owned(),
        steps,
    }
}

/// The request shapes of the e2e suite (defaults, pinned, types, actions, updates, nssel) and of
/// the rule kinds the suite's policy lacks (objectSelector, a rule's defaults by label).
pub(crate) fn suite_cases() -> Vec<Case> {
    use Step::{Apply, Create, Delete, DryRunCreate, DryRunPatch, Patch, PutDropping};
    let create = |name: &str, spec: Value| Create(svc(name, spec));
    let label = |k: &str, v: &str| Patch(json!({"metadata": {"labels": {k: v}}}));
    let all_fields: &'static [&'static str] =
        &["ipFamilies", "ipFamilyPolicy", "clusterIP", "clusterIPs"];
    let mut cases = vec![
        // defaults.rs
        case(
            "defaults",
            "unset",
            "defaults",
            vec![create("unset", json!({}))],
        ),
        case(
            "defaults",
            "single",
            "defaults",
            vec![create("single", json!({"ipFamilyPolicy": "SingleStack"}))],
        ),
        case(
            "defaults",
            "v4",
            "defaults",
            vec![create("v4", json!({"ipFamilies": ["IPv4"]}))],
        ),
        case(
            "defaults",
            "compliant",
            "defaults",
            vec![create(
                "compliant",
                json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"]}),
            )],
        ),
        case(
            "defaults",
            "require",
            "defaults",
            vec![create(
                "require",
                json!({"ipFamilyPolicy": "RequireDualStack"}),
            )],
        ),
        case("legacy", "old", "defaults", vec![create("old", json!({}))]),
        // A rule allowing only SingleStack, broken by the client's PreferDualStack: judged on every
        // cluster shape (the export test's IPv4-only harness included).
        case(
            "legacy",
            "prefer",
            "ipFamilyPolicies",
            vec![create(
                "prefer",
                json!({"ipFamilyPolicy": "PreferDualStack"}),
            )],
        ),
        case(
            "prod-lb",
            "public",
            "defaults",
            vec![create("public", json!({"type": "LoadBalancer"}))],
        ),
        case(
            "prod-lb",
            "internal",
            "defaults",
            vec![create("internal", json!({}))],
        ),
        case(
            "prod-lb",
            "lb-single",
            "actions",
            vec![create(
                "lb-single",
                json!({"type": "LoadBalancer", "ipFamilyPolicy": "SingleStack"}),
            )],
        ),
        // pinned.rs (IPs in the harness's static bands, apart from the fixtures' pins)
        case(
            "pinned",
            "ip-only",
            "pinned",
            vec![create("ip-only", json!({"clusterIP": "10.96.0.30"}))],
        ),
        case(
            "pinned",
            "ips-only",
            "pinned",
            vec![create(
                "ips-only",
                json!({"clusterIPs": ["fd00:10:96::31"]}),
            )],
        ),
        case(
            "pinned",
            "both-v6",
            "pinned",
            vec![create(
                "both-v6",
                json!({"clusterIP": "fd00:10:96::32", "clusterIPs": ["fd00:10:96::32", "10.96.0.32"]}),
            )],
        ),
        case(
            "pinned",
            "both-v4",
            "pinned",
            vec![create(
                "both-v4",
                json!({"clusterIP": "10.96.0.33", "clusterIPs": ["10.96.0.33", "fd00:10:96::33"]}),
            )],
        ),
        case(
            "pinned",
            "outside",
            "pinned",
            vec![create("outside", json!({"clusterIP": "10.97.0.5"}))],
        ),
        case(
            "pinned",
            "outside-v6",
            "pinned",
            vec![create(
                "outside-v6",
                json!({"clusterIP": "10.96.0.34", "clusterIPs": ["10.96.0.34", "fd00:11::1"], "ipFamilyPolicy": "RequireDualStack"}),
            )],
        ),
        // types.rs
        case(
            "types",
            "headless",
            "types",
            vec![create("headless", json!({"clusterIP": "None"}))],
        ),
        case(
            "types",
            "headless-nosel",
            "types",
            vec![create(
                "headless-nosel",
                json!({"clusterIP": "None", "selector": null}),
            )],
        ),
        case(
            "types",
            "alias",
            "types",
            vec![create(
                "alias",
                json!({"type": "ExternalName", "externalName": "db.example.com", "selector": null}),
            )],
        ),
        case(
            "types",
            "retype",
            "types",
            vec![
                create("retype", json!({})),
                Patch(json!({"spec": {"type": "NodePort"}})),
                Patch(json!({"spec": {"type": "LoadBalancer"}})),
                Patch(json!({"spec": {"type": "ClusterIP"}})),
            ],
        ),
        case(
            "types",
            "flip",
            "types",
            vec![
                create("flip", json!({})),
                Patch(json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}})),
                Patch(json!({"spec": {"type": "ClusterIP", "externalName": null}})),
            ],
        ),
        case(
            "prod-lb",
            "flip-lb",
            "types",
            vec![
                create(
                    "flip-lb",
                    json!({"type": "ExternalName", "externalName": "db.example.com", "selector": null}),
                ),
                Patch(
                    json!({"spec": {"type": "LoadBalancer", "externalName": null, "selector": {"app": "flip-lb"}}}),
                ),
            ],
        ),
        // actions.rs
        case(
            "deny",
            "single",
            "actions",
            vec![create("single", json!({"ipFamilyPolicy": "SingleStack"}))],
        ),
        case("deny", "ok", "actions", vec![create("ok", json!({}))]),
        case(
            "deny",
            "keep-dual",
            "actions",
            vec![
                create("keep-dual", json!({})),
                Patch(json!({"spec": {"ipFamilyPolicy": "SingleStack"}})),
            ],
        ),
        case(
            "warn",
            "v4-primary",
            "actions",
            vec![
                create("v4-primary", json!({"ipFamilies": ["IPv4"]})),
                // grandfathered: a label-only update of a Service that breaks a Warn rule
                label("team", "blue"),
                PutDropping(all_fields),
            ],
        ),
        case(
            "audit",
            "audited",
            "actions",
            vec![
                create("audited", json!({"ipFamilyPolicy": "SingleStack"})),
                label("team", "blue"),
            ],
        ),
        case(
            "exempt",
            "plain",
            "actions",
            vec![create("plain", json!({})), label("team", "blue")],
        ),
        case(
            "exempt",
            "pinned",
            "actions",
            vec![create(
                "pinned",
                json!({"clusterIP": "10.96.0.35", "clusterIPs": ["10.96.0.35"]}),
            )],
        ),
        case(
            "deny",
            "dry-single",
            "actions",
            vec![DryRunCreate(svc(
                "dry-single",
                json!({"ipFamilyPolicy": "SingleStack"}),
            ))],
        ),
        case(
            "deny",
            "dry-ok",
            "actions",
            vec![DryRunCreate(svc("dry-ok", json!({})))],
        ),
        case(
            "deny",
            "dry-upd",
            "actions",
            vec![
                create("dry-upd", json!({})),
                DryRunPatch(json!({"metadata": {"labels": {"dry": "run"}}})),
                DryRunPatch(json!({"spec": {"ipFamilyPolicy": "SingleStack"}})),
            ],
        ),
        // updates.rs
        case(
            "update",
            "put-dual",
            "updates",
            vec![create("put-dual", json!({})), PutDropping(all_fields)],
        ),
        case(
            "legacy",
            "put-single",
            "updates",
            vec![
                create("put-single", json!({})),
                PutDropping(&["ipFamilies"]),
            ],
        ),
        case(
            "update",
            "relabel",
            "updates",
            vec![
                create("relabel", json!({"type": "NodePort"})),
                label("team", "blue"),
            ],
        ),
        case(
            "update",
            "applied",
            "updates",
            vec![
                Apply(svc("applied", json!({}))),
                Apply(labelled("applied", json!({"rev": "2"}), json!({}))),
            ],
        ),
        case(
            "update",
            "applied-families",
            "updates",
            vec![
                Apply(svc(
                    "applied-families",
                    json!({"ipFamilies": ["IPv6", "IPv4"], "ipFamilyPolicy": "PreferDualStack"}),
                )),
                // the second apply no longer names the fields: the webhook restores them
                Apply(svc("applied-families", json!({}))),
            ],
        ),
        case(
            "update",
            "gone",
            "updates",
            vec![create("gone", json!({})), Delete],
        ),
        // upgradeExisting on a dual-stack cluster
        case(
            "upgrade",
            "single",
            "upgrade",
            vec![
                create(
                    "single",
                    json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}),
                ),
                PutDropping(&["ipFamilies"]),
                Patch(json!({"spec": {"ipFamilyPolicy": "PreferDualStack"}})),
            ],
        ),
        // nssel.rs
        case(
            "nssel-public",
            "single",
            "nssel",
            vec![create("single", json!({"ipFamilyPolicy": "SingleStack"}))],
        ),
        case(
            "nssel-public",
            "dual",
            "nssel",
            vec![create("dual", json!({}))],
        ),
        case(
            "nssel-internal",
            "v4-first",
            "nssel",
            vec![
                create("v4-first", json!({"ipFamilies": ["IPv4", "IPv6"]})),
                label("team", "blue"),
            ],
        ),
        case(
            "nssel-plain",
            "v4-first",
            "nssel",
            vec![create("v4-first", json!({"ipFamilies": ["IPv4", "IPv6"]}))],
        ),
        // objectSelector: the verdict follows a label of the Service
        case(
            "objsel",
            "front-single",
            "objectSelector",
            vec![Create(labelled(
                "front-single",
                json!({"tier": "frontend"}),
                json!({"ipFamilyPolicy": "SingleStack"}),
            ))],
        ),
        case(
            "objsel",
            "back-single",
            "objectSelector",
            vec![
                Create(labelled(
                    "back-single",
                    json!({"tier": "backend"}),
                    json!({"ipFamilyPolicy": "SingleStack"}),
                )),
                label("tier", "frontend"),
            ],
        ),
        case(
            "objsel",
            "front-lb",
            "objectSelector",
            vec![Create(labelled(
                "front-lb",
                json!({"tier": "frontend"}),
                json!({"type": "LoadBalancer", "ipFamilyPolicy": "SingleStack"}),
            ))],
        ),
        case(
            "update",
            "legacy-label",
            "objectSelector",
            vec![
                Create(labelled(
                    "legacy-label",
                    json!({"stack": "legacy"}),
                    json!({}),
                )),
                label("team", "blue"),
            ],
        ),
        case(
            "update",
            "becomes-legacy",
            "objectSelector",
            vec![
                create("becomes-legacy", json!({})),
                label("stack", "legacy"),
                PutDropping(&["ipFamilies", "ipFamilyPolicy"]),
            ],
        ),
    ];
    for c in &mut cases {
        c.origin = format!("e2e: {}", c.origin);
    }
    cases
}

// === the fixtures ===

/// `tests/fixtures/**/*.json` but the expected answers.
fn fixture_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "json")
                && !path.to_string_lossy().ends_with(".expected.json")
            {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
        &mut files,
    );
    files.sort();
    files
}

/// A fixture's object as a client would send it: the fields the API server owns removed
/// (`uid`, `resourceVersion`, `creationTimestamp`, `managedFields`, `status`; the namespace is the
/// arm's), pinned IPs kept (the fixtures pin inside the harness's ranges, or deliberately outside).
fn as_sent(object: &Value, name: &str) -> Value {
    let mut object = object.clone();
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    let meta = object["metadata"].as_object_mut().unwrap();
    for field in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
        "namespace",
        "generation",
    ] {
        meta.remove(field);
    }
    if meta.contains_key("generateName") {
        meta.remove("name");
    } else {
        meta.insert("name".to_owned(), json!(name));
    }
    object.as_object_mut().unwrap().remove("status");
    object
}

/// The fixtures as cases, and the fixtures that cannot be replayed with the reason.
pub(crate) fn fixture_cases() -> (Vec<Case>, Vec<(String, String)>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (mut cases, mut skipped) = (Vec::new(), Vec::new());
    for path in fixture_files() {
        let origin = path.strip_prefix(&root).unwrap().display().to_string();
        let Ok(review) = serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap()) else {
            skipped.push((origin, "not JSON".to_owned()));
            continue;
        };
        let request = &review["request"];
        if !request.is_object() {
            skipped.push((origin, "no request".to_owned()));
            continue;
        }
        let (object, old) = (&request["object"], &request["oldObject"]);
        let kind = if object.is_null() { old } else { object }["kind"]
            .as_str()
            .unwrap_or_default();
        if kind != "Service" {
            skipped.push((origin, format!("the object is a {kind}, not a Service")));
            continue;
        }
        let name = format!("fx-{:02}", cases.len());
        let dry_run = request["dryRun"].as_bool().unwrap_or(false);
        let mut steps = Vec::new();
        if old.is_object() {
            steps.push(Step::Create(as_sent(old, &name)));
        }
        steps.push(match request["operation"].as_str() {
            Some("CREATE") if dry_run => Step::DryRunCreate(as_sent(object, &name)),
            Some("CREATE") => Step::Create(as_sent(object, &name)),
            Some("UPDATE") if old.is_object() && !dry_run => Step::Put(as_sent(object, &name)),
            Some("DELETE") if old.is_object() && !dry_run => Step::Delete,
            other => {
                skipped.push((origin, format!("operation {other:?} (dry run {dry_run})")));
                continue;
            }
        });
        let namespace = request["namespace"].as_str().unwrap_or("apps").to_owned();
        cases.push(case(&namespace, &name, &origin, steps));
    }
    (cases, skipped)
}

// === replaying ===

/// What one request came back with, in one arm.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    /// The status message of a refusal (normalized).
    pub(crate) message: String,
    /// The Service the answer carries (created, updated, or what a dry run would store).
    pub(crate) stored: String,
    pub(crate) warnings: Vec<String>,
    audit_id: Option<String>,
    /// Reviews the webhook answered during the request: (mutate, validate).
    pub(crate) calls: [u32; 2],
}

/// A case in one arm: each request's reply, then the stored Service (GET).
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) replies: Vec<Reply>,
    pub(crate) final_state: String,
    /// The IPs this arm pinned in place of the case's (see [`Pool`]).
    fresh: Vec<(String, String)>,
}

/// The dual-stack fields and labels of a Service: IPs the case pins as they are, allocated ones
/// by family.
fn stored_view(object: &Value, pinned: &BTreeSet<String>) -> String {
    if object["kind"] != "Service" {
        return String::new();
    }
    let ip = |ip: &Value| -> String {
        let ip = ip.as_str().unwrap_or_default();
        match ip.parse::<std::net::IpAddr>() {
            _ if pinned.contains(ip) || ip == "None" => ip.to_owned(),
            Ok(std::net::IpAddr::V4(_)) => "<IPv4>".to_owned(),
            Ok(std::net::IpAddr::V6(_)) => "<IPv6>".to_owned(),
            Err(_) => format!("{ip:?}"),
        }
    };
    let spec = &object["spec"];
    let ips: Vec<String> = spec["clusterIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(ip)
        .collect();
    format!(
        "type={} ipFamilyPolicy={} ipFamilies={} clusterIP={} clusterIPs=[{}] labels={}",
        spec["type"],
        spec["ipFamilyPolicy"],
        spec["ipFamilies"],
        ip(&spec["clusterIP"]),
        ips.join(","),
        object["metadata"]["labels"],
    )
}

async fn send_step(client: &Client, ns: &str, name: &str, step: &Step) -> RawReply {
    let services = Request::new(format!("/api/v1/namespaces/{ns}/services"));
    let body = |v: &Value| serde_json::to_vec(v).unwrap();
    let dry_post = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let dry_patch = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let req = match step {
        Step::Create(o) => services.create(&PostParams::default(), body(o)),
        Step::DryRunCreate(o) => services.create(&dry_post, body(o)),
        Step::Put(o) => {
            let mut o = o.clone();
            if let Some(stored) = get(client, ns, name).await {
                o["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"].clone();
            }
            services.replace(name, &PostParams::default(), body(&o))
        }
        Step::PutDropping(fields) => {
            // Nothing stored: the PUT of the bare object is refused (404), in both arms alike.
            let mut o = get(client, ns, name)
                .await
                .unwrap_or_else(|| svc(name, json!({})));
            for field in *fields {
                o["spec"].as_object_mut().unwrap().remove(*field);
            }
            services.replace(name, &PostParams::default(), body(&o))
        }
        Step::Patch(p) => services.patch(name, &PatchParams::default(), &Patch::Merge(p)),
        Step::DryRunPatch(p) => services.patch(name, &dry_patch, &Patch::Merge(p)),
        Step::Apply(o) => services.patch(
            name,
            &PatchParams::apply("e2e-gitops").force(),
            &Patch::Apply(o),
        ),
        Step::Delete => services.delete(name, &DeleteParams::default()),
    };
    support::send_raw(client, req.unwrap()).await
}

/// The stored Service, if any.
async fn get(client: &Client, ns: &str, name: &str) -> Option<Value> {
    let req = Request::new(format!("/api/v1/namespaces/{ns}/services"))
        .get(name, &GetParams::default())
        .unwrap();
    let reply = support::send_raw(client, req).await;
    (reply.status == 200).then_some(reply.body)
}

async fn delete(client: &Client, ns: &str, name: &str) {
    let req = Request::new(format!("/api/v1/namespaces/{ns}/services"))
        .delete(name, &DeleteParams::default())
        .unwrap();
    let status = support::send_raw(client, req).await.status;
    assert!(
        matches!(status, 200 | 202 | 404),
        "delete {ns}/{name}: {status}"
    );
}

/// Fresh IPs in the lower 256 addresses of the harness's ranges (`10.96.0.16`–`.199`,
/// `fd00:10:96::10`–`::9f`; pinned.rs and actions.rs pin above), which the API server keeps for
/// pinned IPs: each case pins fresh ones,
/// in each arm, in place of the IPs it pins in that band. The same IP cannot serve the arms one
/// after the other: kube-apiserver may still hold it right after the Service that had it was
/// deleted or became ExternalName ("provided IP is already allocated", seen once), and it keeps
/// the primary IP of a create refused for its secondary IP until its repair loop frees it a
/// minute later ("IPAddress 10.96.0.34 appears to have leaked"). Same family, same range, same
/// band: the webhook and the API server decide alike. Answers are compared with the case's own
/// IPs written back.
pub(crate) struct Pool {
    next_v4: u8,
    next_v6: u16,
    /// The /24 (IPv4) and the 256 addresses (IPv6) of the ranges it takes fresh IPs from: 0, the
    /// static band, on the main harness.
    block: u8,
}

impl Pool {
    pub(crate) fn new() -> Self {
        Self::in_block(0)
    }

    /// A pool taking its fresh IPs from `10.96.<block>.16`–`.199` and
    /// `fd00:10:96::<block>10`–`<block>9f` (0 as [`Pool::new`]): for harnesses of a test's own,
    /// whose many replays of the corpus need more fresh IPs than the static band holds. Outside
    /// the band a pinned IP is still in the range, so the webhook and the API server decide alike;
    /// the API server allocates from the band above first, and a harness of its own allocates few.
    pub(crate) fn in_block(block: u8) -> Self {
        Pool {
            next_v4: 16,
            next_v6: 0x10,
            block,
        }
    }

    /// For each IP of `pinned` in the band, a fresh one: (the case's, the one pinned instead).
    fn fresh(&mut self, pinned: &BTreeSet<String>) -> Vec<(String, String)> {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let mut out = Vec::new();
        for ip in pinned {
            let fresh = match ip.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) if support::in_range(ip, "10.96.0.0/24") => {
                    assert!(self.next_v4 < 200, "no fresh IPv4 left");
                    self.next_v4 += 1;
                    IpAddr::V4(Ipv4Addr::new(10, 96, self.block, self.next_v4 - 1))
                }
                Ok(IpAddr::V6(_)) if support::in_range(ip, "fd00:10:96::/120") => {
                    assert!(self.next_v6 < 0xa0, "no fresh IPv6 left");
                    self.next_v6 += 1;
                    IpAddr::V6(Ipv6Addr::new(
                        0xfd00,
                        0x10,
                        0x96,
                        0,
                        0,
                        0,
                        0,
                        u16::from(self.block) << 8 | (self.next_v6 - 1),
                    ))
                }
                _ => continue,
            };
            out.push((ip.clone(), fresh.to_string()));
        }
        out
    }
}

/// `value` with every string that is one of the case's IPs replaced by the fresh one.
fn pin_fresh(value: &Value, fresh: &[(String, String)]) -> Value {
    match value {
        Value::String(s) => fresh
            .iter()
            .find(|(ip, _)| ip == s)
            .map_or_else(|| value.clone(), |(_, new)| json!(new)),
        Value::Array(items) => Value::Array(items.iter().map(|v| pin_fresh(v, fresh)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), pin_fresh(v, fresh)))
                .collect(),
        ),
        _ => value.clone(),
    }
}

impl Step {
    /// The same request pinning the fresh IPs in place of the case's.
    fn with_fresh(&self, fresh: &[(String, String)]) -> Self {
        let t = |v: &Value| pin_fresh(v, fresh);
        match self {
            Self::Create(o) => Self::Create(t(o)),
            Self::DryRunCreate(o) => Self::DryRunCreate(t(o)),
            Self::Put(o) => Self::Put(t(o)),
            Self::Patch(o) => Self::Patch(t(o)),
            Self::DryRunPatch(o) => Self::DryRunPatch(t(o)),
            Self::Apply(o) => Self::Apply(t(o)),
            Self::PutDropping(fields) => Self::PutDropping(fields),
            Self::Delete => Self::Delete,
        }
    }
}

/// `text` with the fresh IPs written as the case's IPs they stand for (whole addresses only:
/// `10.96.0.16` is not rewritten inside `10.96.0.160`).
pub(crate) fn case_ips(text: &str, fresh: &[(String, String)]) -> String {
    let part_of_ip = |c: char| c.is_ascii_hexdigit() || c == '.' || c == ':';
    let mut text = text.to_owned();
    for (ip, new) in fresh {
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(at) = rest.find(new.as_str()) {
            let (before, after) = (&rest[..at], &rest[at + new.len()..]);
            let whole = !before.ends_with(part_of_ip) && !after.starts_with(part_of_ip);
            out.push_str(before);
            out.push_str(if whole { ip } else { new });
            rest = after;
        }
        out.push_str(rest);
        text = out;
    }
    text
}

/// Replays a case in one arm's namespace, then deletes its Service.
pub(crate) async fn replay(
    client: &Client,
    hook: &Webhook,
    arm: Arm,
    case: &Case,
    pool: &mut Pool,
) -> Run {
    let ns = format!("e2e-iso-{}-{}", arm.tag, case.namespace);
    replay_in(client, hook, &ns, case, pool).await
}

/// Replays a case in the namespace `ns` (whatever its logical one), then deletes its Service.
pub(crate) async fn replay_in(
    client: &Client,
    hook: &Webhook,
    ns: &str,
    case: &Case,
    pool: &mut Pool,
) -> Run {
    let fresh = pool.fresh(&case.pinned());
    let pinned: BTreeSet<String> = case
        .pinned()
        .iter()
        .map(|ip| pin_fresh(&json!(ip), &fresh).as_str().unwrap().to_owned())
        .collect();
    let as_case = |text: &str| case_ips(&normalize(text), &fresh);
    let mut name = case.name.clone();
    delete(client, ns, &name).await;
    let mut replies = Vec::new();
    for step in &case.steps {
        let before = reviews(hook);
        let raw = send_step(client, ns, &name, &step.with_fresh(&fresh)).await;
        let after = reviews(hook);
        if let (Step::Create(_), Some(created)) = (step, raw.body["metadata"]["name"].as_str()) {
            // generateName: later requests and the clean-up use the name the API server chose.
            name = created.to_owned();
        }
        replies.push(Reply {
            status: raw.status,
            message: as_case(raw.body["message"].as_str().unwrap_or_default()),
            stored: as_case(&stored_view(&raw.body, &pinned)),
            warnings: raw.warnings.iter().map(|w| as_case(w)).collect(),
            audit_id: raw.audit_id,
            calls: [after[0] - before[0], after[1] - before[1]],
        });
    }
    let final_state = match get(client, ns, &name).await {
        Some(object) => as_case(&stored_view(&object, &pinned)),
        None => "(none stored)".to_owned(),
    };
    delete(client, ns, &name).await;
    Run {
        replies,
        final_state,
        fresh,
    }
}

/// The webhook's audit annotations of each request, by `auditID` (normalized; waits until every
/// id is in the audit log).
async fn audit_annotations(ids: &BTreeSet<String>) -> HashMap<String, BTreeMap<String, String>> {
    let log = support::env("E2E_AUDIT_LOG");
    support::eventually("every replayed request in the audit log", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        let mut found = HashMap::new();
        for event in text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        {
            let Some(id) = event["auditID"].as_str().filter(|id| ids.contains(*id)) else {
                continue;
            };
            if event["stage"] != "ResponseComplete" {
                continue;
            }
            let ours = event["annotations"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| WEBHOOK_NAMES.iter().any(|p| k.starts_with(p)))
                .map(|(k, v)| (k.clone(), normalize(v.as_str().unwrap_or_default())))
                .collect();
            found.insert(id.to_owned(), ours);
        }
        (found.len() == ids.len()).then_some(found)
    })
    .await
}

/// Creates the namespaces of `cases` in both arms, each labelled for its arm (and `nssel-*` with
/// the labels their rules read).
pub(crate) async fn namespaces(client: &Client, test: &str, cases: &[Case], arms: &[Arm]) {
    let logical: BTreeSet<&str> = cases.iter().map(|c| c.namespace.as_str()).collect();
    for arm in arms {
        for ns in &logical {
            let mut labels = namespace_labels(ns);
            labels[OWN_WEBHOOK_LABEL] = json!(arm.label(test));
            let name = format!("e2e-iso-{}-{ns}", arm.tag);
            support::labelled_namespace(client, &name, labels).await;
        }
    }
}

/// The labels the rules read on a logical namespace (`nssel-*`: `exposure`).
pub(crate) fn namespace_labels(logical: &str) -> Value {
    match logical {
        "nssel-public" => json!({"exposure": "public"}),
        "nssel-internal" => json!({"exposure": "internal"}),
        _ => json!({}),
    }
}

/// A difference between the arms.
struct Mismatch {
    case: String,
    what: String,
    without: String,
    with: String,
}

fn compare(
    case: &Case,
    runs: [&Run; 2],
    annotations: &HashMap<String, BTreeMap<String, String>>,
    out: &mut Vec<Mismatch>,
) {
    let mut differ = |what: String, without: String, with: String| {
        if without != with {
            out.push(Mismatch {
                case: format!("{}/{} ({})", case.namespace, case.name, case.origin),
                what,
                without,
                with,
            });
        }
    };
    let audit = |reply: &Reply, run: &Run| {
        let id = reply.audit_id.as_deref().unwrap_or_default();
        case_ips(&format!("{:?}", annotations.get(id)), &run.fresh)
    };
    for (i, step) in case.steps.iter().enumerate() {
        let [a, b] = [&runs[0].replies[i], &runs[1].replies[i]];
        let at = |field: &str| format!("step {} ({}): {field}", i + 1, step.verb());
        differ(at("status"), a.status.to_string(), b.status.to_string());
        differ(at("message"), a.message.clone(), b.message.clone());
        differ(at("answer"), a.stored.clone(), b.stored.clone());
        differ(
            at("warnings"),
            format!("{:?}", a.warnings),
            format!("{:?}", b.warnings),
        );
        differ(
            at("audit annotations"),
            audit(a, runs[0]),
            audit(b, runs[1]),
        );
    }
    differ(
        "stored at the end".to_owned(),
        runs[0].final_state.clone(),
        runs[1].final_state.clone(),
    );
}

fn calls(runs: &[&Run]) -> [u32; 2] {
    let mut total = [0, 0];
    for reply in runs.iter().flat_map(|r| &r.replies) {
        total[0] += reply.calls[0];
        total[1] += reply.calls[1];
    }
    total
}

/// A webhook of the test's own serving `policy`, watching the main harness (ranges from its
/// ServiceCIDRs, namespace labels), once ready.
pub(crate) fn watching_webhook(name: &str, policy: &Path) -> Webhook {
    let kubeconfig = PathBuf::from(support::env("E2E_KUBECONFIG"));
    Webhook::watching(
        name,
        &Watching {
            kubeconfig: &kubeconfig,
            cidrs: None,
            policy,
            wait_ready: true,
        },
    )
}

/// Waits until a SingleStack Service is refused in `ns` (a dry run): the validation is in place.
pub(crate) async fn wait_denying(client: &Client, ns: &str) {
    let deny = support::namespace(client, ns).await;
    support::eventually(&format!("a denial in {ns}"), || async {
        let probe = support::service("probe", json!({"ipFamilyPolicy": "SingleStack"}));
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        deny.create(&dry, &probe).await.is_err().then_some(())
    })
    .await;
}

/// The corpus in both arms; equal answers, fewer calls with the conditions.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn same_answers_with_and_without_conditions() {
    const TEST: &str = "conditions";
    let (fixtures, skipped) = fixture_cases();
    let suite = suite_cases();
    let cases: Vec<Case> = fixtures.into_iter().chain(suite).collect();
    let client = support::client().await;
    // The namespaces first: the webhook lists their labels when it starts.
    namespaces(&client, TEST, &cases, &[WITHOUT, WITH]).await;
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/conditions/policy.yaml");
    let hook = watching_webhook("conditions-webhook", &policy);
    for arm in [WITHOUT, WITH] {
        register(&client, &hook, TEST, arm).await;
        support::wait_mutating(
            &client,
            &format!("e2e-iso-{}-defaults", arm.tag),
            "PreferDualStack",
        )
        .await;
        wait_denying(&client, &format!("e2e-iso-{}-deny", arm.tag)).await;
    }

    let mut runs = Vec::new();
    let mut pool = Pool::new();
    for case in &cases {
        let without = replay(&client, &hook, WITHOUT, case, &mut pool).await;
        let with = replay(&client, &hook, WITH, case, &mut pool).await;
        runs.push([without, with]);
    }
    let ids: BTreeSet<String> = runs
        .iter()
        .flatten()
        .flat_map(|run| &run.replies)
        .filter_map(|r| r.audit_id.clone())
        .collect();
    let annotations = audit_annotations(&ids).await;

    let mut mismatches = Vec::new();
    for (case, [without, with]) in cases.iter().zip(&runs) {
        compare(case, [without, with], &annotations, &mut mismatches);
    }
    support::delete_webhooks(&client, &WITHOUT.config(TEST)).await;
    support::delete_webhooks(&client, &WITH.config(TEST)).await;

    // The summary.
    let requests: usize = cases.iter().map(|c| c.steps.len()).sum();
    let without_runs: Vec<&Run> = runs.iter().map(|[a, _]| a).collect();
    let with_runs: Vec<&Run> = runs.iter().map(|[_, b]| b).collect();
    let (calls_without, calls_with) = (calls(&without_runs), calls(&with_runs));
    let replies_without = || without_runs.iter().flat_map(|r| &r.replies);
    let denied = replies_without().filter(|r| r.status == 403).count();
    let warned = replies_without().filter(|r| !r.warnings.is_empty()).count();
    let audited = replies_without()
        .filter(|r| {
            let id = r.audit_id.as_deref().unwrap_or_default();
            annotations.get(id).is_some_and(|a| !a.is_empty())
        })
        .count();
    let warnings_given_up = mismatches
        .iter()
        .filter(|m| m.what.ends_with("warnings"))
        .count();
    let mut summary = String::new();
    writeln!(
        summary,
        "conditions: {} cases ({} fixtures, {} e2e request shapes), {requests} requests replayed in \
         each arm; without conditions {denied} denied, {warned} warned, {audited} with audit \
         annotations",
        cases.len(),
        cases.iter().filter(|c| !c.origin.starts_with("e2e:")).count(),
        cases.iter().filter(|c| c.origin.starts_with("e2e:")).count(),
    )
    .unwrap();
    writeln!(summary, "skipped fixtures: {}", skipped.len()).unwrap();
    for (origin, why) in &skipped {
        writeln!(summary, "  {origin}: {why}").unwrap();
    }
    writeln!(
        summary,
        "reviews the webhook answered: without conditions {} mutate + {} validate = {}; with \
         conditions {} mutate + {} validate = {}",
        calls_without[0],
        calls_without[1],
        calls_without[0] + calls_without[1],
        calls_with[0],
        calls_with[1],
        calls_with[0] + calls_with[1],
    )
    .unwrap();
    writeln!(
        summary,
        "warnings given up with conditions: {warnings_given_up} (expected none)"
    )
    .unwrap();
    writeln!(
        summary,
        "calls (mutate+validate) per case, without -> with conditions:"
    )
    .unwrap();
    for (case, [without, with]) in cases.iter().zip(&runs) {
        let [a, b] = [calls(&[without]), calls(&[with])];
        let service = format!("{}/{}", case.namespace, case.name);
        writeln!(
            summary,
            "  {service:<28} {}+{} -> {}+{}  {}",
            a[0], a[1], b[0], b[1], case.origin
        )
        .unwrap();
    }
    report("conditions-summary.txt", &summary);

    let listing: String = mismatches
        .iter()
        .map(|m| {
            format!(
                "\n{} — {}:\n  without: {}\n  with:    {}",
                m.case, m.what, m.without, m.with
            )
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} differences with the conditions:{listing}",
        mismatches.len()
    );
    // The comparison means something: the corpus makes the webhook deny, warn and audit, and the
    // conditions do skip calls (while some still reach it).
    assert!(denied > 0 && warned > 0 && audited > 0, "{summary}");
    let (total_without, total_with) = (
        calls_without[0] + calls_without[1],
        calls_with[0] + calls_with[1],
    );
    assert!(
        0 < total_with && total_with < total_without,
        "calls with conditions {total_with}, without {total_without}"
    );
}

// === the shipped policy ===

/// What the shipped policy's defaults store on the main harness (IPs by family).
const DUAL_V6_FIRST: &str = r#"type="ClusterIP" ipFamilyPolicy="PreferDualStack" ipFamilies=["IPv6","IPv4"] clusterIP=<IPv6> clusterIPs=[<IPv6>,<IPv4>] labels={"e2e":"true"}"#;

/// The text of a `Warning` header (`299 - "<text>"`, quotes escaped).
fn warning_text(header: &str) -> String {
    header
        .strip_prefix("299 - \"")
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(header)
        .replace("\\\"", "\"")
        .replace("\\\\", "\\")
}

/// One write in both arms of the shipped-policy test: its replies and calls.
async fn write_each(
    client: &Client,
    hook: &Webhook,
    namespace: &str,
    name: &str,
    step: &Step,
) -> [Reply; 3] {
    let mut out = Vec::new();
    for arm in [WITHOUT, WITH, SHIPPED] {
        let ns = format!("{namespace}-{}", arm.tag);
        let before = reviews(hook);
        let raw = send_step(client, &ns, name, step).await;
        let after = reviews(hook);
        out.push(Reply {
            status: raw.status,
            message: normalize(raw.body["message"].as_str().unwrap_or_default()),
            stored: stored_view(&raw.body, &BTreeSet::new()),
            warnings: raw.warnings.iter().map(|w| normalize(w)).collect(),
            audit_id: raw.audit_id,
            calls: [after[0] - before[0], after[1] - before[1]],
        });
    }
    let replies = <[Reply; 3]>::try_from(out).unwrap();
    let answer = |r: &Reply| {
        (
            r.status,
            r.message.clone(),
            r.stored.clone(),
            r.warnings.clone(),
        )
    };
    let [without, with, shipped] = replies.each_ref().map(answer);
    assert_eq!(
        without,
        with,
        "{namespace}/{name} {}: the answer changed with the conditions",
        step.verb()
    );
    assert_eq!(
        without,
        shipped,
        "{namespace}/{name} {}: the answer changed with the in-process defaults",
        step.verb()
    );
    replies
}

/// Calls per write with the shipped configuration and `manifests/policy.yaml` (issue 17's
/// done-means), on a webhook of the test's own serving that policy, registered as shipped (its
/// conditions and its in-process defaults) and, for comparison, with its conditions only and
/// without them, on namespaces the driver's configurations skip.
#[tokio::test]
#[ignore = "needs the e2e harness: make e2e"]
async fn shipped_policy_calls_per_write() {
    const TEST: &str = "calls";
    let client = support::client().await;
    // `calls-c?` gets the policy's defaults and its prefer-ipv6-first Warn rule; `prod-calls-c?`
    // also its public-lb-dual-stack Deny rule (LoadBalancer and NodePort).
    for arm in [WITHOUT, WITH, SHIPPED] {
        for ns in ["calls", "prod-calls"] {
            let labels = json!({OWN_WEBHOOK_LABEL: arm.label(TEST)});
            support::labelled_namespace(&client, &format!("{ns}-{}", arm.tag), labels).await;
        }
    }
    let hook = watching_webhook(
        "calls-webhook",
        &support::manifests_dir().join("policy.yaml"),
    );
    for arm in [WITHOUT, WITH, SHIPPED] {
        register(&client, &hook, TEST, arm).await;
        support::wait_mutating(&client, &format!("calls-{}", arm.tag), "PreferDualStack").await;
    }
    // The API server's policy informers pick the in-process defaults up on their own time: until
    // a dry-run create is defaulted with no call to the webhook.
    let api = support::namespace(&client, &format!("calls-{}", SHIPPED.tag)).await;
    support::eventually("the in-process defaults applied", || async {
        let before = reviews(&hook);
        let dry = kube::api::PostParams {
            dry_run: true,
            ..Default::default()
        };
        let created = api
            .create(&dry, &support::service("probe", json!({})))
            .await
            .ok()?;
        let after = reviews(&hook);
        (support::policy_of(&created) == "PreferDualStack" && after[0] == before[0]).then_some(())
    })
    .await;
    for arm in [WITHOUT, WITH, SHIPPED] {
        for ns in ["calls", "prod-calls"] {
            let ns = format!("{ns}-{}", arm.tag);
            for name in ["unset", "explicit", "v4-first", "lb-single"] {
                delete(&client, &ns, name).await;
            }
        }
    }

    // 1. A create that leaves the fields unset: /mutate only, and the policy's defaults stored.
    let unset = write_each(
        &client,
        &hook,
        "calls",
        "unset",
        &Step::Create(svc("unset", json!({}))),
    )
    .await;
    assert_eq!(unset[0].calls, [1, 1], "without conditions: {:?}", unset[0]);
    assert_eq!(unset[1].calls, [1, 0], "with conditions: {:?}", unset[1]);
    assert_eq!(unset[1].stored, DUAL_V6_FIRST, "{:?}", unset[1]);
    assert!(unset[1].warnings.is_empty(), "{:?}", unset[1]);
    // As shipped, the defaults are set in-process: no call at all.
    assert_eq!(unset[2].calls, [0, 0], "as shipped: {:?}", unset[2]);

    // 2. A create that sets them itself: at most one call (expected none), stored as sent.
    let spec = json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"]});
    let explicit = write_each(
        &client,
        &hook,
        "calls",
        "explicit",
        &Step::Create(svc("explicit", spec)),
    )
    .await;
    assert!(
        explicit[1].calls[0] + explicit[1].calls[1] <= 1,
        "with conditions: {:?}",
        explicit[1]
    );
    assert_eq!(explicit[1].stored, DUAL_V6_FIRST, "{:?}", explicit[1]);
    assert_eq!(explicit[2].calls, [0, 0], "as shipped: {:?}", explicit[2]);

    // 3. A label-only update: no call; only the label changes.
    let label = Step::Patch(json!({"metadata": {"labels": {"team": "blue"}}}));
    let relabel = write_each(&client, &hook, "calls", "unset", &label).await;
    assert_eq!(
        relabel[0].calls,
        [1, 1],
        "without conditions: {:?}",
        relabel[0]
    );
    assert_eq!(
        relabel[1].calls,
        [0, 0],
        "with conditions: {:?}",
        relabel[1]
    );
    assert_eq!(
        relabel[1].stored.replace(r#","team":"blue""#, ""),
        DUAL_V6_FIRST,
        "{:?}",
        relabel[1]
    );
    assert_ne!(relabel[1].stored, DUAL_V6_FIRST, "the label is stored");
    assert_eq!(relabel[2].calls, [0, 0], "as shipped: {:?}", relabel[2]);

    // 4. Writes that break a rule still reach /validate and get the same answer: IPv4 first
    //    (prefer-ipv6-first, Warn), a single-stack LoadBalancer in prod-* (public-lb-dual-stack,
    //    Deny; every field set, so nothing for /mutate), and a label-only update of the warned
    //    Service (grandfathered: warned again).
    let v4 = Step::Create(svc("v4-first", json!({"ipFamilies": ["IPv4", "IPv6"]})));
    let warned = write_each(&client, &hook, "calls", "v4-first", &v4).await;
    assert_eq!(warned[1].status, 201, "{:?}", warned[1]);
    assert!(warned[1].calls[1] == 1, "{:?}", warned[1]);
    assert_eq!(warned[2].calls, [0, 1], "as shipped: {:?}", warned[2]);
    assert_eq!(
        warned[1]
            .warnings
            .iter()
            .map(|w| warning_text(w))
            .collect::<Vec<_>>(),
        [
            r#"Service "calls-c?/v4-first": rule "prefer-ipv6-first": primary family IPv4 but IPv6 required"#
        ],
    );
    let regrandfathered = write_each(&client, &hook, "calls", "v4-first", &label).await;
    assert!(regrandfathered[1].calls[1] == 1, "{:?}", regrandfathered[1]);
    assert_eq!(regrandfathered[2].calls, [0, 1], "{:?}", regrandfathered[2]);
    assert_eq!(
        regrandfathered[1]
            .warnings
            .iter()
            .map(|w| warning_text(w))
            .collect::<Vec<_>>(),
        [
            r#"Service "calls-c?/v4-first": grandfathered by rule "prefer-ipv6-first": primary family IPv4 but IPv6 required"#
        ],
    );
    let lb_spec =
        json!({"type": "LoadBalancer", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]});
    let lb = Step::Create(svc("lb-single", lb_spec));
    let denied = write_each(&client, &hook, "prod-calls", "lb-single", &lb).await;
    assert_eq!(denied[1].calls, [0, 1], "{:?}", denied[1]);
    assert_eq!(denied[2].calls, [0, 1], "{:?}", denied[2]);
    assert_eq!(denied[1].status, 403, "{:?}", denied[1]);
    assert_eq!(
        denied[1].message,
        "admission webhook \"validate.dualstack-webhook.io\" denied the request: Service \
         \"prod-calls-c?/lb-single\" violates the dual-stack policy: rule \"public-lb-dual-stack\": \
         ipFamilyPolicy is SingleStack, allowed: PreferDualStack, RequireDualStack; set \
         spec.ipFamilyPolicy: PreferDualStack; the Service has one IP family, must be dual-stack; \
         set spec.ipFamilyPolicy: RequireDualStack (or PreferDualStack) and leave spec.ipFamilies \
         unset or list both families"
    );

    let line = format!(
        "calls per write with manifests/policy.yaml (mutate+validate), without conditions -> \
         with conditions -> as shipped (conditions and in-process defaults): create unset {:?}; \
         create explicit {:?}; label-only patch {:?}; create IPv4-first (Warn) {:?}; single-stack \
         LoadBalancer in prod-* (Deny) {:?}; label-only patch of the warned Service {:?}\n",
        unset.each_ref().map(|r| r.calls),
        explicit.each_ref().map(|r| r.calls),
        relabel.each_ref().map(|r| r.calls),
        warned.each_ref().map(|r| r.calls),
        denied.each_ref().map(|r| r.calls),
        regrandfathered.each_ref().map(|r| r.calls),
    );
    report("conditions-calls.txt", &line);
    support::delete_webhooks(&client, &WITHOUT.config(TEST)).await;
    support::delete_webhooks(&client, &WITH.config(TEST)).await;
    support::delete_webhooks(&client, &SHIPPED.config(TEST)).await;
}
