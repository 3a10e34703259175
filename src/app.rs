//! Everything a request needs, built once from [`Settings`]: keys, token
//! validation, the store, the clients. Shared by all connections; nothing
//! here is per-request. The one thing that changes while serving is the set
//! of clients kept in the database, re-read in the background.

use bytes::Bytes;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::admin::Admin;
use crate::admin::AdminError;
use crate::api_tokens::{self, ApiToken, ApiTokenError, ApiTokens, Revoked};
use crate::clients::stored::{self, LoadError};
use crate::clients::{Attempt, ClientError, ClientSecrets, Credential};
use crate::config::{EventSettings, GrpcSettings, IdentityHeader, ServerSettings, Settings};
use crate::db::{ClientKind, Database, DbError, DurableStore};
use crate::events::{Relay, RelayStatus};
use crate::metrics::Metrics;
use crate::oauth::{ClientPolicy, OAuthClients};
use crate::proxies::TrustedProxies;
use crate::session::Sessions;
use crate::session::local_cache::LocalCache;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::{Store, Timing};
use crate::throttle::Throttle;
use crate::time::Millis;
use crate::tokens::keys::Keys;
use crate::tokens::{AccessTokens, RefreshTokens};
use crate::users::Users;
use crate::verifier::Verifier;

pub struct App {
    pub sessions: Sessions<Store>,
    pub login_clients: ClientSecrets<()>,
    /// `login.open` as configured, for [`App::load_clients`].
    open_login_setting: bool,
    /// `/login {"user_id"}` may start open: set at start-up when there is no
    /// login client (with `login.open`, or the embedded store). It stays
    /// open only until a login client first appears; removing clients
    /// closes `/login`, never opens it (SPEC §11).
    login_open: AtomicBool,
    pub oauth_clients: OAuthClients,
    /// How often the clients kept in the database are re-read.
    clients_refresh: Duration,
    /// Users, stored clients and the outbox (SPEC §7).
    pub database: Database,
    pub users: Users,
    /// Wakes the event relay after a registration.
    events_wake: Arc<Notify>,
    events: EventSettings,
    /// How the event relay is doing, for `/health`.
    pub relay: RelayStatus,
    /// API tokens for services (SPEC §9).
    pub api_tokens: ApiTokens,
    /// The token of the management API.
    pub admin: Admin,
    /// Extra headers of a valid `/authenticate` answer.
    pub identity_headers: Vec<IdentityHeader>,
    /// The public keys as served at `/.well-known/jwks.json`.
    pub jwks: Bytes,
    /// `auth.issuer`, for discovery metadata.
    pub issuer: String,
    /// `oauth.public_url`; empty = from the request.
    pub public_url: String,
    /// Whose `X-Forwarded-For` tells the client's address.
    pub trusted_proxies: TrustedProxies,
    pub metrics: Metrics,
    /// Connection limits and timeouts, for [`crate::server::serve`].
    pub server: ServerSettings,
    /// The gRPC listener's limits and timeouts, and its health watches.
    pub grpc: GrpcSettings,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(String);

/// Why a built app cannot start serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database.url: {0}")]
    Clients(#[from] LoadError),
    #[error(
        "login.clients: required with Redis (cache.url or cache.sentinel), and the database \
         has none either: without trusted clients anyone who reaches /login gets a session as \
         any user (set login.clients, add one with `tokengate client add ID --kind login`, or \
         set login.open: true behind a network that already authenticates callers)"
    )]
    NoLoginClients,
}

impl App {
    /// Builds the app with the store the settings ask for: Redis when
    /// `cache.url` is set, else the embedded in-memory store. Call it inside
    /// a Tokio runtime: the database pool starts its upkeep task there.
    pub fn build(settings: &Settings) -> Result<Self, BuildError> {
        let timing = Timing::from_auth(&settings.auth);
        let store = if settings.uses_redis() {
            let redis =
                RedisStore::new(&settings.cache, timing).map_err(|e| BuildError(e.to_string()))?;
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
        .map_err(|e| BuildError(format!("login.clients: {e}")))?;
        let oauth_clients = ClientSecrets::new(
            ClientKind::OAuth,
            crate::oauth::configured(&settings.oauth.clients),
            verifier.clone(),
            Throttle::for_clients(limits),
        )
        .map_err(|e| BuildError(format!("oauth.clients: {e}")))?;
        let trusted_proxies = TrustedProxies::parse(&settings.server.trusted_proxies)
            .map_err(|e| BuildError(format!("server.trusted_proxies: {e}")))?;
        let database = Database::open(&settings.database)
            .map_err(|e| BuildError(format!("database.url: {e}")))?;
        let events_wake = Arc::new(Notify::new());
        let users = Users::new(
            &settings.users,
            Throttle::for_users(&settings.users, limits),
            verifier.clone(),
            events_wake.clone(),
        )
        .map_err(BuildError)?;
        let admin = Admin::new(
            &settings.admin,
            verifier.clone(),
            Throttle::for_clients(limits),
        )
        .map_err(|e| BuildError(format!("admin: {e}")))?;
        let relay = RelayStatus::new(match store {
            Store::Redis(_) => Relay::Delivering,
            Store::Memory(_) => Relay::Off,
        });
        let local = local_cache(settings, &store);
        let mut metrics = Metrics::new(&store, &verifier, local.as_ref());
        let api_tokens = ApiTokens::new(&settings.api_tokens);
        metrics.register_api_tokens(api_tokens.counts());
        let mut sessions = Sessions::new(store, access, refresh, Timing::from_auth(auth))
            .keeping_at_most(auth.max_sessions_per_user);
        if let Some(cache) = local {
            sessions = sessions
                .with_local_cache(cache)
                .remembering_verified(auth.local_cache.max_entries);
        }
        Ok(Self {
            sessions,
            login_clients,
            open_login_setting: settings.login.open,
            login_open: AtomicBool::new(false),
            oauth_clients,
            clients_refresh: settings.database.clients_refresh,
            database,
            users,
            events_wake,
            events: settings.events.clone(),
            relay,
            api_tokens,
            admin,
            identity_headers: settings.authenticate.identity_headers.clone(),
            jwks: Bytes::from(jwks),
            issuer: auth.issuer.clone(),
            public_url: settings.oauth.public_url.trim_end_matches('/').to_owned(),
            trusted_proxies,
            metrics,
            server: settings.server.clone(),
            grpc: settings.grpc.clone(),
        })
    }
}

impl App {
    /// Applies the database migrations not yet applied (every start-up).
    pub async fn migrate(&self) -> Result<(), DbError> {
        self.database.migrate().await
    }

    /// Reads the clients kept in the database, before serving (the
    /// background task re-reads them every `database.clients_refresh`), and
    /// decides whether `/login {"user_id"}` starts open: only without any
    /// login client, in `config.yml` or the database, and then only with
    /// `login.open` or the embedded store (development). With Redis and no
    /// login client anywhere, start-up stops.
    pub async fn load_clients(&self) -> Result<(), StartError> {
        stored::load(&self.database, &self.login_clients, &self.oauth_clients).await?;
        if self.login_clients.ever_had_clients() {
            return Ok(());
        }
        if self.open_login_setting {
            tracing::warn!(
                "login.open is true and there is no login client: /login {{\"user_id\"}} gives \
                 anyone who reaches it a session as any user; only behind a network that \
                 already authenticates its callers"
            );
        } else if matches!(self.sessions.store(), Store::Memory(_)) {
            tracing::warn!(
                "login.clients is empty and the database has no login clients: /login is \
                 open to anyone who can reach it; configure trusted clients before exposing it"
            );
        } else {
            return Err(StartError::NoLoginClients);
        }
        self.login_open.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Whether `/login {"user_id"}` is taken without client credentials:
    /// open from start-up until the first login client appears, then closed
    /// for good.
    pub fn login_is_open(&self) -> bool {
        self.login_open.load(Ordering::Relaxed) && !self.login_clients.ever_had_clients()
    }

    /// What every replica runs beside serving, until dropped: the refresh
    /// of the clients kept in the database, the event relay, the
    /// write-behind of API tokens' last use and the retry of revocations
    /// the cache has not heard of.
    pub async fn run_background(&self) {
        let clients = stored::refresh(
            &self.database,
            &self.login_clients,
            &self.oauth_clients,
            self.clients_refresh,
        );
        let touches = self.api_tokens.write_touches(&self.database);
        let clears =
            api_tokens::revocation::retry_cache_clears(&self.database, self.sessions.store());
        tokio::join!(clients, self.relay_events(), touches, clears);
    }

    /// Moves the outbox to the Redis stream (with the embedded store,
    /// events wait in the outbox).
    async fn relay_events(&self) {
        let Store::Redis(redis) = self.sessions.store() else {
            std::future::pending::<()>().await;
            return;
        };
        let sink = crate::events::RedisStream {
            redis,
            stream: &self.events.stream,
            max_len: self.events.max_len,
        };
        crate::events::relay(
            &self.database,
            &sink,
            &self.events,
            self.events_wake.clone(),
            &self.relay,
        )
        .await;
    }

    /// Checks the HTTP Basic credentials of a `/login` caller.
    pub async fn authenticate_login_client(
        &self,
        authorization: Option<&[u8]>,
        attempt: Attempt,
    ) -> Result<(), ClientError> {
        let store = self.sessions.store();
        self.login_clients
            .verify_basic(store, authorization, attempt)
            .await?;
        Ok(())
    }

    /// Checks an OAuth client's id and secret; returns what it may do.
    pub async fn authenticate_oauth_client(
        &self,
        id: &str,
        secret: Vec<u8>,
        attempt: Attempt,
    ) -> Result<Arc<ClientPolicy>, ClientError> {
        let store = self.sessions.store();
        self.oauth_clients.verify(store, id, secret, attempt).await
    }

    /// Checks an API token (SPEC §9) presented from `addr`: one cache round
    /// trip on a hit; a miss counts against `addr` (SPEC §11).
    pub async fn validate_api_token(
        &self,
        token: &str,
        addr: IpAddr,
        now: Millis,
    ) -> Result<ApiToken, ApiTokenError> {
        let cache = self.sessions.store();
        self.api_tokens
            .validate(&self.database, cache, token, addr, now)
            .await
    }

    /// Revokes an API token in the database and the cache shared by every
    /// replica (or leaves the cache clear pending, retried); `None` if there
    /// is no such token.
    pub async fn revoke_api_token(
        &self,
        id: uuid::Uuid,
        now: Millis,
    ) -> Result<Option<Revoked>, ApiTokenError> {
        api_tokens::revoke(&self.database, self.sessions.store(), id, now).await
    }

    /// Checks the bearer token of a management request.
    pub async fn authorize_admin(
        &self,
        presented: Option<&str>,
        attempt: Attempt,
    ) -> Result<(), AdminError> {
        let store = self.sessions.store();
        self.admin.verify(store, presented, attempt).await
    }
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
