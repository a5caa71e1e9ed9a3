//! Compares what `check` says of each Service with what the suite expects. Pure: rows and
//! expectations in, one [`Line`] per result out.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

use crate::commands::report::{Row, Source, Verdict};

use super::suite::Expected;

/// How one result came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Status {
    /// As expected.
    Pass,
    /// Not as expected, not found, unreadable, or (strict) not expected at all.
    Fail,
    /// A Service of the resources that the suite expects nothing of (not `strict`).
    Untested,
}

/// One line of output: `STATUS subject: detail`, under the suite's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Line {
    /// The status.
    pub(super) status: Status,
    /// `namespace/name`, or the place of a document that could not be read.
    pub(super) subject: String,
    /// What came out, or what differs.
    pub(super) detail: String,
}

/// Two Services of the resources with one name: `namespace/name` and where each was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Ambiguous(pub(super) String, pub(super) String, pub(super) String);

/// One line per expected result (in the suite's order), then one per document that could not be
/// read and per Service the suite does not expect anything of (in the resources' order).
pub(super) fn verify(
    expected: &[Expected],
    rows: &[Row],
    strict: bool,
) -> Result<Vec<Line>, Ambiguous> {
    let mut by_key: HashMap<String, &Row> = HashMap::new();
    for row in rows.iter().filter(|r| r.verdict != Verdict::Error) {
        let key = format!("{}/{}", row.namespace, row.name);
        if let Some(first) = by_key.insert(key.clone(), row) {
            return Err(Ambiguous(key, place(first), place(row)));
        }
    }
    let mut lines: Vec<Line> = expected
        .iter()
        .map(|e| compare(e, by_key.get(&e.key()).copied()))
        .collect();
    for row in rows {
        let subject = format!("{}/{}", row.namespace, row.name);
        let line = match Outcome::of(row.verdict) {
            None => Line {
                status: Status::Fail,
                subject: place(row),
                detail: row.message.clone(),
            },
            Some(_) if expected.iter().any(|e| e.key() == subject) => continue,
            Some(got) if strict => Line {
                status: Status::Fail,
                subject,
                detail: format!("no expected result (strict), got {got}{}", message(row)),
            },
            Some(got) => Line {
                status: Status::Untested,
                subject,
                detail: format!("no expected result, got {got}"),
            },
        };
        lines.push(line);
    }
    Ok(lines)
}

/// One expectation against the row of its Service, if there is one.
fn compare(expected: &Expected, row: Option<&Row>) -> Line {
    let subject = expected.key();
    let Some(row) = row else {
        return Line {
            status: Status::Fail,
            subject,
            detail: format!(
                "expected {}, got no such Service in the resources",
                expected.result
            ),
        };
    };
    let got = Outcome::of(row.verdict);
    let mut wrong = Vec::new();
    if got != Some(expected.result) {
        let got = got.map_or(row.verdict.as_str(), Outcome::as_str);
        wrong.push(format!("expected {}, got {got}", expected.result));
    }
    if let Some(rules) = &expected.rules {
        let sorted = |list: &[String]| {
            let mut list = list.to_vec();
            list.sort();
            list
        };
        if sorted(rules) != sorted(&row.rules) {
            let (want, have) = (list(rules.iter()), list(row.rules.iter()));
            wrong.push(format!("expected rules {want}, got {have}"));
        }
    }
    if let Some(policy) = expected.ip_family_policy
        && row.ip_family_policy != policy.as_str()
    {
        let have = Some(row.ip_family_policy.as_str()).filter(|p| !p.is_empty());
        let have = have.unwrap_or("none");
        wrong.push(format!("expected ipFamilyPolicy {policy}, got {have}"));
    }
    if let Some(families) = &expected.ip_families
        && !families
            .iter()
            .map(|f| f.as_str())
            .eq(row.ip_families.iter())
    {
        let (want, have) = (list(families.iter()), list(row.ip_families.iter()));
        wrong.push(format!("expected ipFamilies {want}, got {have}"));
    }
    if let Some(text) = &expected.message_contains
        && !row.message.contains(text.as_str())
    {
        wrong.push(format!("expected a message containing {text:?}"));
    }
    if wrong.is_empty() {
        return Line {
            status: Status::Pass,
            subject,
            detail: expected.result.to_string(),
        };
    }
    Line {
        status: Status::Fail,
        subject,
        detail: format!("{}{}", wrong.join("; "), message(row)),
    }
}

/// ` (message)`, or nothing when the row has none.
fn message(row: &Row) -> String {
    match row.message.as_str() {
        "" => String::new(),
        m => format!(" ({m})"),
    }
}

/// `[a, b]`, or `none`.
fn list<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items.map(|i| i.to_string()).collect();
    if items.is_empty() {
        return "none".to_owned();
    }
    format!("[{}]", items.join(", "))
}

/// Where a row was read: `file:line`, else `file`.
fn place(row: &Row) -> String {
    match &row.source {
        Some(Source {
            file,
            line: Some(line),
            ..
        }) => format!("{file}:{line}"),
        Some(Source { file, .. }) => file.clone(),
        None => String::new(),
    }
}

/// What a Service gets, as a suite names it: a [`Verdict`] as a past participle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Outcome {
    /// Verdict `ok`: no rule is violated.
    Allowed,
    /// Verdict `deny`.
    Denied,
    /// Verdict `warn`.
    Warned,
    /// Verdict `audit`.
    Audited,
    /// Verdict `exempt`.
    Exempt,
    /// Verdict `refused`: the API server would refuse the Service.
    Refused,
    /// Verdict `unknown`: it depends on what the suite does not say.
    Unknown,
}

// === impl Outcome ===

impl Outcome {
    /// The outcome a verdict is; `None` for `error` (a document that could not be read), which
    /// no suite can expect.
    pub(super) fn of(verdict: Verdict) -> Option<Self> {
        Some(match verdict {
            Verdict::Ok => Self::Allowed,
            Verdict::Deny => Self::Denied,
            Verdict::Warn => Self::Warned,
            Verdict::Audit => Self::Audited,
            Verdict::Exempt => Self::Exempt,
            Verdict::Refused => Self::Refused,
            Verdict::Unknown => Self::Unknown,
            Verdict::Error => return None,
        })
    }

    /// The name a suite uses.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Warned => "warned",
            Self::Audited => "audited",
            Self::Exempt => "exempt",
            Self::Refused => "refused",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Status ===

impl Status {
    /// The word that starts the line.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Untested => "UNTESTED",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
