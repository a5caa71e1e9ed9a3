//! Development certificates: a CA and a server certificate with SANs, written as PEM files.
//!
//! These are for `serve --dev`, `certs --out` and tests. In a cluster the serving pair usually comes
//! from cert-manager through a Secret volume, which [`crate::server::tls::CertResolver`] reloads.
//!
//! The output directory may be writable by other users, so nothing already in it is opened or
//! followed: each file is created under a new name nobody can guess, exclusively (`O_EXCL`, which
//! also refuses a symlink) and with its final mode, then renamed over its final name.

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// DNS names every generated server certificate carries, for local use; `certs` adds
/// [`in_cluster_names`].
pub const DEFAULT_DNS_NAMES: &[&str] = &["localhost"];

/// The names of a Service in the cluster (`<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc` — the one
/// kube-apiserver dials and verifies — and `<svc>.<ns>.svc.cluster.local`).
pub fn in_cluster_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

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

    /// The output directory already holds a CA, and [`generate`] does not replace one.
    #[error("{dir} already holds a ca ({names}); pass --force to replace it", names = .files.join(", "))]
    CaExists {
        /// The output directory.
        dir: PathBuf,
        /// Which of `ca.crt` and `ca.key` are there (as files, symlinks or anything else).
        files: Vec<&'static str>,
    },

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
/// into `out`, creating the directory (`certs --out`).
///
/// The server certificate's SANs are [`DEFAULT_DNS_NAMES`], [`DEFAULT_IPS`] and the extras,
/// deduplicated; an "extra DNS name" that parses as an IP address becomes an IP SAN.
///
/// A CA already in `out` (an entry named `ca.crt` or `ca.key` of any kind, a dangling symlink
/// included) is refused with [`Error::CaExists`], and nothing in `out` changes: its certificate
/// may be the `caBundle` of a webhook configuration. [`replace`] (`certs --force`) replaces it,
/// with the server pair. Without a CA, all four files are written: a `tls.crt` or `tls.key`
/// already there is replaced, as a server pair whose CA is gone is of no use to anyone.
///
/// Each file is written in full under a new temporary name in `out` (created exclusively, keys
/// with mode 0600 and certificates with 0644, less the umask) and renamed over its final name once
/// all four are written: an existing file or symlink there is replaced, never written through,
/// and a failure before the renames leaves `out` as it was. The check for a CA is not atomic with
/// the renames: two runs racing on one directory may both write (each file still whole).
pub fn generate(
    out: &Path,
    extra_dns: &[String],
    extra_ips: &[IpAddr],
) -> Result<GeneratedPaths, Error> {
    write_ca_and_server(out, extra_dns, extra_ips, false)
}

/// As [`generate`], but a CA already in `out` is replaced, with the server pair (`certs --force`).
pub fn replace(
    out: &Path,
    extra_dns: &[String],
    extra_ips: &[IpAddr],
) -> Result<GeneratedPaths, Error> {
    write_ca_and_server(out, extra_dns, extra_ips, true)
}

fn write_ca_and_server(
    out: &Path,
    extra_dns: &[String],
    extra_ips: &[IpAddr],
    replace_ca: bool,
) -> Result<GeneratedPaths, Error> {
    let sans = subject_alt_names(extra_dns, extra_ips)?;
    fs::create_dir_all(out).map_err(|e| Error::CreateDir(out.to_owned(), e))?;
    let paths = GeneratedPaths::in_dir(out);
    if !replace_ca {
        refuse_existing_ca(out, &paths)?;
    }

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

    // All four are written before any is renamed into place: a failure (a full disk) drops the
    // staged files, which removes them.
    persist_all([
        Staged::write(&paths.ca_cert, &ca_cert.pem(), PUBLIC)?,
        Staged::write(&paths.ca_key, &ca_key.serialize_pem(), SECRET)?,
        Staged::write(&paths.key, &key.serialize_pem(), SECRET)?,
        // Renamed last: `ensure_dev` treats a directory without it as incomplete.
        Staged::write(&paths.cert, &cert.pem(), PUBLIC)?,
    ])?;
    tracing::info!(dir = %out.display(), "generated development ca and serving certificate");
    Ok(paths)
}

/// Generates certificates into `out` with the default SANs unless `tls.crt`, `tls.key` and
/// `ca.crt` are all there already, in which case the existing files are used as they are
/// (`serve --dev`).
///
/// An incomplete directory is regenerated in full, a CA in it included ([`replace`]): it is the
/// development directory this function owns, and what is there is of no use without what is
/// missing.
pub fn ensure_dev(out: &Path) -> Result<GeneratedPaths, Error> {
    let paths = GeneratedPaths::in_dir(out);
    if [&paths.cert, &paths.key, &paths.ca_cert]
        .iter()
        .all(|p| p.is_file())
    {
        tracing::debug!(dir = %out.display(), "using existing development certificates");
        return Ok(paths);
    }
    replace(out, &[], &[])
}

/// Writes a client certificate (`client.crt`, `client.key`, EKU clientAuth) for `name` into
/// `out`, signed by the CA whose key is `ca_key`.
///
/// The issuer is rebuilt from the key and the fixed subject [`generate`] uses, so this only works
/// with a CA made by [`generate`]. Files are written as [`generate`] writes them; existing client
/// files are replaced.
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
    persist_all([
        Staged::write(&paths.key, &key.serialize_pem(), SECRET)?,
        Staged::write(&paths.cert, &cert.pem(), PUBLIC)?,
    ])?;
    Ok(paths)
}

// === impl GeneratedPaths ===

impl GeneratedPaths {
    /// The conventional file names inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join(CA_CERT),
            ca_key: dir.join(CA_KEY),
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

/// File name of the CA certificate.
const CA_CERT: &str = "ca.crt";
/// File name of the CA key.
const CA_KEY: &str = "ca.key";

/// [`Error::CaExists`] if `ca.crt` or `ca.key` is in `out`: anything of that name, as a symlink
/// is not followed (a dangling one counts too).
fn refuse_existing_ca(out: &Path, paths: &GeneratedPaths) -> Result<(), Error> {
    let mut files = Vec::new();
    for (path, name) in [(&paths.ca_cert, CA_CERT), (&paths.ca_key, CA_KEY)] {
        match fs::symlink_metadata(path) {
            Ok(_) => files.push(name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Write(path.clone(), e)),
        }
    }
    if files.is_empty() {
        return Ok(());
    }
    Err(Error::CaExists {
        dir: out.to_owned(),
        files,
    })
}

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

// === impl Staged ===

/// A PEM file written in full under a temporary name next to its destination, not yet in place.
/// [`Staged::persist`] renames it over the destination; dropping it first removes it.
struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    persisted: bool,
}

impl Staged {
    /// Creates a new file with `mode` under a temporary name in `dest`'s directory, and writes
    /// and syncs `pem` to it.
    fn write(dest: &Path, pem: &str, mode: u32) -> Result<Self, Error> {
        let err = |e| Error::Write(dest.to_owned(), e);
        let (tmp, mut file) = create_temp(dest, mode).map_err(err)?;
        // From here on, dropping `staged` on an error removes the temporary file.
        let staged = Self {
            tmp,
            dest: dest.to_owned(),
            persisted: false,
        };
        file.write_all(pem.as_bytes()).map_err(err)?;
        file.sync_all().map_err(err)?;
        Ok(staged)
    }

    /// Renames the file over its destination. `rename` replaces the entry there, whatever it is: a
    /// symlink is replaced, not followed, and a reader sees the old file or the new one.
    fn persist(mut self) -> Result<(), Error> {
        fs::rename(&self.tmp, &self.dest).map_err(|e| Error::Write(self.dest.clone(), e))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.persisted {
            // Best effort: a temporary file left behind (or by a crash) gets in no later run's
            // way, since no name is used twice.
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Renames each file into place, in order; on an error the ones not yet renamed are removed.
fn persist_all<const N: usize>(files: [Staged; N]) -> Result<(), Error> {
    files.into_iter().try_for_each(Staged::persist)
}

/// How many temporary names [`create_temp`] tries: a name is taken only if someone else created
/// it in between, and nobody can guess one ahead.
const TEMP_ATTEMPTS: u32 = 16;

/// Creates `.<name>.<random>.tmp` next to `dest` with `create_new` (`O_CREAT | O_EXCL`: an
/// existing path, a symlink included, is an error rather than opened) and `mode` from creation,
/// so a key is never readable by others even briefly, and never was anyone else's file.
fn create_temp(dest: &Path, mode: u32) -> io::Result<(PathBuf, fs::File)> {
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let mut attempts = 1;
    loop {
        let tmp = dest.with_file_name(format!(".{name}.{:016x}.tmp", temp_suffix()));
        let created = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp);
        match created {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < TEMP_ATTEMPTS => {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A temporary-name suffix that differs on every call and that other users cannot predict.
fn temp_suffix() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    // `RandomState`'s keys come from the operating system's random source (no new dependency
    // for a random number); the pid, a counter and the clock change the input on every call and
    // in every process, whatever those keys are.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::os::unix::fs::PermissionsExt;

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
