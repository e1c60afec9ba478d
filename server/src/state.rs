//! [`AppState`]: what every handler can reach.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use crate::auth::ratelimit::LoginLimiter;
use crate::auth::session::SessionPolicy;
use crate::cluster::{ChangeSignal, NodeClients, NodeRegistry};
use crate::db::Db;
use crate::pki::ClusterCa;
use crate::tasks::TaskManager;

/// Shared server state (cheap to clone).
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

/// The fields of [`AppState`].
pub struct Inner {
    /// Database.
    pub db: Db,
    /// Users, groups, roles, ACL, API tokens and pools: the snapshot every check reads.
    pub access: crate::access::AccessStore,
    /// Cluster CA (signs node certificates).
    pub ca: ClusterCa,
    /// Clients for the node API (mutual TLS with the server's cluster identity).
    pub clients: NodeClients,
    /// VM operations in progress (one at a time per VM).
    pub vm_locks: crate::vms::VmLocks,
    /// Lab operations in progress (one at a time per lab).
    pub lab_locks: crate::labs::LabLocks,
    /// Memory of the VM reconcile loop.
    pub reconciler: crate::vms::reconcile::Reconciler,
    /// The HA manager's memory between rounds.
    pub ha: crate::ha::manager::HaManager,
    /// Serialises placement decisions (check capacity, then start).
    pub placement: tokio::sync::Mutex<()>,
    /// Assignable memory per node, as a multiple of its RAM (1.0 = no overcommit).
    pub memory_overcommit: f64,
    /// Live node state.
    pub nodes: NodeRegistry,
    /// Change signal for the UI event stream.
    pub changes: Arc<ChangeSignal>,
    /// Task manager.
    pub tasks: TaskManager,
    /// Logins waiting for their second factor.
    pub tfa_challenges: crate::access::tfa::Challenges,
    /// Failed-login throttling.
    pub login_limiter: LoginLimiter,
    /// Delay before answering a failed login.
    pub login_failure_delay: Duration,
    /// Session lifetimes.
    pub session_policy: SessionPolicy,
    /// The session store (long-lived streams re-check their session in it).
    pub sessions: tower_sessions_sqlx_store::SqliteStore,
    /// Cluster name.
    pub cluster_name: String,
    /// Leptos site options.
    pub leptos: LeptosOptions,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

impl AppState {
    /// The node API client for VM operations on `node` (as the cluster records it).
    pub async fn node_client(&self, node: &str) -> Result<kiln_node_client::NodeClient, String> {
        let rec = self
            .db
            .node(node)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("node {node} is no longer part of the cluster"))?;
        self.clients.operation(&rec)
    }
}
