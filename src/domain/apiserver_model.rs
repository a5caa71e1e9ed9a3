//! A model of what kube-apiserver does with a Service's dual-stack fields: normalisation, family
//! defaulting, validation and IP allocation (`docs/k8s-service-rules.md` §1–§3, R-numbers cited inline).
//!
//! `check` uses it to predict the stored object of a manifest; the property tests use it as the oracle
//! that every patch of the webhook is accepted. Pure; IPs are "allocated" deterministically.

use std::net::IpAddr;

use crate::cluster::ServiceCidrs;
use crate::domain::service::{IpFamily, IpFamilyPolicy, ServiceSpec, ServiceType};

/// A refusal, as the API server would report it (HTTP 422 `Invalid`). Its `Display` is what users
/// read (`check` rows, policy tests): the field and the detail, without the internal rule number,
/// which stays in `rule` for debug output and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The rule of `docs/k8s-service-rules.md` that refuses it.
    pub rule: &'static str,
    /// The field path, e.g. `spec.ipFamilyPolicy`.
    pub field: String,
    /// The API server's detail text.
    pub detail: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

type Result<T> = std::result::Result<T, ApiError>;

fn err<T>(rule: &'static str, field: impl Into<String>, detail: impl Into<String>) -> Result<T> {
    Err(ApiError {
        rule,
        field: field.into(),
        detail: detail.into(),
    })
}

/// Typed view of the dual-stack fields while the model works on them.
#[derive(Clone, Debug)]
struct Fields {
    type_: ServiceType,
    cluster_ip: String,
    cluster_ips: Vec<String>,
    families: Vec<IpFamily>,
    policy: Option<IpFamilyPolicy>,
    selectorless: bool,
}

impl Fields {
    fn read(spec: &ServiceSpec) -> Result<Self> {
        let Some(type_) = spec.service_type() else {
            return err("R1.18", "spec.type", "Unsupported value");
        };
        let mut families = Vec::new();
        for (i, raw) in spec.ip_families.iter().flatten().enumerate() {
            match raw.parse() {
                Ok(f) => families.push(f),
                Err(_) => {
                    return err("R1.9", format!("spec.ipFamilies[{i}]"), "Unsupported value");
                }
            }
        }
        let policy = match spec.ip_family_policy.as_deref() {
            None | Some("") => None,
            Some(p) => match p.parse() {
                Ok(p) => Some(p),
                Err(_) => return err("R1.11", "spec.ipFamilyPolicy", "Unsupported value"),
            },
        };
        Ok(Self {
            type_,
            cluster_ip: spec.cluster_ip.clone().unwrap_or_default(),
            cluster_ips: spec.cluster_ips.clone().unwrap_or_default(),
            families,
            policy,
            selectorless: spec.is_selectorless(),
        })
    }

    fn write(&self, spec: &ServiceSpec) -> ServiceSpec {
        let mut out = spec.clone();
        let opt = |v: Vec<String>| (!v.is_empty()).then_some(v);
        out.cluster_ip = (!self.cluster_ip.is_empty()).then(|| self.cluster_ip.clone());
        out.cluster_ips = opt(self.cluster_ips.clone());
        out.ip_families = opt(self
            .families
            .iter()
            .map(|f| f.as_str().to_owned())
            .collect());
        out.ip_family_policy = self.policy.map(|p| p.as_str().to_owned());
        out
    }

    /// `isHeadlessService`: the plural field (R1.12 note).
    fn headless(&self) -> bool {
        self.cluster_ips.len() == 1 && self.cluster_ips[0] == "None"
    }

    fn external_name(&self) -> bool {
        self.type_ == ServiceType::ExternalName
    }
}

/// CREATE: the stored object, or the API server's refusal.
pub fn create(spec: &ServiceSpec, cidrs: &ServiceCidrs) -> Result<ServiceSpec> {
    let mut f = Fields::read(spec)?;
    if f.external_name() {
        // R3.1 runs first, so a singular clusterIP is refused here too (R1.4).
        if !f.cluster_ip.is_empty() || !f.cluster_ips.is_empty() {
            return err(
                "R1.4",
                "spec.clusterIPs",
                "may not be set for ExternalName services",
            );
        }
        if !f.families.is_empty() {
            return err(
                "R1.4",
                "spec.ipFamilies",
                "may not be set for ExternalName services",
            );
        }
        if f.policy.is_some() {
            return err(
                "R1.4",
                "spec.ipFamilyPolicy",
                "may not be set for ExternalName services",
            );
        }
        return Ok(spec.clone());
    }
    // R3.1
    if !f.cluster_ip.is_empty() && f.cluster_ips.is_empty() {
        f.cluster_ips = vec![f.cluster_ip.clone()];
    }
    init_ip_family_fields(&mut f, None, cidrs)?;
    validate_service(&f)?;
    allocate(&mut f, 0, cidrs)?;
    Ok(f.write(spec))
}

/// UPDATE: the stored object, or the API server's refusal. `old` is the stored spec.
pub fn update(old: &ServiceSpec, new: &ServiceSpec, cidrs: &ServiceCidrs) -> Result<ServiceSpec> {
    let o = Fields::read(old)?;
    let mut f = Fields::read(new)?;
    if f.external_name() {
        // R3.19: fields the client left unchanged are dropped; changed ones are refused (R1.4).
        if f.cluster_ip == o.cluster_ip && f.cluster_ips == o.cluster_ips {
            f.cluster_ip.clear();
            f.cluster_ips.clear();
        }
        if f.families == o.families {
            f.families.clear();
        }
        if f.policy == o.policy {
            f.policy = None;
        }
        return create(&f.write(new), cidrs);
    }
    if o.external_name() {
        // R4.1: allocated like a create, with the old policy nil. normalizeClusterIPs on UPDATE does
        // not copy singular to plural here (old clusterIP ""), so R1.6 applies.
        if !f.cluster_ip.is_empty() && f.cluster_ips.is_empty() {
            return err("R1.6", "spec.clusterIPs", "Required value");
        }
        init_ip_family_fields(&mut f, None, cidrs)?;
        validate_service(&f)?;
        allocate(&mut f, 0, cidrs)?;
        return Ok(f.write(new));
    }
    // R3.3 patchAllocatedValues
    if f.cluster_ip.is_empty() {
        f.cluster_ip = o.cluster_ip.clone();
    }
    if f.cluster_ips.is_empty() && !o.cluster_ips.is_empty() {
        f.cluster_ips = o.cluster_ips.clone();
    }
    // R3.2 normalizeClusterIPs (update); the "cleared" branches need clusterIP "" which R3.3 just filled.
    if o.cluster_ip != f.cluster_ip && !o.cluster_ip.is_empty() && o.cluster_ips == f.cluster_ips {
        f.cluster_ips = vec![f.cluster_ip.clone()];
    }
    let frozen = init_ip_family_fields(&mut f, Some(&o), cidrs)?;
    if !frozen {
        // R3.18: growing families allocates the secondary.
        if o.families.len() == 1 && f.families.len() == 2 && !o.headless() && !f.headless() {
            allocate(&mut f, 1, cidrs)?;
        }
    }
    validate_update(&o, &f)?;
    validate_service(&f)?;
    Ok(f.write(new))
}

/// R3.4–R3.16. Returns whether the PreferDualStack freeze (R3.5) short-circuited.
fn init_ip_family_fields(
    f: &mut Fields,
    old: Option<&Fields>,
    cidrs: &ServiceCidrs,
) -> Result<bool> {
    if let Some(o) = old {
        // R3.5
        let same_type = o.type_ == f.type_;
        if f.policy == Some(IpFamilyPolicy::PreferDualStack)
            && matches!(o.policy, None | Some(IpFamilyPolicy::PreferDualStack))
            && same_type
            && f.cluster_ips == o.cluster_ips
            && f.families == o.families
        {
            return Ok(true);
        }
    }
    // R3.6
    let headless_selectorless = f.cluster_ip == "None" && f.selectorless;
    if f.policy.is_none() {
        f.policy = Some(match old.and_then(|o| o.policy) {
            Some(p) => p,
            None if headless_selectorless => IpFamilyPolicy::RequireDualStack,
            None => IpFamilyPolicy::SingleStack,
        });
    }
    let policy = f.policy.unwrap_or(IpFamilyPolicy::SingleStack);
    // R3.7
    validate_cluster_ips_related(f)?;
    // R3.8
    if let Some(o) = old {
        if policy == IpFamilyPolicy::SingleStack {
            if f.cluster_ips == o.cluster_ips && f.cluster_ips.len() == 2 {
                f.cluster_ips.truncate(1);
            }
            if f.families == o.families && f.families.len() == 2 {
                f.families.truncate(1);
            }
        } else {
            if !f.cluster_ips.is_empty() && f.cluster_ips.len() < o.cluster_ips.len() {
                return err(
                    "R3.8",
                    "spec.ipFamilyPolicy",
                    "must be 'SingleStack' to release the secondary cluster IP",
                );
            }
            if !f.families.is_empty() && f.families.len() < o.families.len() {
                return err(
                    "R3.8",
                    "spec.ipFamilyPolicy",
                    "must be 'SingleStack' to release the secondary IP family",
                );
            }
        }
    }
    // R3.9
    if policy == IpFamilyPolicy::SingleStack {
        if f.cluster_ips.len() == 2 {
            return err(
                "R3.9",
                "spec.ipFamilyPolicy",
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            );
        }
        if f.families.len() == 2 {
            return err(
                "R3.9",
                "spec.ipFamilyPolicy",
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            );
        }
    }
    // R3.10
    for (i, ip) in f.cluster_ips.clone().iter().enumerate() {
        if ip == "None" || i < f.families.len() {
            continue;
        }
        let Ok(addr) = ip.parse::<IpAddr>() else {
            continue;
        };
        let family = IpFamily::of(&addr);
        if !cidrs.has(family) {
            return err(
                "R3.10",
                format!("spec.clusterIPs[{i}]"),
                format!("{family} is not configured on this cluster"),
            );
        }
        f.families.push(family);
    }
    // R3.12
    if headless_selectorless {
        if f.families.is_empty() {
            f.families.push(cidrs.primary());
        }
        if f.families.len() < 2 && policy != IpFamilyPolicy::SingleStack {
            f.families.push(f.families[0].other());
        }
        return Ok(false);
    }
    // R3.13
    if policy == IpFamilyPolicy::RequireDualStack && !cidrs.is_dual() {
        return err(
            "R3.13",
            "spec.ipFamilyPolicy",
            "this cluster is not configured for dual-stack services",
        );
    }
    // R3.14
    for (i, family) in f.families.iter().enumerate() {
        if !cidrs.has(*family) {
            return err(
                "R3.14",
                format!("spec.ipFamilies[{i}]"),
                "not configured on this cluster",
            );
        }
    }
    // R3.15, R3.16
    if f.families.is_empty() {
        f.families.push(cidrs.primary());
    }
    if policy != IpFamilyPolicy::SingleStack && f.families.len() == 1 && cidrs.is_dual() {
        f.families.push(f.families[0].other());
    }
    Ok(false)
}

/// `ValidateServiceClusterIPsRelatedFields` (R1.6–R1.15).
fn validate_cluster_ips_related(f: &Fields) -> Result<()> {
    if f.external_name() {
        return Ok(()); // R1.5
    }
    if !f.cluster_ip.is_empty() && f.cluster_ips.is_empty() {
        return err("R1.6", "spec.clusterIPs", "Required value");
    }
    if !f.cluster_ip.is_empty() && f.cluster_ips[0] != f.cluster_ip {
        return err(
            "R1.7",
            "spec.clusterIPs",
            "first value must match `clusterIP`",
        );
    }
    if f.cluster_ip.is_empty() && !f.cluster_ips.is_empty() {
        return err(
            "R1.8",
            "spec.clusterIPs",
            "must be empty when `clusterIP` is not specified",
        );
    }
    if f.families.len() == 2 && f.families[0] == f.families[1] {
        return err("R1.10", "spec.ipFamilies[1]", "Duplicate value");
    }
    if f.families.len() > 2 {
        return err("R1.10", "spec.ipFamilies[2]", "Duplicate value");
    }
    let mut addrs = Vec::new();
    for (i, ip) in f.cluster_ips.iter().enumerate() {
        if ip == "None" {
            if i != 0 || f.cluster_ips.len() != 1 {
                return err(
                    "R1.12",
                    "spec.clusterIPs",
                    "'None' must be the first and only value",
                );
            }
            continue;
        }
        match ip.parse::<IpAddr>() {
            Ok(a) => addrs.push(a),
            Err(_) => {
                return err(
                    "R1.12",
                    format!("spec.clusterIPs[{i}]"),
                    "must be a valid IP address",
                );
            }
        }
    }
    if f.cluster_ips.len() > 2 {
        return err("R1.13", "spec.clusterIPs", "may only hold up to 2 values");
    }
    if addrs.len() == 2 && IpFamily::of(&addrs[0]) == IpFamily::of(&addrs[1]) {
        return err(
            "R1.14",
            "spec.clusterIPs",
            "may specify no more than one IP for each IP family",
        );
    }
    if !f.headless() {
        for (i, family) in f.families.iter().enumerate() {
            let addr = f
                .cluster_ips
                .get(i)
                .and_then(|ip| ip.parse::<IpAddr>().ok());
            if addr.is_some_and(|a| IpFamily::of(&a) != *family) {
                return err(
                    "R1.15",
                    format!("spec.clusterIPs[{i}]"),
                    format!("expected an {family} value as indicated by `ipFamilies[{i}]`"),
                );
            }
        }
    }
    Ok(())
}

/// `ValidateService` parts that concern these fields (R1.2, R1.3, R1.6–R1.15).
fn validate_service(f: &Fields) -> Result<()> {
    if f.headless() && f.type_ == ServiceType::LoadBalancer {
        return err(
            "R1.2",
            "spec.clusterIPs[0]",
            "may not be set to 'None' for LoadBalancer services",
        );
    }
    if f.headless() && f.type_ == ServiceType::NodePort {
        return err(
            "R1.3",
            "spec.clusterIPs[0]",
            "may not be set to 'None' for NodePort services",
        );
    }
    validate_cluster_ips_related(f)
}

/// `validateUpgradeDowngradeClusterIPs` and `validateUpgradeDowngradeIPFamilies` (R2.1, R2.2).
fn validate_update(o: &Fields, f: &Fields) -> Result<()> {
    let single = f.policy == Some(IpFamilyPolicy::SingleStack);
    if !(o.headless() && f.headless()) {
        let (a, b) = (&o.cluster_ips, &f.cluster_ips);
        if a.len() == b.len() {
            if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
                return err(
                    "R2.1",
                    format!("spec.clusterIPs[{i}]"),
                    "may not change once set",
                );
            }
        } else if b.len() < a.len() {
            if b.is_empty() {
                return err(
                    "R2.1",
                    "spec.clusterIPs[0]",
                    "primary clusterIP can not be unset",
                );
            }
            if b[0] != a[0] {
                return err("R2.1", "spec.clusterIPs[0]", "may not change once set");
            }
            if b.len() == 1 && !single {
                return err(
                    "R2.1",
                    "spec.ipFamilyPolicy",
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                );
            }
        } else if !a.is_empty() && b[0] != a[0] {
            return err("R2.1", "spec.clusterIPs[0]", "may not change once set");
        }
    }
    let headless_changed = o.headless() != f.headless();
    if !headless_changed && !f.headless() {
        let (a, b) = (&o.families, &f.families);
        if a.len() == b.len() {
            if a != b {
                return err("R2.2", "spec.ipFamilies[0]", "may not change once set");
            }
        } else if b.len() < a.len() {
            if !b.is_empty() && b[0] != a[0] {
                return err("R2.2", "spec.ipFamilies[0]", "may not change once set");
            }
            if b.len() == 1 && !single {
                return err(
                    "R2.2",
                    "spec.ipFamilyPolicy",
                    "must be set to 'SingleStack' when releasing the secondary ipFamily",
                );
            }
        } else if !a.is_empty() && b[0] != a[0] {
            return err("R2.2", "spec.ipFamilies[0]", "may not change once set");
        }
    }
    Ok(())
}

/// R3.17 / R3.18: one IP per family from index `from` on; given IPs must be in range.
fn allocate(f: &mut Fields, from: usize, cidrs: &ServiceCidrs) -> Result<()> {
    if f.headless() {
        return Ok(());
    }
    for i in from..f.families.len() {
        let family = f.families[i];
        match f.cluster_ips.get(i) {
            Some(ip) => {
                let addr: IpAddr = ip.parse().map_err(|_| ApiError {
                    rule: "R1.12",
                    field: format!("spec.clusterIPs[{i}]"),
                    detail: "must be a valid IP address".into(),
                })?;
                if !cidrs.contains(&addr) {
                    return err(
                        "R3.17",
                        "spec.clusterIPs",
                        format!("failed to allocate IP {ip}"),
                    );
                }
            }
            None => {
                let range = cidrs.range_of(family).ok_or_else(|| ApiError {
                    rule: "R3.17",
                    field: "spec.clusterIPs".into(),
                    detail: "failed to allocate a serviceIP".into(),
                })?;
                // Deterministic stand-in for AllocateNext: the first usable address.
                let taken = |a: &IpAddr| f.cluster_ips.iter().any(|ip| ip.parse() == Ok(*a));
                let next = range.hosts().find(|a| cidrs.contains(a) && !taken(a));
                let Some(next) = next else {
                    return err(
                        "R3.17",
                        "spec.clusterIPs",
                        "failed to allocate a serviceIP: range is full",
                    );
                };
                f.cluster_ips.push(next.to_string());
            }
        }
    }
    f.cluster_ip = f.cluster_ips.first().cloned().unwrap_or_default();
    Ok(())
}

#[cfg(test)]
mod tests;
