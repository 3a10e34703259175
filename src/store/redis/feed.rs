//! The feed — the events stream, the ended-sessions log and the watched
//! expiries behind them (`scripts/ended.lua`) — on a Redis Cluster.
//!
//! On one Redis, each script that logs in or ends a session writes the feed
//! in the same atomic step. On a cluster the session's keys live in its
//! owner's slot and the feed's in a slot of its own (`tg:{feed}:…`), which
//! no one script may span. So the scripts hand their feed writes back
//! (`FEED_DEFER`) and a replica applies them behind the request, in order,
//! batched — one `feed.lua` per batch — on the feed's slot. The request
//! still costs one round trip; the feed follows within milliseconds. What a
//! replica dies holding (at most one batch in flight and its queue) is
//! lost: those events and log entries never appear, and a session whose
//! watch was lost ends without a `SessionEnded` (its access tokens still
//! expire by themselves). docs/redis.md says so.
//!
//! The sweep, too, spans slots here: it reads the due watches from the
//! feed's slot, asks each session key's slot how long the key lives
//! (`PTTL`, concurrently), and hands the answers to `feed.lua`, which
//! decides as `sweep.lua` does on one Redis.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool_redis::redis::{self, FromRedisValue, Script, Value};
use tokio::sync::mpsc;

use super::keys::{FEED_ENDED, FEED_EPOCH, FEED_EXPIRY, num};
use super::{RedisStore, Repeat, session_key};
use crate::store::StoreError;
use crate::time::Millis;

/// Scripts' hand-backs a replica queues at most (each a few ops); past it,
/// new ones are dropped with an error in the log rather than memory grown
/// without bound while the feed's master is away.
const QUEUE: usize = 65_536;
/// Hand-backs one `feed.lua` applies at most.
const BATCH: usize = 256;
/// Tries of one batch before it is given up (the feed's slot had no master
/// for all of them).
const TRIES: u32 = 5;

/// The writer of a replica's deferred feed: a queue and the task draining
/// it, started with the first hand-back.
#[derive(Default)]
pub(super) struct Feed {
    queue: OnceLock<mpsc::Sender<Vec<Vec<u8>>>>,
}

impl RedisStore {
    /// The five arguments `scripts/ended.lua` takes from the end of every
    /// script that logs in or ends sessions: whether to hand the feed's
    /// writes back (a cluster), the events stream, its cap, now and the
    /// access-token lifetime.
    pub(super) fn feed_args(&self, now: Millis) -> [Vec<u8>; 5] {
        self.feed_args_deferring(self.feed.is_some(), now)
    }

    fn feed_args_deferring(&self, defer: bool, now: Millis) -> [Vec<u8>; 5] {
        [
            super::flag(defer),
            self.events.key.as_bytes().to_vec(),
            num(self.events.max_len),
            num(now),
            num(self.timing.access),
        ]
    }

    /// Invokes a script that writes the feed (see [`super::ended::with_feed`]):
    /// on a cluster, its reply is `{result, ops}`, and the ops go to the
    /// feed's writer.
    pub(super) async fn eval_feed<T: FromRedisValue>(
        &self,
        repeat: Repeat,
        script: &Script,
        keys: &[String],
        args: &[Vec<u8>],
    ) -> Result<T, StoreError> {
        let Some(feed) = &self.feed else {
            return self.eval_keys(repeat, script, keys, args).await;
        };
        let (result, ops): (Value, Vec<Vec<Value>>) =
            self.eval_keys(repeat, script, keys, args).await?;
        if !ops.is_empty() {
            let mut flat = Vec::new();
            for op in ops {
                for value in op {
                    flat.push(arg(value)?);
                }
            }
            self.defer(feed, flat);
        }
        T::from_redis_value(result).map_err(|e| StoreError::Protocol(e.to_string()))
    }

    /// Queues ops for the feed's writer, starting it if need be.
    fn defer(&self, feed: &Arc<Feed>, ops: Vec<Vec<u8>>) {
        let queue = feed.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE);
            tokio::spawn(self.without_feed().write_feed(receiver));
            sender
        });
        if queue.try_send(ops).is_err() {
            tracing::error!(
                "the events feed's queue is full (its Redis Cluster slot has had no master \
                 for long): this session's events and log entries are dropped"
            );
        }
    }

    /// A clone that writes the feed itself (the writer's own), so the
    /// writer does not keep its own queue open.
    fn without_feed(&self) -> Self {
        let mut store = self.clone();
        store.feed = None;
        store
    }

    /// The writer: applies queued ops in batches, in order, until every
    /// replica's handle on the queue is gone.
    async fn write_feed(self, mut queue: mpsc::Receiver<Vec<Vec<u8>>>) {
        let mut batch = Vec::with_capacity(BATCH);
        while queue.recv_many(&mut batch, BATCH).await > 0 {
            let ops = batch.drain(..).flatten().collect::<Vec<_>>();
            let mut tries = 0;
            loop {
                tries += 1;
                match self.apply_feed(&ops, crate::time::now()).await {
                    Ok(_) => break,
                    Err(e) if tries < TRIES => {
                        tracing::warn!(error = %e, "writing the events feed failed; trying again");
                        tokio::time::sleep(Duration::from_millis(100 << tries)).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "writing the events feed failed: a batch of events and log entries is lost");
                        break;
                    }
                }
            }
        }
    }

    /// Runs `feed.lua` on `ops`; returns the ends the sweep's looks logged.
    async fn apply_feed(&self, ops: &[Vec<u8>], now: Millis) -> Result<u32, StoreError> {
        let keys = [
            FEED_EXPIRY.to_owned(),
            FEED_ENDED.to_owned(),
            FEED_EPOCH.to_owned(),
            self.events.key.clone(),
        ];
        let args = [ops, &self.feed_args_deferring(false, now)[..]].concat();
        // Applying twice logs twice; events carry their own ids.
        self.eval_keys(Repeat::Safe, &self.feed_script, &keys, &args)
            .await
    }

    /// One batch of the sweep across slots (see the module's doc): returns
    /// the ends it logged and the watches it looked at.
    pub(super) async fn sweep_cluster(
        &self,
        batch: u64,
        now: Millis,
    ) -> Result<(u32, u64), StoreError> {
        let due: Vec<(Vec<u8>, f64)> = self
            .with_connection(Repeat::Safe, |mut conn| async move {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(FEED_EXPIRY)
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(batch)
                    .arg("WITHSCORES")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        if due.is_empty() {
            return Ok((0, 0));
        }
        let lefts =
            futures_util::future::join_all(due.iter().map(|(member, _)| self.left(member))).await;
        let mut ops = Vec::with_capacity(due.len() * 5);
        let mut unanswered = false;
        for ((member, expires), left) in due.iter().zip(lefts) {
            // A key whose slot did not answer is looked at next sweep.
            let Ok(left) = left else {
                unanswered = true;
                continue;
            };
            ops.extend([
                b"x".to_vec(),
                num(now),
                member.clone(),
                num(*expires as u64),
                left.to_string().into_bytes(),
            ]);
        }
        let logged = if ops.is_empty() {
            0
        } else {
            self.apply_feed(&ops, now).await?
        };
        // With a master away, this sweep ends here rather than wait on it
        // batch after batch.
        Ok((logged, if unanswered { 0 } else { due.len() as u64 }))
    }

    /// How long the key a watch names lives (`PTTL`); -2 for a watch of an
    /// older version, which names no key.
    async fn left(&self, member: &[u8]) -> Result<i64, StoreError> {
        let Some(key) = watched_key(member) else {
            return Ok(-2);
        };
        self.with_connection(Repeat::Safe, |mut conn| {
            let key = key.clone();
            async move { redis::cmd("PTTL").arg(key).query_async(&mut conn).await }
        })
        .await
    }
}

/// The session key a watch `'<sid>:<m>:<issued>:<owner>'` names.
fn watched_key(member: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(member).ok()?;
    let sid = uuid::Uuid::try_parse(text.get(..36)?).ok()?;
    let mut rest = text.get(37..)?.splitn(3, ':');
    let (_, _, owner) = (rest.next()?, rest.next()?, rest.next()?);
    Some(session_key(owner, sid))
}

/// One value of a script's hand-back, as the argument it becomes.
fn arg(value: Value) -> Result<Vec<u8>, StoreError> {
    match value {
        Value::BulkString(bytes) => Ok(bytes),
        Value::SimpleString(text) => Ok(text.into_bytes()),
        Value::Int(n) => Ok(n.to_string().into_bytes()),
        other => Err(StoreError::Protocol(format!(
            "a script handed back {other:?} for the feed"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_names_its_session_key() {
        let sid = uuid::Uuid::now_v7();
        let member = format!("{sid}:0:1700000000000:client:billing");
        assert_eq!(
            watched_key(member.as_bytes()),
            Some(session_key("client:billing", sid))
        );
        assert_eq!(watched_key(format!("{sid} alice").as_bytes()), None);
        assert_eq!(watched_key(b"garbage"), None);
    }
}
