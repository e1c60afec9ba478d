//! [`NodeClients`]: one cached mTLS client (and connection pool) per node, rebuilt when a
//! node's URL changes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kiln_node_client::{ClusterIdentity, NodeClient, NodeName};

use crate::db::NodeRecord;

/// How long a plain call made for a VM operation (image list, console connect) may take.
/// Lifecycle calls (start, shutdown...) set their own, longer timeouts in `NodeClient`.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Cache of node clients.
#[derive(Debug)]
pub struct NodeClients {
    identity: ClusterIdentity,
    heartbeat_timeout: Duration,
    clients: Mutex<HashMap<String, (String, NodeClient)>>,
}

impl NodeClients {
    /// Clients presenting `identity`; plain calls time out after `heartbeat_timeout`.
    pub fn new(identity: ClusterIdentity, heartbeat_timeout: Duration) -> Self {
        NodeClients {
            identity,
            heartbeat_timeout,
            clients: Mutex::default(),
        }
    }

    /// The client for heartbeats to `node` (timeout within the heartbeat period).
    pub fn heartbeat(&self, node: &NodeRecord) -> Result<NodeClient, String> {
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((url, client)) = map.get(&node.name) {
            if *url == node.api_url {
                return Ok(client.clone());
            }
        }
        let name: NodeName = node.name.parse().map_err(|e| format!("{e}"))?;
        let client = NodeClient::new(&self.identity, name, &node.api_url, self.heartbeat_timeout)
            .map_err(|e| e.to_string())?;
        map.insert(node.name.clone(), (node.api_url.clone(), client.clone()));
        Ok(client)
    }

    /// The same client (same connections) with the timeout of VM operations.
    pub fn operation(&self, node: &NodeRecord) -> Result<NodeClient, String> {
        Ok(self.heartbeat(node)?.with_timeout(OPERATION_TIMEOUT))
    }
}
