//! `lint`: policy files checked for mistakes, one line per finding (`FILE:LINE: error|warning:
//! FIELD: message`) and a summary. Exit 0 when clean or with warnings only, 1 on an error, 2 when
//! a file cannot be read.

use std::path::Path;
use std::process::ExitCode;

use crate::cluster::ServiceCidrs;
use crate::config::LintArgs;
use crate::domain::policy::lint::{self, Severity};
use crate::domain::policy::{Policy, PolicyError};
use crate::domain::yaml_lines::Lines;
use crate::policy_file::{self, LoadError};

/// What linting one file found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// One line per finding, in the order of the file.
    pub lines: Vec<String>,
    /// How many of them are errors.
    pub errors: usize,
    /// How many are warnings.
    pub warnings: usize,
}

/// Lints each policy file.
pub fn run(args: LintArgs) -> anyhow::Result<ExitCode> {
    let LintArgs { cluster, policies } = args;
    let cidrs = cluster.service_cidrs;
    let (mut errors, mut warnings, mut linted, mut unreadable) = (0, 0, 0, 0);
    for path in &policies {
        let bytes = match policy_file::read(path) {
            Ok(bytes) => bytes,
            Err(error) => {
                eprintln!("dualstack-webhook: {}", unreadable_message(path, &error));
                unreadable += 1;
                continue;
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        let report = lint_text(&path.display().to_string(), &text, cidrs.as_ref());
        for line in &report.lines {
            println!("{line}");
        }
        (errors, warnings, linted) = (
            errors + report.errors,
            warnings + report.warnings,
            linted + 1,
        );
    }
    println!(
        "{}, {} in {}",
        count(errors, "error"),
        count(warnings, "warning"),
        count(linted, "file")
    );
    Ok(match (unreadable, errors) {
        (0, 0) => ExitCode::SUCCESS,
        (0, _) => ExitCode::from(1),
        _ => ExitCode::from(2),
    })
}

/// Lints the text of one policy file, named `file` in the lines.
pub fn lint_text(file: &str, text: &str, cidrs: Option<&ServiceCidrs>) -> Report {
    let policy = match Policy::from_yaml_unchecked(text) {
        Ok(policy) => policy,
        Err(error) => {
            // A document that is not of the schema: the parser's message names the field and line.
            let line = match &error {
                PolicyError::Syntax(e) => e.location().map(|l| l.line()),
                PolicyError::TooDeep(e) => Some(e.line),
                PolicyError::Invalid { line, .. } => *line,
            };
            return Report {
                lines: vec![format!("{file}:{}: error: {error}", line.unwrap_or(1))],
                errors: 1,
                warnings: 0,
            };
        }
    };
    let mut findings = lint::lint(&policy, &Lines::of(text), cidrs);
    findings.sort_by_key(|f| f.line.unwrap_or(1));
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    Report {
        lines: findings
            .iter()
            .map(|f| format!("{file}:{}: {f}", f.line.unwrap_or(1)))
            .collect(),
        errors,
        warnings: findings.len() - errors,
    }
}

fn unreadable_message(path: &Path, error: &LoadError) -> String {
    match error {
        LoadError::Read(_, cause) => format!("cannot read {}: {cause}", path.display()),
        other => other.to_string().replace(" (--policy)", ""),
    }
}

/// `1 error`, `2 warnings`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
