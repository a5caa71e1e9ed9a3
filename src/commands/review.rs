//! `review`: one AdmissionReview from stdin, the answer on stdout, offline.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::admission;
use crate::admission::Endpoint;
use crate::cluster::Cluster;
use crate::config::{EndpointArg, ReviewArgs};
use crate::policy_file::load_policy;

pub(super) fn run(args: ReviewArgs) -> anyhow::Result<ExitCode> {
    let (policy, _) = load_policy(&args.policy)?;
    let cluster = Cluster::with_cidrs(args.cluster.service_cidrs);
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .context("cannot read stdin")?;
    let endpoint = match args.endpoint {
        EndpointArg::Mutate => Endpoint::Mutate,
        EndpointArg::Validate => Endpoint::Validate,
    };
    let answer = admission::review(endpoint, &body, &policy, &cluster)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&answer.body)
        .and_then(|()| out.write_all(b"\n"))
        .context("cannot write stdout")?;
    Ok(ExitCode::SUCCESS)
}
