//! Start-up: the [`Gate`] built once from [`Settings`] — keys, token
//! validation, the stores, the clients, each made by the module that owns
//! it. Nothing here is per-request.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::admin::Admin;
use crate::api_tokens::ApiTokens;
use crate::clients::{ClientSecrets, Credential};
use crate::config::Settings;
use crate::db::{ClientKind, Database};
use crate::events::{Relay, RelayStatus};
use crate::metrics::Metrics;
use crate::proxies::TrustedProxies;
use crate::service::Gate;
use crate::session::Sessions;
use crate::session::local_cache::LocalCache;
use crate::session_feed::SessionFeed;
use crate::store::event_log::EventStream;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::{Store, Timing};
use crate::throttle::Throttle;
use crate::time::millis;
use crate::tokens::keys::Keys;
use crate::tokens::{AccessTokens, RefreshTokens};
use crate::users::Users;
use crate::verifier::Verifier;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(String);

/// Builds the gate with the store the settings ask for: Redis when
/// `cache.url` is set, else the embedded in-memory store. Call it inside a
/// Tokio runtime: the database pool starts its upkeep task there.
pub fn build(settings: &Settings) -> Result<Gate, BuildError> {
    let timing = Timing::from_auth(&settings.auth);
    let events = EventStream {
        key: settings.events.stream.clone(),
        max_len: settings.events.max_len,
    };
    let store = if settings.uses_redis() {
        let redis = RedisStore::new(&settings.cache, timing)
            .map_err(|e| BuildError(e.to_string()))?
            .with_event_stream(events);
        Store::Redis(redis)
    } else {
        Store::Memory(MemoryStore::new(timing).with_event_stream(&events))
    };
    let gate = with_store(settings, store)?;
    if !settings.uses_redis() {
        tracing::warn!(
            "cache.url is empty: sessions live in this process only; \
             run a single replica, or set cache.url to share them through Redis"
        );
    }
    Ok(gate)
}

/// Builds the gate around a given store (tests share one memory store
/// between several in-process replicas this way).
pub fn with_store(settings: &Settings, store: Store) -> Result<Gate, BuildError> {
    let auth = &settings.auth;
    // The secret keys refresh tokens always, and signs access tokens with HS256.
    let secret = if auth.secret.is_empty() {
        let mut key = vec![0u8; 32];
        rand::fill(&mut key[..]);
        key
    } else {
        auth.secret.expose().as_bytes().to_vec()
    };
    let keys = Keys::from_settings(auth, &secret).map_err(BuildError)?;
    let jwks = serde_json::to_vec(&keys.jwks)
        .map_err(|e| BuildError(format!("cannot serialize the JWKS: {e}")))?;
    let access = AccessTokens::new(
        keys,
        &auth.issuer,
        &auth.audience,
        auth.access_lifetime.as_secs(),
        auth.leeway.as_secs(),
    );
    let refresh = RefreshTokens::new(&secret);
    let limits = &settings.throttle;
    let verifier = Arc::new(Verifier::per_core(limits.hash_queue, limits.hash_wait));
    let login = settings.login.clients.iter().map(|c| {
        let credential = match &c.secret_file {
            Some(_) => Credential::Secret(c.secret.expose().as_bytes()),
            None => Credential::Hash(&c.secret_hash),
        };
        (c.id.as_str(), credential, ())
    });
    let login_clients = ClientSecrets::new(
        ClientKind::Login,
        login,
        verifier.clone(),
        Throttle::for_clients(limits),
    )
    .map_err(|e| BuildError(format!("login.clients[{}].{}: {e}", e.index, e.field)))?;
    let oauth_clients = ClientSecrets::new(
        ClientKind::OAuth,
        crate::oauth::configured(&settings.oauth.clients).map_err(BuildError)?,
        verifier.clone(),
        Throttle::for_clients(limits),
    )
    .map_err(|e| BuildError(format!("oauth.clients[{}].{}: {e}", e.index, e.field)))?;
    let trusted_proxies = TrustedProxies::parse(&settings.server.trusted_proxies)
        .map_err(|e| BuildError(format!("server.trusted_proxies: {e}")))?;
    let database =
        Database::open(&settings.database).map_err(|e| BuildError(format!("database.url: {e}")))?;
    let events_wake = Arc::new(Notify::new());
    let users = Users::new(
        &settings.users,
        Throttle::for_users(&settings.users, limits),
        verifier.clone(),
    )
    .map_err(BuildError)?;
    let totp =
        crate::users::totp::Totp::new(&settings.totp, Throttle::for_users(&settings.users, limits))
            .map_err(BuildError)?;
    let admin = Admin::new(
        &settings.admin,
        verifier.clone(),
        Throttle::for_clients(limits),
    )
    .map_err(BuildError)?;
    // Warnings once everything that can refuse the configuration has
    // accepted it: a refusal is one line.
    if auth.secret.is_empty() {
        let which = if auth.algorithm.is_symmetric() {
            "tokens"
        } else {
            "refresh tokens"
        };
        tracing::warn!(
            "auth.secret is empty: using a random key made at start-up; \
             {which} die with this process and no other replica accepts them"
        );
    }
    let relay = RelayStatus::new(match store {
        Store::Redis(_) => Relay::Delivering,
        Store::Memory(_) => Relay::Off,
    });
    let local = local_cache(settings, &store);
    let mut metrics = Metrics::new(&store, &verifier, local.as_ref());
    let api_tokens = ApiTokens::new(&settings.api_tokens);
    metrics.register_api_tokens(api_tokens.counts());
    let event_sinks = crate::events::Sinks::build(&settings.events).map_err(BuildError)?;
    metrics.register_events(event_sinks.metrics());
    let mut sessions = Sessions::new(store, access, refresh, Timing::from_auth(auth))
        .keeping_at_most(auth.max_sessions_per_user);
    if let Some(cache) = local {
        sessions = sessions
            .with_local_cache(cache)
            .remembering_verified(auth.local_cache.max_entries);
    }
    Ok(Gate {
        sessions,
        login_clients,
        open_login_setting: settings.login.open,
        login_open: AtomicBool::new(false),
        oauth_clients,
        clients_refresh: settings.database.clients_refresh,
        database,
        users,
        totp,
        events_wake,
        events: settings.events.clone(),
        relay,
        event_sinks,
        api_tokens,
        admin,
        identity_headers: settings.authenticate.identity_headers.clone(),
        cookie: settings.cookie.clone(),
        jwks: Bytes::from(jwks),
        issuer: auth.issuer.clone(),
        public_url: settings.oauth.public_url.trim_end_matches('/').to_owned(),
        trusted_proxies,
        metrics,
        server: settings.server.clone(),
        grpc: settings.grpc.clone(),
        session_feed: SessionFeed::new(millis(auth.access_lifetime)),
    })
}

/// SPEC §10's cache, when `auth.local_cache.enabled` and sessions are in
/// Redis; with the in-memory store every answer is already local, so the
/// setting is ignored (with a warning) rather than refused.
fn local_cache(settings: &Settings, store: &Store) -> Option<LocalCache> {
    if !settings.auth.local_cache.enabled {
        return None;
    }
    let Store::Redis(redis) = store else {
        tracing::warn!(
            "auth.local_cache.enabled is ignored without Redis (cache.url or cache.sentinel)"
        );
        return None;
    };
    Some(LocalCache::start(settings, redis))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load;

    /// What stops start-up when the gate is built from settings the
    /// configuration's shape checks let through.
    async fn build_error(yaml: &str) -> String {
        let settings = load(yaml, &[("TOKENGATE__DATABASE__URL", "sqlite::memory:")]).unwrap();
        match super::build(&settings) {
            Ok(_) => panic!("built with {yaml}"),
            Err(e) => e.to_string(),
        }
    }

    fn names(error: &str, key: &str) -> bool {
        error.starts_with(&format!("{key}: ")) && !error.contains('\n')
    }

    #[tokio::test]
    async fn secrets_scopes_and_keys_are_refused_naming_their_key() {
        let hash = crate::clients::hash_secret(b"s").unwrap();
        let cases = [
            (
                "login:\n  clients:\n    - id: web\n      secret_hash: plain\n".to_owned(),
                "login.clients[0].secret_hash",
            ),
            (
                format!(
                    "oauth:\n  clients:\n    - id: a\n      secret_hash: '{hash}'\n    \
                     - id: billing\n      secret_hash: plain\n"
                ),
                "oauth.clients[1].secret_hash",
            ),
            (
                format!(
                    "oauth:\n  clients:\n    - id: billing\n      secret_hash: '{hash}'\n      \
                     scopes: ['two words']\n"
                ),
                "oauth.clients[0].scopes",
            ),
            (
                "admin:\n  token_hash: 'plain text'\n".to_owned(),
                "admin.token_hash",
            ),
        ];
        for (yaml, key) in cases {
            let error = build_error(&yaml).await;
            assert!(names(&error, key), "{key}: {error}");
        }
    }

    #[tokio::test]
    async fn a_signing_key_that_is_no_pem_is_refused_naming_its_file() {
        let dir = std::env::temp_dir().join(format!("tokengate-app-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "nope").unwrap();
        let yaml = format!(
            "auth:\n  algorithm: EdDSA\n  signing_keys:\n    - kid: k1\n      algorithm: EdDSA\n      \
             private_key_file: {}\n",
            garbage.display()
        );
        let error = build_error(&yaml).await;
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            names(&error, "auth.signing_keys[0].private_key_file"),
            "{error}"
        );
    }
}
