//! Every rule cited in the repository (`R3.10`, `R3.3b`, ...) is defined in `docs/k8s-service-rules.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The rules document, relative to [`ROOT`].
const RULES: &str = "docs/k8s-service-rules.md";
/// Where citations are collected: directories (walked) and files.
const SCANNED: &[&str] = &[
    "src",
    "tests",
    "benches",
    "fuzz",
    "examples",
    "manifests",
    "bench",
    "README.md",
];
/// Build output and fuzzer data, never sources.
const SKIPPED: &[&str] = &["fuzz/target", "fuzz/corpus", "fuzz/artifacts"];
const EXTENSIONS: &[&str] = &["rs", "sh", "md", "yaml"];

/// The rule ids in `text`: `R<digits>.<digits>`, optionally followed by `b`, with no letter or digit
/// directly before or after (so `PR3.1` is no citation and `R3.10` does not contain `R3.1`).
fn citations(text: &str) -> Vec<&str> {
    let digits = |from: usize| from + text[from..].bytes().take_while(u8::is_ascii_digit).count();
    let alphanumeric = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = Vec::new();
    for (start, _) in text.match_indices('R') {
        if alphanumeric(text[..start].chars().next_back()) {
            continue;
        }
        let major = digits(start + 1);
        if major == start + 1 || !text[major..].starts_with('.') {
            continue;
        }
        let mut end = digits(major + 1);
        if end == major + 1 {
            continue;
        }
        if text[end..].starts_with('b') {
            end += 1;
        }
        if !alphanumeric(text[end..].chars().next()) {
            out.push(&text[start..end]);
        }
    }
    out
}

/// The rules a document defines: lines that start with `- **<id>**`, in order (repeats kept).
fn definitions(doc: &str) -> Vec<&str> {
    doc.lines()
        .filter_map(|line| line.strip_prefix("- **")?.split_once("**"))
        .map(|(id, _)| id)
        .filter(|id| citations(id) == [*id])
        .collect()
}

/// Every file under `roots` (relative to [`ROOT`]), except under [`SKIPPED`], sorted.
fn files(roots: &[&str]) -> Vec<PathBuf> {
    let mut todo: Vec<PathBuf> = roots.iter().map(PathBuf::from).collect();
    let mut out = Vec::new();
    while let Some(rel) = todo.pop() {
        let abs = Path::new(ROOT).join(&rel);
        if abs.is_file() {
            out.push(rel);
        } else if abs.is_dir() && !SKIPPED.iter().any(|s| rel == Path::new(s)) {
            for entry in fs::read_dir(&abs).unwrap() {
                todo.push(rel.join(entry.unwrap().file_name()));
            }
        }
    }
    out.sort();
    out
}

fn read(rel: &Path) -> String {
    let bytes = fs::read(Path::new(ROOT).join(rel)).unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every citation in the scanned sources, as (`file:line`, rule id).
fn cited() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let sources = files(SCANNED).into_iter().filter(|f| {
        f.extension()
            .is_some_and(|e| EXTENSIONS.iter().any(|x| e == *x))
    });
    for rel in sources {
        for (n, line) in read(&rel).lines().enumerate() {
            for id in citations(line) {
                out.push((format!("{}:{}", rel.display(), n + 1), id.to_owned()));
            }
        }
    }
    out
}

#[test]
fn every_cited_rule_is_defined() {
    let doc = read(Path::new(RULES));
    let defined = definitions(&doc);
    let mut seen = BTreeSet::new();
    let twice: Vec<&&str> = defined.iter().filter(|id| !seen.insert(**id)).collect();
    assert!(twice.is_empty(), "defined twice in {RULES}: {twice:?}");
    let undefined: Vec<String> = cited()
        .into_iter()
        .filter(|(_, id)| !seen.contains(id.as_str()))
        .map(|(at, id)| format!("{at}: {id}"))
        .collect();
    assert!(
        undefined.is_empty(),
        "cited but not defined in {RULES}:\n{}",
        undefined.join("\n")
    );
}

#[test]
fn the_extractors_find_rules_and_nothing_else() {
    let cases: &[(&str, &[&str])] = &[
        ("see R3.10 and R1.8", &["R3.10", "R1.8"]),
        ("(R3.3b)", &["R3.3b"]),
        ("PR3.1 is not a rule", &[]),
        ("R3.1,", &["R3.1"]),
        ("R1.7–R1.8, §R0.3.", &["R1.7", "R1.8", "R0.3"]),
        ("R3.10a R3.3bb 2R1.1 éR1.1 r1.1 R1. R.1 R1 v1.R2", &[]),
    ];
    for (text, want) in cases {
        assert_eq!(citations(text), *want, "{text:?}");
    }
    let doc = "- **R3.10** x\n- **R3.3b** `y`\n  - **R8.6** nested\n- **Note** z\nR1.1 plain\n";
    assert_eq!(definitions(doc), ["R3.10", "R3.3b"]);
    // The real scan and the real document, so that the first test cannot pass on nothing.
    let n = cited().len();
    assert!(n >= 100, "only {n} citations found: is the scan broken?");
    let defined = definitions(&read(Path::new(RULES))).len();
    assert!(defined >= 50, "{RULES} defines only {defined} rules");
}

#[test]
fn the_rules_document_is_cited_by_its_path_in_the_repository() {
    let name = RULES.trim_start_matches("docs/");
    let mut stale = Vec::new();
    for rel in files(&["src", "tests"]) {
        for (n, line) in read(&rel).lines().enumerate() {
            for (at, _) in line.match_indices(name) {
                if !line[..at].ends_with("docs/") {
                    stale.push(format!("{}:{}", rel.display(), n + 1));
                }
            }
        }
    }
    assert!(stale.is_empty(), "say {RULES}:\n{}", stale.join("\n"));
}
