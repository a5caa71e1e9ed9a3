//! Kubernetes label selectors and namespace name globs, as the policy's `match` uses them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::service::Labels;

/// A `metav1.LabelSelector`: every `matchLabels` pair and every expression must hold; empty matches all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Exact key/value pairs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: Labels,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based requirement.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// How `values` apply.
    pub operator: SelectorOperator,
    /// Values for `In`/`NotIn`; must be empty for `Exists`/`DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// `In`, `NotIn`, `Exists`, `DoesNotExist`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum SelectorOperator {
    /// The label's value is one of `values`.
    In,
    /// The label is absent or its value is none of `values`.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// Where a selector looks labels up: a map, or a view that adds labels without copying one.
pub trait LabelLookup {
    /// The value of the label `key`, if present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelLookup for Labels {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl LabelSelector {
    /// Whether the labels satisfy every requirement (Kubernetes semantics).
    pub fn matches(&self, labels: &(impl LabelLookup + ?Sized)) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.label(k) == Some(v.as_str()))
            && self.match_expressions.iter().all(|e| e.matches(labels))
    }

    /// The first ill-formed expression, as `(index, reason)`.
    pub fn check(&self) -> Result<(), (usize, &'static str)> {
        for (i, e) in self.match_expressions.iter().enumerate() {
            let needs_values = matches!(e.operator, SelectorOperator::In | SelectorOperator::NotIn);
            if needs_values && e.values.is_empty() {
                return Err((i, "values must be non-empty for In and NotIn"));
            }
            if !needs_values && !e.values.is_empty() {
                return Err((i, "values must be empty for Exists and DoesNotExist"));
            }
        }
        Ok(())
    }
}

impl LabelSelector {
    /// Whether every Service (or namespace) this selector matches is also matched by `broader`:
    /// `broader` asks for a subset of this one's requirements (sound, not complete).
    pub fn implies(&self, broader: &Self) -> bool {
        broader
            .match_labels
            .iter()
            .all(|(k, v)| self.match_labels.get(k) == Some(v))
            && broader
                .match_expressions
                .iter()
                .all(|e| self.match_expressions.contains(e))
    }

    /// Labels that satisfy the selector, if any do: `matchLabels`, then for each expression a value
    /// it asks for (`In`: its first value, `Exists`: `x`); `NotIn` and `DoesNotExist` add nothing.
    /// The caller checks the result with [`LabelSelector::matches`] (contradictions do not match).
    pub fn example(&self) -> Labels {
        let mut labels = self.match_labels.clone();
        for e in &self.match_expressions {
            let value = match e.operator {
                SelectorOperator::In => e.values.first().cloned(),
                SelectorOperator::Exists => Some("x".to_owned()),
                SelectorOperator::NotIn | SelectorOperator::DoesNotExist => None,
            };
            if let Some(v) = value {
                labels.entry(e.key.clone()).or_insert(v);
            }
        }
        labels
    }
}

impl LabelSelectorRequirement {
    fn matches(&self, labels: &(impl LabelLookup + ?Sized)) -> bool {
        let value = labels.label(&self.key);
        match self.operator {
            SelectorOperator::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            SelectorOperator::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}

/// Shell-style glob over a namespace name: `*` is any run of characters, `?` is one character.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    // Namespace names are ASCII (DNS labels): match bytes, without allocating. Otherwise `?` must
    // match one character, not one byte.
    if pattern.is_ascii() && name.is_ascii() {
        return glob(pattern.as_bytes(), name.as_bytes(), b'?', b'*');
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    glob(&p, &n, '?', '*')
}

/// Whether every name `inner` matches is matched by `outer`, where that can be told by matching
/// `inner`'s own wildcards (`outer`'s `*` absorbs them, its `?` absorbs `?`). Sound, not complete:
/// `??*` covers `?*?` but is not said to. Globs longer than 256 characters are not compared.
pub fn glob_covers(outer: &str, inner: &str) -> bool {
    let (o, i): (Vec<char>, Vec<char>) = (outer.chars().collect(), inner.chars().collect());
    if o.len() > 256 || i.len() > 256 {
        return false;
    }
    // covers[a][b]: o[a..] covers i[b..]; filled from the ends (no recursion on long globs).
    let mut covers = vec![vec![false; i.len() + 1]; o.len() + 1];
    covers[o.len()][i.len()] = true;
    for a in (0..o.len()).rev() {
        for b in (0..=i.len()).rev() {
            covers[a][b] = match o[a] {
                '*' => covers[a + 1][b] || (b < i.len() && covers[a][b + 1]),
                '?' => b < i.len() && i[b] != '*' && covers[a + 1][b + 1],
                c => b < i.len() && i[b] == c && covers[a + 1][b + 1],
            };
        }
    }
    covers[0][0]
}

/// Why a namespace glob can match no namespace: a namespace name is a DNS-1123 label (at most 63
/// lowercase letters, digits and `-`, starting and ending with a letter or digit), and a glob adds
/// `*` and `?`.
pub fn check_glob(glob: &str) -> Result<(), String> {
    if glob.is_empty() {
        return Err("is empty: it matches no namespace".to_owned());
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-*?".contains(c);
    if let Some(c) = glob.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "{glob:?} is not a namespace glob: {c:?} is not allowed (namespace names have lowercase \
             letters, digits and '-'; globs add '*' and '?')"
        ));
    }
    if glob.chars().filter(|c| *c != '*').count() > 63 {
        return Err(format!(
            "{glob:?} matches no namespace: a namespace name has at most 63 characters"
        ));
    }
    if glob.starts_with('-') || glob.ends_with('-') {
        return Err(format!(
            "{glob:?} matches no namespace: a namespace name starts and ends with a letter or digit"
        ));
    }
    Ok(())
}

/// Why `key` is not a label key (Kubernetes' qualified name): an optional DNS-1123 subdomain prefix
/// of at most 253 characters and `/`, then a name of at most 63 characters.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let bad = |why: String| Err(format!("{key:?} is not a label key: {why}"));
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(Err(why)) = prefix.map(check_subdomain) {
        return bad(format!("the prefix before '/' {why}"));
    }
    if name.is_empty() {
        return bad("the name is empty".to_owned());
    }
    check_name(name).or_else(|why| bad(format!("the name {why}")))
}

/// Why `value` is not a label value: empty, or a name of at most 63 characters.
pub fn check_label_value(value: &str) -> Result<(), String> {
    check_name(value).map_err(|why| format!("{value:?} is not a label value: it {why}"))
}

/// The name part of a qualified name, or a label value (empty passes: the caller decides).
fn check_name(name: &str) -> Result<(), String> {
    if name.chars().count() > 63 {
        return Err("is longer than 63 characters".to_owned());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if let Some(c) = name.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "has {c:?}, which is not allowed (letters, digits, '-', '_' and '.')"
        ));
    }
    let ends = [name.chars().next(), name.chars().last()];
    if ends.iter().flatten().any(|c| !c.is_ascii_alphanumeric()) {
        return Err("must start and end with a letter or digit".to_owned());
    }
    Ok(())
}

/// A DNS-1123 subdomain: dot-separated labels of lowercase letters, digits and `-`, each starting
/// and ending with a letter or digit, at most 253 characters in all.
fn check_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".to_owned());
    }
    if s.len() > 253 {
        return Err("is longer than 253 characters".to_owned());
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c);
    if let Some(c) = s.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "has {c:?}, which is not allowed (a DNS subdomain: lowercase letters, digits, '-' and '.')"
        ));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if s.split('.')
        .any(|part| !alnum(part.chars().next()) || !alnum(part.chars().last()))
    {
        return Err(
            "must be a DNS subdomain: each dot-separated part starts and ends with a letter or digit"
                .to_owned(),
        );
    }
    Ok(())
}

/// Iterative matcher with one backtrack point: linear in practice, no recursion on hostile input.
fn glob<T: PartialEq>(p: &[T], n: &[T], any_one: T, any_run: T) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == any_one || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == any_run {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == any_run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expr(key: &str, operator: SelectorOperator, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    fn globs() {
        let cases = [
            ("prod-*", "prod-a", true),
            ("prod-*", "prod-", true),
            ("prod-*", "staging", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*-legacy", "team-legacy", true),
            ("*a*b", "xaxxb", true),
            ("*a*b", "xaxxbc", false),
            ("kube-system", "kube-system", true),
            // `?` is one character, also where a character is several bytes.
            ("caf?", "café", true),
            ("caf??", "café", false),
            ("*é", "café", true),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(glob_matches(pattern, name), want, "{pattern} vs {name}");
        }
    }

    #[test]
    fn namespace_globs_are_dns_labels_with_wildcards() {
        for ok in [
            "prod-*",
            "a",
            "*",
            "?",
            "e2e-iso-*",
            "team-?-x",
            &"a".repeat(63),
            &format!("{}*", "a".repeat(63)),
        ] {
            assert_eq!(check_glob(ok), Ok(()), "{ok}");
        }
        let cases = [
            ("", "is empty: it matches no namespace".to_owned()),
            (
                "legacy-[abc",
                "\"legacy-[abc\" is not a namespace glob: '[' is not allowed (namespace names have \
                 lowercase letters, digits and '-'; globs add '*' and '?')"
                    .to_owned(),
            ),
            (
                "-x*",
                "\"-x*\" matches no namespace: a namespace name starts and ends with a letter or \
                 digit"
                    .to_owned(),
            ),
            (
                &"a".repeat(64),
                format!(
                    "{:?} matches no namespace: a namespace name has at most 63 characters",
                    "a".repeat(64)
                ),
            ),
        ];
        for (glob, want) in cases {
            assert_eq!(check_glob(glob), Err(want), "{glob}");
        }
    }

    #[test]
    fn glob_coverage_is_sound() {
        let cases = [
            ("*", "anything-*", true),
            ("legacy-*", "legacy-a", true),
            ("legacy-*", "legacy-b*", true),
            ("legacy-*", "legacy-?", true),
            ("legacy-?", "legacy-a", true),
            ("legacy-?", "legacy-*", false),
            ("legacy-?", "legacy-??", false),
            ("prod-*", "legacy-*", false),
            ("*-a", "x-*", false),
            ("a*b", "a*", false),
            // Complete coverage that this check does not see: said as not covered (sound).
            ("??*", "?*?", false),
        ];
        for (outer, inner, want) in cases {
            assert_eq!(glob_covers(outer, inner), want, "{outer} covers {inner}");
        }
    }

    #[test]
    fn label_keys_and_values_follow_kubernetes() {
        for ok in [
            "app",
            "kubernetes.io/metadata.name",
            "a.b-c_d",
            "x/Y",
            &"k".repeat(63),
        ] {
            assert_eq!(check_label_key(ok), Ok(()), "{ok}");
        }
        let key = |k: &str, why: &str| (k.to_owned(), format!("{k:?} is not a label key: {why}"));
        let letters = "(letters, digits, '-', '_' and '.')";
        let cases = [
            key("", "the name is empty"),
            key("a/", "the name is empty"),
            key("/a", "the prefix before '/' is empty"),
            key(
                "a/b/c",
                &format!("the name has '/', which is not allowed {letters}"),
            ),
            key("-a", "the name must start and end with a letter or digit"),
            key(&"k".repeat(64), "the name is longer than 63 characters"),
            key(
                "a..b/c",
                "the prefix before '/' must be a DNS subdomain: each dot-separated part starts \
                 and ends with a letter or digit",
            ),
            key(
                &format!("{}/c", "a".repeat(254)),
                "the prefix before '/' is longer than 253 characters",
            ),
        ];
        for (k, want) in cases {
            assert_eq!(check_label_key(&k), Err(want), "{k}");
        }
        for ok in ["", "web", "v1.2_3-x", &"v".repeat(63)] {
            assert_eq!(check_label_value(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check_label_value("a b"),
            Err(format!(
                "\"a b\" is not a label value: it has ' ', which is not allowed {letters}"
            ))
        );
        assert_eq!(
            check_label_value("x-"),
            Err(
                "\"x-\" is not a label value: it must start and end with a letter or digit"
                    .to_owned()
            )
        );
    }

    #[test]
    fn selectors() {
        use SelectorOperator::*;
        let l = labels(&[("exposure", "public"), ("tier", "web")]);
        let sel = |ml: &[(&str, &str)], me: Vec<LabelSelectorRequirement>| LabelSelector {
            match_labels: labels(ml),
            match_expressions: me,
        };
        assert!(sel(&[], vec![]).matches(&l), "empty selector matches all");
        assert!(sel(&[("exposure", "public")], vec![]).matches(&l));
        assert!(!sel(&[("exposure", "private")], vec![]).matches(&l));
        assert!(sel(&[], vec![expr("tier", In, &["web", "api"])]).matches(&l));
        assert!(!sel(&[], vec![expr("tier", NotIn, &["web"])]).matches(&l));
        assert!(sel(&[], vec![expr("absent", NotIn, &["x"])]).matches(&l));
        assert!(sel(&[], vec![expr("tier", Exists, &[])]).matches(&l));
        assert!(!sel(&[], vec![expr("tier", DoesNotExist, &[])]).matches(&l));
        assert!(!sel(&[("exposure", "public")], vec![expr("absent", Exists, &[])]).matches(&l));
    }

    #[test]
    fn ill_formed_expressions_are_refused() {
        use SelectorOperator::*;
        let s = LabelSelector {
            match_labels: Labels::new(),
            match_expressions: vec![expr("a", Exists, &[]), expr("b", In, &[])],
        };
        assert_eq!(
            s.check(),
            Err((1, "values must be non-empty for In and NotIn"))
        );
        let s = LabelSelector {
            match_labels: Labels::new(),
            match_expressions: vec![expr("a", DoesNotExist, &["x"])],
        };
        assert_eq!(
            s.check(),
            Err((0, "values must be empty for Exists and DoesNotExist"))
        );
    }
}
