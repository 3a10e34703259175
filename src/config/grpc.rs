//! `grpc.*` (SPEC §8, §11): where the gRPC API listens, and the bounds that
//! keep its connections and streams from starving the HTTP listener: a cap
//! of its own in the descriptor budget, a handshake and an idle timer, and
//! a bound on long-lived health watches.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, duration, positive};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcSettings {
    /// Port of `realchat.auth.v1.AuthApi` on `server.host`; 0 = off.
    pub port: u16,
    /// Open gRPC connections per replica, budgeted beside
    /// `server.max_connections` under the open-file limit. At the cap a new
    /// connection evicts the one idle the longest (no call in flight), or is
    /// closed if every connection has a call in flight.
    pub max_connections: usize,
    /// From accept to the end of the HTTP/2 client preface; then closed.
    #[serde(deserialize_with = "duration")]
    pub handshake_timeout: Duration,
    /// A connection with no call in flight for this long is closed (GOAWAY
    /// first: clients reconnect without failing a call). Keep it above the
    /// proxy's upstream `keepalive_timeout` (nginx: 60s).
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// `grpc.health.v1.Health/Watch` streams open at once per replica;
    /// beyond, `RESOURCE_EXHAUSTED`. 0 = Watch off (`UNIMPLEMENTED`, as the
    /// nginx example answers): clients then fall back to `Check`.
    pub max_health_watches: usize,
    /// How long one Watch stays open; it then ends with `OK` and the client
    /// watches again (on whichever replica its balancer picks).
    #[serde(deserialize_with = "duration")]
    pub health_watch_lifetime: Duration,
}

impl Default for GrpcSettings {
    fn default() -> Self {
        Self {
            port: 9090,
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_health_watches: 100,
            health_watch_lifetime: Duration::from_secs(600),
        }
    }
}

impl GrpcSettings {
    /// Checks what serde cannot.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(ConfigError::new(
                "grpc.max_connections",
                "must be at least 1 (grpc.port: 0 turns gRPC off)",
            ));
        }
        positive("grpc.handshake_timeout", self.handshake_timeout)?;
        positive("grpc.idle_timeout", self.idle_timeout)?;
        positive("grpc.health_watch_lifetime", self.health_watch_lifetime)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::super::tests::load;
    use super::super::{DEFAULT_CONFIG_FILE, Settings};
    use super::*;

    fn key(yaml: &str) -> String {
        let e = load(yaml, &[]).unwrap_err();
        assert!(!e.to_string().contains('\n'), "one line: {e}");
        e.key
    }

    #[test]
    fn grpc_limits_have_defaults_and_overrides() {
        let d = load("", &[]).unwrap().grpc;
        assert_eq!(d.max_connections, 1024);
        assert_eq!(d.handshake_timeout, Duration::from_secs(10));
        assert_eq!(d.idle_timeout, Duration::from_secs(300));
        assert_eq!(d.max_health_watches, 100);
        assert_eq!(d.health_watch_lifetime, Duration::from_secs(600));
        let s = load(
            "grpc:\n  max_connections: 20\n  idle_timeout: 2m\n  max_health_watches: 0\n",
            &[
                ("TOKENGATE__GRPC__HANDSHAKE_TIMEOUT", "500ms"),
                ("TOKENGATE__GRPC__HEALTH_WATCH_LIFETIME", "1h"),
            ],
        )
        .unwrap()
        .grpc;
        assert_eq!(s.max_connections, 20);
        assert_eq!(s.handshake_timeout, Duration::from_millis(500));
        assert_eq!(s.idle_timeout, Duration::from_secs(120));
        assert_eq!(s.max_health_watches, 0, "0 = Watch off");
        assert_eq!(s.health_watch_lifetime, Duration::from_secs(3600));
    }

    #[test]
    fn grpc_limits_are_checked() {
        assert_eq!(key("grpc:\n  max_connections: 0\n"), "grpc.max_connections");
        assert_eq!(
            key("grpc:\n  max_health_watches: -1\n"),
            "grpc.max_health_watches"
        );
        for k in ["handshake_timeout", "idle_timeout", "health_watch_lifetime"] {
            assert_eq!(key(&format!("grpc:\n  {k}: 0s\n")), format!("grpc.{k}"));
            assert_eq!(key(&format!("grpc:\n  {k}: soon\n")), format!("grpc.{k}"));
        }
    }

    #[test]
    fn checked_in_config_file_holds_the_grpc_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_FILE);
        let empty = config::Environment::with_prefix("TOKENGATE").source(Some(HashMap::new()));
        let s = Settings::load_from(Some(&path), empty).unwrap().grpc;
        let d = GrpcSettings::default();
        assert_eq!(s.port, d.port);
        assert_eq!(s.max_connections, d.max_connections);
        assert_eq!(s.handshake_timeout, d.handshake_timeout);
        assert_eq!(s.idle_timeout, d.idle_timeout);
        assert_eq!(s.max_health_watches, d.max_health_watches);
        assert_eq!(s.health_watch_lifetime, d.health_watch_lifetime);
    }
}
