//! API tokens for services (SPEC §9): long-lived opaque tokens with scopes,
//! for machines, created and revoked by an operator (admin API or CLI) and
//! validated on every call.
//!
//! The database holds each token's record under the SHA-256 of the token
//! ([`format`]). Validation must not cost a database query per call, so the
//! session store (Redis) caches hash → {id, name, scopes, expiry} or "dead"
//! (revoked, expired, unknown): a hit is one round trip, a miss reads the
//! database once and fills the cache. A revocation writes the database
//! first, then a tombstone over the cache entry — not a plain delete, so a
//! fill racing it (a replica that read the record just before the revocation)
//! finds the key taken and does not bring the token back. Every replica reads
//! the same cache, so a revoked token fails everywhere at once; one the
//! cache could not be told of is retried until it is ([`revocation`]).
//!
//! A miss costs a database read, and anyone can send well-formed tokens
//! nobody issued, each a miss. So misses are counted per client address
//! (SPEC §11, `api_tokens.misses_per_address` a minute, in the store so
//! replicas share the count): past it, that address's uncached tokens are
//! refused as unknown without a read. Cached tokens, live or dead, are
//! answered as ever; a real token that is not cached yet waits for the
//! minute to end, or for a use from another address to cache it.
//!
//! `last_used_at` is written behind: the cache lookup marks a token used at
//! most once per [`TOUCH_EVERY`], and the replica that got the mark queues
//! one database update, off the request path.

pub mod revocation;

use std::net::IpAddr;
use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::config::ApiTokenSettings;
use crate::db::{ApiTokenRecord, DbError, DurableStore};
use crate::store::{CacheEntry, CacheLookup, CachedToken, SessionStore, StoreError};
use crate::time::{Millis, rfc3339_seconds};
use crate::tokens::Rejection;
use crate::tokens::api::{self as format, TokenHash};
pub use revocation::{CacheClear, Revoked, revoke};

/// What the `sub` of every API token starts with.
pub const SUBJECT_PREFIX: &str = crate::db::TOKEN_SUBJECT_PREFIX;

/// How often a token's `last_used_at` is written at most.
pub const TOUCH_EVERY: Millis = 60_000;

/// How long a cache entry of a known token lives (a revocation replaces it
/// at once; the limit only bounds the cache's size).
const CACHE_TTL: Millis = 10 * 60_000;

/// How long "no such token" is remembered: repeats of one bad token cost no
/// query, and invented ones expire soon.
const UNKNOWN_TTL: Millis = 30_000;

/// Longest name of a token.
pub const MAX_NAME_CHARS: usize = 100;

/// Longest lifetime a token may be given (a hundred years).
pub const MAX_TTL_DAYS: u32 = 36_500;

/// Database updates of `last_used_at` that may wait; beyond, one is dropped
/// (the next use a minute later writes it).
const TOUCH_QUEUE: usize = 1024;

const DAY: Millis = 86_400_000;

/// The window `api_tokens.misses_per_address` counts in.
const MISS_WINDOW: Millis = 60_000;

/// A token that validated: who it is and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
}

impl ApiToken {
    /// The first of `required` that the token lacks.
    pub fn missing<'a>(&self, required: &'a [String]) -> Option<&'a str> {
        required
            .iter()
            .find(|s| !self.scopes.contains(s))
            .map(String::as_str)
    }

    /// `token:<name>`: the identity nginx passes on, never mistaken for a
    /// user id (`/login` refuses ids with this prefix; client ids have no `:`).
    pub fn subject(&self) -> String {
        format!("{SUBJECT_PREFIX}{}", self.name)
    }
}

/// A token to create, as the admin API or the CLI is asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiToken {
    pub name: String,
    pub scopes: Vec<String>,
    /// `None`: never expires.
    pub ttl_days: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiTokenError {
    #[error("API token refused: {0}")]
    Invalid(Rejection),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] DbError),
}

/// A token's record as the admin API and `token info --json` show it.
/// Never the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    /// `active`, `revoked` or `expired`.
    pub status: &'static str,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl TokenView {
    pub fn new(record: &ApiTokenRecord, now: Millis) -> Self {
        Self {
            id: record.id,
            name: record.name.clone(),
            scopes: record.scopes.clone(),
            status: status(record, now),
            created_at: rfc3339_seconds(record.created_at),
            expires_at: record.expires_at.map(rfc3339_seconds),
            last_used_at: record.last_used_at.map(rfc3339_seconds),
            revoked_at: record.revoked_at.map(rfc3339_seconds),
        }
    }
}

/// A revocation's answer (admin API, `token revoke --json`): the record,
/// and whether the cache has heard of it yet (`"cache": "cleared"` or
/// `"pending"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokedView {
    #[serde(flatten)]
    pub token: TokenView,
    pub cache: CacheClear,
}

impl RevokedView {
    pub fn new(revoked: &Revoked, now: Millis) -> Self {
        Self {
            token: TokenView::new(&revoked.record, now),
            cache: revoked.cache,
        }
    }
}

pub fn status(record: &ApiTokenRecord, now: Millis) -> &'static str {
    if record.revoked_at.is_some() {
        "revoked"
    } else if record.is_active(now) {
        "active"
    } else {
        "expired"
    }
}

/// Checks and normalizes what a new token is asked for: a trimmed name of
/// 1–100 printable ASCII characters (it travels in `X-User-Id`), scopes that
/// are scope tokens (each once), a lifetime of 1–36,500 days.
pub fn check(new: NewApiToken) -> Result<NewApiToken, String> {
    let name = new.name.trim().to_owned();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(format!("name must be 1 to {MAX_NAME_CHARS} characters"));
    }
    if !name.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err("name must be printable ASCII (letters, digits, punctuation, spaces)".into());
    }
    let mut scopes: Vec<String> = Vec::with_capacity(new.scopes.len());
    for scope in new.scopes {
        if !crate::tokens::scope::is_scope_token(&scope) {
            return Err(format!(
                "{scope:?} is not a scope (printable ASCII, no space, quote or backslash)"
            ));
        }
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if let Some(days) = new.ttl_days
        && !(1..=MAX_TTL_DAYS).contains(&days)
    {
        return Err(format!("ttl_days must be 1 to {MAX_TTL_DAYS}"));
    }
    Ok(NewApiToken {
        name,
        scopes,
        ttl_days: new.ttl_days,
    })
}

/// Creates a token; returns it (shown once, never stored) and its record.
pub async fn create(
    db: &impl DurableStore,
    new: NewApiToken,
    now: Millis,
) -> Result<(String, ApiTokenRecord), ApiTokenError> {
    let new = check(new).map_err(ApiTokenError::BadRequest)?;
    let (token, hash) = format::generate();
    let record = ApiTokenRecord {
        id: Uuid::now_v7(),
        name: new.name,
        token_hash: hash.hex(),
        scopes: new.scopes,
        created_at: now,
        expires_at: new.ttl_days.map(|d| now + Millis::from(d) * DAY),
        last_used_at: None,
        revoked_at: None,
    };
    db.create_api_token(&record).await?;
    Ok((token, record))
}

/// Validation and the write-behind of `last_used_at`, per replica.
pub struct ApiTokens {
    /// Cache misses per client address per minute; 0 = no limit.
    misses_per_address: u32,
    counts: Counts,
    touches: mpsc::Sender<(Uuid, Millis)>,
    /// Taken by [`ApiTokens::write_touches`].
    queued: Mutex<Option<mpsc::Receiver<(Uuid, Millis)>>>,
}

/// What validation cost, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Cache misses answered by the database.
    pub reads: Counter,
    /// Cache misses refused without a read: their address was over its limit.
    pub refused: Counter,
}

impl Default for ApiTokens {
    fn default() -> Self {
        Self::new(&ApiTokenSettings::default())
    }
}

impl ApiTokens {
    pub fn new(settings: &ApiTokenSettings) -> Self {
        let (touches, queued) = mpsc::channel(TOUCH_QUEUE);
        Self {
            misses_per_address: settings.misses_per_address,
            counts: Counts::default(),
            touches,
            queued: Mutex::new(Some(queued)),
        }
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The token behind `presented`, if it is well formed, known, unrevoked
    /// and unexpired at `now`. One cache round trip; on a miss, one count of
    /// `addr`'s misses, then one database read and one cache write.
    pub async fn validate(
        &self,
        db: &impl DurableStore,
        cache: &impl SessionStore,
        presented: &str,
        addr: IpAddr,
        now: Millis,
    ) -> Result<ApiToken, ApiTokenError> {
        let hash = format::parse(presented).ok_or(ApiTokenError::Invalid(Rejection::Malformed))?;
        let (token, touch) = match cache.api_token_lookup(&hash, now, TOUCH_EVERY).await? {
            CacheLookup::Dead(why) => return Err(ApiTokenError::Invalid(why)),
            CacheLookup::Live { token, touch } => (token, touch),
            CacheLookup::Miss => {
                self.count_miss(cache, addr, now).await?;
                return self.validate_stored(db, cache, &hash, now).await;
            }
        };
        if token.expires_at.is_some_and(|end| now >= end) {
            return Err(ApiTokenError::Invalid(Rejection::Expired));
        }
        if touch {
            self.touch(token.id, now);
        }
        Ok(ApiToken {
            id: token.id,
            name: token.name,
            scopes: token
                .scopes
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            created_at: token.created_at,
            expires_at: token.expires_at,
        })
    }

    /// Counts a cache miss from `addr`; past the address's limit, the token
    /// is refused as unknown, and the database is not asked.
    async fn count_miss(
        &self,
        cache: &impl SessionStore,
        addr: IpAddr,
        now: Millis,
    ) -> Result<(), ApiTokenError> {
        if self.misses_per_address == 0 {
            return Ok(());
        }
        let key = misses_key(addr);
        let over = cache
            .count_request(&key, self.misses_per_address, MISS_WINDOW, now)
            .await?;
        if over.is_none() {
            return Ok(());
        }
        self.counts.refused.inc();
        tracing::debug!(%addr, "API token refused unread: too many unknown tokens from this address");
        Err(ApiTokenError::Invalid(Rejection::Unknown))
    }

    /// A cache miss: the database decides, and the cache learns it.
    async fn validate_stored(
        &self,
        db: &impl DurableStore,
        cache: &impl SessionStore,
        hash: &TokenHash,
        now: Millis,
    ) -> Result<ApiToken, ApiTokenError> {
        self.counts.reads.inc();
        let (why, ttl) = match db.api_token_by_hash(&hash.hex()).await? {
            None => (Rejection::Unknown, UNKNOWN_TTL),
            Some(r) if r.revoked_at.is_some() => (Rejection::Revoked, CACHE_TTL),
            Some(r) if !r.is_active(now) => (Rejection::Expired, CACHE_TTL),
            Some(record) => return self.fill(cache, hash, record, now).await,
        };
        cache
            .cache_api_token(hash, &CacheEntry::Dead(why), ttl, false)
            .await?;
        Err(ApiTokenError::Invalid(why))
    }

    /// Caches a live record and answers with it.
    async fn fill(
        &self,
        cache: &impl SessionStore,
        hash: &TokenHash,
        record: ApiTokenRecord,
        now: Millis,
    ) -> Result<ApiToken, ApiTokenError> {
        let touch = record
            .last_used_at
            .is_none_or(|used| now.saturating_sub(used) >= TOUCH_EVERY);
        let ttl = record
            .expires_at
            .map_or(CACHE_TTL, |end| CACHE_TTL.min(end - now));
        let entry = CacheEntry::Live {
            token: CachedToken {
                id: record.id,
                name: record.name.clone(),
                scopes: record.scopes.join(" "),
                created_at: record.created_at,
                expires_at: record.expires_at,
            },
            used_at: if touch {
                Some(now)
            } else {
                record.last_used_at
            },
        };
        cache.cache_api_token(hash, &entry, ttl, false).await?;
        if touch {
            self.touch(record.id, now);
        }
        Ok(ApiToken {
            id: record.id,
            name: record.name,
            scopes: record.scopes,
            created_at: record.created_at,
            expires_at: record.expires_at,
        })
    }

    /// Queues a `last_used_at` update; drops it if the queue is full.
    fn touch(&self, id: Uuid, now: Millis) {
        if self.touches.try_send((id, now)).is_err() {
            tracing::debug!(%id, "last_used_at update dropped: queue full");
        }
    }

    /// Writes queued `last_used_at` updates, until the app is dropped.
    /// A failed write is logged and forgotten: a later use writes it again.
    pub async fn write_touches(&self, db: &impl DurableStore) {
        let queued = self.queued.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut queued) = queued else {
            return; // another caller runs it
        };
        while let Some((id, at)) = queued.recv().await {
            if let Err(e) = db.touch_api_token(id, at).await {
                tracing::warn!(%id, error = %e, "cannot record an API token's last use");
            }
        }
    }
}

/// The rate-limit key of an address's misses (`tg:rl:` in Redis, beside
/// the OAuth clients' keys, whose ids have no `:`). IPv4 as is (also when
/// mapped into IPv6), IPv6 per /64, the block one host usually holds, as
/// failed credentials are counted.
fn misses_key(addr: IpAddr) -> String {
    format!("api_token_misses:{}", crate::throttle::address_block(addr))
}

#[cfg(test)]
mod tests;
