//! Logging. sqlx is quiet by default: its per-query lines drown everything else.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_sessions=warn"));
    // The Docker client logs request and response bodies at debug, and those
    // carry container environments (secrets): nothing of bollard's below
    // info, whatever BERTH_LOG asks for (`bollard::docker=trace` included).
    let no_engine_bodies = tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.target().starts_with("bollard") && *meta.level() > tracing::Level::INFO)
    });
    let ansi = std::io::stdout().is_terminal();
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_ansi(ansi).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().boxed(),
    };
    // try_init: tests may call this more than once per process.
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(no_engine_bodies).with_filter(filter))
        .try_init();
}
