//! Turns findings and changes into what people read: the denial, kubectl warnings, audit annotations.

use std::fmt;

use crate::domain::policy::Action;
use crate::domain::service::Service;

use super::{Decision, Denial, Finding};

/// Warnings longer than this may be truncated by clients (R8.5); keep under it.
pub const MAX_WARNING_CHARS: usize = 119;

/// Fills `denial`, `warnings` and `audit` from `findings` and `changes`. Every warning names the
/// Service: in a multi-document apply, kubectl prints them all together.
pub(super) fn finish(decision: &mut Decision, object: &Service, namespace: &str) {
    let name = object.display_name(namespace);
    let mut denied = Vec::new();
    for finding in &decision.findings {
        if let (false, Action::Deny) = (finding.grandfathered, finding.action) {
            denied.push(finding.clone());
        } else if let Some(warning) = finding.warning() {
            decision.warnings.push(warning);
        }
    }
    for w in &mut decision.warnings {
        *w = truncate_warning(&format!("Service {name:?}: {w}"));
    }
    if !denied.is_empty() && decision.denial.is_none() {
        decision.denial = Some((name, Denial(denied)));
    }
    if !decision.changes.is_empty() {
        let changes = decision.changes.join("; ");
        decision.audit.insert("mutation".to_owned(), changes);
    }
    if !decision.findings.is_empty() {
        let list: Vec<String> = decision.findings.iter().map(Finding::audit_line).collect();
        decision
            .audit
            .insert("findings".to_owned(), list.join("; "));
    }
    if let Some((name, denial)) = &decision.denial {
        let message = DenialMessage { name, denial }.to_string();
        decision.audit.insert("denied".to_owned(), message);
    }
}

/// The `status.message` of a denial: the Service, the rule, what is wrong and what to set.
pub struct DenialMessage<'a> {
    /// `namespace/name`.
    pub name: &'a str,
    /// The denial.
    pub denial: &'a Denial,
}

impl fmt::Display for DenialMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Service {:?} violates the dual-stack policy: ",
            self.name
        )?;
        let mut previous: Option<&str> = None;
        for finding in &self.denial.0 {
            if previous == Some(finding.rule.as_str()) {
                write!(f, "; {}", finding.violation)?;
            } else {
                let sep = if previous.is_some() { "; " } else { "" };
                write!(f, "{sep}rule {:?}: {}", finding.rule, finding.violation)?;
            }
            previous = Some(&finding.rule);
        }
        Ok(())
    }
}

impl Finding {
    /// The warning kubectl shows for this finding, before the Service's name: a Warn rule's
    /// violation, or a grandfathered Deny or Warn; `None` for a denial and for Audit.
    pub fn warning(&self) -> Option<String> {
        let short = self.violation.short();
        match (self.grandfathered, self.action) {
            (false, Action::Warn) => Some(format!("rule {:?}: {short}", self.rule)),
            (true, Action::Deny | Action::Warn) => {
                Some(format!("grandfathered by rule {:?}: {short}", self.rule))
            }
            (false, Action::Deny) | (_, Action::Audit) => None,
        }
    }

    /// `dual(Deny): …`; under a milder enforcement `dual(Deny enforced as Audit): …`, so that an
    /// Audit or Warn rollout shows what enforcing the policy as written would refuse.
    fn audit_line(&self) -> String {
        let name = |action: Action| match action {
            Action::Deny => "Deny",
            Action::Warn => "Warn",
            Action::Audit => "Audit",
        };
        let action = if self.written_action == self.action {
            name(self.action).to_owned()
        } else {
            let (written, enforced) = (name(self.written_action), name(self.action));
            format!("{written} enforced as {enforced}")
        };
        let grandfathered = if self.grandfathered {
            ", grandfathered"
        } else {
            ""
        };
        format!(
            "{}({action}{grandfathered}): {}",
            self.rule,
            self.violation.short()
        )
    }
}

/// Cuts a warning to [`MAX_WARNING_CHARS`], marking the cut with `…`.
pub fn truncate_warning(s: &str) -> String {
    if s.chars().count() <= MAX_WARNING_CHARS {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(MAX_WARNING_CHARS - 1).collect();
    out.push('…');
    out
}
