//! `server.*` (listeners, connection limits and timeouts, trusted proxies)
//! and `logging.*`.
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// How long a SIGTERM waits for in-flight requests before exiting anyway.
    #[serde(deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
    /// How long after SIGTERM the process stays up, refusing connections,
    /// before it exits: a proxy that finds replicas by DNS keeps the address
    /// until it re-resolves, and a refused connection moves on at once (and
    /// marks the replica down) where a vanished address costs a connect
    /// timeout. Docker's DNS drops the address only at exit, so the proxy's
    /// down mark must outlast linger + its re-resolve interval (compose.yaml).
    #[serde(deserialize_with = "duration")]
    pub shutdown_linger: Duration,
    /// Open client connections per replica. At the cap a new connection
    /// evicts the one idle the longest, or is refused if all are busy.
    pub max_connections: usize,
    /// From the first byte of a request to its complete header block.
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// From the complete header block to the last byte of the body.
    #[serde(deserialize_with = "duration")]
    pub body_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed. Keep
    /// it above the proxy's upstream `keepalive_timeout`, so the proxy lets go
    /// of an idle connection first.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// Proxies (addresses or `address/prefix`) whose `X-Forwarded-For` is
    /// believed when telling where a request comes from.
    pub trusted_proxies: Vec<String>,
    /// Also listen on this Unix socket (mode 0660), for nginx on the same
    /// host; its peers count as 127.0.0.1.
    pub unix_socket: Option<PathBuf>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8080,
            shutdown_timeout: Duration::from_secs(10),
            shutdown_linger: Duration::ZERO,
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            trusted_proxies: Vec::new(),
            unix_socket: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogMode {
    #[default]
    Text,
    Json,
}

impl<'de> Deserialize<'de> for LogMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(serde::de::Error::custom(format!(
                "must be text or json, got {text:?}"
            ))),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingSettings {
    pub mode: LogMode,
    pub level: String,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        Self {
            mode: LogMode::Text,
            level: "info".into(),
        }
    }
}
