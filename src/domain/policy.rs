//! The policy file (`DualStackPolicy`): its schema, parsing and validation. Pure: text in, value out.

pub mod limits;
pub mod lint;
pub mod selector;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::service::{IpFamily, IpFamilyPolicy, Labels, ServiceType};
use crate::domain::yaml_lines::Lines;
pub use selector::{LabelLookup, LabelSelector, glob_matches};

/// The only `apiVersion` this build reads.
pub const API_VERSION: &str = "dualstack-webhook/v1alpha1";
/// The only `kind` this build reads.
pub const KIND: &str = "DualStackPolicy";
/// What a namespace glob may hold (the schema's pattern; [`lint`] says which character is wrong).
const GLOB_PATTERN: &str = "^[a-z0-9*?-]+$";

/// A parsed, validated policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(
    title = "DualStackPolicy",
    extend("required" = ["apiVersion", "kind"])
)]
pub struct Policy {
    /// Must be `dualstack-webhook/v1alpha1`.
    #[serde(default)]
    #[schemars(extend("const" = API_VERSION, "default" = API_VERSION))]
    pub api_version: String,
    /// Must be `DualStackPolicy`.
    #[serde(default)]
    #[schemars(extend("const" = KIND, "default" = KIND))]
    pub kind: String,
    /// How strictly the whole policy is enforced, for staged rollouts (Audit, then Warn, then
    /// Deny): `Deny` acts on every rule as written, `Warn` makes every Deny rule act as Warn, and
    /// `Audit` makes every Deny and Warn rule act as Audit. Defaults and upgrades apply either way.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// Namespaces (name globs: `*` any run of characters, `?` one) that are never mutated or judged.
    #[serde(default)]
    #[schemars(inner(regex(pattern = GLOB_PATTERN)))]
    pub exempt_namespaces: Vec<String>,
    /// Applied on CREATE to the fields the client left unset.
    #[serde(default)]
    pub defaults: Defaults,
    /// On UPDATE, put back the `ipFamilyPolicy` and `ipFamilies` a request dropped (a PUT without
    /// them lets the API server upgrade a PreferDualStack Service, rules §6). Off unless asked for.
    #[serde(default)]
    pub restore_dropped_fields: bool,
    /// Evaluated in order; every matching rule's checks apply.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// Defaults for the dual-stack fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Defaults {
    /// The policy to set when the client set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_policy: Option<IpFamilyPolicy>,
    /// Preferred family order, primary first: one or two distinct families.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2), extend("uniqueItems" = true))]
    pub ip_families: Option<Vec<IpFamily>>,
}

/// One rule: a scope, requirements on the final object, optional defaults and an action.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Unique, shown in denials, warnings and audit annotations.
    pub name: String,
    /// Which Services the rule applies to; omitted conditions match anything.
    #[serde(default, rename = "match")]
    pub match_: Match,
    /// Services the rule leaves out although `match` covers them: all of its given conditions must
    /// hold to exclude a Service (at least one must be given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Match>,
    /// What the final object must satisfy.
    #[serde(default)]
    pub require: Require,
    /// Overrides `spec.defaults` field by field for matching Services (the first matching rule with defaults wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Defaults>,
    /// On UPDATE, add the missing secondary family to a single-family Service (explicit opt-in, rules §6).
    #[serde(default)]
    pub upgrade_existing: bool,
    /// What a violation does.
    #[serde(default)]
    pub action: Action,
}

/// The scope of a rule. All given conditions must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Match {
    /// Namespace name globs (`*` any run of characters, `?` one); any may match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(regex(pattern = GLOB_PATTERN)))]
    pub namespaces: Option<Vec<String>>,
    /// Selector on the namespace's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Selector on the Service's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<LabelSelector>,
    /// Service types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<ServiceType>>,
}

/// Requirements judged on the final (allocated) object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Require {
    /// Allowed values of `ipFamilyPolicy` (at least one), judged among those the cluster can store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub ip_family_policies: Option<Vec<IpFamilyPolicy>>,
    /// Required `ipFamilies[0]` (where the cluster has that family).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_family: Option<IpFamily>,
    /// `true`: two families once allocated (where the cluster has two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dual_stack: Option<bool>,
}

/// What a violated rule does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum Action {
    /// Refuse the request.
    #[default]
    Deny,
    /// Allow, with a warning shown by kubectl.
    Warn,
    /// Allow, with an audit annotation only.
    Audit,
}

/// How strictly the whole policy is enforced: the strictest action any rule takes. A rule whose
/// `action` is stricter acts as this one; a milder rule keeps its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum Enforcement {
    /// Every rule acts as written.
    #[default]
    Deny,
    /// Every `Deny` rule acts as `Warn`: no violation is refused, each is shown by kubectl.
    Warn,
    /// Every `Deny` and `Warn` rule acts as `Audit`: no violation is refused or warned, each is
    /// recorded in audit annotations only.
    Audit,
}

/// Why a policy file was refused. The message names the field (and line where the parser knows it).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not YAML of the schema: unknown field, wrong type, bad enum value.
    #[error("{0}")]
    Syntax(#[source] serde_yaml_ng::Error),
    /// Nested deeper than [`limits::POLICY_MAX_DEPTH`]; refused before it is parsed.
    #[error("{0}")]
    TooDeep(#[source] limits::TooDeep),
    /// Valid YAML, invalid meaning (an error of [`lint`]).
    #[error("{field}{}: {reason}", .line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Invalid {
        /// Path of the offending field, e.g. `rules[2].name`.
        field: String,
        /// The line of the field (or of its nearest parent the text has).
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
}

// === impl Policy ===

impl Policy {
    /// Parses and validates a policy document: refused on a syntax error or on the first error
    /// [`lint`] finds, with the field and its line. An empty document (nothing, or only whitespace
    /// and comments) is the empty policy: no defaults, no rules, so it changes nothing and denies
    /// nothing.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        let policy = Self::from_yaml_unchecked(text)?;
        if let Some(error) = lint::errors(&policy).into_iter().next() {
            let line = Lines::of(text).line(0, &error.field);
            return Err(PolicyError::Invalid {
                field: error.field,
                line,
                reason: error.message,
            });
        }
        Ok(policy)
    }

    /// Parses a policy document without judging its meaning: what `lint` reads, to report every
    /// error rather than the first. Use [`Policy::from_yaml`] for a policy to enforce.
    pub fn from_yaml_unchecked(text: &str) -> Result<Self, PolicyError> {
        // Before the parser: its cost grows with the square of the nesting (see `limits`).
        limits::check_depth(text, limits::POLICY_MAX_DEPTH).map_err(PolicyError::TooDeep)?;
        // An empty YAML document is `null`, which `Option` reads as `None`.
        let parsed: Option<Policy> = serde_yaml_ng::from_str(text).map_err(PolicyError::Syntax)?;
        Ok(parsed.unwrap_or_else(|| Self {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            ..Self::default()
        }))
    }

    /// What a violation of `rule` does: the rule's `action`, made milder by `enforcement`.
    pub fn action_of(&self, rule: &Rule) -> Action {
        self.enforcement.apply(rule.action)
    }

    /// Whether the namespace is exempt: never mutated or judged.
    pub fn is_exempt(&self, namespace: &str) -> bool {
        self.exempt_namespaces
            .iter()
            .any(|g| glob_matches(g, namespace))
    }
}

/// The policy file's JSON Schema (draft 2020-12), generated from the types above: what
/// `docs/policy.schema.json` holds, for editors (yaml-language-server) and kubeconform. It checks
/// the shape (fields, types, enum values); [`lint`] checks the meaning. Optional fields are
/// written or left out: the schema does not allow them to be `null`, which the webhook reads as
/// left out.
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Policy).to_value();
    // An optional field is written or left out, never `null`: the schema says only the former,
    // which keeps editors' completions and the validators' messages about the field itself.
    drop_null(&mut schema);
    schema
}

/// Removes `null` from every `type` list and `anyOf` of a schema (schemars allows it for `Option`).
fn drop_null(schema: &mut serde_json::Value) {
    use serde_json::Value;
    let Value::Object(map) = schema else {
        if let Value::Array(items) = schema {
            items.iter_mut().for_each(drop_null);
        }
        return;
    };
    if let Some(Value::Array(types)) = map.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            map.insert("type".to_owned(), only);
        }
    }
    let is_null = |v: &Value| v.get("type").is_some_and(|t| t == "null");
    if let Some(Value::Array(any_of)) = map.get("anyOf")
        && let [a, b] = any_of.as_slice()
        && (is_null(a) || is_null(b))
    {
        let Value::Object(kept) = (if is_null(a) { b } else { a }).clone() else {
            return;
        };
        map.remove("anyOf");
        map.extend(kept);
    }
    map.values_mut().for_each(drop_null);
}

// === impl Enforcement ===

impl Enforcement {
    /// The action of a rule written with `action` under this enforcement: the milder of the two
    /// (Audit is milder than Warn, which is milder than Deny).
    pub fn apply(self, action: Action) -> Action {
        match (self, action) {
            (Self::Deny, action) | (Self::Warn, action @ (Action::Warn | Action::Audit)) => action,
            (Self::Warn, Action::Deny) => Action::Warn,
            (Self::Audit, _) => Action::Audit,
        }
    }
}

// === impl Rule ===

impl Rule {
    /// Whether the rule applies to a Service of this type, with these labels, in this namespace
    /// (with these labels): `match` matches it and `exclude` (if any) does not.
    pub fn applies(
        &self,
        namespace: &str,
        namespace_labels: &impl LabelLookup,
        labels: &Labels,
        type_: Option<ServiceType>,
    ) -> bool {
        self.match_
            .matches(namespace, namespace_labels, labels, type_)
            && !self
                .exclude
                .as_ref()
                .is_some_and(|e| e.matches(namespace, namespace_labels, labels, type_))
    }
}

// === impl Match ===

impl Match {
    /// No condition at all: matches every Service.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether a Service of this type, with these labels, in this namespace (with these labels) is in scope.
    pub fn matches(
        &self,
        namespace: &str,
        namespace_labels: &impl LabelLookup,
        labels: &Labels,
        type_: Option<ServiceType>,
    ) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|globs| globs.iter().any(|g| glob_matches(g, namespace)))
            && self
                .namespace_selector
                .as_ref()
                .is_none_or(|s| s.matches(namespace_labels))
            && self
                .object_selector
                .as_ref()
                .is_none_or(|s| s.matches(labels))
            && self
                .types
                .as_ref()
                .is_none_or(|types| type_.is_some_and(|t| types.contains(&t)))
    }
}

#[cfg(test)]
mod tests;
