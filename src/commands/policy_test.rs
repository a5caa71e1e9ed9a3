//! `test`: policy test suites, as `kyverno test` and `gator verify` run them. A suite
//! (`dualstack-test.yaml`, see `docs/policy-tests.md`) names a policy, what is known of the cluster,
//! Service manifests, and what each Service should get; each Service is judged as `check` judges it
//! and compared.
//!
//! Output: one line per result (`PASS`, `FAIL`, or `UNTESTED` for a Service the suite expects
//! nothing of), each starting with the suite file so that a failure says where to look, then a
//! summary. Exit 0 when every result passed, 1 when one failed, 2 when a suite could not be read
//! or found (the other suites still run, and their lines are printed).

mod suite;
mod verify;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::commands::check;
use crate::config::TestArgs;

use suite::{Suite, SuiteError};
use verify::{Line, Status, verify};

/// Why no suite could be found where one was asked for.
#[derive(Debug, thiserror::Error)]
enum FindError {
    /// The path could not be read.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    /// A directory with no suite file anywhere under it.
    #[error("{0}: no {name} in this directory or below", name = suite::FILE_NAME)]
    NoSuite(PathBuf),
}

/// What running suites gave.
#[derive(Debug, Default)]
struct Summary {
    /// Suite files found.
    suites: usize,
    /// Suites that could not be read or run.
    unreadable: usize,
    /// Results that passed.
    passed: usize,
    /// Results that failed.
    failed: usize,
    /// Services of the resources with no expected result (not `strict`).
    untested: usize,
}

/// Runs every suite under `paths`; prints a line per result and a summary.
pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let TestArgs { paths } = args;
    let mut summary = Summary::default();
    let mut broken = false;
    for found in paths.iter().map(|p| find(p)) {
        let suites = match found {
            Ok(suites) => suites,
            Err(error) => {
                broken = true;
                eprintln!("dualstack-webhook: {error}");
                continue;
            }
        };
        for path in suites {
            summary.suites += 1;
            match run_suite(&path) {
                Ok(lines) => {
                    for line in &lines {
                        println!("{}", render(&path, line));
                        summary.count(line.status);
                    }
                }
                Err(error) => {
                    summary.unreadable += 1;
                    eprintln!("dualstack-webhook: {}", one_line(&error.to_string()));
                }
            }
        }
    }
    if summary.suites > 0 {
        println!("{summary}");
    }
    Ok(if broken || summary.unreadable > 0 || summary.suites == 0 {
        ExitCode::from(2)
    } else if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads one suite, judges its resources and compares.
fn run_suite(path: &Path) -> Result<Vec<Line>, SuiteError> {
    let suite = Suite::load(path)?;
    let rows = check::check(&suite.policy, &suite.known, &suite.resources)
        .map_err(|e| SuiteError::Resources(path.to_owned(), e))?;
    verify(&suite.results, &rows, suite.strict)
        .map_err(|verify::Ambiguous(key, a, b)| SuiteError::Ambiguous(path.to_owned(), key, a, b))
}

/// `STATUS suite: subject: detail`.
fn render(suite: &Path, line: &Line) -> String {
    let text = format!(
        "{} {}: {}: {}",
        line.status,
        suite.display(),
        line.subject,
        line.detail
    );
    one_line(&text)
}

/// Line breaks (in a YAML parser's message) turned into spaces: one result, one line.
fn one_line(text: &str) -> String {
    if text.contains('\n') {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        text.to_owned()
    }
}

/// The suites `path` names: itself if a file (whatever its name), else every
/// `dualstack-test.yaml` under it, in path order. Hidden directories (`.git`) are not searched;
/// symlinks are followed, each directory read once.
fn find(path: &Path) -> Result<Vec<PathBuf>, FindError> {
    let meta = std::fs::metadata(path).map_err(|e| FindError::Read(path.to_owned(), e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut found = Vec::new();
    walk(path, &mut HashSet::new(), &mut found)?;
    if found.is_empty() {
        return Err(FindError::NoSuite(path.to_owned()));
    }
    Ok(found)
}

fn walk(
    dir: &Path,
    seen: &mut HashSet<PathBuf>,
    found: &mut Vec<PathBuf>,
) -> Result<(), FindError> {
    let failed = |e| FindError::Read(dir.to_owned(), e);
    // A directory reached again (a symlink loop, or two links to one place) is not read again.
    if !seen.insert(std::fs::canonicalize(dir).map_err(failed)?) {
        return Ok(());
    }
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(failed)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    children.sort();
    for child in children {
        let name = child
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if child.is_dir() {
            if !name.starts_with('.') {
                walk(&child, seen, found)?;
            }
        } else if name == suite::FILE_NAME {
            found.push(child);
        }
    }
    Ok(())
}

// === impl Summary ===

impl Summary {
    fn count(&mut self, status: Status) {
        match status {
            Status::Pass => self.passed += 1,
            Status::Fail => self.failed += 1,
            Status::Untested => self.untested += 1,
        }
    }
}

/// `2 suites, 9 results: 8 passed, 1 failed`, with `(1 unreadable)` and `, 3 untested` when so.
impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(f, "{}", plural(self.suites, "suite", "suites"))?;
        if self.unreadable > 0 {
            write!(f, " ({} unreadable)", self.unreadable)?;
        }
        let results = plural(self.passed + self.failed, "result", "results");
        write!(
            f,
            ", {results}: {} passed, {} failed",
            self.passed, self.failed
        )?;
        if self.untested > 0 {
            write!(f, ", {} untested", self.untested)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
