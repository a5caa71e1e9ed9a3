//! The policy file (`DualStackPolicy`): its schema, parsing and validation. Pure: text in, value out.

pub mod limits;
pub mod selector;

use serde::{Deserialize, Serialize};

use crate::domain::service::{IpFamily, IpFamilyPolicy, Labels, ServiceType};
pub use selector::{LabelLookup, LabelSelector, glob_matches};

/// The only `apiVersion` this build reads.
pub const API_VERSION: &str = "dualstack-webhook/v1alpha1";
/// The only `kind` this build reads.
pub const KIND: &str = "DualStackPolicy";

/// A parsed, validated policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// Must be [`API_VERSION`].
    #[serde(default)]
    pub api_version: String,
    /// Must be [`KIND`].
    #[serde(default)]
    pub kind: String,
    /// Namespaces (name globs) that are never mutated or judged.
    #[serde(default)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Defaults {
    /// The policy to set when the client set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_policy: Option<IpFamilyPolicy>,
    /// Preferred family order, primary first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_families: Option<Vec<IpFamily>>,
}

/// One rule: a scope, requirements on the final object, optional defaults and an action.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Unique, shown in denials, warnings and audit annotations.
    pub name: String,
    /// Which Services the rule applies to; omitted conditions match anything.
    #[serde(default, rename = "match")]
    pub match_: Match,
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Match {
    /// Namespace name globs; any may match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Require {
    /// Allowed values of `ipFamilyPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_policies: Option<Vec<IpFamilyPolicy>>,
    /// Required `ipFamilies[0]` (where the cluster has that family).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_family: Option<IpFamily>,
    /// `true`: two families once allocated (where the cluster has two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dual_stack: Option<bool>,
}

/// What a violated rule does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Action {
    /// Refuse the request.
    #[default]
    Deny,
    /// Allow, with a warning shown by kubectl.
    Warn,
    /// Allow, with an audit annotation only.
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
    /// Valid YAML, invalid meaning.
    #[error("{field}: {reason}")]
    Invalid {
        /// Path of the offending field, e.g. `rules[2].name`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

// === impl Policy ===

impl Policy {
    /// Parses and validates a policy document. An empty document (nothing, or only whitespace and
    /// comments) is the empty policy: no defaults, no rules, so it changes nothing and denies nothing.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        // Before the parser: its cost grows with the square of the nesting (see `limits`).
        limits::check_depth(text, limits::POLICY_MAX_DEPTH).map_err(PolicyError::TooDeep)?;
        // An empty YAML document is `null`, which `Option` reads as `None`.
        let parsed: Option<Policy> = serde_yaml_ng::from_str(text).map_err(PolicyError::Syntax)?;
        let Some(policy) = parsed else {
            return Ok(Self {
                api_version: API_VERSION.to_owned(),
                kind: KIND.to_owned(),
                ..Self::default()
            });
        };
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), PolicyError> {
        if self.api_version != API_VERSION {
            return Err(invalid(
                "apiVersion",
                format!("must be {API_VERSION}, got {:?}", self.api_version),
            ));
        }
        if self.kind != KIND {
            return Err(invalid(
                "kind",
                format!("must be {KIND}, got {:?}", self.kind),
            ));
        }
        check_defaults("defaults", &self.defaults)?;
        let mut seen = std::collections::HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            if rule.name.trim().is_empty() {
                return Err(invalid(&format!("{at}.name"), "must be set".into()));
            }
            if !seen.insert(rule.name.as_str()) {
                return Err(invalid(
                    &format!("{at}.name"),
                    format!("{:?} is used by an earlier rule", rule.name),
                ));
            }
            if let Some(d) = &rule.defaults {
                check_defaults(&format!("{at}.defaults"), d)?;
            }
            for (field, sel) in [
                ("namespaceSelector", &rule.match_.namespace_selector),
                ("objectSelector", &rule.match_.object_selector),
            ] {
                if let Some(Err((j, reason))) = sel.as_ref().map(LabelSelector::check) {
                    let path = format!("{at}.match.{field}.matchExpressions[{j}]");
                    return Err(invalid(&path, reason.into()));
                }
            }
            if rule
                .require
                .ip_family_policies
                .as_ref()
                .is_some_and(Vec::is_empty)
            {
                let path = format!("{at}.require.ipFamilyPolicies");
                return Err(invalid(&path, "must list at least one policy".into()));
            }
        }
        Ok(())
    }

    /// Whether the namespace is exempt: never mutated or judged.
    pub fn is_exempt(&self, namespace: &str) -> bool {
        self.exempt_namespaces
            .iter()
            .any(|g| glob_matches(g, namespace))
    }
}

fn check_defaults(at: &str, d: &Defaults) -> Result<(), PolicyError> {
    if let Some(families) = &d.ip_families {
        if families.is_empty() || families.len() > 2 {
            return Err(invalid(
                &format!("{at}.ipFamilies"),
                "must list one or two families, primary first".into(),
            ));
        }
        if families.len() == 2 && families[0] == families[1] {
            return Err(invalid(
                &format!("{at}.ipFamilies[1]"),
                format!("duplicate family {}", families[1]),
            ));
        }
    }
    Ok(())
}

fn invalid(field: &str, reason: String) -> PolicyError {
    PolicyError::Invalid {
        field: field.to_owned(),
        reason,
    }
}

// === impl Match ===

impl Match {
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
