//! The HA lease watchdog: a VM managed by high availability may only run while its node holds
//! a lease from the cluster. The node agent hands the lease deadline down as an absolute
//! `CLOCK_MONOTONIC` time (same host, same clock) at start (`--lease-deadline-ns`) and with
//! every renewal (`lease` on the control socket). When the deadline passes without renewal the
//! watchdog pauses the vCPUs and stops the VM with [`StopReason::LeaseExpired`], so a frozen or
//! cut-off agent cannot keep the VM running while the cluster recovers it elsewhere.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::state::{StopReason, VmState};
use crate::vm::VmShared;

/// How often the watchdog looks at the VM while no lease is armed (to notice the VM's end).
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Now on `CLOCK_MONOTONIC`, in nanoseconds (the clock `std::time::Instant` uses on Linux).
pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// The lease deadline of this VM, shared by the control socket (renewals) and the watchdog.
#[derive(Debug, Default)]
pub struct Lease {
    deadline_ns: Mutex<Option<u64>>,
    changed: Condvar,
}

impl Lease {
    /// A lease armed with `deadline_ns` (absolute `CLOCK_MONOTONIC`), or disarmed with `None`
    /// (a VM not managed by HA).
    pub fn new(deadline_ns: Option<u64>) -> Arc<Lease> {
        Arc::new(Lease {
            deadline_ns: Mutex::new(deadline_ns),
            changed: Condvar::new(),
        })
    }

    /// Renew (or disarm, with `None`) the lease. A deadline already in the past fences at once.
    pub fn set(&self, deadline_ns: Option<u64>) {
        *self.lock() = deadline_ns;
        self.changed.notify_all();
    }

    /// The current deadline.
    pub fn deadline_ns(&self) -> Option<u64> {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.deadline_ns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start the watchdog thread for `vm`; it ends when the VM stops.
    pub fn watch(self: &Arc<Self>, vm: Arc<VmShared>) -> std::io::Result<()> {
        let lease = self.clone();
        std::thread::Builder::new()
            .name("lease-watchdog".into())
            .spawn(move || lease.run(&vm))?;
        Ok(())
    }

    fn run(&self, vm: &VmShared) {
        let mut guard = self.lock();
        loop {
            if vm.status().state == VmState::Stopped {
                return;
            }
            let wait = match *guard {
                None => IDLE_POLL,
                Some(deadline) => {
                    let now = monotonic_now_ns();
                    if now >= deadline {
                        drop(guard);
                        fence(vm, now - deadline);
                        return;
                    }
                    Duration::from_nanos(deadline - now).min(IDLE_POLL)
                }
            };
            guard = self
                .changed
                .wait_timeout(guard, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Stop the guest because the lease ran out: hold the vCPUs first (so no guest instruction
/// runs past this point), then end the VM with its reason.
fn fence(vm: &VmShared, overdue_ns: u64) {
    let _ = vm.pause();
    vm.stop(StopReason::LeaseExpired {
        overdue_ms: overdue_ns / 1_000_000,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_moves_forward() {
        let a = monotonic_now_ns();
        std::thread::sleep(Duration::from_millis(2));
        let b = monotonic_now_ns();
        assert!(b >= a + 1_000_000, "{a} → {b}");
    }

    #[test]
    fn a_renewal_replaces_the_deadline_and_none_disarms() {
        let lease = Lease::new(Some(5));
        assert_eq!(lease.deadline_ns(), Some(5));
        lease.set(Some(10));
        assert_eq!(lease.deadline_ns(), Some(10));
        lease.set(None);
        assert_eq!(lease.deadline_ns(), None);
    }
}
