//! The API-token cache on Redis (SPEC §9, `scripts/api_token_put.lua`):
//! what the database says of a token, cached for the next validations.

use super::keys::{api_token_key, num};
use super::{RedisStore, Repeat};
use crate::store::{CacheEntry, StoreError};
use crate::time::Millis;
use crate::tokens::api::TokenHash;

impl RedisStore {
    /// Caches `entry` for `ttl` ms (see `SessionStore::cache_api_token`).
    pub(super) async fn put_api_token(
        &self,
        hash: &TokenHash,
        entry: &CacheEntry,
        ttl: Millis,
        overwrite: bool,
    ) -> Result<(), StoreError> {
        let flag = if overwrite { "1" } else { "" };
        let mut args = vec![num(ttl.max(1)), flag.into()];
        match entry {
            CacheEntry::Dead(why) => args.push(why.label().into()),
            CacheEntry::Live { token, used_at } => args.extend([
                Vec::new(),
                token.id.to_string().into_bytes(),
                token.name.as_bytes().to_vec(),
                token.scopes.as_bytes().to_vec(),
                num(token.created_at),
                token.expires_at.map(num).unwrap_or_default(),
                num(used_at.unwrap_or(0)),
            ]),
        }
        // Writing the same entry twice changes nothing.
        let _: i64 = self
            .eval(
                Repeat::Safe,
                &self.api_token_put,
                api_token_key(hash),
                &args,
            )
            .await?;
        Ok(())
    }
}
