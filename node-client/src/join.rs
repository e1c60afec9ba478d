//! The node side of joining a cluster with a [`JoinToken`].
//!
//! 1. `GET {server}/api2/kiln/ca` without verifying the server (the node trusts nothing yet);
//! 2. accept that CA only if its SHA-256 fingerprint equals the one in the token;
//! 3. `POST {server}/api2/kiln/join` over a connection whose only trust anchor is that CA, so
//!    the token's secret is only ever sent to the genuine server.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;

use crate::diagnose::{classify, Failure};
use crate::tls::{ca_root_store, ring_provider, CertFingerprint, TlsError};
use crate::wire::{JoinRequest, JoinResponse};
use crate::{JoinToken, NodeName};

/// How long each request of the join may take.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a node asks for when it joins; the token is passed separately.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinApplication {
    /// The name the node wants.
    pub node_name: NodeName,
    /// Where the server will reach the node agent, e.g. `https://10.0.0.5:8007`.
    pub api_url: String,
    /// PEM certificate signing request for the node's key (CN = node name).
    pub csr_pem: String,
}

/// Why joining the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The server URL cannot be used.
    #[error("invalid server URL {url:?}: {reason}; expected https://<server>:<port>")]
    InvalidServerUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// TLS could not be set up.
    #[error("cannot set up TLS for the join: {0}")]
    Tls(#[from] TlsError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for the join: {0}")]
    Build(#[source] reqwest::Error),
    /// The server could not be reached.
    #[error("cannot reach the Kiln server at {url}: {reason}; check the URL and that kiln-server is running")]
    Unreachable {
        /// The server URL.
        url: String,
        /// The underlying cause.
        reason: String,
    },
    /// The server did not answer in time.
    #[error("the Kiln server at {url} did not answer within {JOIN_TIMEOUT:?}")]
    Timeout {
        /// The server URL.
        url: String,
    },
    /// The server did not hand out its CA certificate.
    #[error("the server at {url} did not hand out the cluster CA ({status}): {message}; is it a Kiln server?")]
    CaUnavailable {
        /// The server URL.
        url: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The server's message.
        message: String,
    },
    /// The CA answer is not a PEM certificate.
    #[error("the server at {url} answered the CA request with something that is not a PEM certificate: {source}")]
    CaNotPem {
        /// The server URL.
        url: String,
        /// The parse error.
        #[source]
        source: TlsError,
    },
    /// The server's CA is not the one the token names.
    #[error("the server's CA does not match the join token: wrong server or man-in-the-middle (token expects CA fingerprint {expected}, the server sent {actual}); nothing was sent to it")]
    CaMismatch {
        /// Fingerprint in the token (colon form).
        expected: String,
        /// Fingerprint of the CA the server sent (colon form).
        actual: String,
    },
    /// The server's HTTPS certificate does not chain to the cluster CA for the URL's host name.
    #[error("the server at {url} has the right CA but its HTTPS certificate is not valid for that address ({reason}); use the server address its certificate was issued for")]
    ServerNotTrusted {
        /// The server URL.
        url: String,
        /// The TLS problem.
        reason: String,
    },
    /// The server refused the join.
    #[error("the server refused the join ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The server's message.
        message: String,
    },
    /// The server's answer could not be used.
    #[error("the server's join answer is unusable: {reason}; do kiln-node and kiln-server run the same version?")]
    InvalidResponse {
        /// What is wrong with it.
        reason: String,
    },
    /// The request failed for another reason.
    #[error("request to the Kiln server at {url} failed: {reason}")]
    Request {
        /// The server URL.
        url: String,
        /// The underlying cause.
        reason: String,
    },
}

/// The server's JSON envelope: `{"data": …}` on success, `{"data": null, "message": …}` on error.
#[derive(Deserialize)]
struct Envelope<T> {
    data: Option<T>,
    #[serde(default)]
    message: Option<String>,
}

/// Joins the cluster served at `server_url` (e.g. `https://10.0.0.1:8006`) with `token`.
///
/// On success the answer holds the node's signed certificate and the cluster CA, whose
/// fingerprint has been checked against the token. The token's secret never goes to a server
/// whose CA does not match the token.
pub async fn join_cluster(
    server_url: &str,
    token: &JoinToken,
    application: &JoinApplication,
) -> Result<JoinResponse, JoinError> {
    let base = base_url(server_url)?;
    let expected = CertFingerprint(token.ca_fingerprint);

    let ca_pem = fetch_ca_unverified(&base).await?;
    let actual = CertFingerprint::of_pem(&ca_pem).map_err(|source| JoinError::CaNotPem {
        url: base.clone(),
        source,
    })?;
    if actual != expected {
        return Err(JoinError::CaMismatch {
            expected: expected.to_colon_hex(),
            actual: actual.to_colon_hex(),
        });
    }

    let response = post_join(&base, &ca_pem, token, application).await?;
    let answer_ca =
        CertFingerprint::of_pem(&response.ca_pem).map_err(|e| JoinError::InvalidResponse {
            reason: format!("its CA certificate: {e}"),
        })?;
    if answer_ca != expected {
        return Err(JoinError::InvalidResponse {
            reason: "it carries a different CA certificate than the join token names".to_owned(),
        });
    }
    crate::tls::parse_certificates(&response.cert_pem, "the node certificate").map_err(|e| {
        JoinError::InvalidResponse {
            reason: e.to_string(),
        }
    })?;
    Ok(response)
}

fn base_url(server_url: &str) -> Result<String, JoinError> {
    let invalid = |reason: String| JoinError::InvalidServerUrl {
        url: server_url.to_owned(),
        reason,
    };
    let parsed = reqwest::Url::parse(server_url).map_err(|e| invalid(e.to_string()))?;
    if parsed.scheme() != "https" {
        return Err(invalid(
            "joining needs https, so that the token's secret is never sent in the clear".into(),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host".into()));
    }
    Ok(server_url.trim_end_matches('/').to_owned())
}

/// Step 1: the CA PEM, fetched without verifying the server (it is checked by fingerprint next).
async fn fetch_ca_unverified(base: &str) -> Result<String, JoinError> {
    let provider = ring_provider();
    let tls = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::InvalidIdentity { source })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCertificate { provider }))
        .with_no_client_auth();
    let http = http_client(tls)?;
    let response = http
        .get(format!("{base}/api2/kiln/ca"))
        .send()
        .await
        .map_err(|e| transport_error(base, &e))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| transport_error(base, &e))?;
    if !status.is_success() {
        return Err(JoinError::CaUnavailable {
            url: base.to_owned(),
            status,
            message: envelope_message(&body),
        });
    }
    Ok(body)
}

/// Step 3: the join request, to a server that must prove it holds a certificate from the CA.
async fn post_join(
    base: &str,
    ca_pem: &str,
    token: &JoinToken,
    application: &JoinApplication,
) -> Result<JoinResponse, JoinError> {
    let tls = ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::InvalidIdentity { source })?
        .with_root_certificates(ca_root_store(ca_pem)?)
        .with_no_client_auth();
    let http = http_client(tls)?;
    let request = JoinRequest {
        token: token.to_string(),
        node_name: application.node_name.to_string(),
        api_url: application.api_url.clone(),
        csr_pem: application.csr_pem.clone(),
    };
    let response = http
        .post(format!("{base}/api2/kiln/join"))
        .json(&request)
        .send()
        .await
        .map_err(|e| match transport_error(base, &e) {
            JoinError::Request { url, reason } if is_certificate_problem(&e) => {
                JoinError::ServerNotTrusted { url, reason }
            }
            other => other,
        })?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| transport_error(base, &e))?;
    if !status.is_success() {
        return Err(JoinError::Refused {
            status,
            message: envelope_message(&body),
        });
    }
    serde_json::from_str::<Envelope<JoinResponse>>(&body)
        .map_err(|e| JoinError::InvalidResponse {
            reason: e.to_string(),
        })?
        .data
        .ok_or_else(|| JoinError::InvalidResponse {
            reason: "it holds no data".to_owned(),
        })
}

fn http_client(tls: ClientConfig) -> Result<reqwest::Client, JoinError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .https_only(true)
        .timeout(JOIN_TIMEOUT)
        .build()
        .map_err(JoinError::Build)
}

fn is_certificate_problem(err: &reqwest::Error) -> bool {
    matches!(
        classify(err),
        Failure::UntrustedCertificate | Failure::WrongName | Failure::Tls(_)
    )
}

fn transport_error(base: &str, err: &reqwest::Error) -> JoinError {
    let url = base.to_owned();
    match classify(err) {
        Failure::Timeout => JoinError::Timeout { url },
        Failure::Unreachable(reason) => JoinError::Unreachable { url, reason },
        Failure::UntrustedCertificate => JoinError::Request {
            url,
            reason: "the server's certificate is not signed by the cluster CA".to_owned(),
        },
        Failure::WrongName => JoinError::Request {
            url,
            reason: "the server's certificate was issued for another host name".to_owned(),
        },
        Failure::CertificateRefused(alert) => JoinError::Request {
            url,
            reason: format!("the server refused the TLS connection ({alert})"),
        },
        Failure::Tls(reason) | Failure::Other(reason) => JoinError::Request { url, reason },
    }
}

/// The `message` of a `{"data": null, "message": …}` body, or the body itself.
fn envelope_message(body: &str) -> String {
    match serde_json::from_str::<Envelope<serde_json::Value>>(body) {
        Ok(Envelope {
            message: Some(m), ..
        }) => m,
        _ => crate::wire::ErrorBody::message_from(body.as_bytes()),
    }
}

/// Accepts any server certificate (signatures are still checked). Used only to fetch the CA,
/// which is then checked against the token's fingerprint before anything secret is sent.
#[derive(Debug)]
struct AnyServerCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_server_urls_are_refused_before_anything_is_sent() {
        let err = base_url("http://10.0.0.1:8006")
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("needs https")),
            "{err:?}"
        );
        assert_eq!(
            base_url("https://10.0.0.1:8006/").ok().as_deref(),
            Some("https://10.0.0.1:8006")
        );
    }

    #[test]
    fn error_envelope_message_is_surfaced() {
        assert_eq!(
            envelope_message(r#"{"data":null,"message":"join token expired"}"#),
            "join token expired"
        );
        assert_eq!(envelope_message("Bad Gateway"), "Bad Gateway");
    }
}
