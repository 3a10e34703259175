//! Revoking an API token so that no replica accepts it again (SPEC §9, §11
//! "Revocation is not lost").
//!
//! The database says revoked first; then a tombstone goes over the token's
//! entry in the cache, where replicas look first. If the cache cannot be
//! told at that moment (Redis down, or cut off from this process), a live
//! entry there would keep the token working until it expires. So the
//! database records, in the same transaction as `revoked_at`, that the cache
//! still has to learn it (a pending clear); it is deleted once a tombstone
//! is in. Every replica retries what is pending every [`RETRY_EVERY`] until
//! the cache takes it. Meanwhile the answer to the revocation says the cache
//! clear is pending; a cache miss reads the database, which already knows.
//!
//! Writing the same tombstone twice is harmless, so replicas retrying the
//! same row need no lock on it.

use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use super::{ApiTokenError, CACHE_TTL, CacheEntry, TokenHash};
use crate::db::{ApiTokenRecord, DurableStore};
use crate::store::{SessionStore, StoreError};
use crate::time::Millis;
use crate::tokens::Rejection;

/// How often each replica retries pending cache clears.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Pending clears per round; a full round is followed by another at once.
const BATCH: u32 = 100;

/// Whether the cache has heard of a revocation yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheClear {
    /// The tombstone is in: every replica refuses the token now.
    Cleared,
    /// The cache could not be told; replicas retry until it is, and until
    /// then one that finds the token cached live may accept it.
    Pending,
}

/// A revoked token, and whether the cache knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub record: ApiTokenRecord,
    pub cache: CacheClear,
}

/// Revokes a token in the database, then in the cache; `None` if there is
/// no such token. Revoking twice keeps the first time and clears the cache
/// again. A cache that cannot be told is no error: the revocation holds in
/// the database and the clear stays pending.
pub async fn revoke(
    db: &impl DurableStore,
    cache: &impl SessionStore,
    id: Uuid,
    now: Millis,
) -> Result<Option<Revoked>, ApiTokenError> {
    let Some(record) = db.revoke_api_token(id, now).await? else {
        return Ok(None);
    };
    if let Err(e) = tombstone(cache, &record.token_hash).await {
        tracing::warn!(%id, error = %e,
            "API token revoked in the database; its cache clear is pending and retried");
        return Ok(Some(Revoked {
            record,
            cache: CacheClear::Pending,
        }));
    }
    // The tombstone is in; if forgetting the pending clear fails, a retry
    // only writes the tombstone once more.
    if let Err(e) = db
        .cache_cleared(std::slice::from_ref(&record.token_hash))
        .await
    {
        tracing::warn!(%id, error = %e, "cannot forget an API token's done cache clear");
    }
    Ok(Some(Revoked {
        record,
        cache: CacheClear::Cleared,
    }))
}

/// Clears the cache entries of pending revocations, every [`RETRY_EVERY`],
/// until dropped.
pub async fn retry_cache_clears(db: &impl DurableStore, cache: &impl SessionStore) {
    let mut failing = false;
    loop {
        match clear_pending(db, cache).await {
            Ok(cleared) => {
                if failing {
                    tracing::info!("pending API-token cache clears are done again");
                    failing = false;
                }
                if cleared == BATCH as usize {
                    continue;
                }
            }
            Err(e) => {
                // Once per outage, not once per round.
                if !failing {
                    tracing::warn!(error = %e,
                        "cannot clear revoked API tokens from the cache yet; retrying");
                    failing = true;
                }
            }
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// One round: tombstones for up to [`BATCH`] pending clears, oldest first,
/// then forgets them. Stops at the first the cache refuses (it is down:
/// the others would only wait for it too). Returns how many it cleared.
pub async fn clear_pending(
    db: &impl DurableStore,
    cache: &impl SessionStore,
) -> Result<usize, ApiTokenError> {
    let pending = db.pending_cache_clears(BATCH).await?;
    for hash in &pending {
        tombstone(cache, hash).await?;
    }
    if !pending.is_empty() {
        db.cache_cleared(&pending).await?;
        tracing::info!(
            count = pending.len(),
            "revoked API tokens cleared from the cache"
        );
    }
    Ok(pending.len())
}

/// Writes the "revoked" entry over whatever the cache holds for the token
/// hashed as `hex`. A hash not written by [`TokenHash::hex`] cannot be
/// cached either: nothing to clear.
async fn tombstone(cache: &impl SessionStore, hex: &str) -> Result<(), StoreError> {
    let Some(hash) = TokenHash::from_hex(hex) else {
        return Ok(());
    };
    let revoked = CacheEntry::Dead(Rejection::Revoked);
    cache
        .cache_api_token(&hash, &revoked, CACHE_TTL, true)
        .await
}
