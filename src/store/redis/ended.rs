//! The ended-sessions log on Redis (see [`crate::store::ended`]): the
//! stream `tg:ended`, the watched expiries `tg:expiry` (both written by the
//! scripts that end sessions, `scripts/ended.lua`), the epoch `tg:epoch`,
//! and a tail that waits for new entries on a connection of its own.

use std::sync::LazyLock;
use std::time::Duration;

use deadpool::managed::Manager;
use deadpool_redis::redis::{self, Script, Value};
use uuid::Uuid;

use super::keys::{FEED_ENDED, FEED_EPOCH};
use super::replies::Reply;
use super::{Link, Pool, RedisStore, Repeat, num, session_key, user_key};
use crate::store::{EndReason, EndedSession, LogId, LogPage, LogStart, Revocation, StoreError};
use crate::time::Millis;

static READ: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/ended_read.lua")));

/// Watched sessions one run of `sweep.lua` looks at (about 1 ms of Redis).
const SWEEP_BATCH: u64 = 200;
/// Runs of `sweep.lua` one sweep makes at most while every run finds a
/// full batch due; the rest waits for the next sweep.
const SWEEP_RUNS: u32 = 50;

impl RedisStore {
    /// Ends the session if its `field` (`c` client, `s` sub) is `owner`.
    pub(super) async fn end_if_owner(
        &self,
        key_owner: &str,
        sid: Uuid,
        owner: &str,
        field: &str,
        reason: EndReason,
        now: Millis,
    ) -> Result<Revocation, StoreError> {
        let args = [
            owner.as_bytes().to_vec(),
            field.as_bytes().to_vec(),
            sid.to_string().into_bytes(),
            reason.as_str().as_bytes().to_vec(),
        ];
        let args = [&args[..], &self.feed_args(now)].concat();
        let keys = [session_key(key_owner, sid), user_key(key_owner)];
        let code: i64 = self
            .eval_feed(Repeat::Safe, &self.revoke, &keys, &args)
            .await?;
        Ok(match code {
            1 => Revocation::Ended,
            2 => Revocation::NotOwner,
            _ => Revocation::Unknown,
        })
    }

    /// Runs `sweep.lua` until it finds less than a batch due.
    pub(super) async fn sweep(&self, now: Millis) -> Result<u32, StoreError> {
        let args = [&[num(SWEEP_BATCH)][..], &self.feed_args(now)].concat();
        let mut logged = 0;
        for _ in 0..SWEEP_RUNS {
            // A repeat finds the ends already logged.
            let (ended, looked): (u32, u64) = if self.feed.is_some() {
                self.sweep_cluster(SWEEP_BATCH, now).await?
            } else {
                self.eval_keys(Repeat::Safe, &self.sweep, &[], &args)
                    .await?
            };
            logged += ended;
            if looked < SWEEP_BATCH {
                break;
            }
        }
        Ok(logged)
    }

    pub(super) async fn read_ended(
        &self,
        start: LogStart,
        limit: u32,
        now: Millis,
    ) -> Result<LogPage, StoreError> {
        let first = match start {
            LogStart::After(id) => format!("({id}"),
            LogStart::Since(ms) => ms.to_string(),
        };
        let keep = self.timing.max_session + self.timing.access;
        let args = [
            first.into_bytes(),
            num(u64::from(limit)),
            num(now),
            num(keep),
        ];
        let keys = [FEED_ENDED.to_owned(), FEED_EPOCH.to_owned()];
        let reply: Vec<Value> = self.eval_keys(Repeat::Safe, &READ, &keys, &args).await?;
        parse_page(&reply)
    }

    /// A connection of its own for [`EndedTail`]: a blocked read would hold
    /// up every request sharing a pooled one.
    pub async fn ended_tail(&self) -> Result<EndedTail, StoreError> {
        let link = tokio::time::timeout(self.timeout, self.pool.manager().create())
            .await
            .map_err(|_| StoreError::Timeout)?
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(EndedTail {
            link,
            pool: self.pool.clone(),
            timeout: self.timeout,
        })
    }
}

/// A script that may log in or end sessions: `scripts/owner.lua` and
/// `scripts/ended.lua` before it; its last five arguments are
/// [`RedisStore::feed_args`].
pub(super) fn with_feed(script: &str) -> Script {
    Script::new(
        &[
            include_str!("../scripts/owner.lua"),
            include_str!("../scripts/ended.lua"),
            "local function main()\n",
            script,
            "\nend\nlocal result = main()\n",
            // On a cluster, the feed's writes go back with the reply.
            "if FEED_DEFER then\n  return {result, FEED_OPS}\nend\nreturn result\n",
        ]
        .concat(),
    )
}

/// Waits for entries of the log on its own connection.
pub struct EndedTail {
    link: Link,
    pool: Pool,
    timeout: Duration,
}

impl EndedTail {
    /// Returns once an entry after `after` exists, or after `wait`; true if
    /// one does. An error means the connection is gone: make a new tail.
    pub async fn wait(&mut self, after: LogId, wait: Duration) -> Result<bool, StoreError> {
        // After a failover, the old master's log says nothing new.
        if !self.pool.manager().is_current(&self.link) {
            return Err(StoreError::Unavailable(
                "the sentinels name another master".into(),
            ));
        }
        let block = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut command = redis::cmd("XREAD");
        command
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(block)
            .arg("STREAMS")
            .arg(FEED_ENDED)
            .arg(after.to_string());
        let read = command.query_async::<Value>(&mut self.link.connection);
        let reply = tokio::time::timeout(wait + self.timeout, read)
            .await
            .map_err(|_| StoreError::Timeout)?
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(!matches!(reply, Value::Nil))
    }
}

fn parse_page(reply: &[Value]) -> Result<LogPage, StoreError> {
    let reply = Reply(reply);
    let bad = |what: &str| StoreError::Protocol(format!("ended-sessions log: {what}"));
    let id = |text: String| text.parse::<LogId>().map_err(|()| bad("entry id"));
    let epoch: String = reply.get(0)?;
    let entries = (0..reply.0.len().saturating_sub(2) / 4)
        .map(|i| {
            let at = 2 + 4 * i;
            let sid: String = reply.get(at + 1)?;
            Ok(EndedSession {
                id: id(reply.get(at)?)?,
                sid: Uuid::parse_str(&sid).map_err(|_| bad("sid"))?,
                sub: reply.get(at + 2)?,
                until: reply.get(at + 3)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(LogPage {
        epoch: epoch.parse().map_err(|_| bad("epoch"))?,
        last: id(reply.get(1)?)?,
        entries,
    })
}
