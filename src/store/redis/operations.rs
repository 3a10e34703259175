//! The [`SessionStore`] operations on Redis: each one script (see
//! `scripts/*.lua`), its keys named by [`super::keys`], one round trip.

use std::time::Duration;

use deadpool_redis::redis::{self, Value};
use uuid::Uuid;

use super::keys::{api_token_key, failure_counters, flag, num, text, user_key};
use super::replies::{self, Reply, parse_api_token, parse_rotation};
use super::{Conn, LOGOUT_ALL_BATCH, RATE_PREFIX, RedisStore, Repeat, browser, session_key};
use crate::store::event_log::NewEvent;
use crate::store::{
    Admission, BrowserSession, CacheEntry, CacheLookup, Counter, EndReason, LogPage, LogStart,
    NewSession, RefreshState, Revocation, Rotation, RotationOutcome, SessionInfo, SessionStore,
    StoreError,
};
use crate::time::Millis;
use crate::tokens::SecretHash;
use crate::tokens::api::TokenHash;

impl SessionStore for RedisStore {
    async fn create(&self, s: &NewSession) -> Result<(), StoreError> {
        let args = [
            s.subject.sub.as_bytes().to_vec(),
            s.access_jti.as_bytes().to_vec(),
            s.refresh_hash.to_vec(),
            num(s.ends_at),
            num(self.timing.ttl(s.ends_at, s.now)),
            text(s.subject.client.as_deref()),
            text(s.subject.scope.as_deref()),
            num(s.max_ends_at),
            num(s.now),
            s.sid.to_string().into_bytes(),
            text(s.subject.email.as_deref()),
            flag(s.subject.email_verified),
            num(u64::from(s.max_sessions)),
            s.browser
                .as_ref()
                .map_or_else(Vec::new, |b| b.handle_hash.to_vec()),
            text(s.browser.as_ref().map(|b| b.amr.as_str())),
        ];
        let args = [&args[..], &self.feed_args(s.now)].concat();
        // A repeat rewrites the same fields of the same new session (and
        // finds the cap already enforced).
        let owner = s.subject.owner();
        let keys = [session_key(&owner, s.sid), user_key(&owner)];
        let ended: u64 = self
            .eval_feed(Repeat::Safe, &self.login, &keys, &args)
            .await?;
        if ended > 0 {
            tracing::info!(
                ended,
                "login past auth.max_sessions_per_user: the owner's oldest sessions ended"
            );
        }
        Ok(())
    }

    async fn authenticate(
        &self,
        owner: &str,
        sid: Uuid,
        jti: Uuid,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let args = [jti.as_bytes().to_vec(), num(now), num(self.timing.idle)];
        let key = session_key(owner, sid);
        let current: i64 = self
            .eval(Repeat::Safe, &self.authenticate, key, &args)
            .await?;
        Ok(current == 1)
    }

    async fn authenticate_browser(
        &self,
        owner: &str,
        sid: Uuid,
        handle_hash: SecretHash,
        now: Millis,
    ) -> Result<Option<BrowserSession>, StoreError> {
        let args = [handle_hash.to_vec(), num(now), num(self.timing.idle)];
        let reply: Option<Vec<Vec<u8>>> = self
            .eval(Repeat::Safe, &self.browser, session_key(owner, sid), &args)
            .await?;
        reply.map(browser::session).transpose()
    }

    async fn rotate(&self, r: &Rotation) -> Result<RotationOutcome, StoreError> {
        let args = [
            num(u64::from(r.presented_generation)),
            r.presented_hash.to_vec(),
            r.successor_hash.to_vec(),
            r.successor_jti.as_bytes().to_vec(),
            num(r.now),
            num(self.timing.grace),
            num(self.timing.idle),
            num(self.timing.refresh_lifetime),
            text(r.client.as_deref()),
            r.narrow.join(" ").into_bytes(),
            r.sid.to_string().into_bytes(),
            flag(r.ceiling.is_some()),
            r.ceiling
                .as_deref()
                .unwrap_or_default()
                .join(" ")
                .into_bytes(),
        ];
        let args = [&args[..], &self.feed_args(r.now)].concat();
        // Repeating a rotation that did run is answered as a retry — the same
        // successor — if the repeat is sure to land inside the grace window.
        let repeat = if Duration::from_millis(self.timing.grace) > self.timeout {
            Repeat::Safe
        } else {
            Repeat::Unsafe
        };
        let keys = [session_key(&r.owner, r.sid), user_key(&r.owner)];
        let reply: Vec<Value> = self.eval_feed(repeat, &self.rotate, &keys, &args).await?;
        parse_rotation(&reply, r)
    }

    async fn end(
        &self,
        owner: &str,
        sid: Uuid,
        reason: EndReason,
        now: Millis,
    ) -> Result<(), StoreError> {
        let args = [
            sid.to_string().into_bytes(),
            reason.as_str().as_bytes().to_vec(),
        ];
        let args = [&args[..], &self.feed_args(now)].concat();
        let keys = [session_key(owner, sid), user_key(owner)];
        let _: i64 = self
            .eval_feed(Repeat::Safe, &self.end, &keys, &args)
            .await?;
        Ok(())
    }

    async fn revoke(
        &self,
        owner: &str,
        sid: Uuid,
        client: &str,
        reason: EndReason,
        now: Millis,
    ) -> Result<Revocation, StoreError> {
        self.end_if_owner(owner, sid, client, "c", reason, now)
            .await
    }

    async fn end_owned(
        &self,
        sid: Uuid,
        owner: &str,
        reason: EndReason,
        now: Millis,
    ) -> Result<Revocation, StoreError> {
        self.end_if_owner(owner, sid, owner, "s", reason, now).await
    }

    async fn sessions_of(
        &self,
        owner: &str,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        let args = [owner.as_bytes().to_vec(), num(now), num(u64::from(limit))];
        let reply: Vec<Value> = self
            .eval(Repeat::Safe, &self.sessions, user_key(owner), &args)
            .await?;
        replies::sessions(&reply)
    }

    /// One batch of [`LOGOUT_ALL_BATCH`] sessions per script run, so a
    /// huge index never holds Redis for more than a few milliseconds; the
    /// batches repeat until the index is empty, bounded by its size when
    /// the first batch ran (logins meanwhile may add to it).
    async fn end_all(
        &self,
        owner: &str,
        reason: EndReason,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let args = [
            owner.as_bytes().to_vec(),
            num(LOGOUT_ALL_BATCH),
            reason.as_str().as_bytes().to_vec(),
        ];
        let args = [&args[..], &self.feed_args(now)].concat();
        let key = [user_key(owner)];
        let mut ended = 0;
        let mut runs_left: Option<u64> = None;
        loop {
            // Ending what is already ended changes nothing.
            let (batch, left): (u64, u64) = self
                .eval_feed(Repeat::Safe, &self.logout_all, &key, &args)
                .await?;
            ended += batch;
            let runs = runs_left.get_or_insert(left.div_ceil(LOGOUT_ALL_BATCH) + 1);
            *runs = runs.saturating_sub(1);
            if left == 0 || *runs == 0 {
                return Ok(ended);
            }
        }
    }

    async fn inspect_refresh(
        &self,
        owner: &str,
        sid: Uuid,
        generation: u32,
        hash: SecretHash,
        now: Millis,
    ) -> Result<Option<RefreshState>, StoreError> {
        let args = [num(u64::from(generation)), hash.to_vec(), num(now)];
        let key = session_key(owner, sid);
        let reply: Vec<Value> = self.eval(Repeat::Safe, &self.inspect, key, &args).await?;
        let reply = Reply(&reply);
        if reply.code()? == 0 {
            return Ok(None);
        }
        Ok(Some(RefreshState {
            subject: reply.subject(1, 5)?,
            ends_at: reply.get(4)?,
        }))
    }

    async fn count_request(
        &self,
        key: &str,
        limit: u32,
        window: Millis,
        _now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let args = [num(u64::from(limit)), num(window)];
        let key = format!("{RATE_PREFIX}{key}");
        // Counting twice would charge the client for our failure.
        let left: i64 = self.eval(Repeat::Unsafe, &self.count, key, &args).await?;
        Ok(u64::try_from(left).ok())
    }

    async fn admit_attempt(
        &self,
        counters: &[Counter],
        window: Millis,
        _now: Millis,
    ) -> Result<Admission, StoreError> {
        let (keys, mut args) = failure_counters(counters);
        args.push(num(window));
        // Counting twice would punish the caller for our failure.
        let waits: Vec<i64> = self
            .eval_keys(Repeat::Unsafe, &self.admit, &keys, &args)
            .await?;
        Ok(if waits.is_empty() {
            Admission::Admitted
        } else {
            Admission::Refused(waits.into_iter().map(|w| u64::try_from(w).ok()).collect())
        })
    }

    async fn forgive_attempt(&self, counters: &[Counter], _now: Millis) -> Result<(), StoreError> {
        let (keys, _) = failure_counters(counters);
        // Forgiving twice would hand the caller a free guess.
        let _: i64 = self
            .eval_keys(Repeat::Unsafe, &self.forgive, &keys, &[])
            .await?;
        Ok(())
    }

    async fn api_token_lookup(
        &self,
        hash: &TokenHash,
        now: Millis,
        touch_every: Millis,
    ) -> Result<CacheLookup, StoreError> {
        let args = [num(now), num(touch_every)];
        // A repeat can only find the token already marked used.
        let reply: Vec<Value> = self
            .eval(Repeat::Safe, &self.api_token, api_token_key(hash), &args)
            .await?;
        parse_api_token(&reply)
    }

    async fn cache_api_token(
        &self,
        hash: &TokenHash,
        entry: &CacheEntry,
        ttl: Millis,
        overwrite: bool,
    ) -> Result<(), StoreError> {
        self.put_api_token(hash, entry, ttl, overwrite).await
    }

    /// On a cluster, any node answering will do: a cluster client sends
    /// `PING` to every master, and one master down — which fails only its
    /// slots — must not make every replica unready.
    async fn ping(&self) -> Result<(), StoreError> {
        self.with_connection(Repeat::Safe, |mut conn| async move {
            let probe = match conn {
                Conn::Cluster(_) => redis::cmd("ECHO").arg("tokengate").clone(),
                Conn::One(_) => redis::cmd("PING"),
            };
            probe.query_async::<String>(&mut conn).await
        })
        .await?;
        Ok(())
    }

    async fn sweep_ended(&self, now: Millis) -> Result<u32, StoreError> {
        self.sweep(now).await
    }

    async fn log_events(&self, events: &[NewEvent]) -> Result<(), StoreError> {
        self.append_events(events).await
    }

    async fn ended_log(
        &self,
        start: LogStart,
        limit: u32,
        now: Millis,
    ) -> Result<LogPage, StoreError> {
        self.read_ended(start, limit, now).await
    }
}
