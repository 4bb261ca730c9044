//! Per-client token buckets for a domain's rate limits. A limiter outlives
//! route-table swaps (the table looks it up by its settings), so changing
//! an unrelated route does not hand every client a fresh allowance.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Clients tracked per limiter; past this, idle buckets are dropped first and
/// a flood of addresses costs memory no more than this bound.
const MAX_CLIENTS: usize = 100_000;

pub struct Limiter {
    /// As configured: `requests` per `per_seconds`, plus `burst`.
    requests: u32,
    per_seconds: f64,
    burst: u32,
    /// Tokens added per second.
    rate: f64,
    /// Bucket size: one request plus the burst.
    capacity: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    pub fn new(requests: u32, per_seconds: f64, burst: u32) -> Limiter {
        Limiter {
            requests,
            per_seconds,
            burst,
            rate: f64::from(requests) / per_seconds,
            capacity: 1.0 + f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `(requests, per_seconds, burst)` as configured, for drivers that
    /// render the limit for another server (nginx's `limit_req`).
    pub fn settings(&self) -> (u32, f64, u32) {
        (self.requests, self.per_seconds, self.burst)
    }

    /// Takes one token for `client`; `Err` carries how long until the next
    /// request would be allowed.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            self.evict(&mut buckets, now);
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }

    /// Drops buckets that have refilled (they are the same as no bucket);
    /// if none has, the oldest half.
    fn evict(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let full_after = Duration::from_secs_f64(self.capacity / self.rate);
        buckets.retain(|_, b| now.saturating_duration_since(b.at) < full_after);
        if buckets.len() >= MAX_CLIENTS {
            let mut ages: Vec<Instant> = buckets.values().map(|b| b.at).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            buckets.retain(|_, b| b.at > cutoff);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_the_rate() {
        let l = Limiter::new(10, 1.0, 20);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..21 {
            l.check(ip, t0).unwrap();
        }
        let wait = l.check(ip, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // 100 ms later one more token has arrived, and only one.
        let t1 = t0 + Duration::from_millis(100);
        l.check(ip, t1).unwrap();
        assert!(l.check(ip, t1).is_err());
        // Another client has its own bucket.
        l.check("192.0.2.2".parse().unwrap(), t1).unwrap();
    }

    #[test]
    fn per_minute_limits_wait_for_a_whole_token() {
        let l = Limiter::new(5, 60.0, 0);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let t0 = Instant::now();
        l.check(ip, t0).unwrap();
        let wait = l.check(ip, t0).unwrap_err();
        assert_eq!(wait.as_secs(), 12);
        l.check(ip, t0 + Duration::from_secs(12)).unwrap();
    }

    #[test]
    fn a_flood_of_addresses_stays_bounded() {
        let l = Limiter::new(1, 60.0, 0);
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = l.check(ip, t0 + Duration::from_nanos(u64::from(i)));
        }
        assert!(l.tracked() <= MAX_CLIENTS);
    }
}
