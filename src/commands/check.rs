//! `check`: judge Service manifests offline, as the cluster would (mutate, the API server's own
//! defaulting and allocation, then validate). What is not known — the cluster's service ranges, a
//! namespace's labels — is not invented: every cluster consistent with what is known is tried, a
//! Service is denied only if it is denied on all of them, and otherwise the row says on what its
//! verdict depends. `audit` judges the Services a cluster already stores, from the validate step on.

mod allocator;
pub mod inputs;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use crate::cluster::{Cluster, NAMESPACE_NAME_LABEL, ServiceCidrs};
use crate::commands::report::{Row, Source, Verdict};
use crate::domain::apiserver_model;
use crate::domain::engine::{self, DenialMessage, Operation, Request};
use crate::domain::policy::{Action, LabelSelector, Policy, Rule};
use crate::domain::service::{Labels, Service, ServiceSpec};
use allocator::Allocator;
use inputs::Entry;

/// What `check` knows of the cluster.
#[derive(Clone, Debug)]
pub struct Knowledge {
    /// The service ranges; `None`: every shape of cluster is tried.
    pub service_cidrs: Option<ServiceCidrs>,
    /// Labels of the namespaces known (from a file or the cluster); Namespace objects among the
    /// manifests are added to these. A namespace not known has unknown labels.
    pub namespaces: HashMap<String, Labels>,
    /// The namespace of objects that name none.
    pub default_namespace: String,
}

/// Why nothing could be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Not one document could be read; the problems, one per input.
    #[error("nothing to check: {}", .0.join("; "))]
    NothingRead(Vec<String>),
    /// The namespace labels file could not be read, or not all of it.
    #[error("cannot read the namespace labels: {}", .0.join("; "))]
    NamespaceLabels(Vec<String>),
}

impl Default for Knowledge {
    fn default() -> Self {
        Self {
            service_cidrs: None,
            namespaces: HashMap::new(),
            default_namespace: "default".to_owned(),
        }
    }
}

/// Judges every Service in `paths` (files, directories, `-` for stdin), in input order; a
/// document that cannot be read is a row of its own (verdict `error`).
pub fn check(
    policy: &Policy,
    known: &Knowledge,
    paths: &[PathBuf],
) -> Result<Vec<Row>, CheckError> {
    let inputs = inputs::read(paths);
    if inputs.documents == 0 {
        return Err(CheckError::NothingRead(problems(&inputs)));
    }
    let mut known = known.clone();
    known.namespaces.extend(inputs.namespaces);
    let services: Vec<&Service> = (inputs.entries.iter())
        .filter_map(|e| match e {
            Entry::Service(_, svc) => Some(svc.as_ref()),
            Entry::Problem(..) => None,
        })
        .collect();
    // One allocator per cluster that may be: the known one, else one of each shape.
    let shapes = match &known.service_cidrs {
        Some(cidrs) => vec![cidrs.clone()],
        None => ServiceCidrs::every_shape(),
    };
    let mut shapes: Vec<Allocator> = (shapes.iter())
        .map(|cidrs| Allocator::new(cidrs, services.iter().copied()))
        .collect();
    Ok(inputs
        .entries
        .into_iter()
        .map(|entry| match entry {
            Entry::Service(source, svc) => judge(policy, &known, source, &svc, &mut shapes),
            Entry::Problem(source, why) => Row::unreadable(source, why),
        })
        .collect())
}

/// Reads the Namespace objects of `path` (e.g. `kubectl get namespaces -o yaml`): their labels.
pub fn read_namespace_labels(path: &PathBuf) -> Result<HashMap<String, Labels>, CheckError> {
    let inputs = inputs::read(std::slice::from_ref(path));
    let problems = problems(&inputs);
    if inputs.documents == 0
        || inputs
            .entries
            .iter()
            .any(|e| matches!(e, Entry::Problem(..)))
    {
        return Err(CheckError::NamespaceLabels(problems));
    }
    Ok(inputs.namespaces)
}

/// Each problem of the inputs as `file: why`, or that there was nothing at all.
fn problems(inputs: &inputs::Inputs) -> Vec<String> {
    let problems: Vec<String> = inputs
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::Problem(source, why) => Some(format!("{}: {why}", source.file)),
            Entry::Service(..) => None,
        })
        .collect();
    if problems.is_empty() {
        vec!["no documents in the input".to_owned()]
    } else {
        problems
    }
}

/// One cluster `check` tries: a shape of service ranges, and whether the rules whose
/// namespaceSelector reads unknown labels match.
struct Scenario {
    cidrs: ServiceCidrs,
    /// `None`: the namespace's labels are known. `Some(true)`: the rules reading unknown labels
    /// match; `Some(false)`: they do not.
    unknown_rules_match: Option<bool>,
}

/// What one scenario gives.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    verdict: Verdict,
    rules: Vec<String>,
    message: String,
    /// The Service as stored, unless refused.
    stored: Option<ServiceSpec>,
}

fn judge(
    policy: &Policy,
    known: &Knowledge,
    source: Source,
    svc: &Service,
    shapes: &mut [Allocator],
) -> Row {
    let mut row = Row::new(Some(source), svc, &known.default_namespace);
    // The webhook leaves an exempt namespace alone; the API server does not.
    let exempt = policy.is_exempt(&row.namespace);
    let no_policy = Policy::default();
    let policy = if exempt { &no_policy } else { policy };
    let unknown_rules = if known.namespaces.contains_key(&row.namespace) {
        Vec::new()
    } else {
        rules_reading_labels(policy)
    };
    let cases: &[Option<bool>] = if unknown_rules.is_empty() {
        &[None]
    } else {
        &[Some(false), Some(true)]
    };
    let cluster = Cluster {
        service_cidrs: None,
        namespaces: known.namespaces.clone(),
    };
    let mut outcomes = Vec::new();
    for shape in shapes.iter_mut() {
        let from = outcomes.len();
        for &unknown_rules_match in cases {
            let scenario = Scenario {
                cidrs: shape.cidrs().clone(),
                unknown_rules_match,
            };
            let policy = scenario.policy(policy, &unknown_rules);
            let cluster = Cluster {
                service_cidrs: Some(scenario.cidrs.clone()),
                ..cluster.clone()
            };
            let mut outcome = simulate(&policy, &cluster, &scenario.cidrs, &row.namespace, svc);
            if exempt && outcome.verdict == Verdict::Ok {
                outcome.verdict = Verdict::Exempt;
            }
            outcomes.push((scenario, outcome));
        }
        allocate(shape, svc.spec(), &mut outcomes[from..]);
    }
    let mut rules = BTreeSet::new();
    for (_, o) in &outcomes {
        rules.extend(o.rules.iter().cloned());
    }
    row.rules = policy
        .rules
        .iter()
        .map(|r| r.name.clone())
        .filter(|n| rules.contains(n))
        .collect();
    let first = &outcomes[0].1;
    let same = |a: &Outcome, b: &Outcome| (a.verdict, &a.message) == (b.verdict, &b.message);
    if outcomes.iter().all(|(_, o)| same(o, first)) {
        row.verdict = first.verdict;
        row.message = first.message.clone();
    } else {
        let agreed = outcomes.iter().all(|(_, o)| o.verdict == first.verdict);
        // Denied or refused on every cluster that may be: a failure. Anything else: unknown.
        let failed = agreed && first.verdict.fails();
        row.verdict = if failed {
            first.verdict
        } else {
            Verdict::Unknown
        };
        let mut message = describe(&outcomes, shapes.len(), &unknown_rules, &row.namespace);
        if !failed {
            message.push_str(&what_decides(&outcomes, shapes.len()));
        }
        row.message = message;
    }
    let stored = show_common_fields(&mut row, &outcomes);
    if let (Some(stored), [_]) = (stored, &*shapes) {
        row.cluster_ips = stored.cluster_ips.unwrap_or_default();
    }
    row
}

/// Gives the outcomes on one cluster their addresses, as the API server allocates them one
/// Service after another: once, when they agree on what is stored (else only the pinned addresses
/// are taken). A pinned address already taken refuses the Service.
fn allocate(allocator: &mut Allocator, sent: &ServiceSpec, outcomes: &mut [(Scenario, Outcome)]) {
    let stored: Vec<Option<&ServiceSpec>> =
        outcomes.iter().map(|(_, o)| o.stored.as_ref()).collect();
    let taken = match stored.as_slice() {
        [Some(first), rest @ ..] if rest.iter().all(|s| *s == Some(*first)) => {
            allocator.assign(sent, first).map(Some)
        }
        _ if stored.iter().all(Option::is_none) => return, // refused: takes nothing
        _ => allocator.take_pinned(sent).map(|()| None),
    };
    for (_, outcome) in outcomes {
        match &taken {
            Ok(Some(ips)) => {
                if let Some(stored) = &mut outcome.stored {
                    stored.cluster_ips = Some(ips.clone());
                }
            }
            Ok(None) => {}
            Err(refusal) => {
                *outcome = Outcome {
                    verdict: Verdict::Refused,
                    rules: Vec::new(),
                    message: format!("the API server would refuse it: {refusal}"),
                    stored: None,
                };
            }
        }
    }
}

impl Scenario {
    /// The policy as this scenario sees it: the rules reading unknown labels removed, or their
    /// namespaceSelector taken as matching.
    fn policy(&self, policy: &Policy, unknown_rules: &[&str]) -> Policy {
        let Some(matching) = self.unknown_rules_match else {
            return policy.clone();
        };
        let mut policy = policy.clone();
        if matching {
            // The rule applies: its match's selector holds and its exclude's does not.
            for rule in &mut policy.rules {
                if unknown_rules.contains(&rule.name.as_str()) {
                    if reads_labels(&rule.match_.namespace_selector) {
                        rule.match_.namespace_selector = None;
                    }
                    if rule
                        .exclude
                        .as_ref()
                        .is_some_and(|e| reads_labels(&e.namespace_selector))
                    {
                        rule.exclude = None;
                    }
                }
            }
        } else {
            policy
                .rules
                .retain(|r| !unknown_rules.contains(&r.name.as_str()));
        }
        policy
    }
}

/// The names of the rules whose `match` or `exclude` has a namespaceSelector that reads labels.
fn rules_reading_labels(policy: &Policy) -> Vec<&str> {
    let reads = |rule: &Rule| {
        reads_labels(&rule.match_.namespace_selector)
            || (rule.exclude.as_ref()).is_some_and(|e| reads_labels(&e.namespace_selector))
    };
    policy
        .rules
        .iter()
        .filter(|r| reads(r))
        .map(|r| r.name.as_str())
        .collect()
}

/// Whether a namespaceSelector reads a label other than the namespace's name (which every
/// namespace carries, so a selector on it alone is decided without knowing labels).
fn reads_labels(selector: &Option<LabelSelector>) -> bool {
    selector.as_ref().is_some_and(|s| {
        s.match_labels.keys().any(|k| k != NAMESPACE_NAME_LABEL)
            || s.match_expressions
                .iter()
                .any(|e| e.key != NAMESPACE_NAME_LABEL)
    })
}

/// What happens to a Service created on one cluster: the webhook's mutation, the API server's
/// defaulting and allocation, then the webhook's validation.
fn simulate(
    policy: &Policy,
    cluster: &Cluster,
    cidrs: &ServiceCidrs,
    namespace: &str,
    svc: &Service,
) -> Outcome {
    let req = Request {
        operation: Operation::Create,
        namespace,
        object: Some(svc),
        old_object: None,
    };
    let mutated = engine::mutate(policy, cluster, &req);
    let spec = mutated.mutation.apply(svc.spec());
    let stored = match apiserver_model::create(&spec, cidrs) {
        Ok(stored) => stored,
        Err(error) => {
            return Outcome {
                verdict: Verdict::Refused,
                rules: Vec::new(),
                message: format!("the API server would refuse it: {error}"),
                stored: None,
            };
        }
    };
    let mut service = svc.clone();
    service.spec = Some(stored.clone());
    let mut outcome = judged(policy, cluster, namespace, &service);
    outcome.stored = Some(stored);
    outcome
}

/// Judges a stored (final, allocated) Service as `/validate` would judge its creation: every matching
/// rule applies, nothing is grandfathered. `audit` uses this for the Services a cluster already has.
pub fn judge_stored_service(policy: &Policy, cluster: &Cluster, stored: &Service) -> Row {
    let mut row = Row::new(None, stored, "default");
    row.show_stack(stored);
    if policy.is_exempt(&row.namespace) {
        row.verdict = Verdict::Exempt;
        return row;
    }
    let outcome = judged(policy, cluster, &row.namespace.clone(), stored);
    row.verdict = outcome.verdict;
    row.rules = outcome.rules;
    row.message = outcome.message;
    row
}

fn judged(policy: &Policy, cluster: &Cluster, namespace: &str, stored: &Service) -> Outcome {
    let req = Request {
        operation: Operation::Create,
        namespace,
        object: Some(stored),
        old_object: None,
    };
    let judged = engine::validate(policy, cluster, &req);
    let mut rules: Vec<String> = judged.findings.iter().map(|f| f.rule.clone()).collect();
    rules.dedup();
    let (verdict, message) = if let Some((name, denial)) = &judged.denial {
        (Verdict::Deny, DenialMessage { name, denial }.to_string())
    } else if let Some(w) = judged.warnings.first() {
        (Verdict::Warn, w.clone())
    } else if let Some(f) = judged.findings.iter().find(|f| f.action == Action::Audit) {
        let message = format!("rule {:?}: {}", f.rule, f.violation.short());
        (Verdict::Audit, message)
    } else {
        (Verdict::Ok, String::new())
    };
    Outcome {
        verdict,
        rules,
        message,
        stored: None,
    }
}

/// Shows the stored fields every scenario agrees on; returns the stored spec when they agree on
/// all of it.
fn show_common_fields(row: &mut Row, outcomes: &[(Scenario, Outcome)]) -> Option<ServiceSpec> {
    let stored: Vec<&ServiceSpec> = outcomes
        .iter()
        .filter_map(|(_, o)| o.stored.as_ref())
        .collect();
    let (first, rest) = stored.split_first()?;
    if stored.len() != outcomes.len() {
        return None;
    }
    if rest
        .iter()
        .all(|s| s.ip_family_policy == first.ip_family_policy)
    {
        row.ip_family_policy = first.ip_family_policy.clone().unwrap_or_default();
    }
    if rest.iter().all(|s| s.ip_families == first.ip_families) {
        row.ip_families = first.ip_families.clone().unwrap_or_default();
    }
    rest.iter().all(|s| s == first).then(|| (*first).clone())
}

/// What a verdict depends on: each distinct outcome with the clusters it holds on, then what to
/// give to decide.
fn describe(
    outcomes: &[(Scenario, Outcome)],
    shapes: usize,
    unknown_rules: &[&str],
    namespace: &str,
) -> String {
    let mut groups: Vec<(&Outcome, Vec<&Scenario>)> = Vec::new();
    for (scenario, outcome) in outcomes {
        let same = |(o, _): &&mut (&Outcome, Vec<&Scenario>)| {
            (o.verdict, &o.message) == (outcome.verdict, &outcome.message)
        };
        match groups.iter_mut().find(same) {
            Some((_, at)) => at.push(scenario),
            None => groups.push((outcome, vec![scenario])),
        }
    }
    let cases = outcomes.len() / shapes;
    let mut parts: Vec<String> = Vec::new();
    for (outcome, at) in &groups {
        let mut clusters: Vec<String> = Vec::new();
        for scenario in at {
            let name = shape_name(&scenario.cidrs);
            if !clusters.contains(&name) {
                clusters.push(name);
            }
        }
        let mut when = String::new();
        if clusters.len() * cases != at.len() {
            // Not every label case of these clusters: say which.
            let matching = at[0].unknown_rules_match == Some(true);
            if at
                .iter()
                .all(|s| s.unknown_rules_match == at[0].unknown_rules_match)
            {
                let names: Vec<String> = unknown_rules.iter().map(|r| format!("{r:?}")).collect();
                let (rule, apply) = match (names.len(), matching) {
                    (1, true) => ("rule", "applies"),
                    (1, false) => ("rule", "does not apply"),
                    (_, true) => ("rules", "apply"),
                    (_, false) => ("rules", "do not apply"),
                };
                when = format!(
                    " if {rule} {} {apply} in namespace {namespace:?} (by its labels)",
                    names.join(", ")
                );
            }
        }
        let on = if clusters.len() == shapes {
            String::new()
        } else {
            format!(" on {} clusters", join_or(&merge_dual_stack(clusters)))
        };
        let verdict = outcome.verdict.as_str();
        parts.push(match outcome.message.as_str() {
            "" => format!("{verdict}{on}{when}"),
            m => format!("{verdict}{on}{when}: {m}"),
        });
    }
    parts.join("; ")
}

/// What to give to decide an unknown verdict: the ranges, if the outcome differs between shapes
/// of cluster for some case of the labels; the labels, if it differs between their cases on some
/// shape.
fn what_decides(outcomes: &[(Scenario, Outcome)], shapes: usize) -> String {
    let cases = outcomes.len() / shapes;
    let key = |o: &Outcome| (o.verdict, o.message.clone());
    let at = |shape: usize, case: usize| key(&outcomes[shape * cases + case].1);
    let need_cidrs = (0..cases).any(|c| (1..shapes).any(|s| at(s, c) != at(0, c)));
    let need_labels = (0..shapes).any(|s| (1..cases).any(|c| at(s, c) != at(s, 0)));
    let mut give = Vec::new();
    if need_cidrs {
        give.push("--service-cidrs");
    }
    if need_labels {
        give.push("--namespace-labels or --namespaces-from-cluster");
    }
    format!("; give {} to decide", give.join(" and "))
}

/// `IPv4`, `IPv6`, `dual-stack IPv4-first`, `dual-stack IPv6-first`.
fn shape_name(cidrs: &ServiceCidrs) -> String {
    match cidrs.families().as_slice() {
        [one] => one.as_str().to_owned(),
        _ => format!("dual-stack {}-first", cidrs.primary().as_str()),
    }
}

/// Both dual-stack shapes named as one.
fn merge_dual_stack(mut names: Vec<String>) -> Vec<String> {
    let both = ["dual-stack IPv4-first", "dual-stack IPv6-first"];
    if both.iter().all(|b| names.iter().any(|n| n == b)) {
        names.retain(|n| !both.contains(&n.as_str()));
        names.push("dual-stack".to_owned());
    }
    names
}

fn join_or(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
