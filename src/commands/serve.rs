//! `serve`: loads certificates and policy, binds both listeners, starts the reload, watch and
//! registration tasks, and serves until SIGTERM/SIGINT; then not ready but serving for
//! `--shutdown-delay`, then drains.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::cluster::{self, Cluster};
use crate::commands::{EXAMPLE_POLICY, certs, webhook_configurations};
use crate::config::ServeArgs;
use crate::domain::policy::Policy;
use crate::metrics::Metrics;
use crate::policy_file::{lint_warnings, load_policy, log_warnings, watch_policy};
use crate::registration::registrar::Registrar;
use crate::server::admin::{self, Readiness};
use crate::server::routes::{self, AppState};
use crate::server::{self, ServerOptions, tls};
use crate::{shutdown, telemetry};

pub(super) fn run_blocking(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(serve(args, CancellationToken::new()))?;
    Ok(ExitCode::SUCCESS)
}

/// `serve`: loads certificates and policy, binds both listeners, serves until SIGTERM/SIGINT or
/// `stop`, keeps serving (not ready) for `--shutdown-delay`, then drains (see [`shutdown`]).
/// Everything is validated before anything is served.
pub async fn serve(args: ServeArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let ServeArgs {
        dev,
        listen,
        tls_cert,
        tls_key,
        policy,
        cluster,
        admin_listen,
        client_ca,
        log_format,
        watch_cluster,
        reload_interval,
        shutdown_delay,
        register_webhooks,
        webhook,
    } = args;
    // Held to the end of `serve`: dropping it writes out the queued log lines.
    let _log_writer = telemetry::init(log_format);
    let local = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let any = |port: u16| std::net::SocketAddr::from(([0, 0, 0, 0], port));
    let listen = listen.unwrap_or(if dev { local(8443) } else { any(8443) });
    let admin_listen = admin_listen.unwrap_or(if dev { local(8080) } else { any(8080) });
    let (tls_cert, tls_key) = match (tls_cert, tls_key) {
        (Some(c), Some(k)) => (c, k),
        (None, None) if dev => {
            let paths = certs::ensure_dev(Path::new("certs"))
                .context("cannot create development certificates")?;
            (paths.cert, paths.key)
        }
        (c, k) => (
            c.unwrap_or_else(|| "/etc/dualstack-webhook/tls/tls.crt".into()),
            k.unwrap_or_else(|| "/etc/dualstack-webhook/tls/tls.key".into()),
        ),
    };
    // The policy: a file (reloaded), or with --dev and no file the embedded example.
    let (policy_value, policy_file) = match policy {
        Some(path) => {
            let (p, bytes) = load_policy(&path)?;
            (p, Some((path, bytes)))
        }
        None if dev => (
            Policy::from_yaml(EXAMPLE_POLICY).context("embedded example policy")?,
            None,
        ),
        None => {
            let path = PathBuf::from("/etc/dualstack-webhook/policy/policy.yaml");
            let (p, bytes) = load_policy(&path)?;
            (p, Some((path, bytes)))
        }
    };
    // Errors refused the policy above; its warnings are logged (each reload logs the new ones).
    if let Some((path, bytes)) = &policy_file {
        let cidrs = cluster.service_cidrs.as_ref();
        let warnings = lint_warnings(bytes, &policy_value, cidrs);
        log_warnings(path, &warnings, &mut HashSet::new());
    }
    let resolver = tls::CertResolver::load(&tls_cert, &tls_key)?;
    let tls_config = tls::server_config(resolver.clone(), client_ca.as_deref())?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (--listen)"))?;
    let admin_listener = TcpListener::bind(admin_listen)
        .await
        .with_context(|| format!("cannot listen on {admin_listen} (--admin-listen)"))?;
    // The addresses bound (a port 0 is given one), for the log.
    let listen = listener.local_addr().unwrap_or(listen);
    let admin_listen = admin_listener.local_addr().unwrap_or(admin_listen);

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    metrics.policy_loaded(&policy_value);
    let policy = Arc::new(ArcSwap::from_pointee(policy_value));
    let cluster = Arc::new(ArcSwap::from_pointee(Cluster::with_cidrs(
        cluster.service_cidrs,
    )));
    let readiness = Readiness::default();
    // On SIGTERM/SIGINT or `stop`: /readyz 503 at once, everything keeps running for
    // --shutdown-delay (so the endpoints drop this pod first), then `token` stops the background
    // tasks and the servers, which drain.
    let token = shutdown::spawn(stop, Duration::from_secs(shutdown_delay), {
        let readiness = readiness.clone();
        move || readiness.set_stopping()
    });
    // Registration's flags are checked before anything is served.
    let registration = match register_webhooks {
        Some(name) => {
            let endpoint = webhook_configurations::service_endpoint(&webhook)
                .context("--register-webhooks")?;
            let ca_bundle = webhook
                .ca_bundle
                .clone()
                .context("--register-webhooks needs --ca-bundle: the CA the API server trusts")?;
            let client = kube::Client::try_default()
                .await
                .context("--register-webhooks: no usable kubeconfig or in-cluster configuration")?;
            Some(Registrar {
                client,
                registration: webhook_configurations::registration(name, &webhook, endpoint, None),
                policy: policy.clone(),
                ca_bundle,
                tls_cert: tls_cert.clone(),
                every: Duration::from_secs(reload_interval.max(1)),
                metrics: metrics.clone(),
            })
        }
        None => None,
    };
    if watch_cluster {
        let client = kube::Client::try_default()
            .await
            .context("--watch-cluster: no usable kubeconfig or in-cluster configuration")?;
        let static_cidrs = cluster.load().service_cidrs.is_some();
        cluster::watch::spawn(
            client,
            static_cidrs,
            cluster.clone(),
            readiness.latch(),
            readiness.latch(),
            metrics.clone(),
            token.clone(),
        );
    }

    let every = Duration::from_secs(reload_interval.max(1));
    tokio::spawn(tls::watch_certificates(
        resolver,
        every,
        metrics.clone(),
        token.clone(),
    ));
    if let Some((path, bytes)) = policy_file {
        tokio::spawn(watch_policy(
            path,
            bytes,
            policy.clone(),
            cluster.load().service_cidrs.clone(),
            every,
            metrics.clone(),
            token.clone(),
        ));
    }
    let log_tasks = TaskTracker::new();
    let app = routes::router(AppState {
        policy,
        cluster,
        metrics: metrics.clone(),
        log_tasks: log_tasks.clone(),
    });
    let admin_app = admin::router(Arc::new(registry), readiness.clone());
    let https = tokio::spawn(server::serve_tls(
        listener,
        tls_config,
        app,
        ServerOptions::default(),
        metrics,
        token.clone(),
    ));
    // The admin port gets the webhook port's timeouts, head-size caps and connection handling,
    // with its own connection caps (ServerOptions::admin).
    let admin = tokio::spawn(server::serve_plain(
        admin_listener,
        admin_app,
        ServerOptions::admin(),
        token.clone(),
    ));
    readiness.set_ready();
    if let Some(registrar) = registration {
        tokio::spawn(registrar.run(readiness.clone(), token.clone()));
    }
    // `ready` when /readyz turns 200: with --watch-cluster, after the watches' first lists.
    tokio::spawn({
        let (readiness, token) = (readiness.clone(), token.clone());
        async move {
            tokio::select! {
                () = readiness.ready() => {
                    info!(version = env!("CARGO_PKG_VERSION"), %listen, %admin_listen, "ready");
                }
                () = token.cancelled() => {}
            }
        }
    });
    if dev {
        eprintln!(
            "dualstack-webhook is serving https://{listen} (admin http://{admin_listen}). Try:\n  \
             curl --cacert certs/ca.crt -H 'Content-Type: application/json' \
             --data @tests/fixtures/dual-v4/mutate/create-clusterip-defaults.json https://localhost:{}/mutate",
            listen.port()
        );
    }
    let (https, admin) = tokio::join!(https, admin);
    // The connections are closed; the last reviews' log lines may still be being written.
    log_tasks.close();
    log_tasks.wait().await;
    https
        .context("https server task")?
        .context("https server")?;
    admin
        .context("admin server task")?
        .context("admin server")?;
    info!("stopped");
    Ok(())
}
