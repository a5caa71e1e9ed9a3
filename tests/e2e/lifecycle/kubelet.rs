//! "Pods" of the webhook's Deployment, started as a kubelet would start them: the container's
//! args and env as the API server stores them, with what a kubelet provides substituted — the
//! mounted Secret and ConfigMap files (read from the API server), the ports, the downward API, and
//! the ServiceAccount's credentials (a TokenRequest token, never admin rights).
//!
//! The Secret and ConfigMap volumes are kept in sync with the API server while the pod runs, as
//! the kubelet does (every [`SYNC_PERIOD`] here; up to about a minute in a cluster), and written
//! the way its `AtomicWriter` writes them: the files in a new timestamped directory, a `..data`
//! symlink swapped to it by a rename, each key a symlink `KEY -> ..data/KEY`. A reader opening
//! `KEY` sees the old content or the new, never a mix. A `subPath` mount is a copy made at start,
//! never updated (as the kubelet's bind mount of the resolved file).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Secret, Volume};
use kube::api::ListParams;
use kube::{Api, Client};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::cluster;
use crate::support::{self, Harness};

/// How often the kubelet emulation re-reads the pods' Secrets and ConfigMaps (the kubelet's own
/// period is its pod sync, about a minute with the default change detection strategy).
pub(super) const SYNC_PERIOD: Duration = Duration::from_secs(1);

/// A volume update the kubelet emulation wrote while the pod ran: the volume's name and when the
/// `..data` swap happened.
#[derive(Clone, Debug)]
pub(super) struct Synced {
    pub(super) volume: String,
    pub(super) at: Instant,
}

/// A running "pod": one process of the release binary.
pub(super) struct Pod {
    /// `pod-1`, `pod-2`, ...
    pub(super) name: String,
    /// The pod template's labels (what Services select).
    pub(super) labels: BTreeMap<String, String>,
    /// The container's ports: (name, containerPort, the port on this machine it listens on).
    pub(super) ports: Vec<(Option<String>, i32, u16)>,
    /// The admin port (`/readyz`), on 127.0.0.1: only the probes use it.
    pub(super) admin: SocketAddr,
    /// Its directory: volumes, kubeconfig, log.
    pub(super) dir: PathBuf,
    /// The command line it runs (after substitution).
    pub(super) args: Vec<String>,
    child: Option<Child>,
    pid_file: PathBuf,
    /// The volume sync loop; stopped when the process exits.
    sync: Option<JoinHandle<()>>,
    synced: Arc<Mutex<Vec<Synced>>>,
}

impl Pod {
    /// Starts a pod of the only Deployment in `namespace`, as read back from the API server.
    pub(super) async fn start(
        admin: &Client,
        harness: &Harness,
        namespace: &str,
        name: &str,
    ) -> Self {
        let deployments: Api<Deployment> = Api::namespaced(admin.clone(), namespace);
        let list = deployments.list(&ListParams::default()).await.unwrap();
        assert_eq!(
            list.items.len(),
            1,
            "expected one Deployment in {namespace}, found {:?}",
            list.items
                .iter()
                .map(|d| d.metadata.name.clone())
                .collect::<Vec<_>>()
        );
        let deployment = &list.items[0];
        let template = deployment.spec.as_ref().unwrap().template.clone();
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let spec = template.spec.expect("pod template spec");
        assert_eq!(
            spec.containers.len(),
            1,
            "the lifecycle test runs one container per pod"
        );
        let container = &spec.containers[0];
        let account = spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".to_owned());

        let dir = support::workdir()
            .join("lifecycle-pods")
            .join(format!("{namespace}-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();

        // Volumes: every mounted Secret and ConfigMap written out as the kubelet would, and kept
        // in sync (a subPath mount excepted).
        let volumes = spec.volumes.clone().unwrap_or_default();
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        let mut synced_volumes: Vec<(Volume, PathBuf)> = Vec::new();
        for mount in container.volume_mounts.clone().unwrap_or_default() {
            let volume = volumes
                .iter()
                .find(|v| v.name == mount.name)
                .unwrap_or_else(|| panic!("volumeMount {} has no volume", mount.name));
            let local = dir.join("volumes").join(&mount.name);
            if !synced_volumes.iter().any(|(v, _)| v.name == volume.name) {
                let payload = payload(admin, namespace, volume)
                    .await
                    .unwrap_or_else(|e| panic!("{e}: the pod could not start"));
                write_atomically(&local, &payload);
                synced_volumes.push((volume.clone(), local.clone()));
            }
            let local = match &mount.sub_path {
                Some(sub) if !sub.is_empty() => {
                    // The kubelet bind-mounts the file as resolved now: never updated.
                    let copy = dir.join("subpaths").join(&mount.name).join(sub);
                    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
                    std::fs::copy(local.join(sub), &copy).unwrap();
                    copy
                }
                _ => local,
            };
            mounts.push((mount.mount_path.clone(), local));
        }
        // Longest mount path first, so a nested mount wins over its parent.
        mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));

        // Ports: each containerPort gets a free port on this machine.
        let ports: Vec<(Option<String>, i32, u16)> = container
            .ports
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.name, p.container_port, support::free_port()))
            .collect();

        let (args, admin_addr) = pod_args(container, &ports, &mounts);

        // Credentials: the ServiceAccount's token (kubeconfig instead of the in-cluster files).
        let kubeconfig = dir.join("kubeconfig");
        tokio::task::block_in_place(|| {
            cluster::service_account_kubeconfig(harness, namespace, &account, &kubeconfig);
        });

        let mut cmd = Command::new(support::env("E2E_WEBHOOK_BIN"));
        if let Some(command) = &container.command {
            // The image's entrypoint is the binary; a command must name it.
            assert!(
                command.len() == 1 && command[0].ends_with("dualstack-webhook"),
                "unexpected container command {command:?}"
            );
        }
        cmd.args(&args).env_clear().env("KUBECONFIG", &kubeconfig);
        for e in container.env.clone().unwrap_or_default() {
            let value = match (&e.value, &e.value_from) {
                (Some(v), None) => v.clone(),
                (None, Some(from)) => {
                    let field = from
                        .field_ref
                        .as_ref()
                        .unwrap_or_else(|| panic!("env {}: only fieldRef is emulated", e.name));
                    match field.field_path.as_str() {
                        "metadata.namespace" => namespace.to_owned(),
                        "metadata.name" => name.to_owned(),
                        "status.podIP" => cluster::node_ipv4().to_string(),
                        other => panic!("env {}: fieldRef {other} not emulated", e.name),
                    }
                }
                (None, None) => String::new(),
                (Some(_), Some(_)) => panic!("env {}: value and valueFrom", e.name),
            };
            cmd.env(&e.name, value);
        }
        assert!(
            container.env_from.as_ref().is_none_or(Vec::is_empty),
            "envFrom is not emulated"
        );
        let log = std::fs::File::create(dir.join("webhook.log")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the webhook pod");
        let pid_file = support::record_pid(&format!("lifecycle-{namespace}-{name}"), child.id());
        let synced = Arc::new(Mutex::new(Vec::new()));
        let sync = tokio::spawn(sync_volumes(
            admin.clone(),
            namespace.to_owned(),
            synced_volumes,
            synced.clone(),
        ));
        Pod {
            name: name.to_owned(),
            labels,
            ports,
            admin: admin_addr,
            dir,
            args,
            child: Some(child),
            pid_file,
            sync: Some(sync),
            synced,
        }
    }

    /// The volume updates written since the pod started.
    pub(super) fn synced(&self) -> Vec<Synced> {
        self.synced.lock().unwrap().clone()
    }

    /// Its `/metrics` text (admin port).
    pub(super) async fn metrics(&self) -> String {
        let admin = self.admin;
        tokio::task::spawn_blocking(move || support::http_get(admin, "/metrics"))
            .await
            .unwrap()
            .expect("/metrics")
            .1
    }

    /// `dualstack_webhook_policy_generation`: 1 once the policy is loaded, one more per reload.
    pub(super) async fn policy_generation(&self) -> f64 {
        support::metric(
            &self.metrics().await,
            "dualstack_webhook_policy_generation ",
            &[],
        )
    }

    /// The port on this machine of the containerPort named `name` or numbered `number`.
    pub(super) fn host_port(&self, name: Option<&str>, number: Option<i32>) -> Option<u16> {
        self.ports
            .iter()
            .find(|(n, p, _)| {
                name.is_some_and(|name| n.as_deref() == Some(name)) || number == Some(*p)
            })
            .map(|(_, _, host)| *host)
    }

    /// The HTTP status of `/readyz` (`None`: the admin port does not answer within 500 ms), as a
    /// kubelet's readiness probe sees it.
    pub(super) async fn readyz(&self) -> Option<u16> {
        http_status(self.admin, "/readyz").await
    }

    /// The `/validate` CREATE reviews it has answered (`dualstack_webhook_reviews_total`).
    pub(super) async fn validate_reviews(&self) -> f64 {
        support::metric(
            &self.metrics().await,
            "dualstack_webhook_reviews_total{",
            &["endpoint=\"validate\"", "operation=\"CREATE\""],
        )
    }

    /// Whether the process still runs.
    pub(super) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, as the kubelet sends when the pod is deleted; returns at once.
    pub(super) fn sigterm(&mut self) {
        if self.is_running()
            && let Some(child) = &self.child
        {
            support::sigterm_process(child);
        }
    }

    /// Waits until the process has exited (after [`Pod::sigterm`]), at most `bound`; how long
    /// it took, `None` if it still runs.
    pub(super) async fn wait_exit(&mut self, bound: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < bound {
            if !self.is_running() {
                if self.child.take().is_some() {
                    let _ = std::fs::remove_file(&self.pid_file);
                }
                self.stop_sync();
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Its log (stdout and stderr).
    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("webhook.log")).unwrap_or_default()
    }

    fn stop_sync(&mut self) {
        if let Some(sync) = self.sync.take() {
            sync.abort();
        }
    }

    fn kill(&mut self) {
        self.stop_sync();
        if let Some(child) = self.child.take() {
            support::stop_process(child, &self.pid_file);
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The container's args with the kubelet's substitutions: `--listen=` and `--admin-listen=` on
/// the pod's ports (the webhook on every address, as in a pod's network namespace; the admin port
/// on 127.0.0.1, where the probes reach it), mount paths rewritten to the pod's volume
/// directories. Every file an arg names must exist there. Returns the args and the admin address.
fn pod_args(
    container: &Container,
    ports: &[(Option<String>, i32, u16)],
    mounts: &[(String, PathBuf)],
) -> (Vec<String>, SocketAddr) {
    let listen = |value: &str, host: &str| -> String {
        let addr: SocketAddr = value
            .parse()
            .unwrap_or_else(|e| panic!("listen address {value}: {e}"));
        let port = ports
            .iter()
            .find(|(_, p, _)| i32::from(addr.port()) == *p)
            .unwrap_or_else(|| {
                panic!("the container listens on {value}, a port it does not declare: {ports:?}")
            })
            .2;
        format!("{host}:{port}")
    };
    let mut admin = None;
    let mut out = Vec::new();
    let raw = container.args.clone().unwrap_or_default();
    let mut it = raw.iter().peekable();
    while let Some(arg) = it.next() {
        // `--flag=value` or `--flag value`.
        let (flag, value) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ if matches!(arg.as_str(), "--listen" | "--admin-listen") => {
                (arg.clone(), it.next().cloned())
            }
            _ => (arg.clone(), None),
        };
        let value = match (flag.as_str(), value) {
            ("--listen", Some(v)) => Some(listen(&v, "0.0.0.0")),
            ("--admin-listen", Some(v)) => {
                let a = listen(&v, "127.0.0.1");
                admin = Some(a.parse().unwrap());
                Some(a)
            }
            (_, Some(v)) => Some(rewrite_paths(&v, mounts)),
            (_, None) => None,
        };
        match value {
            Some(v) => out.push(format!("{flag}={v}")),
            None => out.push(rewrite_paths(&flag, mounts)),
        }
    }
    for (flag, value) in out.iter().filter_map(|a| a.split_once('=')) {
        if value.starts_with('/') {
            assert!(
                Path::new(value).exists(),
                "{flag}={value}: no such file in the pod's volumes (mounts: {mounts:?})"
            );
        }
    }
    let admin = admin.expect("the container has no --admin-listen (the probes need it)");
    (out, admin)
}

/// `value` with a mount path prefix replaced by the volume's directory.
fn rewrite_paths(value: &str, mounts: &[(String, PathBuf)]) -> String {
    for (mount_path, local) in mounts {
        let mount_path = mount_path.trim_end_matches('/');
        if value == mount_path {
            return local.display().to_string();
        }
        if let Some(rest) = value.strip_prefix(&format!("{mount_path}/")) {
            return local.join(rest).display().to_string();
        }
    }
    value.to_owned()
}

/// A volume's files as the API server holds them now: path in the volume -> content (the `items`
/// the volume selects, or every key). An error when the object or a selected key is missing.
async fn payload(
    client: &Client,
    namespace: &str,
    volume: &Volume,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let (files, items): (BTreeMap<String, Vec<u8>>, Option<Vec<KeyToPath>>) =
        if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone().expect("secretName");
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let obj = api
                .get_opt(&name)
                .await
                .map_err(|e| format!("get Secret {namespace}/{name}: {e}"))?
                .ok_or_else(|| {
                    format!(
                        "Secret {namespace}/{name} (volume {}) does not exist",
                        volume.name
                    )
                })?;
            let data = obj
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            (data, secret.items.clone())
        } else if let Some(cm) = &volume.config_map {
            let name = cm.name.clone();
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            let obj = api
                .get_opt(&name)
                .await
                .map_err(|e| format!("get ConfigMap {namespace}/{name}: {e}"))?
                .ok_or_else(|| {
                    format!(
                        "ConfigMap {namespace}/{name} (volume {}) does not exist",
                        volume.name
                    )
                })?;
            let mut data: BTreeMap<String, Vec<u8>> = obj
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            data.extend(
                obj.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            );
            (data, cm.items.clone())
        } else {
            panic!(
                "volume {}: only Secret and ConfigMap volumes are emulated",
                volume.name
            );
        };
    let selected: Vec<(String, String)> = match items {
        Some(items) => items.into_iter().map(|i| (i.key, i.path)).collect(),
        None => files.keys().map(|k| (k.clone(), k.clone())).collect(),
    };
    selected
        .into_iter()
        .map(|(key, path)| {
            let content = files
                .get(&key)
                .ok_or_else(|| format!("volume {}: key {key} missing", volume.name))?;
            Ok((path, content.clone()))
        })
        .collect()
}

/// What `..data` holds now in `dir`, as a payload (`None`: not written yet).
fn current_payload(dir: &Path) -> Option<BTreeMap<String, Vec<u8>>> {
    let data = dir.join("..data");
    std::fs::read_link(&data).ok()?;
    let mut out = BTreeMap::new();
    let mut stack = vec![data.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()? {
            let path = entry.ok()?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(&data)
                    .ok()?
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).ok()?);
            }
        }
    }
    Some(out)
}

/// Writes `payload` into `dir` as the kubelet's `AtomicWriter` does (`pkg/volume/util`): nothing
/// when `..data` already holds it; else the files into a new `..<timestamp>` directory, a
/// `..data_tmp` symlink to it renamed over `..data` (the atomic step), a `NAME -> ..data/NAME`
/// symlink for each top-level name of the payload, then the old directory and the names the
/// payload no longer has removed. Whether it wrote.
fn write_atomically(dir: &Path, payload: &BTreeMap<String, Vec<u8>>) -> bool {
    if current_payload(dir).as_ref() == Some(payload) {
        return false;
    }
    std::fs::create_dir_all(dir).unwrap();
    let old = std::fs::read_link(dir.join("..data")).ok();
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let stamp = format!("..{}_{:09}", since.as_secs(), since.subsec_nanos());
    let new = dir.join(&stamp);
    std::fs::create_dir(&new).unwrap();
    for (path, content) in payload {
        let target = new.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, content).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let top: std::collections::BTreeSet<String> = payload
        .keys()
        .map(|p| p.split('/').next().unwrap().to_owned())
        .collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !top.contains(&name) {
            let _ = std::fs::remove_file(dir.join(&name));
        }
    }
    true
}

/// The kubelet's volume sync for one pod: every [`SYNC_PERIOD`], each volume's payload from the
/// API server written with [`write_atomically`] when it changed. An object that is gone or
/// unreadable leaves the files as they are (the kubelet keeps the last content too).
async fn sync_volumes(
    client: Client,
    namespace: String,
    volumes: Vec<(Volume, PathBuf)>,
    synced: Arc<Mutex<Vec<Synced>>>,
) {
    let mut tick = tokio::time::interval(SYNC_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        for (volume, dir) in &volumes {
            let Ok(payload) = payload(&client, &namespace, volume).await else {
                continue;
            };
            let dir = dir.clone();
            let wrote = tokio::task::spawn_blocking(move || write_atomically(&dir, &payload))
                .await
                .unwrap();
            if wrote {
                synced.lock().unwrap().push(Synced {
                    volume: volume.name.clone(),
                    at: Instant::now(),
                });
            }
        }
    }
}

/// `GET path` on a plain-HTTP port: the status, `None` when it does not answer within 500 ms.
pub(super) async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let get = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: kubelet\r\n\r\n").as_bytes())
            .await?;
        let mut head = [0; 12]; // "HTTP/1.x 200"
        s.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    match tokio::time::timeout(Duration::from_millis(500), get).await {
        Ok(Ok(head)) => std::str::from_utf8(&head[9..]).ok()?.parse().ok(),
        _ => None,
    }
}
