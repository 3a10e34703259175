//! Everything a request needs, built once from [`Settings`]: keys, token
//! validation, the store, the login clients. Shared read-only by all
//! connections; nothing here is per-request.

use bytes::Bytes;

use crate::clients::ClientSecrets;
use crate::config::{ServerSettings, Settings};
use crate::metrics::Metrics;
use crate::oauth::OAuthClients;
use crate::session::Sessions;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::{Store, Timing};
use crate::tokens::keys::Keys;
use crate::tokens::{AccessTokens, RefreshTokens};

pub struct App {
    pub sessions: Sessions<Store>,
    pub login_clients: ClientSecrets,
    pub oauth_clients: OAuthClients,
    /// The public keys as served at `/.well-known/jwks.json`.
    pub jwks: Bytes,
    /// `auth.issuer`, for discovery metadata.
    pub issuer: String,
    /// `oauth.public_url`; empty = from the request.
    pub public_url: String,
    pub metrics: Metrics,
    /// Connection limits and timeouts, for [`crate::server::run`].
    pub server: ServerSettings,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(String);

impl App {
    /// Builds the app with the store the settings ask for: Redis when
    /// `cache.url` is set, else the embedded in-memory store.
    pub fn build(settings: &Settings) -> Result<Self, BuildError> {
        let timing = Timing::from_auth(&settings.auth);
        let store = if settings.uses_redis() {
            let redis = RedisStore::new(
                settings.cache.url.expose(),
                settings.cache.pool_size,
                settings.cache.timeout,
                timing,
            )
            .map_err(|e| BuildError(format!("cache.url: {e}")))?;
            Store::Redis(redis)
        } else {
            tracing::warn!(
                "cache.url is empty: sessions live in this process only; \
                 run a single replica, or set cache.url to share them through Redis"
            );
            Store::Memory(MemoryStore::new(timing))
        };
        Self::with_store(settings, store)
    }

    /// Builds the app around a given store (tests share one memory store
    /// between several in-process replicas this way).
    pub fn with_store(settings: &Settings, store: Store) -> Result<Self, BuildError> {
        let auth = &settings.auth;
        // The secret keys refresh tokens always, and signs access tokens with HS256.
        let secret = if auth.secret.is_empty() {
            let which = if auth.algorithm.is_symmetric() {
                "tokens"
            } else {
                "refresh tokens"
            };
            tracing::warn!(
                "auth.secret is empty: using a random key made at start-up; \
                 {which} die with this process and no other replica accepts them"
            );
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
        let login = &settings.login.clients;
        let login_clients = ClientSecrets::new(
            login
                .iter()
                .map(|c| (c.id.as_str(), c.secret_hash.as_str())),
        )
        .map_err(BuildError)?;
        if login_clients.is_empty() {
            tracing::warn!(
                "login.clients is empty: /login is open to anyone who can reach it; \
                 configure trusted clients before exposing it"
            );
        }
        let metrics = Metrics::new(&store);
        let refresh_lifetime = Timing::from_auth(auth).refresh_lifetime;
        let sessions = Sessions::new(store, access, refresh, refresh_lifetime);
        Ok(Self {
            sessions,
            login_clients,
            oauth_clients: OAuthClients::new(&settings.oauth.clients).map_err(BuildError)?,
            jwks: Bytes::from(jwks),
            issuer: auth.issuer.clone(),
            public_url: settings.oauth.public_url.trim_end_matches('/').to_owned(),
            metrics,
            server: settings.server.clone(),
        })
    }
}
