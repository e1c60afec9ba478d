//! [`NodeClient`]: the typed mutual-TLS client of one node agent.
//!
//! The client connects to `https://<node name>:<port>` and resolves the node name to the host of
//! the node's API URL itself. The TLS name check therefore proves that the peer holds a
//! certificate the cluster CA issued *for that node name*, whatever address it answers on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, Url};
use rustls::pki_types::ServerName;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::diagnose::{classify, classify_error, unreachable, Failure};
use crate::tls::{ClusterIdentity, TlsError};
use crate::wire::{
    ErrorBody, HaRequest, HeartbeatAnswer, HeartbeatRequest, ImageInfo, MigrateReceiveAnswer,
    MigrateSendRequest, MigrationStatus, NodeFacts, ShutdownRequest, VmRuntime, VmSpec,
};
use crate::NodeName;

/// The console of a VM: a WebSocket over mutual TLS to the node agent. Binary frames carry raw
/// serial bytes both ways; the first frames replay the console's scroll-back.
pub type ConsoleSocket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// The least time a VM action (start, stop, pause, resume, delete) may take before the client
/// gives up, whatever the client's own (heartbeat) timeout: starting waits for kiln-vmm to
/// boot and answer its control socket.
pub const VM_ACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`NodeClient::migrate_send`] waits for a migration to end.
pub const MIGRATION_TIMEOUT: Duration = Duration::from_secs(3600);

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
    /// Host and port of the API URL, for connections made by hand (the console).
    host: String,
    port: u16,
    /// TLS for connections made by hand, offering HTTP/1.1 only (WebSockets need it).
    tls: Arc<rustls::ClientConfig>,
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
        let mut ws_tls = tls.clone();
        ws_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .dns_resolver(Arc::new(NodeAddressResolver {
                node: node.clone(),
                host: host.clone(),
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
            host,
            port,
            tls: Arc::new(ws_tls),
        })
    }

    /// The same client (sharing its connections) with another timeout for ordinary calls.
    pub fn with_timeout(&self, timeout: Duration) -> NodeClient {
        NodeClient {
            timeout,
            ..self.clone()
        }
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

    /// `POST /v1/status`: the heartbeat with a lease grant; the node's facts and its lease.
    pub async fn heartbeat(
        &self,
        request: &HeartbeatRequest,
    ) -> Result<HeartbeatAnswer, NodeClientError> {
        let bytes = self
            .call(Method::POST, "v1/status", Some(request), self.timeout)
            .await?;
        let answer: HeartbeatAnswer = self.decode(&bytes)?;
        if answer.facts.name != self.node.as_str() {
            return Err(NodeClientError::NameMismatch {
                node: self.node.clone(),
                reported: answer.facts.name,
            });
        }
        Ok(answer)
    }

    /// `PUT /v1/vms/{vmid}/ha`: make a VM HA-managed (guarded by the node's lease) or not.
    pub async fn set_vm_ha(&self, vmid: u32, ha: bool) -> Result<VmRuntime, NodeClientError> {
        let path = format!("v1/vms/{vmid}/ha");
        let bytes = self
            .call(Method::PUT, &path, Some(&HaRequest { ha }), self.timeout)
            .await?;
        self.decode(&bytes)
    }

    /// `GET /v1/vms`: every VM the node knows, running or not.
    pub async fn vms(&self) -> Result<Vec<VmRuntime>, NodeClientError> {
        self.get_json("v1/vms").await
    }

    /// `GET /v1/vms/{vmid}`: one VM (404 if the node does not know it).
    pub async fn vm(&self, vmid: u32) -> Result<VmRuntime, NodeClientError> {
        self.get_json(&format!("v1/vms/{vmid}")).await
    }

    /// `POST /v1/vms/{vmid}/start`: starts `spec`; answers once kiln-vmm runs and its control
    /// socket answers. Waits at least [`VM_ACTION_TIMEOUT`].
    pub async fn start_vm(&self, spec: &VmSpec) -> Result<VmRuntime, NodeClientError> {
        self.vm_action(spec.vmid, "start", Some(spec), self.action_timeout())
            .await
    }

    /// `POST /v1/vms/{vmid}/stop`: stops the VM at once (like pulling the plug).
    pub async fn stop_vm(&self, vmid: u32) -> Result<VmRuntime, NodeClientError> {
        self.vm_action(vmid, "stop", None::<&()>, self.action_timeout())
            .await
    }

    /// `POST /v1/vms/{vmid}/shutdown`: presses the guest's power button and answers once the
    /// VM has stopped; a guest still running after `timeout_secs` is stopped.
    pub async fn shutdown_vm(
        &self,
        vmid: u32,
        timeout_secs: u32,
    ) -> Result<VmRuntime, NodeClientError> {
        let body = ShutdownRequest { timeout_secs };
        let timeout = self.action_timeout() + Duration::from_secs(timeout_secs.into());
        self.vm_action(vmid, "shutdown", Some(&body), timeout).await
    }

    /// `POST /v1/vms/{vmid}/reboot`: shuts the guest down (stopping it after `timeout_secs`)
    /// and starts it again with the same spec.
    pub async fn reboot_vm(
        &self,
        vmid: u32,
        timeout_secs: u32,
    ) -> Result<VmRuntime, NodeClientError> {
        let body = ShutdownRequest { timeout_secs };
        let timeout = self.action_timeout() * 2 + Duration::from_secs(timeout_secs.into());
        self.vm_action(vmid, "reboot", Some(&body), timeout).await
    }

    /// `POST /v1/vms/{vmid}/pause`: holds the VM's vCPUs.
    pub async fn pause_vm(&self, vmid: u32) -> Result<VmRuntime, NodeClientError> {
        self.vm_action(vmid, "pause", None::<&()>, self.action_timeout())
            .await
    }

    /// `POST /v1/vms/{vmid}/resume`: lets a paused VM run again.
    pub async fn resume_vm(&self, vmid: u32) -> Result<VmRuntime, NodeClientError> {
        self.vm_action(vmid, "resume", None::<&()>, self.action_timeout())
            .await
    }

    /// `DELETE /v1/vms/{vmid}`: forgets a stopped VM (its directory and logs on the node);
    /// refused (409) while it runs.
    pub async fn delete_vm(&self, vmid: u32) -> Result<(), NodeClientError> {
        let path = format!("v1/vms/{vmid}");
        self.call(Method::DELETE, &path, None::<&()>, self.action_timeout())
            .await
            .map(drop)
    }

    /// `GET /v1/images`: the node's image store.
    pub async fn images(&self) -> Result<Vec<ImageInfo>, NodeClientError> {
        self.get_json("v1/images").await
    }

    /// `GET /v1/vms/{vmid}/console`: the VM's serial console as a WebSocket, over the same
    /// mutual TLS and node-name check as every other call. Binary frames carry raw bytes both
    /// ways; the scroll-back comes first. Several consoles may be open at once.
    ///
    /// Connecting (TCP, TLS, WebSocket handshake) must finish within the client's timeout.
    pub async fn console(&self, vmid: u32) -> Result<ConsoleSocket, NodeClientError> {
        tokio::time::timeout(self.timeout, self.connect_console(vmid))
            .await
            .unwrap_or_else(|_| {
                Err(NodeClientError::Timeout {
                    node: self.node.clone(),
                    api_url: self.api_url.clone(),
                    timeout: self.timeout,
                })
            })
    }

    async fn connect_console(&self, vmid: u32) -> Result<ConsoleSocket, NodeClientError> {
        let tls = self.connect_tls().await?;
        let url = format!("wss://{}:{}/v1/vms/{vmid}/console", self.node, self.port);
        match tokio_tungstenite::client_async(url, tls).await {
            Ok((socket, _response)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = reqwest::StatusCode::from_u16(response.status().as_u16())
                    .unwrap_or(reqwest::StatusCode::BAD_GATEWAY);
                let body = response.body().as_deref().unwrap_or_default();
                Err(NodeClientError::Http {
                    node: self.node.clone(),
                    status,
                    message: ErrorBody::message_from(body),
                })
            }
            Err(e) => Err(self.failure(classify_error(&e))),
        }
    }

    /// `POST /v1/vms/{vmid}/migrate/send`: live-migrates the running VM to another node and
    /// answers once the migration has ended, with kiln-vmm's final status (rounds, downtime).
    /// A migration may take long: the request waits up to [`MIGRATION_TIMEOUT`].
    pub async fn migrate_send(
        &self,
        vmid: u32,
        request: &MigrateSendRequest,
    ) -> Result<MigrationStatus, NodeClientError> {
        let path = format!("v1/vms/{vmid}/migrate/send");
        let bytes = self
            .call(Method::POST, &path, Some(request), MIGRATION_TIMEOUT)
            .await?;
        self.decode(&bytes)
    }

    /// `POST /v1/vms/{vmid}/migrate/handover` (source): the migration sent with
    /// `await_commit` waits, paused, in `AwaitingCommit`; from this call on the source never
    /// resumes the VM by itself (`HandedOver`), so the cluster may record the new owner.
    pub async fn migrate_handover(&self, vmid: u32) -> Result<MigrationStatus, NodeClientError> {
        self.migrate_action(vmid, "handover").await
    }

    /// `POST /v1/vms/{vmid}/migrate/commit` (target): runs the VM that waits here, paused,
    /// for its commit; answers once it runs.
    pub async fn migrate_commit(&self, vmid: u32) -> Result<MigrationStatus, NodeClientError> {
        self.migrate_action(vmid, "commit").await
    }

    /// `POST /v1/vms/{vmid}/migrate/finish` (source, handed over): the target runs the VM;
    /// answers the migration's final status (rounds, downtime) once the copy here ended.
    pub async fn migrate_finish(&self, vmid: u32) -> Result<MigrationStatus, NodeClientError> {
        self.migrate_action(vmid, "finish").await
    }

    /// `POST /v1/vms/{vmid}/migrate/takeback` (source, handed over): the target never ran
    /// the VM and no longer has it; resume it here.
    pub async fn migrate_takeback(&self, vmid: u32) -> Result<MigrationStatus, NodeClientError> {
        self.migrate_action(vmid, "takeback").await
    }

    async fn migrate_action(
        &self,
        vmid: u32,
        action: &str,
    ) -> Result<MigrationStatus, NodeClientError> {
        let path = format!("v1/vms/{vmid}/migrate/{action}");
        let bytes = self
            .call(Method::POST, &path, None::<&()>, self.action_timeout())
            .await?;
        self.decode(&bytes)
    }

    /// `GET /v1/vms/{vmid}/migrate`: the current (or last) migration of `vmid` on this node.
    pub async fn migrate_status(&self, vmid: u32) -> Result<MigrationStatus, NodeClientError> {
        let path = format!("v1/vms/{vmid}/migrate");
        let bytes = self
            .call(Method::GET, &path, None::<&()>, self.timeout)
            .await?;
        self.decode(&bytes)
    }

    /// `POST /v1/vms/{vmid}/migrate/cancel`: cancels an outgoing migration before its
    /// handover (the VM keeps running on this node), or discards an incoming VM that waits
    /// for its commit here.
    pub async fn migrate_cancel(&self, vmid: u32) -> Result<MigrationStatus, NodeClientError> {
        self.migrate_action(vmid, "cancel").await
    }

    /// `POST /v1/vms/{vmid}/migrate/receive`: the node starts an incoming kiln-vmm for
    /// `spec`, listening on a port of its own for the source's kiln-vmm over mutual TLS, and
    /// answers the port and the one-time token the source must present. Used by a source
    /// node agent, with its own node certificate. The node starts kiln-vmm before it answers
    /// (at least [`VM_ACTION_TIMEOUT`]).
    pub async fn migrate_receive(
        &self,
        spec: &VmSpec,
    ) -> Result<MigrateReceiveAnswer, NodeClientError> {
        let path = format!("v1/vms/{}/migrate/receive", spec.vmid);
        let bytes = self
            .call(Method::POST, &path, Some(spec), self.action_timeout())
            .await?;
        self.decode(&bytes)
    }

    /// The host part of this node's API URL (where its kiln-vmm listens for migrations).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A TCP connection with mutual TLS (HTTP/1.1 ALPN) to the node, for requests made by
    /// hand (console, migration).
    async fn connect_tls(
        &self,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, NodeClientError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| self.failure(unreachable(&e)))?;
        let _ = tcp.set_nodelay(true);
        let server_name = ServerName::try_from(self.node.to_string()).map_err(|e| {
            NodeClientError::InvalidApiUrl {
                node: self.node.clone(),
                api_url: self.api_url.clone(),
                reason: format!("node name is not a TLS server name: {e}"),
            }
        })?;
        TlsConnector::from(self.tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|e| self.failure(classify_error(&e)))
    }

    /// Timeout of VM actions: the client's own, but at least [`VM_ACTION_TIMEOUT`].
    fn action_timeout(&self) -> Duration {
        self.timeout.max(VM_ACTION_TIMEOUT)
    }

    async fn vm_action<B: Serialize>(
        &self,
        vmid: u32,
        action: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<VmRuntime, NodeClientError> {
        let path = format!("v1/vms/{vmid}/{action}");
        let bytes = self.call(Method::POST, &path, body, timeout).await?;
        self.decode(&bytes)
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, NodeClientError> {
        let bytes = self
            .call(Method::GET, path, None::<&()>, self.timeout)
            .await?;
        self.decode(&bytes)
    }

    fn decode<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, NodeClientError> {
        serde_json::from_slice(body).map_err(|e| NodeClientError::InvalidResponse {
            node: self.node.clone(),
            reason: e.to_string(),
        })
    }

    /// One request; the body of a successful answer, or the node's error.
    async fn call<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<Vec<u8>, NodeClientError> {
        let url = self
            .base_url
            .join(path)
            .map_err(|e| NodeClientError::InvalidApiUrl {
                node: self.node.clone(),
                api_url: self.api_url.clone(),
                reason: e.to_string(),
            })?;
        let send = || {
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .timeout(timeout);
            if let Some(body) = body {
                request = request.json(body);
            }
            request.send()
        };
        let response = match send().await {
            Ok(response) => response,
            // A pooled connection to an agent that has restarted since fails at once; a GET
            // is safe to send again, on a fresh connection.
            Err(e) if method == Method::GET && !e.is_timeout() => send()
                .await
                .map_err(|e| self.transport_error(&e, timeout))?,
            Err(e) => return Err(self.transport_error(&e, timeout)),
        };
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e, timeout))?;
        if !status.is_success() {
            return Err(NodeClientError::Http {
                node: self.node.clone(),
                status,
                message: ErrorBody::message_from(&body),
            });
        }
        Ok(body.to_vec())
    }

    fn transport_error(&self, err: &reqwest::Error, timeout: Duration) -> NodeClientError {
        match classify(err) {
            Failure::Timeout => NodeClientError::Timeout {
                node: self.node.clone(),
                api_url: self.api_url.clone(),
                timeout,
            },
            other => self.failure(other),
        }
    }

    fn failure(&self, failure: Failure) -> NodeClientError {
        let node = self.node.clone();
        let api_url = self.api_url.clone();
        match failure {
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
