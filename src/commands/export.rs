//! `export`: the policy as in-process admission policies (YAML on stdout), and each thing they
//! cannot do as the webhook does on stderr, one line each. A policy with gaps is printed only with
//! `--allow-partial`: never a silently weaker policy.

use std::process::ExitCode;

use crate::config::{ClusterArgs, ExportArgs};
use crate::domain::cel::export::export;
use crate::policy_file::load_policy;

pub(super) fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let ExportArgs {
        policy,
        cluster: ClusterArgs { service_cidrs },
        allow_partial,
    } = args;
    let (policy, _) = load_policy(&policy)?;
    let export = export(&policy, service_cidrs.as_ref());
    for gap in &export.gaps {
        eprintln!("dualstack-webhook: export: {gap}");
    }
    if !export.gaps.is_empty() && !allow_partial {
        eprintln!(
            "dualstack-webhook: export: not printed: the admission policies would do less than \
             the webhook (--allow-partial prints them anyway)"
        );
        return Ok(ExitCode::from(1));
    }
    let documents = export
        .documents
        .iter()
        .map(serde_yaml_ng::to_string)
        .collect::<Result<Vec<_>, _>>()?;
    print!("{}", documents.join("---\n"));
    Ok(ExitCode::SUCCESS)
}
