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
//! Each attempt counts as a failure from the moment it begins (under the
//! lock) and is taken back when it succeeds, so parallel requests cannot slip
//! past the limit. Time is passed in (`now`), so the rules are tested without
//! sleeping.

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

    /// Starts an attempt on `username` from `ip`. The attempt is counted as a
    /// failure at once, under the lock, so that parallel requests cannot all
    /// pass the check before any of them fails; `succeeded` takes it back.
    ///
    /// `Ok(delay)`: go ahead after waiting `delay`. `Err(retry_after)`: this
    /// client may not try this account now.
    pub fn begin(&self, username: &str, ip: IpAddr, now: Instant) -> Result<Duration, Duration> {
        let mut s = self.state();
        let account = key(username);
        let client = (account.clone(), ip);
        if let Some(q) = s.per_client.get_mut(&client) {
            prune(q, now);
            if let (true, Some(oldest)) = (q.len() >= MAX_FAILURES_PER_CLIENT, q.front()) {
                return Err(WINDOW.saturating_sub(now.duration_since(*oldest)));
            }
        }
        let delay = match s.per_account.get_mut(&account) {
            Some(q) => {
                prune(q, now);
                let over = q.len().saturating_sub(FREE_ACCOUNT_FAILURES) as u32;
                (DELAY_STEP * over).min(MAX_DELAY)
            }
            None => Duration::ZERO,
        };
        push(&mut s.per_client, client, now);
        push(&mut s.per_account, account, now);
        Ok(delay)
    }

    /// The attempt begun by this client succeeded: forget its failures on the
    /// account and take its attempt back from the account's count.
    pub fn succeeded(&self, username: &str, ip: IpAddr) {
        let mut s = self.state();
        let account = key(username);
        s.per_client.remove(&(account.clone(), ip));
        if let Some(q) = s.per_account.get_mut(&account) {
            q.pop_back();
        }
    }
}

/// Appends a failure time to `k`'s queue. A key already present is always
/// counted, so flooding the table cannot switch throttling off for a client
/// or account already under watch; a full table (after dropping expired
/// entries) takes no new keys until entries expire.
fn push<K: std::hash::Hash + Eq>(map: &mut HashMap<K, VecDeque<Instant>>, k: K, now: Instant) {
    if !map.contains_key(&k) && map.len() >= MAX_KEYS {
        map.retain(|_, q| {
            prune(q, now);
            !q.is_empty()
        });
        if map.len() >= MAX_KEYS {
            return;
        }
    }
    map.entry(k).or_default().push_back(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn five_attempts_from_one_client_block_that_client_only() {
        let t = LoginThrottle::default();
        let start = Instant::now();
        for i in 0..5 {
            assert!(
                t.begin("Admin", ip(1), start + Duration::from_secs(i))
                    .is_ok(),
                "attempt {i}"
            );
        }
        let now = start + Duration::from_secs(10);
        let retry = t.begin("admin", ip(1), now).unwrap_err();
        assert_eq!(retry, WINDOW - Duration::from_secs(10));
        assert!(
            t.begin("admin", ip(2), now).is_ok(),
            "another address is not blocked"
        );
        assert!(
            t.begin("other", ip(1), now).is_ok(),
            "another account is not blocked"
        );
        // Once the oldest failure leaves the window the client may try again.
        assert!(t.begin("admin", ip(1), start + WINDOW).is_ok());
    }

    #[test]
    fn parallel_attempts_are_counted_before_any_of_them_finishes() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        // Ten requests arrive together; none has failed yet.
        let admitted = (0..10)
            .filter(|_| t.begin("admin", ip(1), now).is_ok())
            .count();
        assert_eq!(admitted, MAX_FAILURES_PER_CLIENT);
    }

    #[test]
    fn success_takes_the_attempt_back_and_resets_the_client() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..4 {
            t.begin("admin", ip(1), now).unwrap();
        }
        t.begin("admin", ip(1), now).unwrap();
        t.succeeded("admin", ip(1));
        for _ in 0..5 {
            assert!(t.begin("admin", ip(1), now).is_ok());
        }
    }

    #[test]
    fn failures_from_many_addresses_slow_the_account_but_cap_the_delay() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..10 {
            assert_eq!(t.begin("admin", ip(i), now).unwrap(), Duration::ZERO);
        }
        for i in 10..14 {
            t.begin("admin", ip(i), now).unwrap();
        }
        assert_eq!(
            t.begin("admin", ip(14), now).unwrap(),
            Duration::from_millis(1000)
        );
        for i in 15..200 {
            t.begin("admin", ip(i), now).unwrap();
        }
        // The admin's own address is never blocked outright, only slowed.
        assert_eq!(t.begin("admin", ip(250), now).unwrap(), MAX_DELAY);
        // And the slowdown ends with the window.
        assert_eq!(
            t.begin("admin", ip(251), now + WINDOW).unwrap(),
            Duration::ZERO
        );
    }

    #[test]
    fn a_table_flooded_with_made_up_names_still_counts_the_real_account() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        t.begin("admin", ip(1), now).unwrap();
        for i in 0..MAX_KEYS + 50 {
            t.begin(&format!("bogus{i}"), ip(2), now + Duration::from_millis(1))
                .unwrap();
        }
        for _ in 0..4 {
            t.begin("admin", ip(1), now + Duration::from_millis(2))
                .unwrap();
        }
        assert!(t
            .begin("admin", ip(1), now + Duration::from_millis(3))
            .is_err());
    }
}
