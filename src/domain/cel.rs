//! CEL the API server evaluates for us, generated from the policy: a small expression tree that
//! renders to the CEL text of a `matchConditions` entry. Pure: no CEL is evaluated here.
//!
//! The expressions read Kubernetes objects that carry no schema (`object`, `oldObject` of a
//! webhook's match condition), where reading an absent field is an error, and an error under
//! `failurePolicy: Fail` refuses the write. So every field read here is guarded by `has()` first;
//! `&&` and `||` in CEL absorb an error on the side that does not decide the result.

pub mod conditions;
pub mod export;

use std::ops::Not as _;

use crate::cluster::NAMESPACE_NAME_LABEL;
use crate::domain::policy::selector::SelectorOperator;
use crate::domain::policy::{LabelSelector, Match};
use crate::domain::service::{IpFamily, IpFamilyPolicy, ServiceType};

/// A CEL boolean expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cel {
    /// `true` or `false`.
    Const(bool),
    /// An expression that binds tighter than `!`, `&&` and `||` (a call, a comparison, `in`).
    Atom(String),
    /// Every operand holds.
    All(Vec<Cel>),
    /// Some operand holds.
    Any(Vec<Cel>),
    /// The operand does not hold.
    Not(Box<Cel>),
}

impl Cel {
    /// An atom from CEL text.
    pub fn atom(text: impl Into<String>) -> Self {
        Self::Atom(text.into())
    }

    /// Every operand holds; constants folded away.
    pub fn all(items: impl IntoIterator<Item = Cel>) -> Self {
        let mut out = Vec::new();
        for item in items {
            match item {
                Self::Const(true) => {}
                Self::Const(false) => return Self::Const(false),
                Self::All(inner) => out.extend(inner),
                other => out.push(other),
            }
        }
        match out.len() {
            0 => Self::Const(true),
            1 => out.remove(0),
            _ => Self::All(out),
        }
    }

    /// Some operand holds; constants folded away.
    pub fn any(items: impl IntoIterator<Item = Cel>) -> Self {
        let mut out = Vec::new();
        for item in items {
            match item {
                Self::Const(false) => {}
                Self::Const(true) => return Self::Const(true),
                Self::Any(inner) => out.extend(inner),
                other => out.push(other),
            }
        }
        match out.len() {
            0 => Self::Const(false),
            1 => out.remove(0),
            _ => Self::Any(out),
        }
    }

    /// The CEL text.
    pub fn render(&self) -> String {
        match self {
            Self::Const(b) => b.to_string(),
            Self::Atom(text) => text.clone(),
            Self::All(items) => join(items, " && "),
            Self::Any(items) => join(items, " || "),
            Self::Not(inner) => match inner.as_ref() {
                Self::Atom(text) if text.starts_with("has(") => format!("!{text}"),
                other => format!("!({})", other.render()),
            },
        }
    }
}

impl std::ops::Not for Cel {
    type Output = Cel;

    /// The negation; constants folded away.
    fn not(self) -> Cel {
        match self {
            Self::Const(b) => Self::Const(!b),
            Self::Not(inner) => *inner,
            other => Self::Not(Box::new(other)),
        }
    }
}

/// Operands joined by `op`, each in parentheses unless it binds tighter than both operators.
fn join(items: &[Cel], op: &str) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|item| match item {
            Cel::All(_) | Cel::Any(_) => format!("({})", item.render()),
            other => other.render(),
        })
        .collect();
    parts.join(op)
}

/// A CEL string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `expr` equals one of `values`: `==` for one value, `in [..]` for more.
fn one_of<'a>(expr: &str, values: impl IntoIterator<Item = &'a str>) -> Cel {
    let quoted: Vec<String> = values.into_iter().map(quote).collect();
    match quoted.as_slice() {
        [] => Cel::Const(false),
        [one] => Cel::atom(format!("{expr} == {one}")),
        many => Cel::atom(format!("{expr} in [{}]", many.join(", "))),
    }
}

/// One of the two objects of an admission request, as a match condition names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    /// `object`: the Service as it will be stored.
    New,
    /// `oldObject`: the stored Service (UPDATE).
    Old,
}

impl Object {
    fn var(self) -> &'static str {
        match self {
            Self::New => "object",
            Self::Old => "oldObject",
        }
    }

    fn spec(self, field: &str) -> String {
        format!("{}.spec.{field}", self.var())
    }

    fn has(self, field: &str) -> Cel {
        Cel::atom(format!("has({})", self.spec(field)))
    }

    /// `spec.ipFamilyPolicy` is unset (absent or empty, as the API server reads it).
    pub fn policy_unset(self) -> Cel {
        let p = self.spec("ipFamilyPolicy");
        Cel::any([
            self.has("ipFamilyPolicy").not(),
            Cel::atom(format!("{p} == ''")),
        ])
    }

    /// `spec.ipFamilyPolicy` is set to one of `allowed`.
    pub fn policy_in(self, allowed: &[IpFamilyPolicy]) -> Cel {
        let p = self.spec("ipFamilyPolicy");
        Cel::all([
            self.has("ipFamilyPolicy"),
            one_of(&p, allowed.iter().map(|p| p.as_str())),
        ])
    }

    /// A headless Service without selector (R3.12): `clusterIP: None` and no selector.
    pub fn selectorless_headless(self) -> Cel {
        let (ip, selector) = (self.spec("clusterIP"), self.spec("selector"));
        Cel::all([
            self.has("clusterIP"),
            Cel::atom(format!("{ip} == 'None'")),
            Cel::any([
                self.has("selector").not(),
                Cel::atom(format!("size({selector}) == 0")),
            ]),
        ])
    }

    /// `spec.ipFamilies` is unset (absent or empty).
    pub fn families_unset(self) -> Cel {
        let f = self.spec("ipFamilies");
        Cel::any([
            self.has("ipFamilies").not(),
            Cel::atom(format!("size({f}) == 0")),
        ])
    }

    /// `spec.ipFamilies` lists exactly `n` families.
    pub fn family_count_is(self, n: usize) -> Cel {
        let f = self.spec("ipFamilies");
        Cel::all([
            self.has("ipFamilies"),
            Cel::atom(format!("size({f}) == {n}")),
        ])
    }

    /// `spec.ipFamilies` lists more than `n` families.
    pub fn family_count_over(self, n: usize) -> Cel {
        let f = self.spec("ipFamilies");
        Cel::all([
            self.has("ipFamilies"),
            Cel::atom(format!("size({f}) > {n}")),
        ])
    }

    /// `spec.ipFamilies[0]` is `family`.
    pub fn primary_is(self, family: IpFamily) -> Cel {
        let f = self.spec("ipFamilies");
        Cel::all([
            self.has("ipFamilies"),
            Cel::atom(format!("size({f}) > 0")),
            Cel::atom(format!("{f}[0] == {}", quote(family.as_str()))),
        ])
    }

    /// The type is one of `types`, an absent or empty type being ClusterIP (R0.6).
    pub fn type_in(self, types: &[ServiceType]) -> Cel {
        let mut names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
        if types.contains(&ServiceType::ClusterIP) {
            names.insert(0, "");
            // `||` reads the field only where `has` said it is there.
            Cel::any([self.has("type").not(), one_of(&self.spec("type"), names)])
        } else {
            Cel::all([self.has("type"), one_of(&self.spec("type"), names)])
        }
    }

    /// The type is not ExternalName (unknown types included: the API server refuses them).
    pub fn not_external_name(self) -> Cel {
        let t = self.spec("type");
        Cel::any([
            self.has("type").not(),
            Cel::atom(format!("{t} != 'ExternalName'")),
        ])
    }

    /// The type differs from `other`'s, spelled as stored (an absent type differs from an explicit
    /// `ClusterIP`: a superset of the changes the API server sees).
    pub fn type_differs_from(self, other: Object) -> Cel {
        let typ = |o: Object| format!("(has({spec}) ? {spec} : '')", spec = o.spec("type"));
        Cel::atom(format!("{} != {}", typ(self), typ(other)))
    }

    /// The Service's labels satisfy `selector` (Kubernetes semantics).
    pub fn labels_match(self, selector: &LabelSelector) -> Cel {
        labels_satisfy(&format!("{}.metadata.labels", self.var()), selector)
    }
}

/// The labels map `labels` (a CEL expression) satisfies `selector` (Kubernetes semantics).
fn labels_satisfy(labels: &str, selector: &LabelSelector) -> Cel {
    let has_labels = Cel::atom(format!("has({labels})"));
    let present = |key: &str| {
        Cel::all([
            has_labels.clone(),
            Cel::atom(format!("{} in {labels}", quote(key))),
        ])
    };
    let value_in = |key: &str, values: &[String]| {
        let value = format!("{labels}[{}]", quote(key));
        Cel::all([
            present(key),
            one_of(&value, values.iter().map(String::as_str)),
        ])
    };
    let pairs = selector
        .match_labels
        .iter()
        .map(|(k, v)| value_in(k, std::slice::from_ref(v)));
    let expressions = selector.match_expressions.iter().map(|e| match e.operator {
        SelectorOperator::In => value_in(&e.key, &e.values),
        SelectorOperator::NotIn => value_in(&e.key, &e.values).not(),
        SelectorOperator::Exists => present(&e.key),
        SelectorOperator::DoesNotExist => present(&e.key).not(),
    });
    Cel::all(pairs.chain(expressions).collect::<Vec<_>>())
}

/// The namespace's labels satisfy `selector`, read from `namespaceObject`: admission policies
/// have the namespace object, so every label is exact there (a webhook's match conditions do not
/// have it: [`may_match`]).
pub fn namespace_labels_match(selector: &LabelSelector) -> Cel {
    labels_satisfy("namespaceObject.metadata.labels", selector)
}

/// The request's namespace matches one of the name globs (`*` any run, `?` one character).
pub fn namespace_in(globs: &[String]) -> Cel {
    Cel::any(
        globs
            .iter()
            .map(|g| namespace_matches(g))
            .collect::<Vec<_>>(),
    )
}

fn namespace_matches(glob: &str) -> Cel {
    if !glob.contains(['*', '?']) {
        return one_of("request.namespace", [glob]);
    }
    // Namespace globs are DNS labels with wildcards (policy::selector::check_glob), so nothing but
    // the wildcards is special in a regular expression; anything else is matched literally.
    let mut re = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c if c.is_ascii_alphanumeric() || c == '-' => re.push(c),
            c => {
                re.push('\\');
                re.push(c);
            }
        }
    }
    re.push('$');
    Cel::atom(format!("request.namespace.matches({})", quote(&re)))
}

/// A namespace selector, as far as a match condition can tell: requirements on the namespace's
/// name label are read from `request.namespace`; other labels are not visible to a webhook's match
/// conditions (every namespace carries its name there), so those requirements are taken to hold (the webhook, called, decides).
fn namespace_selector_may_match(selector: &LabelSelector) -> Cel {
    let name = "request.namespace";
    let one = |operator: SelectorOperator, values: &[String]| {
        let in_values = one_of(name, values.iter().map(String::as_str));
        match operator {
            SelectorOperator::In => in_values,
            SelectorOperator::NotIn => in_values.not(),
            SelectorOperator::Exists => Cel::Const(true),
            SelectorOperator::DoesNotExist => Cel::Const(false),
        }
    };
    let pairs = selector
        .match_labels
        .iter()
        .filter(|(k, _)| *k == NAMESPACE_NAME_LABEL)
        .map(|(_, v)| one(SelectorOperator::In, std::slice::from_ref(v)));
    let expressions = selector
        .match_expressions
        .iter()
        .filter(|e| e.key == NAMESPACE_NAME_LABEL)
        .map(|e| one(e.operator, &e.values));
    Cel::all(pairs.chain(expressions).collect::<Vec<_>>())
}

/// Whether `match_` may cover the Service `object` names: exact for namespace globs, object
/// selectors, types and the namespace's name label; other namespace labels are taken to match.
pub fn may_match(match_: &Match, object: Object) -> Cel {
    Cel::all([
        match_
            .namespaces
            .as_deref()
            .map_or(Cel::Const(true), namespace_in),
        match_
            .namespace_selector
            .as_ref()
            .map_or(Cel::Const(true), namespace_selector_may_match),
        match_
            .object_selector
            .as_ref()
            .map_or(Cel::Const(true), |s| object.labels_match(s)),
        match_
            .types
            .as_deref()
            .map_or(Cel::Const(true), |t| object.type_in(t)),
    ])
}

/// Whether `match_` covers the Service `object` names, exactly: as [`may_match`], with the
/// namespace selector read from `namespaceObject` (admission policies only).
pub fn matches(match_: &Match, object: Object) -> Cel {
    Cel::all([
        may_match(
            &Match {
                namespace_selector: None,
                ..match_.clone()
            },
            object,
        ),
        match_
            .namespace_selector
            .as_ref()
            .map_or(Cel::Const(true), namespace_labels_match),
    ])
}

#[cfg(test)]
mod tests;
