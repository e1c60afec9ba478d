//! [`NodeRegistry`]: per-node runtime state kept in memory (facts, last heartbeat).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use kiln_api_types::NodeState;
use std::sync::atomic::{AtomicU64, Ordering};

use kiln_node_client::wire::{
    HeartbeatAnswer, LeaseGrant, LeaseState, NodeFacts, VmPowerState, VmRuntime,
};
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
    /// Id of the newest lease grant whose answer arrived (confirmed with the next heartbeat).
    answered_grant: Option<u64>,
    /// The node's lease as it reported it in its latest answer.
    pub lease: Option<LeaseState>,
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
    leases: LeasePolicy,
    /// When this server process started: a node may hold a lease granted by the previous
    /// process until this + lease.
    started: Instant,
    /// Lease grant ids: random start per process, so a node never mistakes an old grant.
    next_grant: AtomicU64,
}

/// Lease timings of the cluster.
#[derive(Debug, Clone, Copy)]
pub struct LeasePolicy {
    /// Lease granted with each heartbeat.
    pub lease: Duration,
    /// Safety margin on top of the lease before the server treats a lease as surely expired
    /// (covers clock-rate differences and scheduling delays on the node).
    pub margin: Duration,
}

impl NodeRegistry {
    /// A registry that marks nodes offline after `timeout` of silence and grants `leases`.
    pub fn new(timeout: Duration, leases: LeasePolicy) -> Self {
        NodeRegistry {
            nodes: RwLock::default(),
            timeout,
            leases,
            started: Instant::now(),
            next_grant: AtomicU64::new(rand::random::<u64>() >> 1),
        }
    }

    /// The lease timings.
    pub fn lease_policy(&self) -> LeasePolicy {
        self.leases
    }

    /// The lease part of the next heartbeat to `node`: a fresh grant, confirming the newest
    /// one whose answer arrived.
    pub fn next_grant(&self, node: &str) -> LeaseGrant {
        let confirmed = self
            .nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .and_then(|rt| rt.answered_grant);
        LeaseGrant {
            id: self.next_grant.fetch_add(1, Ordering::Relaxed),
            lease_ms: self.leases.lease.as_millis() as u64,
            confirmed,
        }
    }

    /// When `node`'s lease has surely run out, on this server's clock: the node extends its
    /// lease only from grants whose answers arrived here (the latest at `last_seen`), or from
    /// a previous server process (before `started`); plus the lease, plus the margin.
    pub fn lease_surely_expired_at(&self, node: &str) -> Instant {
        let base = self
            .get(node)
            .last_seen
            .map_or(self.started, |seen| seen.max(self.started));
        base + self.leases.lease + self.leases.margin
    }

    /// Whether `node`'s lease has surely run out now (so its HA VMs have fenced themselves).
    pub fn lease_surely_expired(&self, node: &str) -> bool {
        Instant::now() >= self.lease_surely_expired_at(node)
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

    /// The answer to lease grant `grant` arrived from `node` with its facts and lease.
    pub fn record_answer(&self, node: &str, grant: u64, answer: HeartbeatAnswer) {
        let mut nodes = self.write();
        let rt = nodes.entry(node.to_owned()).or_default();
        rt.facts = Some(answer.facts);
        // Taken after the answer arrived: later than the arrival, so on the safe side.
        rt.last_seen = Some(Instant::now());
        rt.last_error = None;
        rt.answered_grant = Some(grant);
        rt.lease = Some(answer.lease);
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

    /// The boot id every online node last reported.
    pub fn boot_ids(&self) -> Vec<(String, String)> {
        let timeout = self.timeout();
        self.nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, rt)| rt.state(timeout) == NodeState::Online)
            .filter_map(|(name, rt)| Some((name.clone(), rt.facts.as_ref()?.boot_id.clone())))
            .collect()
    }

    /// Whether any online node reports a copy of VM `vmid` waiting at a migration handover
    /// (cheap: no copies made).
    pub fn handover_pending(&self, vmid: u32) -> bool {
        let timeout = self.timeout();
        self.nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|rt| rt.state(timeout) == NodeState::Online)
            .filter_map(|rt| rt.facts.as_ref())
            .any(|f| f.vms.iter().any(|v| v.vmid == vmid && v.handover.is_some()))
    }

    /// `(node, vmid)` of every copy of a VM that an online node reports waiting at a
    /// migration handover.
    pub fn handover_copies(&self) -> Vec<(String, u32)> {
        let timeout = self.timeout();
        self.nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, rt)| rt.state(timeout) == NodeState::Online)
            .filter_map(|(name, rt)| Some((name, rt.facts.as_ref()?)))
            .flat_map(|(name, f)| {
                f.vms
                    .iter()
                    .filter(|v| v.handover.is_some())
                    .map(move |v| (name.clone(), v.vmid))
            })
            .collect()
    }

    /// What every known node reports of VM `vmid`: `None` for a node that is not online
    /// (nothing known), `Some(None)` for an online node without it.
    pub fn reports_of(&self, vmid: u32) -> Vec<(String, Option<Option<VmRuntime>>)> {
        let timeout = self.timeout();
        let mut out: Vec<_> = self
            .nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, rt)| {
                let report = (rt.state(timeout) == NodeState::Online).then(|| {
                    rt.facts
                        .as_ref()
                        .and_then(|f| f.vms.iter().find(|v| v.vmid == vmid).cloned())
                });
                (name.clone(), report)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
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

    fn policy() -> LeasePolicy {
        LeasePolicy {
            lease: Duration::from_millis(300),
            margin: Duration::from_millis(100),
        }
    }

    #[test]
    fn grants_confirm_the_newest_answered_one_and_expiry_counts_from_the_answer() {
        let r = NodeRegistry::new(Duration::from_secs(5), policy());
        let first = r.next_grant("n1");
        assert_eq!(first.confirmed, None);
        assert_eq!(first.lease_ms, 300);
        let second = r.next_grant("n1");
        assert_ne!(first.id, second.id);
        assert_eq!(second.confirmed, None, "no answer yet");
        r.record_answer(
            "n1",
            first.id,
            HeartbeatAnswer {
                facts: facts(),
                lease: LeaseState::default(),
            },
        );
        assert_eq!(r.next_grant("n1").confirmed, Some(first.id));
        let seen = r.get("n1").last_seen.expect("seen");
        assert_eq!(
            r.lease_surely_expired_at("n1"),
            seen + Duration::from_millis(400)
        );
        assert!(!r.lease_surely_expired("n1"));
        std::thread::sleep(Duration::from_millis(420));
        assert!(r.lease_surely_expired("n1"));
    }

    #[test]
    fn a_node_never_heard_from_may_hold_a_lease_of_the_previous_server_process() {
        let r = NodeRegistry::new(Duration::from_secs(5), policy());
        assert!(
            !r.lease_surely_expired("n9"),
            "the old process may have granted one"
        );
        std::thread::sleep(Duration::from_millis(420));
        assert!(r.lease_surely_expired("n9"));
    }

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
            boot_id: "b1".into(),
        }
    }

    #[test]
    fn a_node_goes_offline_after_the_timeout_and_back_online() {
        let r = NodeRegistry::new(Duration::from_millis(40), policy());
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
    fn handover_copies_are_those_online_nodes_report_waiting() {
        use kiln_node_client::wire::{Handover, VmPowerState};
        let vm = |vmid, handover| VmRuntime {
            vmid,
            name: format!("vm{vmid}"),
            state: VmPowerState::Paused,
            pid: Some(1),
            uptime_secs: 0,
            vcpus: 1,
            cpu_usage: 0.0,
            memory_bytes: 1,
            rss_bytes: 1,
            stop_reason: None,
            crashed: false,
            ha: true,
            fenced: false,
            handover,
        };
        let r = NodeRegistry::new(Duration::from_millis(40), policy());
        let mut f = facts();
        f.vms = vec![vm(100, Some(Handover::HandedOver)), vm(101, None)];
        r.record_heartbeat("n1", f);
        assert_eq!(r.handover_copies(), vec![("n1".to_string(), 100)]);
        assert!(r.handover_pending(100));
        assert!(!r.handover_pending(101));
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            r.handover_copies().is_empty(),
            "offline nodes are not counted"
        );
    }

    #[test]
    fn a_node_never_reached_is_offline_not_unknown() {
        let r = NodeRegistry::new(Duration::from_secs(5), policy());
        r.record_failure("n2", "refused".into());
        assert_eq!(r.get("n2").state(r.timeout()), NodeState::Offline);
    }
}
