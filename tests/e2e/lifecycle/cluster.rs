//! The cluster the lifecycle runs on: a harness of its own whose kube-apiserver routes webhook
//! calls through EndpointSlices, the machine's address for those endpoints, ServiceAccount
//! credentials, and the `kubectl` / `helm` runners.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::{self, Harness};

/// Dual-stack, IPv4 primary, like the main harness: the API server's own default for a Service
/// that says nothing is SingleStack `[IPv4]`, the shipped policy's is PreferDualStack
/// `[IPv6, IPv4]`, so every stored Service shows whether the webhook mutated its create.
pub(super) const SERVICE_CIDRS: &str = "10.96.0.0/16,fd00:10:96::/112";

/// `--enable-aggregator-routing=true`: kube-apiserver dials a webhook's `clientConfig.service` at
/// a ready endpoint of the Service's EndpointSlices (`k8s.io/apiserver` `pkg/util/proxy`
/// `ResolveEndpoint`: the slice port named like the Service port, an endpoint whose
/// `conditions.ready` is not false) instead of at its ClusterIP, which nothing routes here (no
/// kube-proxy). It verifies the serving certificate for `<service>.<namespace>.svc` all the same.
pub(super) const APISERVER_EXTRA_ARGS: &str = "--enable-aggregator-routing=true";

/// Starts etcd + kube-apiserver with [`SERVICE_CIDRS`] and [`APISERVER_EXTRA_ARGS`] in
/// `$E2E_WORKDIR/<name>` (`tests/apiserver/start.sh`, which passes `APISERVER_EXTRA_ARGS` from its
/// environment to kube-apiserver). Stopped when the returned guard is dropped (`stop.sh`), and by
/// the driver's trap otherwise.
pub(super) fn start_harness(name: &str) -> Harness {
    let harness = Harness::start_with(name, SERVICE_CIDRS, APISERVER_EXTRA_ARGS);
    let cmdline = std::fs::read_to_string(harness.dir.join("kube-apiserver.cmdline")).unwrap();
    assert!(
        cmdline.contains(APISERVER_EXTRA_ARGS),
        "kube-apiserver started without {APISERVER_EXTRA_ARGS}: {cmdline}"
    );
    harness
}

/// A value of the harness's `env` file (`APISERVER_URL`, ...).
pub(super) fn harness_env(harness: &Harness, key: &str) -> String {
    let text = std::fs::read_to_string(harness.dir.join("env")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(str::to_owned))
        .unwrap_or_else(|| panic!("{key} not in {}/env", harness.dir.display()))
}

/// The machine's own IPv4 address, where the "pods" listen for the API server (an endpoint
/// address may not be loopback: EndpointSlice validation refuses it). The source address of the
/// route to a public address (a UDP `connect` sends nothing), else the first global address
/// `ip -4 addr` lists. Panics when the machine has none: the test cannot run without one.
pub(super) fn node_ipv4() -> Ipv4Addr {
    let usable = |ip: Ipv4Addr| {
        !(ip.is_loopback() || ip.is_unspecified() || ip.is_link_local() || ip.is_multicast())
    };
    let routed = UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("203.0.113.1:9")?;
            s.local_addr()
        })
        .ok()
        .and_then(|a| match a.ip() {
            IpAddr::V4(ip) if usable(ip) => Some(ip),
            _ => None,
        });
    if let Some(ip) = routed {
        return ip;
    }
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output();
    let listed = out.ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            let ip: Ipv4Addr = words.next()?.split('/').next()?.parse().ok()?;
            usable(ip).then_some(ip)
        })
    });
    listed.expect(
        "this machine has no non-loopback IPv4 address: the lifecycle test needs one for the \
         webhook pods' EndpointSlice (kube-apiserver dials it; validation refuses loopback)",
    )
}

/// The harness's `kubectl` (`$E2E_KUBECTL`) with the admin kubeconfig.
pub(super) fn kubectl(harness: &Harness, args: &[&str]) -> Output {
    let out = Command::new(support::env("E2E_KUBECTL"))
        .arg("--kubeconfig")
        .arg(harness.kubeconfig())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The helm binary: `$E2E_HELM`, else `helm` beside the harness's kubectl (`tests/helm/build.sh`
/// builds it there).
pub(super) fn helm_bin() -> PathBuf {
    let helm = std::env::var_os("E2E_HELM").map_or_else(
        || Path::new(&support::env("E2E_KUBECTL")).with_file_name("helm"),
        PathBuf::from,
    );
    assert!(
        helm.is_file(),
        "{} missing: run tests/helm/build.sh",
        helm.display()
    );
    helm
}

/// A kubeconfig for the ServiceAccount `account` of `namespace`, written to `path`: the harness's
/// server and CA, and a token from the TokenRequest API (`kubectl create token`), what the kubelet
/// projects into a pod at `/var/run/secrets/kubernetes.io/serviceaccount/token`. A "pod" using it
/// has exactly what the manifests' RBAC grants that account, never admin rights.
pub(super) fn service_account_kubeconfig(
    harness: &Harness,
    namespace: &str,
    account: &str,
    path: &Path,
) {
    let out = kubectl(
        harness,
        &["create", "token", account, "-n", namespace, "--duration=2h"],
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!token.is_empty(), "kubectl create token printed nothing");
    let server = harness_env(harness, "APISERVER_URL");
    let ca = harness.dir.join("pki/ca.crt");
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    \
         certificate-authority: {}\nusers:\n- name: {account}\n  user:\n    token: {token}\n\
         contexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: {account}\n    \
         namespace: {namespace}\ncurrent-context: e2e\n",
        ca.display()
    );
    std::fs::write(path, kubeconfig).unwrap();
}
