//! The node API: an axum router served over mutual TLS by [`crate::tls_server`].
//!
//! Only callers holding a cluster certificate ever reach these handlers; the TLS layer refuses
//! everyone else. Errors answer with [`ErrorBody`] JSON.

mod console;
mod migration;
mod status;
mod vms;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use kiln_node_client::wire::{ErrorBody, NodeFacts};
use kiln_node_client::ClusterIdentity;
use tokio::sync::watch;

use crate::vms::{ImageError, Supervisor, VmError};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The latest host facts, refreshed by the sampler task.
    pub facts: watch::Receiver<NodeFacts>,
    /// The VMs of this node.
    pub vms: Supervisor,
    /// This node's cluster identity: its certificate is also a client certificate of the
    /// cluster CA, used to reach other nodes (live migration).
    pub identity: Arc<ClusterIdentity>,
}

/// The node API router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/status", get(status::status).post(status::heartbeat))
        .route("/v1/vms", get(vms::list))
        .route("/v1/vms/{vmid}", get(vms::get).delete(vms::delete))
        .route("/v1/vms/{vmid}/start", post(vms::start))
        .route("/v1/vms/{vmid}/stop", post(vms::stop))
        .route("/v1/vms/{vmid}/ha", put(vms::set_ha))
        .route("/v1/vms/{vmid}/shutdown", post(vms::shutdown))
        .route("/v1/vms/{vmid}/reboot", post(vms::reboot))
        .route("/v1/vms/{vmid}/pause", post(vms::pause))
        .route("/v1/vms/{vmid}/resume", post(vms::resume))
        .route("/v1/vms/{vmid}/console", get(console::console))
        .route("/v1/vms/{vmid}/migrate/receive", post(migration::receive))
        .route("/v1/vms/{vmid}/migrate/send", post(migration::send))
        .route("/v1/vms/{vmid}/migrate/cancel", post(migration::cancel))
        .route("/v1/vms/{vmid}/migrate/handover", post(migration::handover))
        .route("/v1/vms/{vmid}/migrate/commit", post(migration::commit))
        .route("/v1/vms/{vmid}/migrate/finish", post(migration::finish))
        .route("/v1/vms/{vmid}/migrate/takeback", post(migration::takeback))
        .route("/v1/vms/{vmid}/migrate", get(migration::status))
        .route("/v1/images", get(vms::images))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such node API endpoint: {}", uri.path()),
    )
    .into_response()
}

/// An error answer: an HTTP status and a message for a human.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl From<VmError> for ApiError {
    fn from(err: VmError) -> Self {
        let status = match &err {
            VmError::NotFound { .. } => StatusCode::NOT_FOUND,
            VmError::BadSpec(_) | VmError::Image(ImageError::InvalidName(_)) => {
                StatusCode::BAD_REQUEST
            }
            VmError::WrongState(_) => StatusCode::CONFLICT,
            VmError::Image(ImageError::Missing { .. } | ImageError::Invalid { .. })
            | VmError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            VmError::Migration { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            VmError::Image(ImageError::Io { .. })
            | VmError::StartFailed { .. }
            | VmError::Control { .. }
            | VmError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                message: self.message,
            }),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn facts() -> NodeFacts {
        NodeFacts {
            name: "n1".into(),
            api_version: 1,
            agent_version: "0.1.0".into(),
            uptime_secs: 1,
            cpus: 2,
            cpu_model: "cpu".into(),
            cpu_sockets: 1,
            cpu_flags: Vec::new(),
            cpu_usage: 0.5,
            loadavg: [0.0; 3],
            mem_total: 10,
            mem_used: 5,
            kvm: true,
            kernel: "6.1".into(),
            mem_available: 5,
            vms: Vec::new(),
            boot_id: String::new(),
        }
    }

    async fn call(uri: &str, facts: watch::Receiver<NodeFacts>) -> (StatusCode, Vec<u8>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let vms = Supervisor::open(crate::vms::SupervisorConfig {
            node: "n1".parse().expect("name"),
            vms_dir: dir.path().join("vms"),
            vmm_bin: dir.path().join("kiln-vmm"),
            images: crate::vms::ImageStore::new(dir.path().join("images")),
            host: crate::vms::HostLimits {
                memory_mib: 1024,
                cpus: 2,
            },
            cgroups: None,
            migration: crate::vms::process::MigrationNet {
                bind: std::net::Ipv4Addr::LOCALHOST.into(),
                ports: crate::vms::process::PortRange { low: 0, high: 0 },
                tls: kiln_vmm::protocol::TlsFiles {
                    ca: dir.path().join("ca.crt"),
                    cert: dir.path().join("node.crt"),
                    key: dir.path().join("node.key"),
                },
            },
        })
        .await
        .expect("supervisor");
        let identity = Arc::new(ClusterIdentity {
            ca_pem: String::new(),
            cert_pem: String::new(),
            key_pem: String::new(),
        });
        let response = router(AppState {
            facts,
            vms,
            identity,
        })
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, body.to_vec())
    }

    #[tokio::test]
    async fn status_answers_the_latest_sampled_facts() {
        let (tx, rx) = watch::channel(facts());
        let mut newer = facts();
        newer.uptime_secs = 99;
        tx.send_replace(newer.clone());
        let (status, body) = call("/v1/status", rx).await;
        assert_eq!(status, StatusCode::OK);
        let got: NodeFacts = serde_json::from_slice(&body).expect("NodeFacts JSON");
        assert_eq!(got, newer);
    }

    #[tokio::test]
    async fn vm_errors_answer_with_their_status_and_message() {
        let (_tx, rx) = watch::channel(facts());
        let (status, body) = call("/v1/vms/101", rx.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(ErrorBody::message_from(&body), "no VM 101 on node n1");
        let (status, body) = call("/v1/vms/abc", rx.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(ErrorBody::message_from(&body).contains("not a number"));
        let (status, body) = call("/v1/images", rx).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"[]");
    }

    #[tokio::test]
    async fn unknown_endpoints_answer_404_with_a_message() {
        let (_tx, rx) = watch::channel(facts());
        let (status, body) = call("/v1/nope", rx).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            ErrorBody::message_from(&body),
            "no such node API endpoint: /v1/nope"
        );
    }
}
