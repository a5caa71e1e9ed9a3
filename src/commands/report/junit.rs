//! `--output junit`: JUnit XML as CI systems read it (Jenkins, GitLab, GitHub test reporters), in
//! the dialect of the Jenkins xUnit plugin's `junit-10.xsd` (vendored in `tests/schemas/`, where
//! `tests/outputs.rs` checks every output against it).
//!
//! | rows | XML |
//! | --- | --- |
//! | the rows of one file (`check`) | one `<testsuite name="FILE">` |
//! | the rows of a cluster (`audit`) | one `<testsuite name="cluster">` |
//! | a row | `<testcase name="NAMESPACE/NAME" classname="FILE">` (`audit`: the namespace); a document that could not be read is `document N` |
//! | `ok` | a passing case |
//! | `warn`, `audit` | a passing case; the verdict and message in `<system-out>` |
//! | `deny`, `refused` | `<failure type="VERDICT" message="…">` with the message as text |
//! | `error` (unreadable) | `<error type="error" message="…">` with the message as text |
//! | `exempt`, `unknown` | `<skipped type="VERDICT" message="…"/>` |
//!
//! Counts: each suite has `tests`, `failures`, `errors` and `skipped`; the root `<testsuites>`
//! has `tests`, `failures` and `errors`, and no `skipped`, which `junit-10.xsd` does not allow
//! there (a validating reader would refuse the file). No `time` or `timestamp`: nothing was timed,
//! and the output stays the same for the same rows.

use std::borrow::Cow;
use std::io;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use super::{RenderError, Row, TOOL_NAME, Verdict};

/// The suite of rows with no file (`audit`).
const CLUSTER_SUITE: &str = "cluster";

/// The test counts of a suite, or of all of them.
#[derive(Default)]
struct Counts {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
}

/// The rows as a JUnit XML document, with a final newline.
pub fn junit(rows: &[Row]) -> Result<String, RenderError> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    write(&mut w, rows).map_err(RenderError::Xml)?;
    let mut bytes = w.into_inner();
    bytes.push(b'\n');
    // Only `&str`s went in, so this cannot fail; map it rather than unwrap.
    String::from_utf8(bytes)
        .map_err(|e| RenderError::Xml(io::Error::new(io::ErrorKind::InvalidData, e)))
}

fn write(w: &mut Writer<Vec<u8>>, rows: &[Row]) -> io::Result<()> {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let total = Counts::of(rows.iter());
    let (tests, failures, errors) = (
        total.tests.to_string(),
        total.failures.to_string(),
        total.errors.to_string(),
    );
    w.create_element("testsuites")
        .with_attributes([
            ("name", TOOL_NAME),
            ("tests", tests.as_str()),
            ("failures", failures.as_str()),
            ("errors", errors.as_str()),
        ])
        .write_inner_content(|w| {
            for (name, suite) in suites(rows) {
                write_suite(w, name, &suite)?;
            }
            Ok(())
        })?;
    Ok(())
}

/// The rows grouped by file, files in the order they first appear; rows with no file last, as
/// one suite `cluster`.
fn suites(rows: &[Row]) -> Vec<(&str, Vec<&Row>)> {
    let mut suites: Vec<(&str, Vec<&Row>)> = Vec::new();
    let mut cluster = Vec::new();
    for row in rows {
        let Some(source) = &row.source else {
            cluster.push(row);
            continue;
        };
        match suites.iter_mut().find(|(file, _)| *file == source.file) {
            Some((_, suite)) => suite.push(row),
            None => suites.push((source.file.as_str(), vec![row])),
        }
    }
    if !cluster.is_empty() {
        suites.push((CLUSTER_SUITE, cluster));
    }
    suites
}

fn write_suite(w: &mut Writer<Vec<u8>>, name: &str, rows: &[&Row]) -> io::Result<()> {
    let counts = Counts::of(rows.iter().copied());
    let (tests, failures, errors, skipped) = (
        counts.tests.to_string(),
        counts.failures.to_string(),
        counts.errors.to_string(),
        counts.skipped.to_string(),
    );
    w.create_element("testsuite")
        .with_attributes([
            ("name", xml_chars(name).as_ref()),
            ("tests", tests.as_str()),
            ("failures", failures.as_str()),
            ("errors", errors.as_str()),
            ("skipped", skipped.as_str()),
        ])
        .write_inner_content(|w| {
            for row in rows {
                write_case(w, row)?;
            }
            Ok(())
        })?;
    Ok(())
}

fn write_case(w: &mut Writer<Vec<u8>>, row: &Row) -> io::Result<()> {
    let name = xml_chars(&row.title()).into_owned();
    let classname = match &row.source {
        Some(source) => xml_chars(&source.file),
        None => xml_chars(&row.namespace),
    };
    let case = w
        .create_element("testcase")
        .with_attributes([("name", name.as_str()), ("classname", classname.as_ref())]);
    let verdict = row.verdict.as_str();
    let message = xml_chars(&row.message);
    let message: &str = &message;
    // A skipped case with no message still says why it was skipped.
    let reason = if message.is_empty() { verdict } else { message };
    let problem = |element: &'static str| {
        move |w: &mut Writer<Vec<u8>>| {
            w.create_element(element)
                .with_attributes([("type", verdict), ("message", reason)])
                .write_text_content(BytesText::new(message))?;
            Ok(())
        }
    };
    match row.verdict {
        Verdict::Ok => case.write_empty()?,
        Verdict::Deny | Verdict::Refused => case.write_inner_content(problem("failure"))?,
        Verdict::Error => case.write_inner_content(problem("error"))?,
        Verdict::Exempt | Verdict::Unknown => case.write_inner_content(|w| {
            w.create_element("skipped")
                .with_attributes([("type", verdict), ("message", reason)])
                .write_empty()?;
            Ok(())
        })?,
        Verdict::Warn | Verdict::Audit => case.write_inner_content(|w| {
            let text = format!("{verdict}: {message}");
            w.create_element("system-out")
                .write_text_content(BytesText::new(&text))?;
            Ok(())
        })?,
    };
    Ok(())
}

/// `text` with the characters XML 1.0 cannot carry, even escaped (C0 controls other than tab,
/// line feed and carriage return; U+FFFE, U+FFFF), replaced by U+FFFD: a message quoting a
/// binary file must not make the report unreadable.
fn xml_chars(text: &str) -> Cow<'_, str> {
    let bad = |c: char| {
        matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}')
            || matches!(c, '\u{fffe}' | '\u{ffff}')
    };
    if text.contains(bad) {
        Cow::Owned(text.replace(bad, "\u{fffd}"))
    } else {
        Cow::Borrowed(text)
    }
}

// === impl Counts ===

impl Counts {
    fn of<'a>(rows: impl Iterator<Item = &'a Row>) -> Self {
        let mut counts = Self::default();
        for row in rows {
            counts.tests += 1;
            match row.verdict {
                Verdict::Deny | Verdict::Refused => counts.failures += 1,
                Verdict::Error => counts.errors += 1,
                Verdict::Exempt | Verdict::Unknown => counts.skipped += 1,
                Verdict::Ok | Verdict::Warn | Verdict::Audit => {}
            }
        }
        counts
    }
}
