//! Logging. sqlx is quiet by default: its per-query lines drown everything else.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_sessions=warn"))
        // The Docker client logs request and response bodies at debug, and
        // those carry container environments (secrets): never below info,
        // whatever BERTH_LOG asks for.
        .add_directive("bollard=info".parse().expect("a valid directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    // try_init: tests may call this more than once per process.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
