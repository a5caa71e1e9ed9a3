//! The subcommands, wired: `serve` starts the servers and reload tasks; `review`, `certs` and
//! `check` are offline. The only module that reads files for the others and sets exit codes.

pub mod audit;
pub mod certs;
pub mod check;
pub mod review;
pub mod serve;

use std::process::ExitCode;

use anyhow::Context as _;

use crate::cluster::Cluster;
use crate::config::{AuditArgs, CertsArgs, CheckArgs, Cli, Command, OutputFormat};
use crate::policy_file::load_policy;

/// The example policy, embedded for `serve --dev`.
pub const EXAMPLE_POLICY: &str = include_str!("../manifests/policy.yaml");

/// Runs a parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve::run_blocking(args),
        Command::Review(args) => review::run(args),
        Command::Certs(args) => certs_cmd(args),
        Command::Check(args) => check_cmd(args),
        Command::Audit(args) => audit_cmd(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            // One line: the context and its cause.
            eprintln!("dualstack-webhook: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn certs_cmd(args: CertsArgs) -> anyhow::Result<ExitCode> {
    let paths = certs::generate(&args.out, &args.dns, &args.ip)?;
    println!(
        "wrote {}, {}, {}, {}",
        paths.ca_cert.display(),
        paths.ca_key.display(),
        paths.cert.display(),
        paths.key.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn check_cmd(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let (policy, _) = load_policy(&args.policy)?;
    let cluster = Cluster::with_cidrs(args.cluster.service_cidrs);
    let rows = check::check(&policy, &cluster, &args.paths)?;
    print_rows(&rows, args.output)?;
    Ok(if check::failed(&rows) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn audit_cmd(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let (policy, _) = load_policy(&args.policy)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let rows = runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("no usable kubeconfig or in-cluster configuration")?;
        anyhow::Ok(audit::audit(client, &policy, args.cluster.service_cidrs).await?)
    })?;
    print_rows(&rows, args.output)?;
    Ok(if check::failed(&rows) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_rows(rows: &[check::Row], output: OutputFormat) -> anyhow::Result<()> {
    let text = match output {
        OutputFormat::Table => check::table(rows),
        OutputFormat::Json => serde_json::to_string_pretty(rows).context("encode rows")? + "\n",
    };
    print!("{text}");
    Ok(())
}
