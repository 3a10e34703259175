//! Where sessions live (SPEC §3): the [`SessionStore`] trait and its two
//! implementations, [`redis::RedisStore`] (shared by every replica) and
//! [`memory::MemoryStore`] (one process, for development).
//!
//! Every trait method is one atomic decision — one Lua script, one round
//! trip on Redis — so concurrent requests on any number of replicas can never
//! interleave halfway through an update. The caller passes "now"; the store
//! never reads the clock, which keeps the rules testable and identical in both
//! implementations.
//!
//! A session record holds its [`Subject`] (`sub`, the OAuth client if any,
//! the granted scope), the `jti` and scope of the one access token that is
//! current, a hash of the current refresh secret, the rotation `generation`,
//! the time of the last rotation, the end of the current refresh token's
//! lifetime and the session's absolute end (`auth.max_session` after login,
//! which no rotation moves). Its time-to-live is `min(auto_logout, end - now)`,
//! restarted on activity, so the store forgets a session by itself when its
//! clients walk away. Each user's sessions are also listed in an index
//! (listing, logout everywhere), kept by the same scripts and expiring with
//! its last session.

mod api_token_cache;
pub mod ended;
pub mod event_log;
pub mod memory;
pub mod redis;
pub mod rotation;
pub mod session_events;

pub use api_token_cache::{CacheEntry, CacheLookup, CachedToken};
pub use ended::{Cursor, EndedSession, LogId, LogPage, LogStart};
pub use session_events::EndReason;

use uuid::Uuid;

use crate::config::AuthSettings;
use crate::store::event_log::NewEvent;
use crate::time::{Millis, millis};
use crate::tokens::SecretHash;
use crate::tokens::api::TokenHash;

/// Timing rules shared by every operation, fixed at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Lifetime of each access token (`auth.access_lifetime`): how long the
    /// revocation feed remembers an end (see [`ended`]).
    pub access: Millis,
    /// Inactivity after which a session ends (`auth.auto_logout`).
    pub idle: Millis,
    /// Lifetime of each refresh token (`auth.refresh_lifetime`).
    pub refresh_lifetime: Millis,
    /// How long a rotated token is answered with its successor.
    pub grace: Millis,
    /// Absolute lifetime of a session from login (`auth.max_session`).
    pub max_session: Millis,
}

impl Timing {
    /// `auth.auto_logout`, `auth.refresh_lifetime`, `auth.refresh_grace` and
    /// `auth.max_session`.
    pub fn from_auth(auth: &AuthSettings) -> Self {
        Self {
            access: millis(auth.access_lifetime),
            idle: millis(auth.auto_logout),
            refresh_lifetime: millis(auth.refresh_lifetime),
            grace: millis(auth.refresh_grace),
            max_session: millis(auth.max_session),
        }
    }

    /// Time to live of a session that ends at `ends_at`, seen at `now`.
    pub fn ttl(&self, ends_at: Millis, now: Millis) -> Millis {
        self.idle.min(ends_at.saturating_sub(now))
    }
}

/// Who a session belongs to and what it may do; fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    pub sub: String,
    /// The OAuth client it was issued to; `None` for `/login` sessions.
    pub client: Option<String>,
    /// Granted scopes, space-separated.
    pub scope: Option<String>,
    /// The account's email, for a password login (the `email` claim).
    pub email: Option<String>,
    /// Whether that email was verified (the `email_verified` claim).
    pub email_verified: bool,
}

impl Subject {
    /// Who the session belongs to, as the gate names it and its owner's
    /// index is keyed (see [`crate::tokens::owner`]).
    pub fn owner(&self) -> std::borrow::Cow<'_, str> {
        crate::tokens::owner(&self.sub, self.client.as_deref())
    }

    /// The email, if it is verified: the only one asserted to apps (SPEC
    /// §11).
    pub fn verified_email(&self) -> Option<&str> {
        self.email.as_deref().filter(|_| self.email_verified)
    }

    /// Whether [`Subject::owner`] is `owner`, without building it.
    pub fn is_owned_by(&self, owner: &str) -> bool {
        match &self.client {
            Some(_) => owner.strip_prefix(crate::tokens::CLIENT_PREFIX) == Some(self.sub.as_str()),
            None => owner == self.sub,
        }
    }
}

/// A session about to be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub sid: Uuid,
    pub subject: Subject,
    pub access_jti: Uuid,
    pub refresh_hash: SecretHash,
    /// When the first refresh token expires.
    pub ends_at: Millis,
    /// When the session ends whatever happens (`auth.max_session`); no
    /// rotation extends a refresh token past it.
    pub max_ends_at: Millis,
    /// Most live sessions its owner keeps (`auth.max_sessions_per_user`, 0 =
    /// no limit): beyond, this login ends the oldest in the same atomic step.
    pub max_sessions: u32,
    /// Set for a browser's session (SPEC §15): opened by its cookie, not by
    /// tokens.
    pub browser: Option<BrowserLogin>,
    pub now: Millis,
}

/// What makes a session a browser's (SPEC §15): the hash of the handle its
/// cookie carries (the handle itself is never stored), and how the user
/// proved who they are (`amr`, RFC 8176 values, space-separated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserLogin {
    pub handle_hash: SecretHash,
    pub amr: String,
}

/// A live browser session, as its cookie opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSession {
    pub subject: Subject,
    /// As [`BrowserLogin::amr`].
    pub amr: String,
}

/// A presented refresh token and the successor that replaces it if it is
/// the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Whose session (its key's tag, see `store::redis::keys`).
    pub owner: String,
    pub sid: Uuid,
    /// Only sessions of this client rotate (`None`: `/login` sessions).
    pub client: Option<String>,
    pub presented_generation: u32,
    pub presented_hash: SecretHash,
    pub successor_hash: SecretHash,
    pub successor_jti: Uuid,
    /// Scopes asked for (RFC 6749 §6); empty: none named. A first use may
    /// narrow to any scopes granted to the session; a retry within the grace
    /// window may name only scopes of the successor it gets back.
    pub narrow: Vec<String>,
    /// The client's scopes now (OAuth sessions): a first use narrows the
    /// session to these for good, so a client's sessions shrink with it.
    pub ceiling: Option<Vec<String>>,
    pub now: Millis,
}

/// The successor pair a rotation answers with: everything needed to sign
/// its access token again, byte for byte, on a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Successor {
    pub subject: Subject,
    /// The scope its access token carries (the session's, or narrower).
    pub scope: Option<String>,
    pub access_jti: Uuid,
    pub issued_at: Millis,
    /// When its refresh token expires.
    pub ends_at: Millis,
}

/// The store's verdict on a [`Rotation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationOutcome {
    /// The presented token was current: the successor is now current.
    Rotated(Successor),
    /// The presented token was rotated moments ago and its successor is still
    /// unused: answer with that very successor, as first issued.
    Replayed(Successor),
    /// A rotated token came back outside the grace window: the session is
    /// ended (RFC 9700 §4.14.2).
    Reused,
    /// `narrow` asked for a scope the session (or, on a retry, the successor)
    /// was never granted; nothing changed, so the token stays usable.
    NotGranted,
    /// No live session of this client knows this token.
    Unknown,
}

/// A live refresh token, as introspection reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    pub subject: Subject,
    pub ends_at: Millis,
}

/// One of a user's live sessions, as `GET /sessions` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub sid: Uuid,
    /// The OAuth client it was issued to; `None` for `/login` sessions.
    pub client: Option<String>,
    pub created_at: Millis,
    /// Its last login, refresh or authenticate.
    pub last_active: Millis,
    /// A browser's session (cookie), not a token holder's.
    pub browser: bool,
}

/// What [`SessionStore::admit_attempt`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Counted; go on and check the secret.
    Admitted,
    /// Refused: for each counter, in order, how long it stays closed
    /// (`None`: it is open).
    Refused(Vec<Option<Millis>>),
}

/// A failed-credential counter and the count at which it closes (see
/// [`crate::throttle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub key: String,
    pub limit: u32,
}

/// The store's verdict on ending a session for its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Ended,
    Unknown,
    /// The session belongs to someone else and was left alone.
    NotOwner,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("session store did not answer in time")]
    Timeout,
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    #[error("session store answered something unexpected: {0}")]
    Protocol(String),
}

/// The atomic operations the session rules are built from.
#[cfg_attr(test, mockall::automock)]
#[allow(async_fn_in_trait)] // used through concrete types, whose futures are Send
pub trait SessionStore {
    /// Stores a new session (`/login`).
    async fn create(&self, session: &NewSession) -> Result<(), StoreError>;

    /// True if `jti` is the session's current access token; if so, restarts
    /// its idle clock (`/authenticate`).
    async fn authenticate(
        &self,
        owner: &str,
        sid: Uuid,
        jti: Uuid,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// The browser session whose cookie handle hashes to `handle_hash`, if
    /// it is live; restarts its idle clock (`/oauth2/auth`).
    async fn authenticate_browser(
        &self,
        owner: &str,
        sid: Uuid,
        handle_hash: SecretHash,
        now: Millis,
    ) -> Result<Option<BrowserSession>, StoreError>;

    /// Rotates, replays or ends the session, atomically (`/refresh`).
    async fn rotate(&self, rotation: &Rotation) -> Result<RotationOutcome, StoreError>;

    /// Ends the session; ending an unknown one is not an error (`/logout`).
    /// Every end appends `SessionEnded` for `reason` to the log of events.
    async fn end(
        &self,
        owner: &str,
        sid: Uuid,
        reason: EndReason,
        now: Millis,
    ) -> Result<(), StoreError>;

    /// Ends the session only if it was issued to `client` (RFC 7009).
    async fn revoke(
        &self,
        owner: &str,
        sid: Uuid,
        client: &str,
        reason: EndReason,
        now: Millis,
    ) -> Result<Revocation, StoreError>;

    /// Ends the session only if it belongs to `owner`.
    async fn end_owned(
        &self,
        sid: Uuid,
        owner: &str,
        reason: EndReason,
        now: Millis,
    ) -> Result<Revocation, StoreError>;

    /// Up to `limit` live sessions of `owner`, oldest first.
    async fn sessions_of(
        &self,
        owner: &str,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<SessionInfo>, StoreError>;

    /// Ends every session of `owner` (a user's `sub`, or `client:<id>`);
    /// returns how many it ended.
    async fn end_all(&self, owner: &str, reason: EndReason, now: Millis)
    -> Result<u64, StoreError>;

    /// The session behind a refresh token, if the token is its current one;
    /// changes nothing (token introspection).
    async fn inspect_refresh(
        &self,
        owner: &str,
        sid: Uuid,
        generation: u32,
        hash: SecretHash,
        now: Millis,
    ) -> Result<Option<RefreshState>, StoreError>;

    /// Counts one request against `key`'s fixed window of `window` ms; past
    /// `limit`, returns how long until the window ends.
    async fn count_request(
        &self,
        key: &str,
        limit: u32,
        window: Millis,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError>;

    /// Before a credential check (and any argon2 work): refused if any of
    /// `counters` has reached its limit; else counts the attempt as a
    /// failure on each, in the same atomic step, so concurrent guesses can
    /// never pass the limit together (see [`crate::throttle`] for the
    /// window rule).
    async fn admit_attempt(
        &self,
        counters: &[Counter],
        window: Millis,
        now: Millis,
    ) -> Result<Admission, StoreError>;

    /// Takes back an admitted attempt that was no failure after all (the
    /// secret was right, or it could not be checked).
    async fn forgive_attempt(&self, counters: &[Counter], now: Millis) -> Result<(), StoreError>;

    /// The API-token cache's entry for `hash` (SPEC §9). A live entry not
    /// marked used for `touch_every` is marked used at `now` and answered
    /// with `touch: true` — to one caller per interval.
    async fn api_token_lookup(
        &self,
        hash: &TokenHash,
        now: Millis,
        touch_every: Millis,
    ) -> Result<CacheLookup, StoreError>;

    /// Caches `entry` for `ttl` ms: only if nothing is cached for `hash`
    /// (a fill after a miss), or over whatever is (`overwrite`, a revocation).
    async fn cache_api_token(
        &self,
        hash: &TokenHash,
        entry: &CacheEntry,
        ttl: Millis,
        overwrite: bool,
    ) -> Result<(), StoreError>;

    /// Is the store reachable (`/health`)?
    async fn ping(&self) -> Result<(), StoreError>;

    /// Logs the ends of sessions whose record expired by itself (see
    /// [`ended`]): `SessionEnded` (idle or max_session) to the log of
    /// events, and to the revocation feed's log while their access tokens
    /// live; returns how many.
    async fn sweep_ended(&self, now: Millis) -> Result<u32, StoreError>;

    /// Appends `events` to the log of events (SPEC §14), all or none: for
    /// events that no session operation appends by itself (`LoginFailed`).
    async fn log_events(&self, events: &[NewEvent]) -> Result<(), StoreError>;

    /// Up to `limit` entries of the ended-sessions log from `start`.
    async fn ended_log(
        &self,
        start: LogStart,
        limit: u32,
        now: Millis,
    ) -> Result<LogPage, StoreError>;
}

/// The store chosen at start-up. An enum rather than `dyn`: the trait has
/// `async fn`s, and static dispatch costs nothing on the hot path.
#[allow(clippy::large_enum_variant)] // one per replica; boxing would only add a hop
pub enum Store {
    Redis(redis::RedisStore),
    Memory(memory::MemoryStore),
}

impl Store {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Redis(_) => "redis",
            Self::Memory(_) => "memory",
        }
    }
}

/// Forwards one call to whichever store this is.
macro_rules! dispatch {
    ($store:expr, $s:ident => $call:expr) => {
        match $store {
            Store::Redis($s) => $call.await,
            Store::Memory($s) => $call.await,
        }
    };
}

impl SessionStore for Store {
    async fn create(&self, session: &NewSession) -> Result<(), StoreError> {
        dispatch!(self, s => s.create(session))
    }

    async fn authenticate(
        &self,
        owner: &str,
        sid: Uuid,
        jti: Uuid,
        now: Millis,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.authenticate(owner, sid, jti, now))
    }

    async fn authenticate_browser(
        &self,
        owner: &str,
        sid: Uuid,
        handle_hash: SecretHash,
        now: Millis,
    ) -> Result<Option<BrowserSession>, StoreError> {
        dispatch!(self, s => s.authenticate_browser(owner, sid, handle_hash, now))
    }

    async fn rotate(&self, rotation: &Rotation) -> Result<RotationOutcome, StoreError> {
        dispatch!(self, s => s.rotate(rotation))
    }

    async fn end(
        &self,
        owner: &str,
        sid: Uuid,
        reason: EndReason,
        now: Millis,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.end(owner, sid, reason, now))
    }

    async fn revoke(
        &self,
        owner: &str,
        sid: Uuid,
        client: &str,
        reason: EndReason,
        now: Millis,
    ) -> Result<Revocation, StoreError> {
        dispatch!(self, s => s.revoke(owner, sid, client, reason, now))
    }

    async fn end_owned(
        &self,
        sid: Uuid,
        sub: &str,
        reason: EndReason,
        now: Millis,
    ) -> Result<Revocation, StoreError> {
        dispatch!(self, s => s.end_owned(sid, sub, reason, now))
    }

    async fn sessions_of(
        &self,
        sub: &str,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        dispatch!(self, s => s.sessions_of(sub, now, limit))
    }

    async fn end_all(&self, sub: &str, reason: EndReason, now: Millis) -> Result<u64, StoreError> {
        dispatch!(self, s => s.end_all(sub, reason, now))
    }

    async fn inspect_refresh(
        &self,
        owner: &str,
        sid: Uuid,
        generation: u32,
        hash: SecretHash,
        now: Millis,
    ) -> Result<Option<RefreshState>, StoreError> {
        dispatch!(self, s => s.inspect_refresh(owner, sid, generation, hash, now))
    }

    async fn count_request(
        &self,
        key: &str,
        limit: u32,
        window: Millis,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        dispatch!(self, s => s.count_request(key, limit, window, now))
    }

    async fn admit_attempt(
        &self,
        counters: &[Counter],
        window: Millis,
        now: Millis,
    ) -> Result<Admission, StoreError> {
        dispatch!(self, s => s.admit_attempt(counters, window, now))
    }

    async fn forgive_attempt(&self, counters: &[Counter], now: Millis) -> Result<(), StoreError> {
        dispatch!(self, s => s.forgive_attempt(counters, now))
    }

    async fn api_token_lookup(
        &self,
        hash: &TokenHash,
        now: Millis,
        touch_every: Millis,
    ) -> Result<CacheLookup, StoreError> {
        dispatch!(self, s => s.api_token_lookup(hash, now, touch_every))
    }

    async fn cache_api_token(
        &self,
        hash: &TokenHash,
        entry: &CacheEntry,
        ttl: Millis,
        overwrite: bool,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.cache_api_token(hash, entry, ttl, overwrite))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping())
    }

    async fn sweep_ended(&self, now: Millis) -> Result<u32, StoreError> {
        dispatch!(self, s => s.sweep_ended(now))
    }

    async fn log_events(&self, events: &[NewEvent]) -> Result<(), StoreError> {
        dispatch!(self, s => s.log_events(events))
    }

    async fn ended_log(
        &self,
        start: LogStart,
        limit: u32,
        now: Millis,
    ) -> Result<LogPage, StoreError> {
        dispatch!(self, s => s.ended_log(start, limit, now))
    }
}
