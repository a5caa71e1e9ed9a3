//! Would the API server trust the serving certificate? The check made before a `caBundle` is
//! registered: the chain must lead to a CA of the bundle and name the host kube-apiserver dials
//! (`<svc>.<ns>.svc`), or every call fails TLS and, under `failurePolicy: Fail`, every write
//! with it. Pure: the time is given.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Why the bundle would not verify the serving certificate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrustError {
    /// The bundle holds no PEM certificate.
    #[error("the CA bundle holds no certificate")]
    EmptyBundle,
    /// The serving chain holds no PEM certificate.
    #[error("the serving certificate file holds no certificate")]
    EmptyChain,
    /// A certificate does not parse.
    #[error("invalid certificate: {0}")]
    Invalid(String),
    /// The host name is not one rustls can verify.
    #[error("{0:?} is not a DNS name or IP address")]
    ServerName(String),
    /// The chain does not verify for the host name against the bundle.
    #[error("the serving certificate is not trusted by the CA bundle for {host}: {reason}")]
    Untrusted {
        /// The name verified.
        host: String,
        /// rustls's reason (unknown issuer, not valid for name, expired …).
        reason: String,
    },
}

/// Verifies the PEM `chain` (leaf first) for `host` against the PEM `bundle`, as a TLS client
/// that trusts only the bundle would at `now`.
pub fn verify_serving(
    bundle: &[u8],
    chain: &[u8],
    host: &str,
    now: UnixTime,
) -> Result<(), TrustError> {
    let invalid = |e: &dyn std::fmt::Display| TrustError::Invalid(e.to_string());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle) {
        roots
            .add(cert.map_err(|e| invalid(&e))?)
            .map_err(|e| invalid(&e))?;
    }
    if roots.is_empty() {
        return Err(TrustError::EmptyBundle);
    }
    let chain = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&e))?;
    let (leaf, intermediates) = chain.split_first().ok_or(TrustError::EmptyChain)?;
    let name =
        ServerName::try_from(host.to_owned()).map_err(|_| TrustError::ServerName(host.into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| invalid(&e))?;
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], now)
        .map(|_| ())
        .map_err(|e| TrustError::Untrusted {
            host: host.to_owned(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    use super::*;

    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(ca: &Ca, names: &[&str]) -> String {
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &ca.issuer).unwrap().pem()
    }

    fn now() -> UnixTime {
        UnixTime::now()
    }

    #[test]
    fn a_chain_from_the_bundle_for_the_service_name_is_trusted() {
        let ca = ca();
        let cert = leaf(&ca, &["dualstack-webhook.platform-system.svc"]);
        let host = "dualstack-webhook.platform-system.svc";
        assert_eq!(
            verify_serving(ca.pem.as_bytes(), cert.as_bytes(), host, now()),
            Ok(())
        );
        // A bundle of two CAs (a rotation) trusts a chain from either.
        let bundle = format!("{}{}", self::ca().pem, ca.pem);
        assert_eq!(
            verify_serving(bundle.as_bytes(), cert.as_bytes(), host, now()),
            Ok(())
        );
    }

    #[test]
    fn what_the_api_server_would_refuse_is_refused_with_the_reason() {
        let ca = ca();
        let other = self::ca();
        let for_default_namespace = leaf(&ca, &["dualstack-webhook.dualstack-webhook.svc"]);
        let host = "dualstack-webhook.platform-system.svc";
        let err = verify_serving(
            ca.pem.as_bytes(),
            for_default_namespace.as_bytes(),
            host,
            now(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, TrustError::Untrusted { reason, .. } if reason.contains("not valid for name")),
            "{err}"
        );
        let right_name = leaf(&ca, &[host]);
        let err =
            verify_serving(other.pem.as_bytes(), right_name.as_bytes(), host, now()).unwrap_err();
        assert!(
            // Both CAs have rcgen's default subject: the chain finds the other CA and its
            // signature does not match.
            matches!(&err, TrustError::Untrusted { reason, .. } if reason.contains("BadSignature")),
            "{err}"
        );
    }

    #[test]
    fn empty_inputs_say_which_file_is_empty() {
        let ca = ca();
        let cert = leaf(&ca, &["a.b.svc"]);
        assert_eq!(
            verify_serving(b"", cert.as_bytes(), "a.b.svc", now()),
            Err(TrustError::EmptyBundle)
        );
        assert_eq!(
            verify_serving(ca.pem.as_bytes(), b"", "a.b.svc", now()),
            Err(TrustError::EmptyChain)
        );
    }
}
