//! Fault injection for crash tests. `BERTH_FAULT_PAUSE=<point>` makes berth
//! stop forever at that point (logging that it did), so a test can SIGKILL it
//! exactly there and check that it converges after a restart. Unset, a pause
//! point costs one comparison.

use std::sync::OnceLock;

static PAUSE_AT: OnceLock<Option<String>> = OnceLock::new();

pub async fn pause_point(name: &str) {
    let at = PAUSE_AT.get_or_init(|| std::env::var("BERTH_FAULT_PAUSE").ok());
    if at.as_deref() == Some(name) {
        tracing::warn!(point = name, "paused at fault-injection point");
        std::future::pending::<()>().await;
    }
}
