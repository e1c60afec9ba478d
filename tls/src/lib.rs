//! Kiln cluster TLS: the PEM identity a cluster member holds, the rustls configurations built
//! from it, and certificate fingerprints.
//!
//! Every member (the server and each node) holds the cluster CA certificate and its own
//! certificate and key signed by that CA. Both directions of every connection are checked against
//! the cluster CA alone: a node answers only callers with a cluster certificate
//! ([`ClusterIdentity::server_config`]), and callers accept only a node whose certificate the
//! cluster CA issued for the node name they meant to reach ([`ClusterIdentity::client_config`]).
//!
//! The ring provider is used explicitly everywhere, so nothing depends on a process-wide default
//! `CryptoProvider` being installed.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

/// File name of the cluster CA certificate inside a member's directory.
pub const CA_FILE: &str = "ca.crt";

/// Why TLS material could not be loaded or a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// PEM text could not be parsed.
    #[error("{what} is not valid PEM: {source}")]
    Pem {
        /// What was being parsed, e.g. "the cluster CA certificate".
        what: &'static str,
        /// The parse error.
        #[source]
        source: io::Error,
    },
    /// PEM text held no certificate.
    #[error("{what} holds no PEM certificate (expected a -----BEGIN CERTIFICATE----- block)")]
    NoCertificate {
        /// What was being parsed.
        what: &'static str,
    },
    /// PEM text held no private key.
    #[error(
        "the private key holds no PEM private key (expected a -----BEGIN PRIVATE KEY----- block)"
    )]
    NoPrivateKey,
    /// The CA certificate cannot serve as a trust anchor.
    #[error("the cluster CA certificate cannot be used as a trust anchor: {source}")]
    InvalidCa {
        /// Why webpki refused it.
        #[source]
        source: rustls::Error,
    },
    /// The certificate and key do not form a usable TLS identity.
    #[error("the certificate and private key cannot be used for TLS (do they belong together?): {source}")]
    InvalidIdentity {
        /// Why rustls refused them.
        #[source]
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built.
    #[error("cannot build the client certificate verifier: {source}")]
    Verifier {
        /// Why.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
}

/// The TLS identity of a cluster member: the cluster CA certificate plus the member's own
/// certificate (signed by that CA) and private key, all as PEM text.
///
/// `Debug` never prints the private key.
#[derive(Clone)]
pub struct ClusterIdentity {
    /// The cluster CA certificate (PEM); the only trust anchor.
    pub ca_pem: String,
    /// This member's certificate chain (PEM), leaf first.
    pub cert_pem: String,
    /// This member's private key (PEM, PKCS#8, SEC1 or PKCS#1).
    pub key_pem: String,
}

impl fmt::Debug for ClusterIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterIdentity")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl ClusterIdentity {
    /// Reads `dir/ca.crt` ([`CA_FILE`]), `dir/<cert_file>` and `dir/<key_file>`, and checks that
    /// each parses.
    pub fn from_dir(dir: &Path, cert_file: &str, key_file: &str) -> Result<Self, TlsError> {
        Self::from_files(
            &dir.join(CA_FILE),
            &dir.join(cert_file),
            &dir.join(key_file),
        )
    }

    /// Reads the CA certificate, the member certificate and the key from their files, and
    /// checks that each parses.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let identity = ClusterIdentity {
            ca_pem: read_pem_file(ca)?,
            cert_pem: read_pem_file(cert)?,
            key_pem: read_pem_file(key)?,
        };
        identity.ca_roots()?;
        parse_certificates(&identity.cert_pem, "the member certificate")?;
        parse_private_key(&identity.key_pem)?;
        Ok(identity)
    }

    /// The cluster CA as a root store holding nothing else.
    pub fn ca_roots(&self) -> Result<RootCertStore, TlsError> {
        ca_root_store(&self.ca_pem)
    }

    /// A server configuration that requires every client to present a certificate chaining to
    /// the cluster CA, and presents this member's certificate. ALPN offers HTTP/2 and HTTP/1.1.
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        self.server_config_with(ring_provider())
    }

    /// [`Self::server_config`] with another crypto provider (e.g. other cipher suites).
    pub fn server_config_with(
        &self,
        provider: Arc<CryptoProvider>,
    ) -> Result<ServerConfig, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(self.ca_roots()?),
            provider.clone(),
        )
        .build()
        .map_err(|source| TlsError::Verifier { source })?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::InvalidIdentity { source })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                parse_certificates(&self.cert_pem, "the member certificate")?,
                parse_private_key(&self.key_pem)?,
            )
            .map_err(|source| TlsError::InvalidIdentity { source })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// A client configuration whose only trust anchor is the cluster CA and which authenticates
    /// with this member's certificate. The peer's name is checked as usual, so a caller must
    /// connect to the node *name* (see [`crate::NodeClient`]).
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        self.client_config_with(ring_provider())
    }

    /// [`Self::client_config`] with another crypto provider (e.g. other cipher suites).
    pub fn client_config_with(
        &self,
        provider: Arc<CryptoProvider>,
    ) -> Result<ClientConfig, TlsError> {
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::InvalidIdentity { source })?
            .with_root_certificates(self.ca_roots()?)
            .with_client_auth_cert(
                parse_certificates(&self.cert_pem, "the member certificate")?,
                parse_private_key(&self.key_pem)?,
            )
            .map_err(|source| TlsError::InvalidIdentity { source })
    }
}

/// SHA-256 fingerprint of a certificate (of its DER encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertFingerprint(pub [u8; 32]);

impl CertFingerprint {
    /// Fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        CertFingerprint(Sha256::digest(der).into())
    }

    /// Fingerprint of the first certificate in PEM text.
    pub fn of_pem(pem: &str) -> Result<Self, TlsError> {
        let first = parse_certificates(pem, "the certificate")?
            .into_iter()
            .next()
            .ok_or(TlsError::NoCertificate {
                what: "the certificate",
            })?;
        Ok(Self::of_der(&first))
    }

    /// Lowercase hex without separators (64 digits), as in join tokens.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Uppercase hex pairs separated by colons (`AB:CD:…`), as Proxmox VE shows fingerprints.
    pub fn to_colon_hex(&self) -> String {
        let mut out = String::with_capacity(32 * 3);
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            out.push_str(&format!("{b:02X}"));
        }
        out
    }
}

impl fmt::Display for CertFingerprint {
    /// Lowercase hex, as [`CertFingerprint::to_hex`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Parses every certificate in PEM text; refuses text without any.
pub fn parse_certificates(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

/// Parses the first private key in PEM text.
pub fn parse_private_key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|source| TlsError::Pem {
            what: "the private key",
            source,
        })?
        .ok_or(TlsError::NoPrivateKey)
}

/// A root store holding exactly the certificates of `ca_pem`.
pub fn ca_root_store(ca_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certificates(ca_pem, "the cluster CA certificate")? {
        roots
            .add(cert)
            .map_err(|source| TlsError::InvalidCa { source })?;
    }
    Ok(roots)
}

/// The ring crypto provider, passed explicitly to every rustls builder.
pub fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem_file(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_sha256_of_der_in_both_forms() {
        // SHA-256 of the empty input.
        let fp = CertFingerprint::of_der(b"");
        assert_eq!(
            fp.to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(fp.to_string(), fp.to_hex());
        let colon = fp.to_colon_hex();
        assert!(colon.starts_with("E3:B0:C4:42:"), "{colon}");
        assert!(colon.ends_with(":78:52:B8:55"), "{colon}");
        assert_eq!(colon.len(), 32 * 3 - 1);
    }

    #[test]
    fn fingerprint_of_pem_hashes_the_der_of_the_first_certificate() {
        // A PEM block whose base64 payload is the bytes "abc".
        let pem = "-----BEGIN CERTIFICATE-----\nYWJj\n-----END CERTIFICATE-----\n";
        assert_eq!(
            CertFingerprint::of_pem(pem).map(|f| f.to_hex()).ok(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_owned())
        );
    }

    #[test]
    fn text_without_certificate_is_refused_with_what_was_expected() {
        let err = parse_certificates("hello", "the cluster CA certificate")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("the cluster CA certificate holds no PEM certificate (expected a -----BEGIN CERTIFICATE----- block)")
        );
        assert!(matches!(
            parse_private_key("nothing here"),
            Err(TlsError::NoPrivateKey)
        ));
    }

    #[test]
    fn identity_debug_output_hides_the_private_key() {
        let id = ClusterIdentity {
            ca_pem: "CA".into(),
            cert_pem: "CERT".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----secret".into(),
        };
        let dbg = format!("{id:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
        assert!(dbg.contains("CERT"), "{dbg}");
    }
}
