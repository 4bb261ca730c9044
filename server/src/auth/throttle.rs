//! Login throttling that slows attackers without locking the admin out.
//!
//! Two independent measures, both in memory (a restart forgets them, which is
//! acceptable: the attacker gains a few guesses, the admin never loses access):
//! - per account and client address: after `MAX_FAILURES_PER_CLIENT` failures
//!   within `WINDOW`, that client is refused with 429 until the oldest failure
//!   leaves the window. Other clients are not affected, so an attacker cannot
//!   lock the admin out by failing from elsewhere.
//! - per account, from all addresses: every failure beyond the first few adds
//!   a delay (capped) before the password is checked. Many addresses guessing
//!   at once are slowed down together; the admin still gets in, a little later.
//!
//! Time is passed in (`now`), so the rules are tested without sleeping.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(15 * 60);
pub const MAX_FAILURES_PER_CLIENT: usize = 5;
/// Failures on one account (from anywhere) before delays start.
const FREE_ACCOUNT_FAILURES: usize = 10;
const DELAY_STEP: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(3);
/// Bound on remembered keys, so a flood of distinct usernames or addresses
/// cannot grow memory without limit.
const MAX_KEYS: usize = 10_000;

#[derive(Default)]
pub struct LoginThrottle {
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    per_client: HashMap<(String, IpAddr), VecDeque<Instant>>,
    per_account: HashMap<String, VecDeque<Instant>>,
}

fn prune(q: &mut VecDeque<Instant>, now: Instant) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
        q.pop_front();
    }
}

fn key(username: &str) -> String {
    username.trim().to_lowercase().chars().take(128).collect()
}

impl LoginThrottle {
    /// The counters stay meaningful even if a thread panicked while holding
    /// the lock, so a poisoned lock is simply taken over.
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(retry_after)` when this client may not try this account now.
    pub fn check(&self, username: &str, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut s = self.state();
        let Some(q) = s.per_client.get_mut(&(key(username), ip)) else {
            return Ok(());
        };
        prune(q, now);
        if q.len() >= MAX_FAILURES_PER_CLIENT {
            let oldest = *q.front().expect("non-empty");
            return Err(WINDOW.saturating_sub(now.duration_since(oldest)));
        }
        Ok(())
    }

    /// How long to wait before checking a password for this account.
    pub fn account_delay(&self, username: &str, now: Instant) -> Duration {
        let mut s = self.state();
        let Some(q) = s.per_account.get_mut(&key(username)) else {
            return Duration::ZERO;
        };
        prune(q, now);
        let over = q.len().saturating_sub(FREE_ACCOUNT_FAILURES) as u32;
        (DELAY_STEP * over).min(MAX_DELAY)
    }

    pub fn record_failure(&self, username: &str, ip: IpAddr, now: Instant) {
        let mut s = self.state();
        if s.per_client.len() >= MAX_KEYS {
            s.per_client.retain(|_, q| {
                prune(q, now);
                !q.is_empty()
            });
        }
        if s.per_account.len() >= MAX_KEYS {
            s.per_account.retain(|_, q| {
                prune(q, now);
                !q.is_empty()
            });
        }
        if s.per_client.len() < MAX_KEYS {
            s.per_client
                .entry((key(username), ip))
                .or_default()
                .push_back(now);
        }
        if s.per_account.len() < MAX_KEYS {
            s.per_account
                .entry(key(username))
                .or_default()
                .push_back(now);
        }
    }

    /// A successful login forgets this client's failures on the account.
    pub fn record_success(&self, username: &str, ip: IpAddr) {
        let mut s = self.state();
        s.per_client.remove(&(key(username), ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn five_failures_from_one_client_block_that_client_only() {
        let t = LoginThrottle::default();
        let start = Instant::now();
        for i in 0..5 {
            assert!(t.check("Admin", ip(1), start).is_ok(), "attempt {i}");
            t.record_failure("admin", ip(1), start + Duration::from_secs(i));
        }
        let now = start + Duration::from_secs(10);
        let retry = t.check("admin", ip(1), now).unwrap_err();
        assert_eq!(retry, WINDOW - Duration::from_secs(10));
        assert!(
            t.check("admin", ip(2), now).is_ok(),
            "another address is not blocked"
        );
        assert!(
            t.check("other", ip(1), now).is_ok(),
            "another account is not blocked"
        );
        // Once the oldest failure leaves the window the client may try again.
        assert!(t.check("admin", ip(1), start + WINDOW).is_ok());
    }

    #[test]
    fn success_resets_the_client_counter() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..4 {
            t.record_failure("admin", ip(1), now);
        }
        t.record_success("admin", ip(1));
        for _ in 0..4 {
            t.record_failure("admin", ip(1), now);
        }
        assert!(t.check("admin", ip(1), now).is_ok());
    }

    #[test]
    fn failures_from_many_addresses_slow_the_account_but_cap_the_delay() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..10 {
            t.record_failure("admin", ip(i), now);
        }
        assert_eq!(t.account_delay("admin", now), Duration::ZERO);
        for i in 10..14 {
            t.record_failure("admin", ip(i), now);
        }
        assert_eq!(t.account_delay("admin", now), Duration::from_millis(1000));
        for i in 14..200 {
            t.record_failure("admin", ip(i), now);
        }
        assert_eq!(t.account_delay("admin", now), MAX_DELAY);
        // The admin's own address was never blocked outright.
        assert!(t.check("admin", ip(250), now).is_ok());
        // And the slowdown ends with the window.
        assert_eq!(t.account_delay("admin", now + WINDOW), Duration::ZERO);
    }
}
