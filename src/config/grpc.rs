//! `grpc.*` (SPEC §8): where the gRPC API listens.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcSettings {
    /// Port of `realchat.auth.v1.AuthApi` on `server.host`; 0 = off.
    pub port: u16,
}

impl Default for GrpcSettings {
    fn default() -> Self {
        Self { port: 9090 }
    }
}
