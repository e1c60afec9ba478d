//! Failed-login rate limiting, per user and per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits for [`LoginLimiter`].
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Failures allowed per user within `window`.
    pub per_user: usize,
    /// Failures allowed per client address within `window`.
    pub per_address: usize,
    /// The sliding window.
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_user: 5,
            per_address: 20,
            window: Duration::from_secs(300),
        }
    }
}

/// Why a login attempt is refused before its password is even checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Throttled {
    /// Too many failures for this user.
    #[error("too many failed logins for this user; try again in {0} s")]
    User(u64),
    /// Too many failures from this address.
    #[error("too many failed logins from your address; try again in {0} s")]
    Address(u64),
}

impl Throttled {
    /// Seconds until the next attempt may succeed.
    pub fn retry_after(&self) -> u64 {
        match self {
            Throttled::User(s) | Throttled::Address(s) => *s,
        }
    }
}

/// Sliding-window counters of failed logins. Memory is bounded by pruning old entries.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    limits: LoginLimits,
    failures: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    by_user: HashMap<String, Vec<Instant>>,
    by_address: HashMap<IpAddr, Vec<Instant>>,
}

fn prune<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Vec<Instant>>,
    now: Instant,
    window: Duration,
) {
    map.retain(|_, times| {
        times.retain(|t| now.duration_since(*t) < window);
        !times.is_empty()
    });
}

fn retry_after(times: &[Instant], limit: usize, now: Instant, window: Duration) -> Option<u64> {
    if times.len() < limit {
        return None;
    }
    // The attempt becomes possible when the oldest failure that keeps us at the limit expires.
    let oldest = times[times.len() - limit];
    Some(
        (window.saturating_sub(now.duration_since(oldest)))
            .as_secs()
            .max(1),
    )
}

impl LoginLimiter {
    /// A limiter with the given limits.
    pub fn new(limits: LoginLimits) -> Self {
        LoginLimiter {
            limits,
            failures: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Failures> {
        // A panic while holding the lock cannot leave the counters inconsistent.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuse the attempt if `user` or `address` is over its limit.
    pub fn check(&self, user: &str, address: IpAddr) -> Result<(), Throttled> {
        let now = Instant::now();
        let mut f = self.lock();
        let w = self.limits.window;
        prune(&mut f.by_user, now, w);
        prune(&mut f.by_address, now, w);
        if let Some(s) = f
            .by_user
            .get(user)
            .and_then(|t| retry_after(t, self.limits.per_user, now, w))
        {
            return Err(Throttled::User(s));
        }
        if let Some(s) = f
            .by_address
            .get(&address)
            .and_then(|t| retry_after(t, self.limits.per_address, now, w))
        {
            return Err(Throttled::Address(s));
        }
        Ok(())
    }

    /// Count a failed attempt.
    pub fn record_failure(&self, user: &str, address: IpAddr) {
        let now = Instant::now();
        let mut f = self.lock();
        f.by_user.entry(user.to_owned()).or_default().push(now);
        f.by_address.entry(address).or_default().push(now);
    }

    /// A successful login clears the user's failures (not the address's).
    pub fn record_success(&self, user: &str) {
        self.lock().by_user.remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn limiter() -> LoginLimiter {
        LoginLimiter::new(LoginLimits {
            per_user: 3,
            per_address: 5,
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn throttles_a_user_after_repeated_failures() {
        let l = limiter();
        for _ in 0..3 {
            assert_eq!(l.check("root@kiln", IP), Ok(()));
            l.record_failure("root@kiln", IP);
        }
        let err = l.check("root@kiln", IP).unwrap_err();
        assert!(matches!(err, Throttled::User(s) if (1..=60).contains(&s)));
        // Another user from the same address is still allowed (address limit is 5).
        assert_eq!(l.check("alice@kiln", IP), Ok(()));
    }

    #[test]
    fn throttles_an_address_trying_many_users() {
        let l = limiter();
        for i in 0..5 {
            l.record_failure(&format!("u{i}@kiln"), IP);
        }
        assert!(matches!(
            l.check("new@kiln", IP),
            Err(Throttled::Address(_))
        ));
        let other = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(l.check("new@kiln", other), Ok(()));
    }

    #[test]
    fn success_clears_the_user_counter() {
        let l = limiter();
        l.record_failure("root@kiln", IP);
        l.record_failure("root@kiln", IP);
        l.record_success("root@kiln");
        l.record_failure("root@kiln", IP);
        assert_eq!(l.check("root@kiln", IP), Ok(()));
    }

    #[test]
    fn failures_expire_after_the_window() {
        let l = LoginLimiter::new(LoginLimits {
            per_user: 1,
            per_address: 10,
            window: Duration::from_millis(50),
        });
        l.record_failure("root@kiln", IP);
        assert!(l.check("root@kiln", IP).is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.check("root@kiln", IP), Ok(()));
    }
}
