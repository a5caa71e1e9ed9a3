//! `--output table`: aligned columns for people, one line per row.

use super::Row;

/// The columns every table has.
const COLUMNS: [&str; 9] = [
    "NAMESPACE",
    "NAME",
    "TYPE",
    "POLICY",
    "FAMILIES",
    "CLUSTER-IPS",
    "VERDICT",
    "RULES",
    "MESSAGE",
];

/// The first column when any row was read from a file (`check`): `file:line`, so that rows from
/// many files, and a document that could not be read (no namespace, no name), can be told apart.
/// `audit` rows have no file, and their table keeps the columns `kubectl get` users expect.
const FILE_COLUMN: &str = "FILE";

/// Aligned columns, two spaces apart, with a final newline; trailing spaces trimmed.
pub fn table(rows: &[Row]) -> String {
    let with_file = rows.iter().any(|r| r.source.is_some());
    let mut header: Vec<&str> = Vec::with_capacity(COLUMNS.len() + 1);
    if with_file {
        header.push(FILE_COLUMN);
    }
    header.extend(COLUMNS);
    let cells: Vec<Vec<String>> = rows.iter().map(|r| cells(r, with_file)).collect();
    aligned(&header, &cells)
}

/// `header` and `cells` in aligned columns, two spaces apart, with a final newline; trailing
/// spaces trimmed. Also `migrate`'s plan.
pub fn aligned(header: &[&str], cells: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: &[&str]| {
        let padded: Vec<String> = cols
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c:<w$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(header);
    for row in cells {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

fn cells(r: &Row, with_file: bool) -> Vec<String> {
    let mut cells = Vec::with_capacity(COLUMNS.len() + 1);
    if with_file {
        cells.push(r.source.as_ref().map(|s| s.position()).unwrap_or_default());
    }
    cells.extend([
        r.namespace.clone(),
        r.name.clone(),
        r.type_.clone(),
        r.ip_family_policy.clone(),
        r.ip_families.join(","),
        r.cluster_ips.join(","),
        r.verdict.as_str().to_owned(),
        r.rules.join(","),
        // One line per row: a message that spans lines (a parser's excerpt) is joined.
        r.message.split_whitespace().collect::<Vec<_>>().join(" "),
    ]);
    cells
}
