//! `kiln-node join`: make a key, ask the server to sign it, store what it answers.
//!
//! The key is written before the server is asked, so a data directory that cannot be written
//! fails before the one-time token is spent; `node.json` is written last, so its presence means
//! the join completed.

use std::net::SocketAddr;

use kiln_node_client::{join_cluster, JoinApplication, JoinError, JoinToken, NodeName, TlsError};
use kiln_node_client::{CertFingerprint, ClusterIdentity};
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::config::{ConfigError, DataDir, NodeConfig};

/// What the administrator asked for.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    /// URL of the Kiln server, e.g. `https://10.0.0.1:8006`.
    pub server_url: String,
    /// The one-time join token.
    pub token: JoinToken,
    /// The node's name.
    pub name: NodeName,
    /// Address the node API will listen on.
    pub listen: SocketAddr,
    /// URL the server will reach the node at; `https://<listen>` if not given.
    pub advertise: Option<String>,
}

/// What a successful join produced.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The stored configuration.
    pub config: NodeConfig,
    /// Fingerprint of the node's new certificate.
    pub cert_fingerprint: CertFingerprint,
    /// The server's task id for the join.
    pub upid: String,
}

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeJoinError {
    /// The data directory cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The advertise URL cannot be used.
    #[error("cannot advertise {url:?}: {reason}")]
    Advertise {
        /// The URL (or listen address) in question.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key or certificate request could not be made.
    #[error("cannot create the node key and certificate request: {0}")]
    Csr(#[from] rcgen::Error),
    /// The server refused or could not be reached.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// The server's answer does not form a usable identity with our key.
    #[error("the certificate the server issued does not work with this node's key: {0}")]
    Certificate(#[source] TlsError),
}

/// Joins the cluster and stores the node's identity and configuration in `data`.
pub async fn join(data: &DataDir, plan: JoinPlan) -> Result<Joined, NodeJoinError> {
    data.prepare_for_join()?;
    let (advertise, advertise_host) = advertise_url(plan.listen, plan.advertise.as_deref())?;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut sans = vec![plan.name.to_string()];
    if advertise_host != plan.name.as_str() {
        sans.push(advertise_host);
    }
    let mut params = CertificateParams::new(sans)?;
    params
        .distinguished_name
        .push(DnType::CommonName, plan.name.as_str());
    let csr_pem = params.serialize_request(&key)?.pem()?;
    let key_pem = key.serialize_pem();
    data.save_key(&key_pem)?;

    tracing::info!(
        "asking {} to let {} join (token id {})",
        plan.server_url,
        plan.name,
        plan.token.id
    );
    let application = JoinApplication {
        node_name: plan.name.clone(),
        api_url: advertise.clone(),
        csr_pem,
    };
    let response = join_cluster(&plan.server_url, &plan.token, &application).await?;

    let identity = ClusterIdentity {
        ca_pem: response.ca_pem.clone(),
        cert_pem: response.cert_pem.clone(),
        key_pem,
    };
    identity
        .server_config()
        .map_err(NodeJoinError::Certificate)?;
    let cert_fingerprint =
        CertFingerprint::of_pem(&response.cert_pem).map_err(NodeJoinError::Certificate)?;
    data.save_certificates(&response.cert_pem, &response.ca_pem)?;
    let config = NodeConfig {
        name: plan.name,
        listen: plan.listen,
        advertise,
        server_url: plan.server_url,
    };
    data.save_config(&config)?;
    Ok(Joined {
        config,
        cert_fingerprint,
        upid: response.upid,
    })
}

/// The URL to advertise and its host (for the certificate's SANs).
fn advertise_url(
    listen: SocketAddr,
    advertise: Option<&str>,
) -> Result<(String, String), NodeJoinError> {
    let Some(url) = advertise else {
        if listen.ip().is_unspecified() {
            return Err(NodeJoinError::Advertise {
                url: listen.to_string(),
                reason: format!(
                    "--listen {listen} is a wildcard address the server cannot connect to; \
                     pass --advertise https://<this host's address>:{}",
                    listen.port()
                ),
            });
        }
        return Ok((format!("https://{listen}"), listen.ip().to_string()));
    };
    let invalid = |reason: &str| NodeJoinError::Advertise {
        url: url.to_owned(),
        reason: format!("{reason}; expected https://<host or IP>:<port>"),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if parsed.scheme() != "https" {
        return Err(invalid("the node API is served over https only"));
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid("it has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if parsed.path() != "/" || parsed.query().is_some() {
        return Err(invalid("it must not have a path or query"));
    }
    Ok((url.trim_end_matches('/').to_owned(), host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn advertise_defaults_to_the_listen_address() {
        let got = advertise_url(listen("10.0.0.5:8007"), None).ok();
        assert_eq!(
            got,
            Some(("https://10.0.0.5:8007".into(), "10.0.0.5".into()))
        );
        let got = advertise_url(listen("[::1]:8007"), None).ok();
        assert_eq!(got, Some(("https://[::1]:8007".into(), "::1".into())));
    }

    #[test]
    fn wildcard_listen_address_needs_an_explicit_advertise_url() {
        let err = advertise_url(listen("0.0.0.0:8007"), None).expect_err("wildcard");
        assert!(err.to_string().contains("--advertise"), "{err}");
        let got = advertise_url(listen("0.0.0.0:8007"), Some("https://n1.lab.example:8007/")).ok();
        assert_eq!(
            got,
            Some((
                "https://n1.lab.example:8007".into(),
                "n1.lab.example".into()
            ))
        );
    }

    #[test]
    fn advertise_url_must_be_plain_https() {
        for bad in [
            "http://10.0.0.5:8007",
            "https://10.0.0.5:8007/api",
            "not a url",
        ] {
            assert!(
                advertise_url(listen("10.0.0.5:8007"), Some(bad)).is_err(),
                "{bad} should be refused"
            );
        }
    }
}
