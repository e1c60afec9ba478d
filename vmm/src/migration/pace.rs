//! Pacing an outgoing migration: the `bwlimit` cap and auto-converge, which holds the
//! vCPUs for a share of every period when dirty rounds stop shrinking.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::vm::VmShared;

/// Auto-converge: the vCPUs run for this slice, then are held for
/// `slice × throttle / (100 − throttle)` (as QEMU does: at 99 % they run 10 ms a second).
/// A long hold matters: a guest whose work follows its timer (like the test guest's
/// `dirty`) is only slowed when whole timer periods pass without it running.
const THROTTLE_RUN_SLICE: Duration = Duration::from_millis(10);

/// `bwlimit`: sleeps so that the bytes sent never run ahead of the cap.
pub(super) struct RateLimiter {
    bytes_per_s: Option<f64>,
    start: Instant,
    sent: u64,
}

impl RateLimiter {
    pub(super) fn new(mib_s: Option<u64>) -> Self {
        RateLimiter {
            bytes_per_s: mib_s.filter(|m| *m > 0).map(|m| (m << 20) as f64),
            start: Instant::now(),
            sent: 0,
        }
    }

    pub(super) fn account(&mut self, bytes: u64) {
        let Some(rate) = self.bytes_per_s else {
            return;
        };
        self.sent += bytes;
        let due = Duration::from_secs_f64(self.sent as f64 / rate);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}

/// Auto-converge: a thread that holds the vCPUs for `percent` of every period.
pub(super) struct Throttle {
    percent: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    handle: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    vm: Arc<VmShared>,
}

impl Throttle {
    pub(super) fn start(vm: Arc<VmShared>) -> Throttle {
        let percent = Arc::new(AtomicU8::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s, v) = (percent.clone(), stop.clone(), vm.clone());
        let handle = std::thread::Builder::new()
            .name("migrate-throttle".into())
            .spawn(move || {
                while !s.load(Ordering::SeqCst) {
                    let pct = u32::from(p.load(Ordering::SeqCst));
                    // park_timeout, not sleep: `stop_now` unparks, so ending the thread never
                    // waits out a sleep (it runs inside the stop-and-copy's pause).
                    if pct == 0 {
                        std::thread::park_timeout(Duration::from_millis(10));
                        continue;
                    }
                    v.set_throttle(true);
                    let hold = THROTTLE_RUN_SLICE * pct / (100 - pct).max(1);
                    // Held for `hold`; a stop unparks at once.
                    let until = Instant::now() + hold;
                    while Instant::now() < until && !s.load(Ordering::SeqCst) {
                        std::thread::park_timeout(until - Instant::now());
                    }
                    v.set_throttle(false);
                    let run_until = Instant::now() + THROTTLE_RUN_SLICE;
                    while Instant::now() < run_until && !s.load(Ordering::SeqCst) {
                        std::thread::park_timeout(run_until - Instant::now());
                    }
                }
                v.set_throttle(false);
            })
            .ok();
        Throttle {
            percent,
            stop,
            handle: std::sync::Mutex::new(handle),
            vm,
        }
    }

    pub(super) fn percent(&self) -> u8 {
        self.percent.load(Ordering::SeqCst)
    }

    pub(super) fn set(&self, percent: u8) {
        self.percent.store(percent, Ordering::SeqCst);
    }

    /// End the thread and release the vCPUs.
    pub(super) fn stop_now(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            h.thread().unpark();
            let _ = h.join();
        }
        self.vm.set_throttle(false);
    }

    pub(super) fn stop(self) {
        self.stop_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_holds_the_cap() {
        let mut l = RateLimiter::new(Some(100));
        let t = Instant::now();
        for _ in 0..10 {
            l.account(1 << 20);
        }
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(95), "{took:?}");
    }
}
