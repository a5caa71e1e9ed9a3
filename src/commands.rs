//! The subcommands, wired: `serve` starts the servers and reload tasks; `review`, `certs` and
//! `check` are offline; `audit` reads a cluster once. The only module that reads files for the others,
//! sets exit codes and prints errors (one line each, every cause once: `one_line`).

pub mod audit;
pub mod certs;
pub mod check;
pub mod export;
pub mod lint;
pub mod migrate;
pub mod policy_test;
pub mod report;
pub mod review;
pub mod serve;
pub mod webhook_configurations;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cluster::ServiceCidrs;
use crate::config::{AuditArgs, CertsArgs, CheckArgs, Cli, Command, EnforcementArg, OutputFormat};
use crate::domain::policy::Policy;
use crate::policy_file::{lint_warnings, load_policy};

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
        Command::Lint(args) => lint::run(args),
        Command::Test(args) => policy_test::run(args),
        Command::WebhookConfigurations(args) => webhook_configurations::run(args),
        Command::Export(args) => export::run(args),
        Command::Migrate(args) => migrate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("dualstack-webhook: {}", one_line(&error));
            ExitCode::from(2)
        }
    }
}

/// An error as one line: its message, then each cause whose text that line does not already hold,
/// with any line breaks inside them turned into spaces.
///
/// This crate's errors carry their cause in their message and also mark it `#[source]` (STYLE.md
/// §1.4), so anyhow's `{:#}`, which appends every source, would print each cause two or three
/// times. The message alone would lose the cause of a plain `.context("...")`, and of library
/// errors that leave it to `source()` (hyper's `client error (Connect)`). Appending only the causes
/// not yet printed serves both: every cause appears once.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    if line.contains('\n') {
        line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    line
}

fn certs_cmd(args: CertsArgs) -> anyhow::Result<ExitCode> {
    let CertsArgs {
        out,
        dns,
        ip,
        force,
        namespace,
        service,
    } = args;
    let mut names = certs::in_cluster_names(&service, &namespace);
    names.extend(dns);
    let dns = names;
    // Without --force an existing CA is an error: it may be the caBundle of a configuration.
    let paths = if force {
        certs::replace(&out, &dns, &ip)?
    } else {
        certs::generate(&out, &dns, &ip)?
    };
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
    let policy = load_for_judging(
        &args.policy,
        args.cluster.service_cidrs.as_ref(),
        args.enforcement,
    )?;
    let mut known = check::Knowledge {
        service_cidrs: args.cluster.service_cidrs,
        default_namespace: args.namespace,
        ..check::Knowledge::default()
    };
    if let Some(file) = &args.namespace_labels {
        known.namespaces = check::read_namespace_labels(file)?;
    }
    if args.namespaces_from_cluster {
        let from_cluster = runtime()?.block_on(async {
            let client = audit::connect().await?;
            audit::namespace_labels(client).await
        })?;
        known.namespaces.extend(from_cluster);
    }
    let rows = check::check(&policy, &known, &args.paths)?;
    print_rows(&rows, args.output, &policy)?;
    Ok(if report::failed(&rows) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn audit_cmd(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let policy = load_for_judging(
        &args.policy,
        args.cluster.service_cidrs.as_ref(),
        args.enforcement,
    )?;
    let rows = runtime()?.block_on(async {
        let client = audit::connect().await?;
        audit::audit(client, &policy, args.cluster.service_cidrs).await
    })?;
    print_rows(&rows, args.output, &policy)?;
    Ok(if report::failed(&rows) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The policy `check` and `audit` judge with: loaded, its lint warnings on stderr as `lint` prints
/// them (its errors refused it already), and `--enforcement` in place of its own if given.
fn load_for_judging(
    path: &Path,
    cidrs: Option<&ServiceCidrs>,
    enforcement: Option<EnforcementArg>,
) -> anyhow::Result<Policy> {
    let (mut policy, bytes) = load_policy(path)?;
    for w in lint_warnings(&bytes, &policy, cidrs) {
        eprintln!("{}:{}: {w}", path.display(), w.line.unwrap_or(1));
    }
    if let Some(enforcement) = enforcement {
        policy.enforcement = enforcement.into();
    }
    Ok(policy)
}

/// A runtime for the commands that read a cluster once.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

fn print_rows(rows: &[report::Row], output: OutputFormat, policy: &Policy) -> anyhow::Result<()> {
    print!("{}", report::render(rows, output, policy)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::one_line;

    /// A message that carries its cause and also marks it as the source (STYLE.md §1.4).
    #[derive(Debug, thiserror::Error)]
    #[error("cannot read policy file p.yaml: {0}")]
    struct CarriesItsCause(#[source] std::io::Error);

    /// A message that leaves its cause to `source()`, as hyper's client errors do.
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct HidesItsCause(#[source] std::io::Error);

    fn not_found() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
    }

    #[test]
    fn each_cause_is_printed_once() {
        let error = anyhow::Error::new(CarriesItsCause(not_found()));
        assert_eq!(
            one_line(&error),
            "cannot read policy file p.yaml: no such file"
        );
        let error = anyhow::Error::new(CarriesItsCause(not_found())).context("cannot start");
        assert_eq!(
            one_line(&error),
            "cannot start: cannot read policy file p.yaml: no such file"
        );
        let error = Err::<(), _>(HidesItsCause(not_found()))
            .context("cannot list services")
            .unwrap_err();
        assert_eq!(
            one_line(&error),
            "cannot list services: client error (Connect): no such file"
        );
        let error = anyhow::anyhow!("bad yaml: line 3\n  |\n3 | clusters: [");
        assert_eq!(one_line(&error), "bad yaml: line 3 | 3 | clusters: [");
    }
}
