//! Everything a request needs, built once from [`Settings`]: keys, token
//! validation, the store, the login clients. Shared read-only by all
//! connections; nothing here is per-request.

use crate::clients::LoginClients;
use crate::config::Settings;
use crate::session::Sessions;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::{Store, Timing};
use crate::tokens::{AccessTokens, RefreshTokens};

pub struct App {
    pub sessions: Sessions<Store>,
    pub login_clients: LoginClients,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(String);

impl App {
    /// Builds the app with the store the settings ask for: Redis when
    /// `cache.url` is set, else the embedded in-memory store.
    pub fn build(settings: &Settings) -> Result<Self, BuildError> {
        let timing = timing(settings);
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
        let secret = if auth.secret.is_empty() {
            tracing::warn!(
                "auth.secret is empty: signing with a random key made at start-up; \
                 tokens die with this process and no other replica accepts them"
            );
            let mut key = vec![0u8; 32];
            rand::fill(&mut key[..]);
            key
        } else {
            auth.secret.expose().as_bytes().to_vec()
        };
        let access = AccessTokens::new(
            &secret,
            &auth.issuer,
            &auth.audience,
            auth.access_lifetime.as_secs(),
            auth.leeway.as_secs(),
        );
        let refresh = RefreshTokens::new(&secret);
        let login_clients = LoginClients::new(&settings.login.clients).map_err(BuildError)?;
        if login_clients.is_open() {
            tracing::warn!(
                "login.clients is empty: /login is open to anyone who can reach it; \
                 configure trusted clients before exposing it"
            );
        }
        let sessions = Sessions::new(store, access, refresh, timing(settings).refresh_lifetime);
        Ok(Self {
            sessions,
            login_clients,
        })
    }
}

fn timing(settings: &Settings) -> Timing {
    Timing::new(
        settings.auth.auto_logout,
        settings.auth.refresh_lifetime,
        settings.auth.refresh_grace,
    )
}
