//! Logging set-up: `tracing` to stdout, human text or one JSON object per
//! line (for log shippers). Safe to call more than once (tests).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogMode, LoggingSettings};

pub fn init(settings: &LoggingSettings) {
    // The level was validated with the configuration; `info` is a fallback.
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    let _ = match settings.mode {
        LogMode::Text => builder.try_init(),
        LogMode::Json => builder.json().flatten_event(true).try_init(),
    };
}
