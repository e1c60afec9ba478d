//! [`NodeLease`]: this node's HA lease, renewed by the server's heartbeat.
//!
//! Every heartbeat offers a grant; the node notes when it arrived (its own monotonic clock).
//! A later heartbeat confirms a grant whose answer reached the server, and only then does the
//! node extend its lease: deadline = arrival of the confirmed grant + its lease. A grant that
//! arrives late (a frozen agent reading an old request, a delayed packet) therefore never
//! pushes the deadline past what the server can bound on its own clock. See
//! `kiln_node_client::wire::HeartbeatRequest`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_node_client::wire::LeaseGrant;

/// Offered grants remembered while waiting for their confirmation (a few heartbeats' worth).
const PENDING_GRANTS: usize = 16;

/// The node's lease.
#[derive(Debug, Default)]
pub struct NodeLease {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Offered grants: id, when it arrived, its lease.
    pending: VecDeque<(u64, Instant, Duration)>,
    deadline: Option<Instant>,
}

impl NodeLease {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A heartbeat arrived (now) carrying `grant`. Returns true if the deadline moved.
    pub fn on_grant(&self, grant: LeaseGrant) -> bool {
        self.on_grant_at(grant, Instant::now())
    }

    fn on_grant_at(&self, grant: LeaseGrant, now: Instant) -> bool {
        let mut state = self.lock();
        let mut moved = false;
        if let Some(confirmed) = grant.confirmed {
            if let Some(pos) = state.pending.iter().position(|(id, ..)| *id == confirmed) {
                let (_, arrived, lease) = state.pending[pos];
                let deadline = arrived + lease;
                if state.deadline.is_none_or(|d| deadline > d) {
                    state.deadline = Some(deadline);
                    moved = true;
                }
                // Older grants can only give earlier deadlines now.
                state.pending.drain(..=pos);
            }
        }
        state
            .pending
            .push_back((grant.id, now, Duration::from_millis(grant.lease_ms)));
        while state.pending.len() > PENDING_GRANTS {
            state.pending.pop_front();
        }
        moved
    }

    /// The deadline, if the node ever held a lease.
    pub fn deadline(&self) -> Option<Instant> {
        self.lock().deadline
    }

    /// Time left on the lease (`None`: no lease; zero: it ran out).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the lease is valid now.
    pub fn is_valid(&self) -> bool {
        self.remaining().is_some_and(|r| !r.is_zero())
    }

    /// The deadline as an absolute `CLOCK_MONOTONIC` time in nanoseconds, for kiln-vmm on this
    /// host (`std::time::Instant` is `CLOCK_MONOTONIC` on Linux, but does not expose it).
    pub fn deadline_monotonic_ns(&self) -> Option<u64> {
        let deadline = self.deadline()?;
        let (now, now_ns) = (Instant::now(), kiln_vmm::lease::monotonic_now_ns());
        Some(match deadline.checked_duration_since(now) {
            Some(ahead) => now_ns + ahead.as_nanos() as u64,
            None => now_ns.saturating_sub(now.duration_since(deadline).as_nanos() as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: u64, confirmed: Option<u64>) -> LeaseGrant {
        LeaseGrant {
            id,
            lease_ms: 8000,
            confirmed,
        }
    }

    #[test]
    fn only_a_confirmed_grant_extends_the_lease_from_its_own_arrival() {
        let lease = NodeLease::default();
        let t0 = Instant::now();
        assert!(!lease.on_grant_at(grant(1, None), t0));
        assert_eq!(lease.deadline(), None, "an unconfirmed grant gives nothing");
        let t1 = t0 + Duration::from_secs(1);
        assert!(lease.on_grant_at(grant(2, Some(1)), t1));
        assert_eq!(lease.deadline(), Some(t0 + Duration::from_secs(8)));
        let t2 = t1 + Duration::from_secs(1);
        assert!(lease.on_grant_at(grant(3, Some(2)), t2));
        assert_eq!(lease.deadline(), Some(t1 + Duration::from_secs(8)));
    }

    #[test]
    fn a_stale_or_unknown_confirmation_never_extends_the_lease() {
        let lease = NodeLease::default();
        let t0 = Instant::now();
        lease.on_grant_at(grant(1, None), t0);
        lease.on_grant_at(grant(2, Some(1)), t0 + Duration::from_secs(1));
        let before = lease.deadline();
        // A grant from before (already consumed) or from another server process.
        assert!(!lease.on_grant_at(grant(3, Some(1)), t0 + Duration::from_secs(30)));
        assert!(!lease.on_grant_at(grant(4, Some(999)), t0 + Duration::from_secs(31)));
        assert_eq!(lease.deadline(), before);
    }

    #[test]
    fn the_monotonic_deadline_matches_the_instant() {
        let lease = NodeLease::default();
        let now = Instant::now();
        lease.on_grant_at(grant(1, None), now);
        lease.on_grant_at(grant(2, Some(1)), now);
        let ns = lease.deadline_monotonic_ns().expect("deadline");
        let expected = kiln_vmm::lease::monotonic_now_ns() + 8_000_000_000;
        assert!(ns.abs_diff(expected) < 50_000_000, "{ns} vs {expected}");
        assert!(lease.is_valid());
    }
}
