//! `check` through the binary: what it reads (stdin, Lists of any kind, JSON and YAML, directories,
//! broken documents beside good ones), what it knows (`--namespace`, namespace labels) and what it
//! does not invent (a cluster it was not told of); and, through the library, that a Service it
//! denies without the cluster's ranges is denied on every shape of cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use dualstack_webhook::cluster::ServiceCidrs;
use dualstack_webhook::commands::check::{self, Knowledge};
use dualstack_webhook::commands::report::Verdict;
use dualstack_webhook::domain::policy::Policy;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_dualstack-webhook");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/policy.yaml");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const DUAL_V6: &str = "fd00:10:96::/112,10.96.0.0/16";

fn check_cmd(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("check")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The JSON rows of a run, and its exit code.
fn rows(args: &[&str], stdin: &str) -> (Vec<Value>, Option<i32>) {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = check_cmd(&all, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rows = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (rows, out.status.code())
}

fn row<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows:#?}"))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const LB_IN_PROD: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod-eu}
spec: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80}]}
";

/// The issue's report: without the ranges, a plain LoadBalancer in `prod-eu` was denied as
/// single-stack, though every dual-stack cluster accepts it. Now it is not denied without them, and
/// with them it is judged on that cluster, its fields and addresses shown.
#[test]
fn an_unknown_cluster_is_not_taken_for_a_single_stack_one() {
    let (without, code) = rows(&["--policy", EXAMPLE, "-"], LB_IN_PROD);
    assert_eq!(code, Some(0), "{without:#?}");
    assert_eq!(without[0]["verdict"], "ok");

    let namespaces = "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod-eu, labels: {exposure: public}}\n---\n";
    let input = format!("{namespaces}{LB_IN_PROD}");
    let (with, code) = rows(
        &["--policy", EXAMPLE, "--service-cidrs", DUAL_V6, "-"],
        &input,
    );
    assert_eq!(code, Some(0));
    assert_eq!(
        with,
        vec![json!({
            "file": "-", "documentIndex": 1, "line": 5,
            "namespace": "prod-eu", "name": "web", "type": "LoadBalancer",
            "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"],
            // fd00:10:96::1 is the `default/kubernetes` Service's.
            "clusterIPs": ["fd00:10:96::2", "10.96.0.1"],
            "verdict": "ok", "rules": [], "message": "",
        })]
    );
}

/// A verdict that depends on the cluster says on what, and is not a failure.
#[test]
fn a_verdict_that_depends_on_the_cluster_says_on_what() {
    let pinned_v4 = "apiVersion: v1\nkind: Service\nmetadata: {name: pinned, namespace: apps}\nspec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n";
    let (out, code) = rows(&["--policy", EXAMPLE, "-"], pinned_v4);
    assert_eq!(code, Some(0));
    assert_eq!(out[0]["verdict"], "unknown");
    assert_eq!(
        out[0]["message"],
        "ok on IPv4 clusters; \
         refused on IPv6 clusters: the API server would refuse it: spec.clusterIPs[0]: IPv4 is not configured on this cluster; \
         warn on dual-stack clusters: Service \"apps/pinned\": rule \"prefer-ipv6-first\": primary family IPv4 but IPv6 required; \
         give --service-cidrs to decide"
    );
    assert_eq!(out[0]["rules"], json!(["prefer-ipv6-first"]));
    // Given the ranges, decided.
    let (out, _) = rows(
        &["--policy", EXAMPLE, "--service-cidrs", "10.96.0.0/16", "-"],
        pinned_v4,
    );
    assert_eq!(out[0]["verdict"], "ok");
    assert_eq!(out[0]["clusterIPs"], json!(["10.96.0.10"]));
}

/// A rule whose namespaceSelector reads labels nobody gave is tried both ways; labels from a file
/// decide it.
#[test]
fn namespace_labels_come_from_a_file_or_stay_unknown() {
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = write(
        policy_dir.path(),
        "policy.yaml",
        "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\nrules:\n  - name: public-dual\n    match: {namespaceSelector: {matchLabels: {exposure: public}}}\n    require: {dualStack: true}\n",
    );
    let policy = policy.to_str().unwrap();
    let single = "apiVersion: v1\nkind: Service\nmetadata: {name: one}\nspec: {ipFamilyPolicy: SingleStack, ports: [{port: 80}]}\n";
    let args = [
        "--policy",
        policy,
        "--service-cidrs",
        DUAL_V6,
        "--namespace",
        "shop",
        "-",
    ];
    let (out, code) = rows(&args, single);
    assert_eq!(code, Some(0), "unknown labels never deny");
    assert_eq!(
        out[0]["namespace"], "shop",
        "--namespace names the namespace"
    );
    assert_eq!(out[0]["verdict"], "unknown");
    assert_eq!(
        out[0]["message"],
        "ok if rule \"public-dual\" does not apply in namespace \"shop\" (by its labels); \
         deny if rule \"public-dual\" applies in namespace \"shop\" (by its labels): \
         Service \"shop/one\" violates the dual-stack policy: rule \"public-dual\": the Service has one IP family, must be dual-stack; \
         set spec.ipFamilyPolicy: RequireDualStack (or PreferDualStack) and leave spec.ipFamilies unset or list both families; \
         give --namespace-labels or --namespaces-from-cluster to decide"
    );

    let labels = write(
        policy_dir.path(),
        "namespaces.json",
        r#"{"apiVersion": "v1", "kind": "NamespaceList", "items": [{"metadata": {"name": "shop", "labels": {"exposure": "public"}}}]}"#,
    );
    let mut args = args.to_vec();
    args.splice(0..0, ["--namespace-labels", labels.to_str().unwrap()]);
    let (out, code) = rows(&args, single);
    assert_eq!(code, Some(1));
    assert_eq!(out[0]["verdict"], "deny");
    assert_eq!(out[0]["rules"], json!(["public-dual"]));

    args[1] = "/nonexistent";
    let out = check_cmd(&args, single);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "dualstack-webhook: cannot read the namespace labels: /nonexistent: No such file or directory (os error 2)\n"
    );
}

/// Lists of any kind (the API's own lists leave `kind` off their items), JSON files in a
/// directory, a broken document beside good ones: every readable Service is judged, each broken
/// document is a row with its file and line, and the run fails.
#[test]
fn reads_lists_json_and_keeps_going_past_a_broken_document() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a-list.yaml",
        "apiVersion: v1\nkind: ServiceList\nitems:\n- metadata: {name: from-list, namespace: apps}\n  spec: {ports: [{port: 80}]}\n",
    );
    write(
        dir.path(),
        "b.json",
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "from-json", "namespace": "apps"}, "spec": {"ports": [{"port": 80}]}}"#,
    );
    write(
        dir.path(),
        "c-broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: bad-ports}\nspec: {ports: oops}\n---\nkey: [unclosed\n",
    );
    write(dir.path(), "notes.txt", "not a manifest");
    let d = dir.path().to_str().unwrap();
    let (out, code) = rows(&["--policy", EXAMPLE, "--service-cidrs", DUAL_V6, d], "");
    assert_eq!(code, Some(1), "an unreadable document fails the run");
    let names: Vec<&str> = out.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["from-list", "from-json", "", ""]);
    assert_eq!(row(&out, "from-list")["line"], 4);
    assert_eq!(row(&out, "from-list")["verdict"], "ok");
    assert_eq!(row(&out, "from-json")["verdict"], "ok");
    let broken = format!("{d}/c-broken.yaml");
    assert_eq!(
        out[2],
        json!({
            "file": broken, "documentIndex": 0, "line": 1,
            "namespace": "", "name": "", "type": "",
            "ipFamilyPolicy": "", "ipFamilies": [], "clusterIPs": [],
            "verdict": "error", "rules": [],
            "message": "Service \"bad-ports\": spec.ports: invalid type: string \"oops\", expected a sequence",
        })
    );
    assert_eq!(out[3]["documentIndex"], 1);
    assert_eq!(out[3]["line"], 7);
    assert_eq!(out[3]["verdict"], "error");
}

/// Nothing readable at all is exit 2 with every reason; a symlink loop is refused, the rest read.
#[test]
fn nothing_readable_is_exit_2_and_a_symlink_loop_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = check_cmd(
        &["--policy", EXAMPLE, empty.to_str().unwrap(), "/nonexistent"],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "dualstack-webhook: nothing to check: {0}: no .yaml, .yml or .json documents in this directory; \
             /nonexistent: No such file or directory (os error 2)\n",
            empty.display()
        )
    );
    let out = check_cmd(&["--policy", EXAMPLE, "-"], "");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "dualstack-webhook: nothing to check: no documents in the input\n"
    );

    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    write(&tree, "svc.yaml", LB_IN_PROD);
    std::os::unix::fs::symlink(&tree, tree.join("loop")).unwrap();
    let (out, code) = rows(&["--policy", EXAMPLE, tree.to_str().unwrap()], "");
    assert_eq!(code, Some(1));
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(row(&out, "web")["verdict"], "ok");
    assert_eq!(out[0]["file"], format!("{}/loop", tree.display()));
    assert_eq!(
        out[0]["message"],
        format!("a symlink loop leads back to {}", tree.display())
    );
}

/// Each Service gets addresses of its own, as the API server allocates them; a second Service
/// pinning a taken address is refused, as the API server refuses it.
#[test]
fn allocations_are_distinct_and_a_taken_address_is_refused() {
    let services = "\
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: a, namespace: legacy}, spec: {ports: [{port: 80}]}}
- {apiVersion: v1, kind: Service, metadata: {name: b, namespace: legacy}, spec: {ports: [{port: 80}], clusterIP: 10.96.0.1}}
- {apiVersion: v1, kind: Service, metadata: {name: c, namespace: legacy}, spec: {ports: [{port: 80}]}}
- {apiVersion: v1, kind: Service, metadata: {name: d, namespace: legacy}, spec: {ports: [{port: 80}], clusterIP: 10.96.0.1}}
";
    let (out, code) = rows(
        &["--policy", EXAMPLE, "--service-cidrs", DUAL_V6, "-"],
        services,
    );
    assert_eq!(code, Some(1));
    let ips: Vec<&Value> = out.iter().map(|r| &r["clusterIPs"]).collect();
    assert_eq!(
        ips,
        [
            &json!(["10.96.0.2"]),
            &json!(["10.96.0.1"]),
            &json!(["10.96.0.3"]),
            &json!([])
        ]
    );
    assert_eq!(row(&out, "d")["verdict"], "refused");
    assert_eq!(
        row(&out, "d")["message"],
        "the API server would refuse it: spec.clusterIPs: failed to allocate IP 10.96.0.1: provided IP is already allocated"
    );
    // The primary range's first address is the `default/kubernetes` Service's.
    let (out, _) = rows(
        &["--policy", EXAMPLE, "--service-cidrs", "10.96.0.0/16", "-"],
        services,
    );
    assert_eq!(row(&out, "b")["verdict"], "refused");

    // Without the ranges: the second pin is refused on every shape, for one reason or another.
    let (out, code) = rows(&["--policy", EXAMPLE, "-"], services);
    assert_eq!(code, Some(1));
    assert_eq!(row(&out, "b")["verdict"], "unknown");
    assert_eq!(row(&out, "d")["verdict"], "refused");
    assert_eq!(
        row(&out, "d")["message"],
        "refused on IPv4 or dual-stack clusters: the API server would refuse it: spec.clusterIPs: failed to allocate IP 10.96.0.1: provided IP is already allocated; \
         refused on IPv6 clusters: the API server would refuse it: spec.clusterIPs[0]: IPv4 is not configured on this cluster"
    );
}

/// Every fixture Service (the CREATE objects of tests/fixtures, in their namespaces), checked
/// without the ranges, is denied or refused only if it is denied or refused on each shape of
/// cluster checked with its ranges; and with the ranges, nothing is unknown for a lack of them.
#[test]
fn a_denial_without_the_ranges_holds_on_every_shape() {
    let policy = Policy::from_yaml(&std::fs::read_to_string(EXAMPLE).unwrap()).unwrap();
    let fixture_policy = std::fs::read_to_string(format!("{FIXTURES}/policy.yaml")).unwrap();
    let fixture_policy = Policy::from_yaml(&fixture_policy).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifests = write(dir.path(), "services.yaml", &fixture_services());
    let shapes = [
        "10.96.0.0/16",
        "fd00:10:96::/112",
        "10.96.0.0/16,fd00:10:96::/112",
        DUAL_V6,
    ];
    let (mut checked, mut failing) = (0, 0);
    for policy in [&policy, &fixture_policy] {
        let judge = |cidrs: Option<&str>| {
            let known = Knowledge {
                service_cidrs: cidrs.map(|c| ServiceCidrs::parse(c).unwrap()),
                ..Knowledge::default()
            };
            check::check(policy, &known, std::slice::from_ref(&manifests)).unwrap()
        };
        let unknown = judge(None);
        let known: Vec<_> = shapes.iter().map(|s| judge(Some(s))).collect();
        for (i, row) in unknown.iter().enumerate() {
            assert_ne!(row.verdict, Verdict::Error, "{row:?}");
            if row.verdict.fails() {
                failing += 1;
                for (shape, rows) in shapes.iter().zip(&known) {
                    assert!(
                        rows[i].verdict.fails(),
                        "{} denied without ranges but {:?} on {shape}: {}",
                        row.name,
                        rows[i].verdict,
                        rows[i].message
                    );
                }
            }
            for (shape, rows) in shapes.iter().zip(&known) {
                assert!(
                    !rows[i].message.contains("--service-cidrs"),
                    "{} on {shape}: {}",
                    row.name,
                    rows[i].message
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} Services checked");
    assert!(
        failing > 0,
        "no Service fails without the ranges: the test tests nothing"
    );
}

/// The objects of the fixtures' CREATE reviews, as one multi-document manifest, named uniquely.
fn fixture_services() -> String {
    let mut docs = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .flat_map(|shape| {
            let dir = shape.unwrap().path().join("mutate");
            std::fs::read_dir(dir).into_iter().flatten()
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| !p.to_string_lossy().ends_with(".expected.json"))
        .collect();
    paths.sort();
    for (i, path) in paths.iter().enumerate() {
        let Ok(review) = serde_json::from_str::<Value>(&std::fs::read_to_string(path).unwrap())
        else {
            continue; // the malformed-request fixtures
        };
        let request = &review["request"];
        if request["operation"] != "CREATE" || request["object"]["kind"] != "Service" {
            continue;
        }
        let mut object = request["object"].clone();
        object["metadata"]["name"] = json!(format!("fixture-{i}"));
        object["metadata"]["namespace"] = request["namespace"].clone();
        docs.push(serde_json::to_string(&object).unwrap());
    }
    docs.join("\n---\n")
}

/// The webhook leaves an exempt namespace alone, but the API server still judges its Services.
#[test]
fn an_exempt_service_the_api_server_refuses_is_refused() {
    let dns = "apiVersion: v1\nkind: Service\nmetadata: {name: dns, namespace: kube-system}\nspec: {ipFamilies: [IPv6], ports: [{port: 53}]}\n";
    let (out, code) = rows(
        &["--policy", EXAMPLE, "--service-cidrs", "10.96.0.0/16", "-"],
        dns,
    );
    assert_eq!(code, Some(1));
    assert_eq!(out[0]["verdict"], "refused");
    assert_eq!(
        out[0]["message"],
        "the API server would refuse it: spec.ipFamilies[0]: not configured on this cluster"
    );
    let (out, code) = rows(&["--policy", EXAMPLE, "--service-cidrs", DUAL_V6, "-"], dns);
    assert_eq!(code, Some(0));
    assert_eq!(out[0]["verdict"], "exempt");
    assert_eq!(
        out[0]["ipFamilies"],
        json!(["IPv6"]),
        "the stored fields, not the manifest's"
    );
    assert_eq!(out[0]["ipFamilyPolicy"], "SingleStack");
}

/// An `exclude` whose namespaceSelector reads unknown labels leaves the rule undecided too.
#[test]
fn an_exclude_on_unknown_labels_is_tried_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.yaml",
        "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\nrules:\n  - name: all-but-internal\n    match: {types: [ClusterIP]}\n    exclude: {namespaceSelector: {matchLabels: {exposure: internal}}}\n    require: {dualStack: true}\n",
    );
    let policy = policy.to_str().unwrap();
    let single = "apiVersion: v1\nkind: Service\nmetadata: {name: one, namespace: shop}\nspec: {ipFamilyPolicy: SingleStack, ports: [{port: 80}]}\n";
    let (out, code) = rows(
        &["--policy", policy, "--service-cidrs", DUAL_V6, "-"],
        single,
    );
    assert_eq!(code, Some(0));
    assert_eq!(out[0]["verdict"], "unknown");
    let message = out[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "ok if rule \"all-but-internal\" does not apply in namespace \"shop\" (by its labels); \
             deny if rule \"all-but-internal\" applies in namespace \"shop\" (by its labels): "
        ),
        "{message}"
    );
    let internal = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop, labels: {{exposure: internal}}}}\n---\n{single}"
    );
    let (out, code) = rows(
        &["--policy", policy, "--service-cidrs", DUAL_V6, "-"],
        &internal,
    );
    assert_eq!(
        (out[0]["verdict"].as_str(), code),
        (Some("ok"), Some(0)),
        "excluded"
    );
    let public = internal.replace("internal", "public");
    let (out, code) = rows(
        &["--policy", policy, "--service-cidrs", DUAL_V6, "-"],
        &public,
    );
    assert_eq!(
        (out[0]["verdict"].as_str(), code),
        (Some("deny"), Some(1)),
        "not excluded"
    );
}

/// The policy's lint warnings go to stderr, as `lint` prints them; the rows are unchanged.
#[test]
fn lint_warnings_of_the_policy_are_printed_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.yaml",
        "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\nrules:\n  - name: never\n    match: {types: []}\n    require: {dualStack: true}\n",
    );
    let out = check_cmd(&["--policy", policy.to_str().unwrap(), "-"], LB_IN_PROD);
    assert_eq!(out.status.code(), Some(0));
    let lint = Command::new(BIN)
        .args(["lint", policy.to_str().unwrap()])
        .output()
        .unwrap();
    let lint = String::from_utf8(lint.stdout).unwrap();
    let warning = lint.lines().next().unwrap();
    assert!(
        warning.contains(": warning: rules[0].match.types: "),
        "{lint}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), format!("{warning}\n"));
}

/// `enforcement: Warn` (a staged rollout): a Deny rule's Service is `warn`, with the warning the
/// webhook would send, and `check` exits 0; the same policy enforced as written denies it.
#[test]
fn a_deny_rule_warns_under_enforcement_warn() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "rules:\n  - name: dual\n    require: {dualStack: true}\n    action: Deny\n";
    let header = "apiVersion: dualstack-webhook/v1alpha1\nkind: DualStackPolicy\n";
    let warn = write(
        dir.path(),
        "warn.yaml",
        &format!("{header}enforcement: Warn\n{rules}"),
    );
    let deny = write(dir.path(), "deny.yaml", &format!("{header}{rules}"));
    let single = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ipFamilyPolicy: SingleStack, ports: [{port: 80}]}\n";
    let run = |policy: &Path| {
        let policy = policy.to_str().unwrap();
        rows(
            &["--policy", policy, "--service-cidrs", DUAL_V6, "-"],
            single,
        )
    };

    let (out, code) = run(&warn);
    assert_eq!(code, Some(0), "{out:#?}");
    assert_eq!(out[0]["verdict"], "warn");
    assert_eq!(out[0]["rules"], json!(["dual"]));
    assert_eq!(
        out[0]["message"],
        "Service \"shop/web\": rule \"dual\": single-stack but dual-stack required"
    );

    let (out, code) = run(&deny);
    assert_eq!(code, Some(1), "{out:#?}");
    assert_eq!(out[0]["verdict"], "deny");
    // --enforcement overrides the policy's: what the Warn rollout would refuse once enforced.
    let policy = warn.to_str().unwrap();
    let args = [
        "--policy",
        policy,
        "--enforcement",
        "deny",
        "--service-cidrs",
        DUAL_V6,
        "-",
    ];
    let (enforced, code) = rows(&args, single);
    assert_eq!((code, &enforced), (Some(1), &out));
    let args = [
        "--policy",
        policy,
        "--enforcement",
        "audit",
        "--service-cidrs",
        DUAL_V6,
        "-",
    ];
    let (audited, code) = rows(&args, single);
    assert_eq!(
        (code, audited[0]["verdict"].as_str()),
        (Some(0), Some("audit"))
    );
    assert_eq!(
        out[0]["message"],
        "Service \"shop/web\" violates the dual-stack policy: rule \"dual\": the Service has one IP \
         family, must be dual-stack; set spec.ipFamilyPolicy: RequireDualStack (or PreferDualStack) \
         and leave spec.ipFamilies unset or list both families"
    );
}
