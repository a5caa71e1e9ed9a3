//! TLS: the rustls server configuration and a certificate resolver that reloads PEM files.
//!
//! The serving pair usually comes from a Kubernetes Secret volume. The kubelet updates one by
//! writing a new timestamped directory and atomically re-pointing the `..data` symlink, so
//! `tls.crt -> ..data/tls.crt` changes contents without the old file ever being written. An
//! inotify watch on the file would miss that; [`watch_certificates`] instead re-reads both files
//! through their paths on a timer and swaps the pair only when it changed and is consistent.
//! [`CertResolver::not_after`] says when the pair in use expires, for the metrics.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::version::{TLS12, TLS13};
use rustls::{InconsistentKeys, RootCertStore, ServerConfig};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::{Metrics, ReloadResult};

/// Why a certificate, key or client CA could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The certificate file could not be read.
    #[error("cannot read certificate {0} (--tls-cert): {1}")]
    ReadCert(PathBuf, #[source] io::Error),

    /// The certificate file is not valid PEM.
    #[error("invalid pem in certificate {0} (--tls-cert): {1}")]
    ParseCert(PathBuf, #[source] pem::Error),

    /// The certificate file holds no `CERTIFICATE` block.
    #[error("no certificate in {0} (--tls-cert)")]
    NoCertificate(PathBuf),

    /// The leaf certificate could not be parsed.
    #[error("invalid certificate in {0} (--tls-cert): {1}")]
    InvalidCertificate(PathBuf, #[source] rustls::Error),

    /// The key file could not be read.
    #[error("cannot read private key {0} (--tls-key): {1}")]
    ReadKey(PathBuf, #[source] io::Error),

    /// The key file holds no valid PEM private key.
    #[error("no valid private key in {0} (--tls-key): {1}")]
    ParseKey(PathBuf, #[source] pem::Error),

    /// The key is of a type or curve rustls cannot sign with.
    #[error("unsupported private key in {0} (--tls-key): {1}")]
    UnsupportedKey(PathBuf, #[source] rustls::Error),

    /// The key is not the one the certificate was issued for (or the files are mid-update).
    #[error("private key {key} (--tls-key) does not match certificate {cert} (--tls-cert)")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },

    /// The client CA file could not be read or is not valid PEM.
    #[error("cannot read client ca {0} (--client-ca): {1}")]
    ReadClientCa(PathBuf, #[source] pem::Error),

    /// The client CA file holds no usable CA certificate.
    #[error("no usable ca certificate in client ca {0} (--client-ca)")]
    NoClientCa(PathBuf),

    /// The client certificate verifier could not be built from the client CA.
    #[error("invalid client ca {0} (--client-ca): {1}")]
    ClientCa(PathBuf, #[source] rustls::server::VerifierBuilderError),

    /// The blocking task that re-read the files did not complete.
    #[error("certificate reload task failed: {0}")]
    ReloadTask(#[source] tokio::task::JoinError),

    /// rustls refused the protocol versions for the crypto provider.
    #[error("cannot configure tls: {0}")]
    Config(#[source] rustls::Error),
}

/// Serves the current certificate pair to every handshake and swaps it on [`reload`](Self::reload).
pub struct CertResolver {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// The file contents behind `current`, to tell an unchanged pair from a new one. The lock
    /// also serialises reloads.
    loaded: Mutex<Loaded>,
}

/// The pair in use, as read.
struct Loaded {
    pem: Pem,
    /// The leaf certificate's `notAfter` (Unix seconds), if it could be read.
    not_after: Option<i64>,
}

/// The raw bytes of a certificate and key file, as read together.
#[derive(PartialEq, Eq)]
struct Pem {
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// ALPN protocols offered, in preference order: kube-apiserver speaks HTTP/2 to webhooks.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// How many times a reload re-reads a mismatched pair at once before giving up until the next
/// tick: the kubelet swaps `..data` atomically, so reading the two files across a swap is
/// resolved by reading them again.
const MISMATCH_ATTEMPTS: usize = 2;

// === impl CertResolver ===

impl CertResolver {
    /// Loads the PEM certificate chain (leaf first) and private key, and checks that they match.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, Error> {
        let (pem, certified) = load_pair(cert, key)?;
        let not_after = leaf_not_after(&certified);
        Ok(Arc::new(Self {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            current: ArcSwap::from_pointee(certified),
            loaded: Mutex::new(Loaded { pem, not_after }),
        }))
    }

    /// Re-reads both files through their paths.
    ///
    /// Returns `Ok(false)` when the contents are those of the last successful load, `Ok(true)`
    /// when a new consistent pair is now in use, and an error (keeping the last good pair in use)
    /// when the files cannot be read, do not parse, or do not match each other.
    ///
    /// This blocks on file reads; from async code use [`watch_certificates`] or `spawn_blocking`.
    pub fn reload(&self) -> Result<bool, Error> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        let mut attempt = 1;
        let (pem, certified) = loop {
            let pem = read_pem(&self.cert_path, &self.key_path)?;
            if pem == loaded.pem {
                return Ok(false);
            }
            match parse_pair(&pem, &self.cert_path, &self.key_path) {
                Err(Error::KeyMismatch { .. }) if attempt < MISMATCH_ATTEMPTS => attempt += 1,
                result => break (pem, result?),
            }
        };
        let not_after = leaf_not_after(&certified);
        self.current.store(Arc::new(certified));
        *loaded = Loaded { pem, not_after };
        Ok(true)
    }

    /// When the certificate in use expires (its `notAfter`, Unix seconds); `None` if that could
    /// not be read (rustls serves such a certificate all the same).
    pub fn not_after(&self) -> Option<i64> {
        let loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        loaded.not_after
    }

    /// The certificate file this resolver reads.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The key file this resolver reads.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

// Hand-written so that the key never reaches a log line.
impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

fn leaf_not_after(certified: &CertifiedKey) -> Option<i64> {
    let der = certified.end_entity_cert().ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn load_pair(cert: &Path, key: &Path) -> Result<(Pem, CertifiedKey), Error> {
    let pem = read_pem(cert, key)?;
    let certified = parse_pair(&pem, cert, key)?;
    Ok((pem, certified))
}

fn read_pem(cert: &Path, key: &Path) -> Result<Pem, Error> {
    // Read the bytes once and parse those same bytes (rather than `pem_file_iter`), so the
    // change check and the parsed pair can never disagree.
    Ok(Pem {
        cert: std::fs::read(cert).map_err(|e| Error::ReadCert(cert.to_owned(), e))?,
        key: std::fs::read(key).map_err(|e| Error::ReadKey(key.to_owned(), e))?,
    })
}

fn parse_pair(pem: &Pem, cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, Error> {
    let chain = CertificateDer::pem_slice_iter(&pem.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::ParseCert(cert_path.to_owned(), e))?;
    if chain.is_empty() {
        return Err(Error::NoCertificate(cert_path.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem.key)
        .map_err(|e| Error::ParseKey(key_path.to_owned(), e))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| Error::UnsupportedKey(key_path.to_owned(), e))?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(Error::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            })
        }
        // Every ring key exposes its public key, so this is not expected; like
        // `CertifiedKey::from_der`, do not refuse a pair only because it cannot be compared.
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(e) => Err(Error::InvalidCertificate(cert_path.to_owned(), e)),
    }
}

// === server_config ===

/// Builds the server configuration: TLS 1.3 and 1.2 on the ring provider, ALPN `h2` then
/// `http/1.1`, certificates from `resolver`, no session resumption (so a rotated certificate is
/// what every new connection sees), and client certificates required and verified against
/// `client_ca` when it is given (no client authentication otherwise).
pub fn server_config(
    resolver: Arc<CertResolver>,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, Error> {
    // Explicit provider: the configuration must not depend on what the process installed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(Error::Config)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(client_verifier(path, provider)?),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    // No session resumption: a resumed session skips the certificate, so after a rotation a
    // client could keep connecting on the old identity. kube-apiserver keeps its connections
    // open, so full handshakes are rare and cheap enough.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

fn client_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::ReadClientCa(path.to_owned(), e))?;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if ignored > 0 {
        warn!(path = %path.display(), ignored, "ignored unparsable certificates in client ca");
    }
    if added == 0 {
        return Err(Error::NoClientCa(path.to_owned()));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| Error::ClientCa(path.to_owned(), e))
}

// === watch_certificates ===

/// Reloads `resolver` every `every` until `shutdown` is cancelled.
///
/// The expiry of the pair in use is set on the metrics at once and after each reload. A new pair
/// is logged at `info` (with its expiry) and counted as a success. A failed reload is counted every
/// time but logged at `warn` only when its message differs from the previous failure, so a
/// broken Secret does not flood the log; the last good pair stays in use.
pub async fn watch_certificates(
    resolver: Arc<CertResolver>,
    every: Duration,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick completes at once, and the pair was loaded just now.
    interval.tick().await;
    record_not_after(&resolver, &metrics);
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let cert = resolver.cert_path().display().to_string();
        match reload_blocking(&resolver).await {
            Ok(true) => {
                let not_after = record_not_after(&resolver, &metrics);
                let not_after = not_after.as_deref().unwrap_or("unknown");
                info!(%cert, not_after, "reloaded serving certificate");
                metrics.certificate_reload(ReloadResult::success);
                last_error = None;
            }
            // Back to the pair in use (e.g. a broken update was reverted): a new failure is news.
            Ok(false) => last_error = None,
            Err(error) => {
                metrics.certificate_reload(ReloadResult::failure);
                let message = error.to_string();
                if last_error.as_deref() == Some(message.as_str()) {
                    debug!(%error, %cert, "serving certificate still not reloadable");
                } else {
                    warn!(%error, %cert, "failed to reload serving certificate; keeping the last good one");
                    last_error = Some(message);
                }
            }
        }
    }
}

/// Sets the expiry gauge to the certificate in use; warns when it cannot be read (the gauge then
/// keeps its last value, and the alert on it fires on time for the last known certificate).
fn record_not_after(resolver: &CertResolver, metrics: &Metrics) -> Option<String> {
    let Some(not_after) = resolver.not_after() else {
        let cert = resolver.cert_path().display();
        warn!(%cert, "cannot read the serving certificate's notAfter; the expiry metric is not updated");
        return None;
    };
    metrics.certificate_not_after(not_after);
    k8s_openapi::jiff::Timestamp::from_second(not_after)
        .ok()
        .map(|t| t.to_string())
}

/// Runs [`CertResolver::reload`] off the async worker threads: it reads files.
async fn reload_blocking(resolver: &Arc<CertResolver>) -> Result<bool, Error> {
    let resolver = resolver.clone();
    tokio::task::spawn_blocking(move || resolver.reload())
        .await
        .map_err(Error::ReloadTask)?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::commands::certs;

    fn pair() -> (tempfile::TempDir, certs::GeneratedPaths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = certs::generate(dir.path(), &[], &[]).unwrap();
        (dir, paths)
    }

    #[test]
    fn loads_a_generated_pair() {
        let (_dir, paths) = pair();
        let resolver = CertResolver::load(&paths.cert, &paths.key).unwrap();
        assert!(
            !resolver.reload().unwrap(),
            "unchanged files are not a reload"
        );
    }

    #[test]
    fn missing_files_name_the_path() {
        let (_dir, paths) = pair();
        let missing = paths.cert.with_file_name("nope.crt");
        let err = CertResolver::load(&missing, &paths.key).unwrap_err();
        assert!(
            matches!(&err, Error::ReadCert(p, _) if *p == missing),
            "{err}"
        );
        assert!(err.to_string().contains("nope.crt"));
        let err = CertResolver::load(&paths.cert, &missing).unwrap_err();
        assert!(matches!(err, Error::ReadKey(..)), "{err}");
    }

    #[test]
    fn empty_certificate_file_is_refused() {
        let (_dir, paths) = pair();
        std::fs::write(&paths.cert, "").unwrap();
        let err = CertResolver::load(&paths.cert, &paths.key).unwrap_err();
        assert!(matches!(err, Error::NoCertificate(_)), "{err}");
    }

    #[test]
    fn key_in_place_of_certificate_is_refused() {
        let (_dir, paths) = pair();
        let err = CertResolver::load(&paths.key, &paths.key).unwrap_err();
        assert!(matches!(err, Error::NoCertificate(_)), "{err}");
        let err = CertResolver::load(&paths.cert, &paths.cert).unwrap_err();
        assert!(matches!(err, Error::ParseKey(..)), "{err}");
    }

    #[test]
    fn ca_key_does_not_match_server_cert() {
        let (_dir, paths) = pair();
        let err = CertResolver::load(&paths.cert, &paths.ca_key).unwrap_err();
        assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn debug_does_not_show_key_material() {
        let (_dir, paths) = pair();
        let resolver = CertResolver::load(&paths.cert, &paths.key).unwrap();
        let key = std::fs::read_to_string(&paths.key).unwrap();
        let body: String = key.lines().nth(1).unwrap().chars().take(16).collect();
        assert!(!format!("{resolver:?}").contains(&body));
    }

    #[test]
    fn client_ca_must_hold_a_certificate() {
        let (_dir, paths) = pair();
        let resolver = CertResolver::load(&paths.cert, &paths.key).unwrap();
        let err = server_config(resolver.clone(), Some(&paths.key)).unwrap_err();
        assert!(matches!(err, Error::NoClientCa(_)), "{err}");
        let config = server_config(resolver, Some(&paths.ca_cert)).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
