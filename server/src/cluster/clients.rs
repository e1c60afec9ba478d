//! [`NodeClients`]: one cached mTLS client per node and purpose, rebuilt when a node's URL
//! changes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kiln_node_client::{ClusterIdentity, NodeClient, NodeName};

use crate::db::NodeRecord;

/// What a client is for; each purpose has its own request timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Heartbeats: must answer within the heartbeat period.
    Heartbeat,
    /// VM lifecycle calls (start, shutdown...): may take a while.
    Operation,
}

/// Cache of node clients.
#[derive(Debug)]
pub struct NodeClients {
    identity: ClusterIdentity,
    heartbeat_timeout: Duration,
    clients: Mutex<HashMap<(String, Purpose), (String, NodeClient)>>,
}

/// How long a VM operation on a node may take.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(90);

impl NodeClients {
    /// Clients presenting `identity`.
    pub fn new(identity: ClusterIdentity, heartbeat_timeout: Duration) -> Self {
        NodeClients {
            identity,
            heartbeat_timeout,
            clients: Mutex::default(),
        }
    }

    /// The client for `node` and `purpose`.
    pub fn get(&self, node: &NodeRecord, purpose: Purpose) -> Result<NodeClient, String> {
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let key = (node.name.clone(), purpose);
        if let Some((url, client)) = map.get(&key) {
            if *url == node.api_url {
                return Ok(client.clone());
            }
        }
        let name: NodeName = node.name.parse().map_err(|e| format!("{e}"))?;
        let timeout = match purpose {
            Purpose::Heartbeat => self.heartbeat_timeout,
            Purpose::Operation => OPERATION_TIMEOUT,
        };
        let client = NodeClient::new(&self.identity, name, &node.api_url, timeout)
            .map_err(|e| e.to_string())?;
        map.insert(key, (node.api_url.clone(), client.clone()));
        Ok(client)
    }
}
