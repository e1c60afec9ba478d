//! The cluster's certificate authority and the server's own certificates.
//!
//! On first start the server creates, under `<data-dir>/pki/`:
//! - `ca.crt`/`ca.key`: the cluster CA; every node certificate and the server's certificates
//!   chain to it, and nothing on a node answers a caller without such a certificate;
//! - `https.crt`/`https.key`: the server's HTTPS certificate (browsers see it as self-signed,
//!   like Proxmox's `pve-ssl.pem`; joining nodes verify it against the CA in their token);
//! - `client.crt`/`client.key`: the identity the server presents to node agents.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// A failure of the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// rcgen refused (bad key, bad parameters).
    #[error("certificate operation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A certificate signing request could not be used.
    #[error("invalid certificate signing request: {0}")]
    BadCsr(String),
}

/// The cluster CA, able to sign node certificates.
pub struct ClusterCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("fingerprint", &hex::encode(self.fingerprint))
            .finish_non_exhaustive()
    }
}

/// PEM certificate and key of one identity.
#[derive(Clone)]
pub struct PemPair {
    /// Certificate (PEM).
    pub cert_pem: String,
    /// Private key (PEM). Never logged.
    pub key_pem: String,
}

impl std::fmt::Debug for PemPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemPair").finish_non_exhaustive()
    }
}

/// Everything the server needs from its PKI directory.
#[derive(Debug)]
pub struct ServerPki {
    /// The cluster CA.
    pub ca: ClusterCa,
    /// HTTPS certificate and key.
    pub https: PemPair,
    /// Client identity towards node agents.
    pub client: PemPair,
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)
}

/// SHA-256 of the DER inside a PEM certificate.
pub fn pem_fingerprint(cert_pem: &str) -> Result<[u8; 32], PkiError> {
    let der = pem_to_der(cert_pem)?;
    Ok(Sha256::digest(&der).into())
}

fn pem_to_der(cert_pem: &str) -> Result<Vec<u8>, PkiError> {
    let certs = kiln_node_client::tls::parse_certificates(cert_pem, "a certificate")
        .map_err(|e| PkiError::BadCsr(e.to_string()))?;
    certs
        .into_iter()
        .next()
        .map(|c| c.to_vec())
        .ok_or_else(|| PkiError::BadCsr("no certificate in PEM".into()))
}

fn validity(years: i64) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - Duration::days(1), now + Duration::days(365 * years))
}

impl ClusterCa {
    fn create() -> Result<(Self, String), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Kiln Cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (params.not_before, params.not_after) = validity(20);
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        let cert_pem = cert.pem();
        let fingerprint = Sha256::digest(cert.der()).into();
        Ok((
            ClusterCa {
                issuer: Issuer::new(params, key),
                cert_pem,
                fingerprint,
            },
            key_pem,
        ))
    }

    fn load(cert_pem: String, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let fingerprint = pem_fingerprint(&cert_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(ClusterCa {
            issuer,
            cert_pem,
            fingerprint,
        })
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate's DER.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    fn issue(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        server: bool,
        client: bool,
        public_key: &impl rcgen::PublicKeyData,
    ) -> Result<String, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = sans;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if server {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if client {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = validity(10);
        Ok(params.signed_by(public_key, &self.issuer)?.pem())
    }

    /// Sign a node's CSR. Only the CSR's public key is used: the certificate's names come from
    /// the validated node name and API host, whatever the CSR asked for.
    pub fn sign_node_csr(
        &self,
        csr_pem: &str,
        node_name: &str,
        api_host: &str,
    ) -> Result<String, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        let mut sans =
            vec![SanType::DnsName(node_name.try_into().map_err(|_| {
                PkiError::BadCsr("node name is not a DNS name".into())
            })?)];
        sans.push(host_san(api_host)?);
        self.issue(node_name, sans, true, true, &csr.public_key)
    }
}

fn host_san(host: &str) -> Result<SanType, PkiError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(match host.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(
            host.try_into()
                .map_err(|_| PkiError::BadCsr(format!("{host:?} is not a host name")))?,
        ),
    })
}

fn load_or_create_leaf(
    dir: &Path,
    stem: &str,
    make: impl FnOnce(&KeyPair) -> Result<String, PkiError>,
) -> Result<PemPair, PkiError> {
    let (crt, key) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    if crt.exists() && key.exists() {
        return Ok(PemPair {
            cert_pem: read(&crt)?,
            key_pem: read(&key)?,
        });
    }
    let key_pair = KeyPair::generate()?;
    let cert_pem = make(&key_pair)?;
    let key_pem = key_pair.serialize_pem();
    write(&key, &key_pem, true)?;
    write(&crt, &cert_pem, false)?;
    Ok(PemPair { cert_pem, key_pem })
}

impl ServerPki {
    /// Load the PKI from `dir`, creating whatever is missing. `https_names` are the extra DNS
    /// names or IP addresses the HTTPS certificate must carry (besides localhost, 127.0.0.1,
    /// ::1 and the host name).
    pub fn load_or_create(dir: &Path, https_names: &[String]) -> Result<Self, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
        let ca = if ca_crt.exists() && ca_key.exists() {
            ClusterCa::load(read(&ca_crt)?, &read(&ca_key)?)?
        } else {
            let (ca, key_pem) = ClusterCa::create()?;
            write(&ca_key, &key_pem, true)?;
            write(&ca_crt, ca.cert_pem(), false)?;
            ca
        };
        let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        if let Some(h) = hostname() {
            names.push(h);
        }
        names.extend(https_names.iter().cloned());
        names.dedup();
        let https = load_or_create_leaf(dir, "https", |key| {
            let sans = names
                .iter()
                .map(|n| host_san(n))
                .collect::<Result<Vec<_>, _>>()?;
            ca.issue("Kiln console server", sans, true, false, key)
        })?;
        let client = load_or_create_leaf(dir, "client", |key| {
            ca.issue("kiln-server", Vec::new(), false, true, key)
        })?;
        Ok(ServerPki { ca, https, client })
    }
}

fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty() && h.parse::<kiln_node_client::NodeName>().is_ok()).then(|| h.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_and_reloads_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let a = ServerPki::load_or_create(dir.path(), &["kiln.example".into()]).unwrap();
        let b = ServerPki::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(a.ca.fingerprint(), b.ca.fingerprint());
        assert_eq!(a.https.cert_pem, b.https.cert_pem);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("ca.key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o077, 0, "CA key must be private");
    }

    #[test]
    fn signs_a_node_csr_with_the_names_it_chooses() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ServerPki::load_or_create(dir.path(), &[]).unwrap();
        let key = KeyPair::generate().unwrap();
        // The CSR asks for a foreign name; the certificate must not carry it.
        let csr = CertificateParams::new(vec!["evil.example".to_string()])
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let cert = pki.ca.sign_node_csr(&csr, "n1", "127.0.0.1").unwrap();
        let der = pem_to_der(&cert).unwrap();
        let text = String::from_utf8_lossy(&der);
        assert!(text.contains("n1"));
        assert!(!text.contains("evil.example"));
        assert!(pki.ca.sign_node_csr("garbage", "n1", "127.0.0.1").is_err());
    }
}
