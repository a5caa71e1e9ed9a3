//! Development certificates: a CA and a server certificate with SANs, written as PEM files.
//!
//! These are for `serve --dev`, `certs --out` and tests. In a cluster the serving pair usually comes
//! from cert-manager through a Secret volume, which [`crate::server::tls::CertResolver`] reloads.

use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// DNS names every generated server certificate carries: local use and the in-cluster Service
/// names kube-apiserver dials (`<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`).
pub const DEFAULT_DNS_NAMES: &[&str] = &[
    "localhost",
    "dualstack-webhook",
    "dualstack-webhook.dualstack-webhook",
    "dualstack-webhook.dualstack-webhook.svc",
];

/// IP addresses every generated server certificate carries: both loopbacks.
pub const DEFAULT_IPS: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

/// Subject common name of the generated CA. [`generate_client`] rebuilds the issuer from it.
const CA_COMMON_NAME: &str = "dualstack-webhook development CA";

/// How long generated certificates are valid.
const VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How far in the past `notBefore` is set, so that a peer whose clock lags a little accepts the
/// certificate straight away.
const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// Files written by [`generate`] and [`ensure_dev`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedPaths {
    /// `ca.crt`: the CA certificate (the `caBundle` for the webhook configuration).
    pub ca_cert: PathBuf,
    /// `ca.key`: the CA private key (mode 0600).
    pub ca_key: PathBuf,
    /// `tls.crt`: the server certificate.
    pub cert: PathBuf,
    /// `tls.key`: the server private key (mode 0600).
    pub key: PathBuf,
}

/// Files written by [`generate_client`].
#[doc(hidden)] // test support, with `generate_client`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPaths {
    /// `client.crt`: the client certificate.
    pub cert: PathBuf,
    /// `client.key`: the client private key (mode 0600).
    pub key: PathBuf,
}

/// Why certificates could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The output directory could not be created.
    #[error("cannot create certificate directory {0}: {1}")]
    CreateDir(PathBuf, #[source] io::Error),

    /// A PEM file could not be written.
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, #[source] io::Error),

    /// A requested DNS name is not a valid host name (a leading `*.` wildcard is allowed).
    #[error("--dns {0:?} is not a valid host name")]
    InvalidDnsName(String),

    /// The CA key given to [`generate_client`] could not be read.
    #[doc(hidden)] // only `generate_client`, a test helper, returns it
    #[error("cannot read ca key {0}: {1}")]
    ReadCaKey(PathBuf, #[source] io::Error),

    /// The CA key given to [`generate_client`] is not a usable private key.
    #[doc(hidden)] // only `generate_client`, a test helper, returns it
    #[error("invalid ca key {0}: {1}")]
    InvalidCaKey(PathBuf, #[source] rcgen::Error),

    /// Key generation or signing failed.
    #[error("cannot generate certificate: {0}")]
    Generate(#[source] rcgen::Error),
}

/// Writes a new CA (`ca.crt`, `ca.key`) and a server pair signed by it (`tls.crt`, `tls.key`)
/// into `out`, creating the directory.
///
/// The server certificate's SANs are [`DEFAULT_DNS_NAMES`], [`DEFAULT_IPS`] and the extras,
/// deduplicated; an "extra DNS name" that parses as an IP address becomes an IP SAN. Existing
/// files are replaced.
pub fn generate(
    out: &Path,
    extra_dns: &[String],
    extra_ips: &[IpAddr],
) -> Result<GeneratedPaths, Error> {
    let sans = subject_alt_names(extra_dns, extra_ips)?;
    fs::create_dir_all(out).map_err(|e| Error::CreateDir(out.to_owned(), e))?;

    let ca_key = KeyPair::generate().map_err(Error::Generate)?;
    let ca_params = ca_params();
    let ca_cert = ca_params.self_signed(&ca_key).map_err(Error::Generate)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let key = KeyPair::generate().map_err(Error::Generate)?;
    let cert = leaf_params(
        "dualstack-webhook",
        sans,
        ExtendedKeyUsagePurpose::ServerAuth,
    )
    .signed_by(&key, &issuer)
    .map_err(Error::Generate)?;

    let paths = GeneratedPaths::in_dir(out);
    write_pem(&paths.ca_cert, &ca_cert.pem(), PUBLIC)?;
    write_pem(&paths.ca_key, &ca_key.serialize_pem(), SECRET)?;
    write_pem(&paths.key, &key.serialize_pem(), SECRET)?;
    // Written last: `ensure_dev` treats a directory without it as incomplete.
    write_pem(&paths.cert, &cert.pem(), PUBLIC)?;
    tracing::info!(dir = %out.display(), "generated development ca and serving certificate");
    Ok(paths)
}

/// Generates certificates into `out` with the default SANs unless `tls.crt`, `tls.key` and
/// `ca.crt` are all there already, in which case the existing files are used as they are.
pub fn ensure_dev(out: &Path) -> Result<GeneratedPaths, Error> {
    let paths = GeneratedPaths::in_dir(out);
    if [&paths.cert, &paths.key, &paths.ca_cert]
        .iter()
        .all(|p| p.is_file())
    {
        tracing::debug!(dir = %out.display(), "using existing development certificates");
        return Ok(paths);
    }
    generate(out, &[], &[])
}

/// Writes a client certificate (`client.crt`, `client.key`, EKU clientAuth) for `name` into
/// `out`, signed by the CA whose key is `ca_key`.
///
/// The issuer is rebuilt from the key and the fixed subject [`generate`] uses, so this only works
/// with a CA made by [`generate`].
///
/// Test support, not part of the API: it exists so that the integration tests (`tests/tls.rs`,
/// `tests/faults.rs`, `tests/common`) can test `--client-ca` (mutual TLS) with a client signed by the
/// CA `generate` wrote. Those are separate crates that see only `pub` items, and rebuilding the issuer
/// needs this module's private CA parameters, so it stays here, `pub` but hidden from the docs.
#[doc(hidden)]
pub fn generate_client(ca_key: &Path, name: &str, out: &Path) -> Result<ClientPaths, Error> {
    let pem = fs::read_to_string(ca_key).map_err(|e| Error::ReadCaKey(ca_key.to_owned(), e))?;
    let ca_key_pair =
        KeyPair::from_pem(&pem).map_err(|e| Error::InvalidCaKey(ca_key.to_owned(), e))?;
    let issuer = Issuer::new(ca_params(), &ca_key_pair);
    let san = dns_san(name)?;
    fs::create_dir_all(out).map_err(|e| Error::CreateDir(out.to_owned(), e))?;

    let key = KeyPair::generate().map_err(Error::Generate)?;
    let cert = leaf_params(name, vec![san], ExtendedKeyUsagePurpose::ClientAuth)
        .signed_by(&key, &issuer)
        .map_err(Error::Generate)?;

    let paths = ClientPaths {
        cert: out.join("client.crt"),
        key: out.join("client.key"),
    };
    write_pem(&paths.key, &key.serialize_pem(), SECRET)?;
    write_pem(&paths.cert, &cert.pem(), PUBLIC)?;
    Ok(paths)
}

// === impl GeneratedPaths ===

impl GeneratedPaths {
    /// The conventional file names inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }
}

// === helpers ===

/// File mode of certificates.
const PUBLIC: u32 = 0o644;
/// File mode of private keys.
const SECRET: u32 = 0o600;

/// Defaults then extras, in order, without duplicates.
fn subject_alt_names(extra_dns: &[String], extra_ips: &[IpAddr]) -> Result<Vec<SanType>, Error> {
    let mut dns: Vec<String> = DEFAULT_DNS_NAMES.iter().map(|s| (*s).to_owned()).collect();
    let mut ips: Vec<IpAddr> = DEFAULT_IPS.to_vec();
    for name in extra_dns {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        match name.parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) if !dns.contains(&name) => dns.push(name),
            Err(_) => {}
        }
    }
    for ip in extra_ips {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    let mut sans = dns
        .iter()
        .map(|name| dns_san(name))
        .collect::<Result<Vec<_>, _>>()?;
    sans.extend(ips.into_iter().map(SanType::IpAddress));
    Ok(sans)
}

fn dns_san(name: &str) -> Result<SanType, Error> {
    // rcgen only checks that the name is ASCII; check host-name syntax here so a typo fails now
    // rather than as a handshake failure in the API server.
    let host = name.strip_prefix("*.").unwrap_or(name);
    if rustls::pki_types::DnsName::try_from(host).is_err() {
        return Err(Error::InvalidDnsName(name.to_owned()));
    }
    name.try_into()
        .map(SanType::DnsName)
        .map_err(Error::Generate)
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(CA_COMMON_NAME);
    // pathlen 0: this CA signs leaf certificates only.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params);
    params
}

fn leaf_params(cn: &str, sans: Vec<SanType>, eku: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut params = CertificateParams::default();
    // Clients match the SANs; the CN is only there to make the certificate readable.
    params.distinguished_name = common_name(cn);
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![eku];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params);
    params
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn set_validity(params: &mut CertificateParams) {
    // rcgen takes `time::OffsetDateTime`; building "now" from the epoch avoids a direct dependency
    // on `time`. A clock before 1970 is not worth an error: the certificate is then simply old.
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_before = now - BACKDATE;
    params.not_after = now + VALIDITY;
}

/// Writes `pem` to `path` through a temporary file and a rename, so a reader never sees half a
/// file, and with `mode` set from creation, so a key is never readable by others even briefly.
fn write_pem(path: &Path, pem: &str, mode: u32) -> Result<(), Error> {
    let err = |e| Error::Write(path.to_owned(), e);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    // `mode` only applies to a new file; a leftover temporary file keeps its old mode.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err)?;
    file.write_all(pem.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn dns_names(sans: &[SanType]) -> Vec<String> {
        sans.iter()
            .filter_map(|s| match s {
                SanType::DnsName(n) => Some(n.as_str().to_owned()),
                _ => None,
            })
            .collect()
    }

    fn ips(sans: &[SanType]) -> Vec<IpAddr> {
        sans.iter()
            .filter_map(|s| match s {
                SanType::IpAddress(ip) => Some(*ip),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn defaults_come_first_and_extras_are_deduplicated() {
        let extra_dns = vec![
            "webhook.example.com".to_owned(),
            "LOCALHOST".to_owned(),
            "webhook.example.com.".to_owned(),
            "10.0.0.1".to_owned(),
        ];
        let extra_ips: Vec<IpAddr> = vec!["::1".parse().unwrap(), "fd00::1".parse().unwrap()];
        let sans = subject_alt_names(&extra_dns, &extra_ips).unwrap();

        let mut want_dns: Vec<String> = DEFAULT_DNS_NAMES.iter().map(|s| s.to_string()).collect();
        want_dns.push("webhook.example.com".to_owned());
        assert_eq!(dns_names(&sans), want_dns);

        let mut want_ips = DEFAULT_IPS.to_vec();
        want_ips.push("10.0.0.1".parse().unwrap());
        want_ips.push("fd00::1".parse().unwrap());
        assert_eq!(ips(&sans), want_ips);
    }

    #[test]
    fn invalid_dns_names_are_refused() {
        for bad in [" ", "bad name", "under_score..svc"] {
            let err = subject_alt_names(&[bad.to_owned()], &[]).unwrap_err();
            assert!(matches!(err, Error::InvalidDnsName(..)), "{bad:?}: {err}");
        }
        assert!(subject_alt_names(&["*.example.com".to_owned()], &[]).is_ok());
    }

    #[test]
    fn ensure_dev_keeps_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_dev(dir.path()).unwrap();
        let cert = fs::read(&first.cert).unwrap();
        let second = ensure_dev(dir.path()).unwrap();
        assert_eq!(first, second);
        assert_eq!(fs::read(&second.cert).unwrap(), cert);
    }

    #[test]
    fn ensure_dev_regenerates_an_incomplete_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_dev(dir.path()).unwrap();
        let cert = fs::read(&first.cert).unwrap();
        fs::remove_file(&first.ca_cert).unwrap();
        let second = ensure_dev(dir.path()).unwrap();
        assert!(second.ca_cert.is_file());
        assert_ne!(fs::read(&second.cert).unwrap(), cert);
    }

    #[test]
    fn keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let paths = generate(dir.path(), &[], &[]).unwrap();
        for key in [&paths.key, &paths.ca_key] {
            let mode = fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let client = generate_client(&paths.ca_key, "apiserver", dir.path()).unwrap();
        let mode = fs::metadata(&client.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
