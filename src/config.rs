//! The command line (clap derive). Every `serve` flag also reads an environment variable.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cluster::ServiceCidrs;
use crate::domain::policy::Enforcement;
use crate::registration::FailurePolicy;

/// Kubernetes admission webhook that enforces a dual-stack policy on Services.
#[derive(Debug, Parser)]
#[command(name = "dualstack-webhook", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve /mutate and /validate over HTTPS, and /healthz, /readyz, /metrics over plain HTTP.
    Serve(ServeArgs),
    /// Answer one AdmissionReview from stdin on stdout, offline.
    Review(ReviewArgs),
    /// Write a development CA and a server certificate with SANs.
    Certs(CertsArgs),
    /// Judge Service manifests offline (exit 1 when a Deny rule is violated).
    Check(CheckArgs),
    /// Judge every Service of a cluster (KUBECONFIG or in-cluster) as /validate would (exit 1 on Deny).
    Audit(AuditArgs),
    /// Check policy files for mistakes: errors (exit 1) and warnings, each with its field and line.
    Lint(LintArgs),
    /// Run policy test suites: Services, a policy and the expected result of each (exit 1 on a failure).
    Test(TestArgs),
    /// Print the admission configurations `serve --register-webhooks` registers (YAML).
    WebhookConfigurations(WebhookConfigurationsArgs),
    /// Print the policy as MutatingAdmissionPolicy and ValidatingAdmissionPolicy objects with
    /// their bindings (YAML), which kube-apiserver runs in-process, without the webhook.
    Export(ExportArgs),
    /// Bring a cluster's existing Services to the policy's dual-stack defaults (KUBECONFIG or
    /// in-cluster): a plan by default, changed with --apply, undone with --rollback.
    Migrate(MigrateArgs),
}

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Run locally on the embedded default: certificates generated into ./certs if missing, the
    /// example policy, https://127.0.0.1:8443 and admin on 127.0.0.1:8080. Flags given still win.
    #[arg(long, env = "DUALSTACK_WEBHOOK_DEV")]
    pub dev: bool,
    /// Address of the HTTPS listener [default: 0.0.0.0:8443; with --dev 127.0.0.1:8443].
    #[arg(long, env = "DUALSTACK_WEBHOOK_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain; reloaded when it changes [default: /etc/dualstack-webhook/tls/tls.crt].
    #[arg(long, env = "DUALSTACK_WEBHOOK_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key; reloaded when it changes [default: /etc/dualstack-webhook/tls/tls.key].
    #[arg(long, env = "DUALSTACK_WEBHOOK_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Policy file; reloaded when it changes [default: /etc/dualstack-webhook/policy/policy.yaml].
    #[arg(long, env = "DUALSTACK_WEBHOOK_POLICY")]
    pub policy: Option<PathBuf>,
    /// What the webhook knows of the cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Address of the plain-HTTP admin listener [default: 0.0.0.0:8080; with --dev 127.0.0.1:8080].
    #[arg(long, env = "DUALSTACK_WEBHOOK_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// PEM CA bundle: when set, only clients with a certificate from it are served (mutual TLS).
    #[arg(long, env = "DUALSTACK_WEBHOOK_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "DUALSTACK_WEBHOOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// Watch the cluster (KUBECONFIG or in-cluster config): ServiceCIDR objects for the service ranges
    /// (unless --service-cidrs is given, which wins) and Namespace labels for namespaceSelector rules.
    /// /readyz waits for the first complete list of each.
    #[arg(long, env = "DUALSTACK_WEBHOOK_WATCH_CLUSTER")]
    pub watch_cluster: bool,
    /// Seconds between checks of the certificate and policy files for changes.
    #[arg(long, env = "DUALSTACK_WEBHOOK_RELOAD_INTERVAL", default_value_t = 2)]
    pub reload_interval: u64,
    /// Seconds to keep serving after SIGTERM, with /readyz answering 503, before the listener
    /// closes and in-flight requests drain: the time Kubernetes takes to stop sending new
    /// connections to a terminating pod.
    #[arg(long, env = "DUALSTACK_WEBHOOK_SHUTDOWN_DELAY", default_value_t = 5)]
    pub shutdown_delay: u64,
    /// Once ready and once the Service has a ready endpoint, fill the webhooks of the existing
    /// MutatingWebhookConfiguration and ValidatingWebhookConfiguration of this name (never creates
    /// them: deleting them unregisters). Needs --namespace and --ca-bundle.
    #[arg(long, env = "DUALSTACK_WEBHOOK_REGISTER_WEBHOOKS", value_name = "NAME")]
    pub register_webhooks: Option<String>,
    /// What the registered configurations say.
    #[command(flatten)]
    pub webhook: WebhookArgs,
}

/// What the admission configurations say, beside their name.
#[derive(Debug, Args, Clone)]
pub struct WebhookArgs {
    /// The webhook's Service, which the API server calls (port 443).
    #[arg(
        long,
        env = "DUALSTACK_WEBHOOK_SERVICE",
        default_value = "dualstack-webhook"
    )]
    pub service: String,
    /// The namespace the webhook runs in (the pod's, from the downward API): its Service's, and
    /// never sent to it, as kube-system is not.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// PEM CA bundle the API server verifies the serving certificate with (the Secret's ca.crt;
    /// during a CA rotation the new CA and the old one).
    #[arg(long, env = "DUALSTACK_WEBHOOK_CA_BUNDLE", value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
    /// What the API server does with a write when the webhook cannot answer: refuse it (Fail)
    /// or admit it unchecked (Ignore).
    #[arg(long, env = "DUALSTACK_WEBHOOK_FAILURE_POLICY", value_enum, ignore_case = true,
          default_value_t = FailurePolicyArg::Fail)]
    pub failure_policy: FailurePolicyArg,
    /// Seconds the API server waits for an answer (1-30).
    #[arg(long, env = "DUALSTACK_WEBHOOK_TIMEOUT", default_value_t = 5,
          value_parser = clap::value_parser!(i32).range(1..=30))]
    pub webhook_timeout: i32,
}

/// `webhook-configurations`.
#[derive(Debug, Args)]
pub struct WebhookConfigurationsArgs {
    /// The name of both configurations.
    #[arg(long, default_value = "dualstack-webhook")]
    pub name: String,
    /// What they say.
    #[command(flatten)]
    pub webhook: WebhookArgs,
    /// Send the reviews to this base URL (`<url>/mutate`, `<url>/validate`) instead of the
    /// Service: a webhook outside the cluster.
    #[arg(long)]
    pub url: Option<String>,
    /// The policy the webhook serves: the webhooks get the match conditions generated from it, as
    /// `serve --register-webhooks` registers them (the API server calls a webhook only when it
    /// may act), and its CREATE defaults follow as an in-process MutatingAdmissionPolicy with its
    /// binding. Without it, every Service write is sent to both.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

/// `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Policy file.
    #[arg(long)]
    pub policy: PathBuf,
    /// The cluster's service ranges: the defaults and requirements that depend on them are
    /// exported for this cluster (without them, as the webhook acts when it does not know them).
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print the export even where it cannot do all the webhook does (each gap is still named on
    /// stderr); without it such a policy prints nothing and exits 1.
    #[arg(long)]
    pub allow_partial: bool,
}

/// `--failure-policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailurePolicyArg {
    /// Refuse the write.
    #[value(name = "Fail")]
    Fail,
    /// Admit the write unchecked.
    #[value(name = "Ignore")]
    Ignore,
}

impl From<FailurePolicyArg> for FailurePolicy {
    fn from(arg: FailurePolicyArg) -> Self {
        match arg {
            FailurePolicyArg::Fail => Self::Fail,
            FailurePolicyArg::Ignore => Self::Ignore,
        }
    }
}

/// What the webhook knows of the cluster, from flags.
#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    /// The cluster's service CIDRs (--service-cluster-ip-range), primary first, e.g.
    /// 10.96.0.0/16,fd00:10:96::/112. Without it the webhook makes no cluster assumptions.
    #[arg(long, env = "DUALSTACK_WEBHOOK_SERVICE_CIDRS", value_parser = parse_cidrs)]
    pub service_cidrs: Option<ServiceCidrs>,
}

/// `review`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Policy file.
    #[arg(long)]
    pub policy: PathBuf,
    /// What the webhook knows of the cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Which endpoint to answer as.
    #[arg(long, value_enum, default_value_t = EndpointArg::Mutate)]
    pub endpoint: EndpointArg,
}

/// `certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write ca.crt, ca.key, tls.crt and tls.key into.
    #[arg(long)]
    pub out: PathBuf,
    /// Extra DNS SAN (repeatable), added to localhost and the manifests' in-cluster names.
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// Extra IP SAN (repeatable), added to 127.0.0.1 and ::1.
    #[arg(long = "ip")]
    pub ip: Vec<IpAddr>,
    /// The namespace the webhook runs in: the in-cluster names are `<service>`, `<service>.<ns>`,
    /// `<service>.<ns>.svc` and `<service>.<ns>.svc.cluster.local`.
    #[arg(long, default_value = "dualstack-webhook")]
    pub namespace: String,
    /// The webhook's Service.
    #[arg(long, default_value = "dualstack-webhook")]
    pub service: String,
    /// Replace the CA, and the server pair, if the directory already holds one; without it an
    /// existing CA is an error and nothing is written.
    #[arg(long)]
    pub force: bool,
}

/// `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy file.
    #[arg(long)]
    pub policy: PathBuf,
    /// What the webhook knows of the cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Judge as if the policy's `enforcement` were this (e.g. `deny` to preview what a policy
    /// rolled out in Audit mode would refuse once enforced).
    #[arg(long, value_enum)]
    pub enforcement: Option<EnforcementArg>,
    /// The namespace of objects that name none (as `kubectl apply --namespace` would set it).
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// Namespace objects (YAML or JSON, e.g. `kubectl get namespaces -o yaml`) whose labels
    /// namespaceSelector rules read, beside the Namespaces among the manifests.
    #[arg(long, value_name = "FILE")]
    pub namespace_labels: Option<PathBuf>,
    /// Read the namespaces' labels from the cluster (KUBECONFIG or in-cluster), as the webhook would.
    #[arg(long)]
    pub namespaces_from_cluster: bool,
    /// YAML or JSON files (multi-document, Lists opened), directories of them, or `-` for stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// `lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// What the webhook knows of the cluster (without it, every shape of cluster is considered).
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Policy files.
    #[arg(required = true)]
    pub policies: Vec<PathBuf>,
}

/// `test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Test suite files, or directories searched for them (`dualstack-test.yaml`).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Policy file.
    #[arg(long)]
    pub policy: PathBuf,
    /// What the webhook knows of the cluster (without --service-cidrs: the cluster's ServiceCIDRs).
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Judge as if the policy's `enforcement` were this (e.g. `deny` to preview what a policy
    /// rolled out in Audit mode would refuse once enforced).
    #[arg(long, value_enum)]
    pub enforcement: Option<EnforcementArg>,
}

/// `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Policy file.
    #[arg(long)]
    pub policy: PathBuf,
    /// What the webhook knows of the cluster (without --service-cidrs: the cluster's ServiceCIDRs).
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format of the plan.
    #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
    pub output: PlanFormat,
    /// Change the Services (each one dry-run first); without it, only the plan is printed.
    #[arg(long)]
    pub apply: bool,
    /// Bring the Services migrate changed back to SingleStack on their original family (from the
    /// record it left on each); with --apply to act, a plan otherwise.
    #[arg(long)]
    pub rollback: bool,
    /// Only Services of this namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Only Services with these labels (a label selector, as `kubectl get -l`).
    #[arg(long, short = 'l')]
    pub selector: Option<String>,
    /// Services changed per batch.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Time to wait between batches, e.g. 30s, 500ms, 2m.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub pause: Duration,
    /// Stop after this many batches, as an interrupted run would (tests of resuming).
    #[arg(long, hide = true)]
    pub max_batches: Option<u32>,
}

/// `migrate --output`: the formats a plan fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// Aligned columns.
    Table,
    /// A JSON array.
    Json,
}

/// `--enforcement`: the policy's `enforcement`, overridden.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EnforcementArg {
    /// Every rule acts as written.
    Deny,
    /// Every Deny rule acts as Warn.
    Warn,
    /// Every rule acts as Audit.
    Audit,
}

impl From<EnforcementArg> for Enforcement {
    fn from(arg: EnforcementArg) -> Self {
        match arg {
            EnforcementArg::Deny => Self::Deny,
            EnforcementArg::Warn => Self::Warn,
            EnforcementArg::Audit => Self::Audit,
        }
    }
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// `--endpoint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EndpointArg {
    /// As /mutate.
    Mutate,
    /// As /validate.
    Validate,
}

/// `--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns.
    Table,
    /// A JSON array.
    Json,
    /// JUnit XML, for CI test reports.
    Junit,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
    /// PolicyReports (wgpolicyk8s.io/v1alpha2), one per namespace, as Kyverno writes them.
    #[value(name = "policyreport")]
    PolicyReport,
}

/// `500ms`, `30s`, `2m`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let not_a_duration = || format!("{s:?} is not a duration (e.g. 500ms, 30s, 2m)");
    let n: u64 = number.parse().map_err(|_| not_a_duration())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        // Minutes past u64 seconds are no duration either (rather than an overflow).
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(not_a_duration),
        _ => Err(not_a_duration()),
    }
}

fn parse_cidrs(s: &str) -> Result<ServiceCidrs, String> {
    ServiceCidrs::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_an_overflowing_one_is_refused() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(
            parse_duration("999999999999999999m"),
            Err("\"999999999999999999m\" is not a duration (e.g. 500ms, 30s, 2m)".to_owned())
        );
    }

    #[test]
    fn contract_flags_parse() {
        let cli = Cli::try_parse_from([
            "dualstack-webhook",
            "serve",
            "--listen",
            "127.0.0.1:9443",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--policy",
            "p.yaml",
            "--service-cidrs",
            "10.96.0.0/16,fd00::/108",
            "--admin-listen",
            "127.0.0.1:9090",
            "--client-ca",
            "ca.pem",
            "--log-format",
            "json",
        ])
        .unwrap();
        let Command::Serve(a) = cli.command else {
            panic!("serve")
        };
        assert_eq!(a.listen, Some("127.0.0.1:9443".parse().unwrap()));
        assert!(a.cluster.service_cidrs.unwrap().is_dual());
        assert_eq!(a.log_format, LogFormat::Json);
        let cli = Cli::try_parse_from([
            "dualstack-webhook",
            "review",
            "--policy",
            "p",
            "--endpoint",
            "validate",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Review(ReviewArgs {
                endpoint: EndpointArg::Validate,
                ..
            })
        ));
        let cli = Cli::try_parse_from([
            "dualstack-webhook",
            "certs",
            "--out",
            "d",
            "--dns",
            "a",
            "--dns",
            "b",
            "--ip",
            "::1",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Certs(CertsArgs { ref dns, .. }) if dns.len() == 2));
        let cli = Cli::try_parse_from([
            "dualstack-webhook",
            "check",
            "--policy",
            "p",
            "--output",
            "json",
            "a.yaml",
            "dir",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Command::Check(CheckArgs { ref paths, output: OutputFormat::Json, .. }) if paths.len() == 2)
        );
    }

    #[test]
    fn bad_cidrs_name_the_flag() {
        let err = Cli::try_parse_from([
            "dualstack-webhook",
            "review",
            "--policy",
            "p",
            "--service-cidrs",
            "10.0.0.0/8,10.1.0.0/16",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("--service-cidrs"), "{err}");
    }

    #[test]
    fn check_needs_a_path() {
        assert!(Cli::try_parse_from(["dualstack-webhook", "check", "--policy", "p"]).is_err());
    }
}
