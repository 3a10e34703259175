//! Per-client rate limits of the token endpoint, counted in the store so
//! every replica shares one budget.

use super::{SessionError, Sessions};
use crate::store::SessionStore;
use crate::time::Millis;

/// Length of a rate-limit window.
const RATE_WINDOW: Millis = 60_000;

impl<S: SessionStore> Sessions<S> {
    /// Counts a token request of `client` against its per-minute `limit`,
    /// shared by every replica through the store.
    pub async fn count_request(
        &self,
        client: &str,
        limit: u32,
        now: Millis,
    ) -> Result<(), SessionError> {
        if limit == 0 {
            return Ok(());
        }
        match self
            .store
            .count_request(client, limit, RATE_WINDOW, now)
            .await?
        {
            None => Ok(()),
            Some(left) => Err(SessionError::RateLimited(left.div_ceil(1000).max(1))),
        }
    }
}
