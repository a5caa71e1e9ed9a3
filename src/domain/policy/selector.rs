//! Kubernetes label selectors and namespace name globs, as the policy's `match` uses them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::service::Labels;

/// A `metav1.LabelSelector`: every `matchLabels` pair and every expression must hold; empty matches all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
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
