//! `login.*`, `oauth.*` and `throttle.*`: who may call `/login` and the
//! OAuth endpoints, and the limits on failed credentials. Shape only: the
//! secret hashes and scopes are checked when `crate::clients` and
//! `crate::oauth` build the clients.
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Secret, duration};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginSettings {
    pub clients: Vec<LoginClient>,
    /// Allow `/login` without client credentials on a Redis cluster (only
    /// behind a network that already authenticates its callers).
    pub open: bool,
}

/// A trusted caller of `/login`, authenticated by HTTP Basic.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginClient {
    pub id: String,
    /// argon2id PHC string from `tokengate hash-secret`.
    pub secret_hash: String,
    /// Or a file holding the secret itself (Docker secrets), hashed at start.
    pub secret_file: Option<PathBuf>,
    /// The file's content, read by [`Settings::resolved`](super::Settings::resolved).
    #[serde(skip)]
    pub secret: Secret,
}

/// Machine clients of the OAuth 2.0 endpoints (SPEC §6).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthSettings {
    pub clients: Vec<OAuthClient>,
    /// Public base URL for discovery metadata, e.g. `https://auth.example.com`;
    /// empty = taken from each request's `Host` and `X-Forwarded-Proto`.
    pub public_url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClient {
    pub id: String,
    /// argon2id PHC string from `tokengate hash-secret`.
    pub secret_hash: String,
    /// The most this client may ask for.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Issue a refresh token with `client_credentials`.
    #[serde(default)]
    pub refresh_tokens: bool,
    /// Token requests per minute, counted across replicas; 0 = unlimited.
    #[serde(default)]
    pub rate_limit: u32,
}

/// Limits against floods of bad credentials (see `throttle.rs`, `verifier.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleSettings {
    /// Failed credential checks of one client id (or the admin token) from
    /// one address within `window` before that pair gets `429`; 0 = no limit.
    pub max_failures: u32,
    /// Failed credential checks from one address, whatever the id (user
    /// passwords included, within `users.failure_window`), before the
    /// address gets `429`; 0 = no limit.
    pub max_failures_per_address: u32,
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    /// argon2 verifications that may wait for a core; beyond, `503` at once.
    pub hash_queue: usize,
    /// Longest wait for a core; then `503` with `Retry-After`.
    #[serde(deserialize_with = "duration")]
    pub hash_wait: Duration,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            max_failures: 10,
            max_failures_per_address: 100,
            window: Duration::from_secs(5 * 60),
            hash_queue: 64,
            hash_wait: Duration::from_secs(1),
        }
    }
}

/// Whether `id` can name a client: HTTP Basic splits `id:secret` at the
/// first colon, so an id may not contain one.
pub fn is_client_id(id: &str) -> bool {
    !id.is_empty() && !id.contains(':')
}

/// Client ids are unique and Basic-safe. (Their secret hashes are parsed by
/// `crate::clients` when the clients are built.)
pub(super) fn validate_clients<'a>(
    section: &str,
    ids: impl Iterator<Item = &'a String>,
) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (i, id) in ids.enumerate() {
        let key = format!("{section}[{i}]");
        if !is_client_id(id) {
            return Err(ConfigError::new(
                format!("{key}.id"),
                "must be non-empty and contain no ':' (HTTP Basic splits there)",
            ));
        }
        if !seen.insert(id) {
            return Err(ConfigError::new(
                format!("{key}.id"),
                format!("duplicate client id {id:?}"),
            ));
        }
    }
    Ok(())
}
