//! [`NodeRegistry`]: per-node runtime state kept in memory (facts, last heartbeat).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use kiln_api_types::NodeState;
use kiln_node_client::wire::{NodeFacts, VmPowerState, VmRuntime};
use tokio::sync::watch;

/// A counter bumped whenever something the UI shows changes.
#[derive(Debug)]
pub struct ChangeSignal(watch::Sender<u64>);

impl Default for ChangeSignal {
    fn default() -> Self {
        ChangeSignal(watch::channel(0).0)
    }
}

impl ChangeSignal {
    /// Tell every listener that something changed.
    pub fn notify(&self) {
        self.0.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Listen for changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// What the server knows of one node right now.
#[derive(Debug, Clone, Default)]
pub struct NodeRuntime {
    /// Facts of the latest successful heartbeat.
    pub facts: Option<NodeFacts>,
    /// When the latest successful heartbeat arrived.
    pub last_seen: Option<Instant>,
    /// Why the latest heartbeat failed, if it did.
    pub last_error: Option<String>,
    /// The state last announced (for detecting transitions).
    announced: Option<NodeState>,
}

impl NodeRuntime {
    /// Online, offline or unknown, given the offline timeout.
    pub fn state(&self, timeout: Duration) -> NodeState {
        match self.last_seen {
            Some(t) if t.elapsed() < timeout => NodeState::Online,
            Some(_) => NodeState::Offline,
            None if self.last_error.is_some() => NodeState::Offline,
            None => NodeState::Unknown,
        }
    }
}

/// Runtime state of all nodes.
#[derive(Debug)]
pub struct NodeRegistry {
    nodes: RwLock<HashMap<String, NodeRuntime>>,
    timeout: Duration,
}

impl NodeRegistry {
    /// A registry that marks nodes offline after `timeout` of silence.
    pub fn new(timeout: Duration) -> Self {
        NodeRegistry {
            nodes: RwLock::default(),
            timeout,
        }
    }

    /// The offline timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, NodeRuntime>> {
        self.nodes.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A heartbeat from `node` answered with `facts`.
    pub fn record_heartbeat(&self, node: &str, facts: NodeFacts) {
        let mut nodes = self.write();
        let rt = nodes.entry(node.to_owned()).or_default();
        rt.facts = Some(facts);
        rt.last_seen = Some(Instant::now());
        rt.last_error = None;
    }

    /// A VM operation on `node` answered with the VM's new runtime state: record it at once,
    /// so the cluster view does not wait for the next heartbeat. `None` forgets the VM.
    pub fn record_vm(&self, node: &str, vmid: u32, runtime: Option<VmRuntime>) {
        let mut nodes = self.write();
        let Some(facts) = nodes.get_mut(node).and_then(|rt| rt.facts.as_mut()) else {
            return;
        };
        facts.vms.retain(|v| v.vmid != vmid);
        facts.vms.extend(runtime);
    }

    /// A heartbeat to `node` failed.
    pub fn record_failure(&self, node: &str, error: String) {
        let mut nodes = self.write();
        nodes.entry(node.to_owned()).or_default().last_error = Some(error);
    }

    /// Nodes whose state changed since the last call, with old and new state; announces them.
    pub fn take_transitions(&self) -> Vec<(String, Option<NodeState>, NodeState, Option<String>)> {
        let mut nodes = self.write();
        let mut out = Vec::new();
        for (name, rt) in nodes.iter_mut() {
            let now = rt.state(self.timeout);
            if rt.announced != Some(now) {
                out.push((name.clone(), rt.announced, now, rt.last_error.clone()));
                rt.announced = Some(now);
            }
        }
        out
    }

    /// Forget nodes not in `keep` (removed from the cluster).
    pub fn retain(&self, keep: &[String]) {
        self.write().retain(|name, _| keep.contains(name));
    }

    /// Online nodes whose last heartbeat reports VM `vmid` running or paused.
    pub fn online_nodes_running(&self, vmid: u32) -> Vec<String> {
        let timeout = self.timeout();
        self.nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, rt)| rt.state(timeout) == NodeState::Online)
            .filter(|(_, rt)| {
                rt.facts.as_ref().is_some_and(|f| {
                    f.vms
                        .iter()
                        .any(|v| v.vmid == vmid && v.state != VmPowerState::Stopped)
                })
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// A copy of one node's runtime state.
    pub fn get(&self, node: &str) -> NodeRuntime {
        self.nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            mem_total: 100,
            mem_used: 50,
            kvm: true,
            kernel: "6".into(),
            mem_available: 50,
            vms: Vec::new(),
        }
    }

    #[test]
    fn a_node_goes_offline_after_the_timeout_and_back_online() {
        let r = NodeRegistry::new(Duration::from_millis(40));
        assert_eq!(r.get("n1").state(r.timeout()), NodeState::Unknown);
        r.record_heartbeat("n1", facts());
        assert_eq!(r.get("n1").state(r.timeout()), NodeState::Online);
        let t = r.take_transitions();
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].1, t[0].2), (None, NodeState::Online));
        assert!(r.take_transitions().is_empty(), "announced once");
        std::thread::sleep(Duration::from_millis(50));
        r.record_failure("n1", "connection refused".into());
        assert_eq!(r.get("n1").state(r.timeout()), NodeState::Offline);
        let t = r.take_transitions();
        assert_eq!(
            (t[0].1, t[0].2),
            (Some(NodeState::Online), NodeState::Offline)
        );
        assert_eq!(t[0].3.as_deref(), Some("connection refused"));
        r.record_heartbeat("n1", facts());
        assert_eq!(r.take_transitions()[0].2, NodeState::Online);
    }

    #[test]
    fn a_node_never_reached_is_offline_not_unknown() {
        let r = NodeRegistry::new(Duration::from_secs(5));
        r.record_failure("n2", "refused".into());
        assert_eq!(r.get("n2").state(r.timeout()), NodeState::Offline);
    }
}
