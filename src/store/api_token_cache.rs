//! What the session store caches of API tokens (SPEC §9): a hash's live
//! record or its death, so that validation costs one round trip on a hit.
//! The rules of filling and revoking are `crate::api_tokens`'.

use uuid::Uuid;

use crate::time::Millis;
use crate::tokens::Rejection;

/// A live token as the cache keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedToken {
    pub id: Uuid,
    pub name: String,
    /// Space-separated.
    pub scopes: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
}

/// What the cache says of a token hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLookup {
    /// Not cached: ask the database.
    Miss,
    /// Revoked, expired or unknown.
    Dead(Rejection),
    /// `touch`: this lookup is the one that should record the use.
    Live { token: CachedToken, touch: bool },
}

/// What is written into the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheEntry {
    Live {
        token: CachedToken,
        used_at: Option<Millis>,
    },
    Dead(Rejection),
}
