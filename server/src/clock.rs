//! The time the certificate and backup schedulers see. Production reads
//! the system clock; tests move it forward to reach a renewal window, an
//! expiry warning or a schedule without waiting weeks.

use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Debug, Default)]
pub struct Clock {
    /// Seconds added to the system time.
    offset: AtomicI64,
}

impl Clock {
    /// Unix seconds.
    pub fn now(&self) -> i64 {
        crate::store::now() + self.offset.load(Ordering::Relaxed)
    }

    /// Moves this clock (not the system's) forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }
}
