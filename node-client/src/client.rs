//! [`NodeClient`]: the typed mutual-TLS client of one node agent.
//!
//! The client connects to `https://<node name>:<port>` and resolves the node name to the host of
//! the node's API URL itself. The TLS name check therefore proves that the peer holds a
//! certificate the cluster CA issued *for that node name*, whatever address it answers on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use crate::diagnose::{classify, Failure};
use crate::tls::{ClusterIdentity, TlsError};
use crate::wire::{ErrorBody, NodeFacts};
use crate::NodeName;

/// Why a call to a node agent failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeClientError {
    /// The node's API URL cannot be used.
    #[error("node {node}: invalid API URL {api_url:?}: {reason}; expected https://<host>:<port>")]
    InvalidApiUrl {
        /// The node.
        node: NodeName,
        /// The URL given.
        api_url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The cluster identity cannot be turned into a TLS configuration.
    #[error("cannot set up TLS to node {node}: {source}")]
    Tls {
        /// The node.
        node: NodeName,
        /// The TLS problem.
        #[source]
        source: TlsError,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for node {node}: {source}")]
    Build {
        /// The node.
        node: NodeName,
        /// The reqwest error.
        #[source]
        source: reqwest::Error,
    },
    /// Nothing answered at the node's address.
    #[error("node {node} at {api_url} is unreachable: {reason}; is kiln-node running there?")]
    Unreachable {
        /// The node.
        node: NodeName,
        /// The node's API URL.
        api_url: String,
        /// The underlying cause, e.g. "connection refused".
        reason: String,
    },
    /// The node did not answer in time.
    #[error("node {node} at {api_url} did not answer within {timeout:?}; is the host overloaded or the network cut off?")]
    Timeout {
        /// The node.
        node: NodeName,
        /// The node's API URL.
        api_url: String,
        /// The request timeout.
        timeout: Duration,
    },
    /// The peer's certificate was not issued by the cluster CA.
    #[error("node {node} at {api_url} presented a certificate not signed by the cluster CA; is another cluster's node (or an impostor) answering at that address?")]
    UntrustedCertificate {
        /// The node.
        node: NodeName,
        /// The node's API URL.
        api_url: String,
    },
    /// The peer's certificate is from the cluster CA but for another node name.
    #[error("node {node} at {api_url} presented a cluster certificate issued for another node name; the API URL probably points at a different node")]
    WrongNodeCertificate {
        /// The node.
        node: NodeName,
        /// The node's API URL.
        api_url: String,
    },
    /// The node refused our client certificate.
    #[error("node {node} at {api_url} refused our client certificate ({alert}); was the node joined to this cluster?")]
    ClientCertificateRefused {
        /// The node.
        node: NodeName,
        /// The node's API URL.
        api_url: String,
        /// The TLS alert the node sent.
        alert: String,
    },
    /// Any other TLS failure.
    #[error("TLS with node {node} at {api_url} failed: {reason}")]
    TlsHandshake {
        /// The node.
        node: NodeName,
        /// The node's API URL.
        api_url: String,
        /// The TLS error.
        reason: String,
    },
    /// The request failed for another reason.
    #[error("request to node {node} at {api_url} failed: {reason}")]
    Request {
        /// The node.
        node: NodeName,
        /// The node's API URL.
        api_url: String,
        /// The underlying cause.
        reason: String,
    },
    /// The node answered with an HTTP error.
    #[error("node {node} answered {status}: {message}")]
    Http {
        /// The node.
        node: NodeName,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The message of the node's error body (or the raw body).
        message: String,
    },
    /// The node's answer could not be decoded.
    #[error("node {node} sent an answer that could not be decoded ({reason}); do kiln-node and kiln-server run the same version?")]
    InvalidResponse {
        /// The node.
        node: NodeName,
        /// The decoding error.
        reason: String,
    },
    /// The node reported a different name than the one it was reached as.
    #[error("node {node} reports its name as {reported:?}; its node.json does not match its certificate")]
    NameMismatch {
        /// The node.
        node: NodeName,
        /// The name in its answer.
        reported: String,
    },
}

/// A client of one node agent's API, authenticated with the cluster identity.
///
/// Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct NodeClient {
    node: NodeName,
    api_url: String,
    base_url: Url,
    timeout: Duration,
    http: reqwest::Client,
}

impl NodeClient {
    /// A client for `node`, reachable at `api_url` (`https://<host or IP>:<port>`), whose requests
    /// time out after `timeout`.
    ///
    /// Connections go to `https://<node>:<port>`, with `<node>` resolved to the host of
    /// `api_url`; the node must present a certificate from the cluster CA for the name `node`.
    pub fn new(
        identity: &ClusterIdentity,
        node: NodeName,
        api_url: &str,
        timeout: Duration,
    ) -> Result<Self, NodeClientError> {
        let invalid = |reason: &str| NodeClientError::InvalidApiUrl {
            node: node.clone(),
            api_url: api_url.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = Url::parse(api_url).map_err(|e| invalid(&e.to_string()))?;
        if parsed.scheme() != "https" {
            return Err(invalid("the node API is served over https only"));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("it has no host"))?
            // An IPv6 host comes bracketed, as in the URL.
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| invalid("it has no port"))?;
        let base_url = Url::parse(&format!("https://{node}:{port}/"))
            .map_err(|e| invalid(&format!("node name is not a URL host: {e}")))?;

        let tls = identity
            .client_config()
            .map_err(|source| NodeClientError::Tls {
                node: node.clone(),
                source,
            })?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .dns_resolver(Arc::new(NodeAddressResolver {
                node: node.clone(),
                host,
                port,
            }))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|source| NodeClientError::Build {
                node: node.clone(),
                source,
            })?;
        Ok(NodeClient {
            node,
            api_url: api_url.to_owned(),
            base_url,
            timeout,
            http,
        })
    }

    /// The node this client talks to.
    pub fn node(&self) -> &NodeName {
        &self.node
    }

    /// The node's API URL as given to [`NodeClient::new`].
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// `GET /v1/status`: the node's current facts (the heartbeat).
    pub async fn status(&self) -> Result<NodeFacts, NodeClientError> {
        let facts: NodeFacts = self.get_json("v1/status").await?;
        if facts.name != self.node.as_str() {
            return Err(NodeClientError::NameMismatch {
                node: self.node.clone(),
                reported: facts.name,
            });
        }
        Ok(facts)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, NodeClientError> {
        let url = self
            .base_url
            .join(path)
            .map_err(|e| NodeClientError::InvalidApiUrl {
                node: self.node.clone(),
                api_url: self.api_url.clone(),
                reason: e.to_string(),
            })?;
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        if !status.is_success() {
            return Err(NodeClientError::Http {
                node: self.node.clone(),
                status,
                message: ErrorBody::message_from(&body),
            });
        }
        serde_json::from_slice(&body).map_err(|e| NodeClientError::InvalidResponse {
            node: self.node.clone(),
            reason: e.to_string(),
        })
    }

    fn transport_error(&self, err: &reqwest::Error) -> NodeClientError {
        let node = self.node.clone();
        let api_url = self.api_url.clone();
        match classify(err) {
            Failure::Timeout => NodeClientError::Timeout {
                node,
                api_url,
                timeout: self.timeout,
            },
            Failure::Unreachable(reason) => NodeClientError::Unreachable {
                node,
                api_url,
                reason,
            },
            Failure::UntrustedCertificate => {
                NodeClientError::UntrustedCertificate { node, api_url }
            }
            Failure::WrongName => NodeClientError::WrongNodeCertificate { node, api_url },
            Failure::CertificateRefused(alert) => NodeClientError::ClientCertificateRefused {
                node,
                api_url,
                alert,
            },
            Failure::Tls(reason) => NodeClientError::TlsHandshake {
                node,
                api_url,
                reason,
            },
            Failure::Other(reason) => NodeClientError::Request {
                node,
                api_url,
                reason,
            },
        }
    }
}

/// Resolves the node name to the addresses of the API URL's host; any other name is refused,
/// so a request can reach nothing but the node.
struct NodeAddressResolver {
    node: NodeName,
    host: String,
    port: u16,
}

impl Resolve for NodeAddressResolver {
    fn resolve(&self, name: Name) -> Resolving {
        if name.as_str() != self.node.as_str() {
            let msg = format!(
                "refusing to resolve {:?}: this client only talks to node {}",
                name.as_str(),
                self.node
            );
            return Box::pin(async move { Err(msg.into()) });
        }
        let target = (self.host.clone(), self.port);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
