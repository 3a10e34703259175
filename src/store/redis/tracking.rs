//! What a replica's local cache (SPEC §10, `session::local_cache`) asks of
//! Redis: a read-only look at a session, the batched write-behind of idle
//! clocks, and a connection on which Redis pushes every change to a session.
//!
//! Invalidation is Redis's client-side caching, `CLIENT TRACKING ON BCAST
//! PREFIX tg:{u:` on a RESP3 connection, rather than a `PUBLISH` from the
//! scripts: Redis then reports *every* change to a session key — logout,
//! rotation, theft, logout everywhere, revocation, and also TTL expiry,
//! eviction, `FLUSHALL` and writes by scripts yet to be written — with no
//! script changed. `PUBLISH` would need each writing script (rotate, end,
//! logout_all, revoke, authenticate's expiry `DEL`) to publish, would miss
//! expiry and eviction (keyspace notifications are a server setting we cannot
//! count on), and one forgotten `PUBLISH` in a future script would be a
//! stale accept. Its one advantage — touches, being writes, invalidate the
//! entries under tracking, so a replica looks the session up again after a
//! touch — costs one read-only `EVALSHA` per active session and replica per
//! `auth.touch_interval`, whatever the request rate. (A replica's own touches
//! count too: `NOLOOP` does not cover writes made by a script — Redis 7.0
//! reports them as well — so touches go on pooled connections like any
//! request.)
//!
//! Measured (`benches/channels.py`, Redis 7.0.15, 2 shared cores, the real
//! `end.lua`, 1 and 3 listeners; benches/README.md): both deliver an
//! invalidation equally fast, 70–90 µs after the writer sends with one
//! listener, 80–135 µs with three. PUBLISH is cheaper: at three listeners it
//! saves Redis about 0.8 µs per pipelined logout (9 %) and 6 µs per
//! sequential one, and it costs nothing on writes the cache does not need,
//! where tracking adds 1.0–1.4 µs per pipelined `HSET` (touches, every
//! login's new key). Tracking is kept because it alone hears every change:
//! in the same runs it pushed every evicted session and a `FLUSHALL`, where
//! PUBLISH reported none, and each of those would be a stale accept. Its
//! cost is a small share of Redis at these rates (about 0.4 % of a core for
//! 5,000 logouts/s on 3 replicas).
//!
//! With BCAST, tracking lives on the connection that receives the pushes
//! (RESP3 delivers them in-band), so a lost connection is a lost channel: the
//! caller sees `PushKind::Disconnection` and must forget everything.
//!
//! On a Redis Cluster (`cache.cluster`) there is one such connection per
//! master, all pushing to the same channel, made for the slot map
//! `CLUSTER SLOTS` gave; any of them lost is the channel lost, and once the
//! map changes (a failover, a slot moved) [`Tracking::superseded`] returns:
//! the caller forgets everything and connects again for the new map.
//!
//! With `cache.sentinel` the connection goes where the pool's do: to the
//! master the sentinels name, found by the same [`Sentinels`] and checked
//! with `ROLE`. Once they name another master — the pool's watcher asks
//! them every 250 ms — [`Tracking::superseded`] returns: the pushes of the
//! old master say nothing of writes to the new one, so the caller must
//! forget everything then too, and connect again.
//!
//! [`Sentinels`]: super::sentinel::Sentinels

use std::sync::LazyLock;

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{
    self, AsyncConnectionConfig, Client, ErrorKind, ProtocolVersion, PushInfo, Script,
    ServerErrorKind,
};
use tokio::sync::mpsc::UnboundedSender;
use uuid::Uuid;

use super::cluster::SlotMap;
use super::sentinel::{CHECK_EVERY, MasterWatch};
use super::{Conn, OWNER_PREFIX, RedisStore, Repeat, Target, num, session_key};
use crate::store::{BrowserSession, StoreError};
use crate::time::Millis;
use crate::tokens::SecretHash;

/// `CLIENT SETNAME` of the tracking connection (operators and tests find it
/// in `CLIENT LIST`).
pub const TRACKING_NAME: &str = "tokengate-tracking";

static PEEK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../scripts/peek.lua")));
static PEEK_BROWSER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/peek_browser.lua")));

/// What `scripts/peek_browser.lua` found of a live browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserPeek {
    /// [`Peek::Live`] or [`Peek::Touched`].
    pub peek: Peek,
    /// The session's access jti, never shown to anyone: what the cache's
    /// touches name it by (`authenticate.lua`).
    pub jti: Uuid,
    pub session: BrowserSession,
}

/// A session whose idle clock the local cache restarts: owner, sid and
/// the access jti it saw.
pub type Touch = (String, Uuid, Uuid);

/// What `scripts/peek.lua` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// The token is current; Redis keeps the session this many ms more.
    Live(Millis),
    /// The token is current, but the session was within the margin of its
    /// end: its idle clock was restarted instead (nothing to learn).
    Touched,
    /// Not the session's current token, or no session.
    NotCurrent,
}

impl RedisStore {
    /// Whether `jti` is the current token of `sid`, changing nothing unless
    /// the session is within `margin` of its end (see `scripts/peek.lua`).
    pub async fn peek(
        &self,
        owner: &str,
        sid: Uuid,
        jti: Uuid,
        margin: Millis,
        now: Millis,
    ) -> Result<Peek, StoreError> {
        let args = [
            jti.as_bytes().to_vec(),
            num(margin),
            num(now),
            num(self.timing.idle),
        ];
        let left: i64 = self
            .eval(Repeat::Safe, &PEEK, session_key(owner, sid), &args)
            .await?;
        Ok(match left {
            -1 => Peek::Touched,
            n if n > 0 => Peek::Live(n.unsigned_abs()),
            _ => Peek::NotCurrent,
        })
    }

    /// [`RedisStore::peek`] for a browser's cookie handle (its hash):
    /// `None` if it opens no live session.
    pub async fn peek_browser(
        &self,
        owner: &str,
        sid: Uuid,
        handle_hash: SecretHash,
        margin: Millis,
        now: Millis,
    ) -> Result<Option<BrowserPeek>, StoreError> {
        let args = [
            handle_hash.to_vec(),
            num(margin),
            num(now),
            num(self.timing.idle),
        ];
        let reply: Option<Vec<redis::Value>> = self
            .eval(Repeat::Safe, &PEEK_BROWSER, session_key(owner, sid), &args)
            .await?;
        reply.map(browser_peek).transpose()
    }

    /// Restarts the idle clock of every `(owner, sid, jti)` whose token is
    /// still current (`authenticate.lua`); true for each touched. One
    /// pipeline on one Redis; on a cluster, which cannot pipeline across
    /// slots, each on its own through the cluster client, all at once.
    pub async fn touch_all(&self, touches: &[Touch], now: Millis) -> Result<Vec<bool>, StoreError> {
        let mut pipe = redis::pipe();
        for (owner, sid, jti) in touches {
            pipe.cmd("EVALSHA")
                .arg(self.authenticate.get_hash())
                .arg(1)
                .arg(session_key(owner, *sid))
                .arg(jti.as_bytes())
                .arg(now)
                .arg(self.timing.idle);
        }
        let script = &self.authenticate;
        let pipe = &pipe;
        let send = |conn: Conn| async move {
            let each = matches!(conn, Conn::Cluster(_));
            let send = |mut conn: Conn| async move {
                if each {
                    let each = pipe.cmd_iter().map(|cmd| {
                        let mut conn = conn.clone();
                        async move { cmd.query_async::<i64>(&mut conn).await }
                    });
                    futures_util::future::join_all(each)
                        .await
                        .into_iter()
                        .collect()
                } else {
                    pipe.query_async::<Vec<i64>>(&mut conn).await
                }
            };
            match send(conn.clone()).await {
                // A restarted Redis has forgotten the script.
                Err(e) if matches!(e.kind(), ErrorKind::Server(ServerErrorKind::NoScript)) => {
                    script.load_async(&mut conn.clone()).await?;
                    send(conn).await
                }
                other => other,
            }
        };
        // Touching twice restarts the same clock twice.
        let codes = self.with_connection(Repeat::Safe, send).await?;
        Ok(codes.into_iter().map(|code| code == 1).collect())
    }
}

/// The connections from [`RedisStore::tracking_connection`], and with
/// Sentinel the master they go to, or on a cluster the slot map.
pub struct Tracking {
    /// One per master: one with `cache.url` or Sentinel.
    pub connections: Vec<MultiplexedConnection>,
    /// On a cluster, the slot map the connections were made for.
    slots: Option<SlotMap>,
    master: Option<MasterWatch>,
    /// On a cluster: the store that asks for the slot map now.
    topology: Option<RedisStore>,
}

impl Tracking {
    /// Whether the sentinels already name another master than this
    /// connection's (never with `cache.url`).
    pub fn is_superseded(&self) -> bool {
        self.master.as_ref().is_some_and(MasterWatch::is_superseded)
    }

    /// Returns once the sentinels name another master than this
    /// connection's, or the cluster's slot map is no longer the one the
    /// connections were made for; never with `cache.url`.
    pub async fn superseded(&mut self) {
        match (&mut self.master, &self.topology, &self.slots) {
            (Some(master), _, _) => master.superseded().await,
            (None, Some(store), Some(made_for)) => loop {
                tokio::time::sleep(CHECK_EVERY).await;
                // No answer says nothing: a lost master closes its own
                // tracking connection.
                if let Ok(now) = store.slot_map().await
                    && now != *made_for
                {
                    return;
                }
            },
            _ => std::future::pending().await,
        }
    }
}

impl RedisStore {
    /// The cluster's slot map, as any node says it now.
    pub(super) async fn slot_map(&self) -> Result<SlotMap, StoreError> {
        self.with_connection(Repeat::Safe, |mut conn| async move {
            SlotMap::fetch(&mut conn).await
        })
        .await
    }

    /// RESP3 connections named [`TRACKING_NAME`] on which Redis pushes an
    /// invalidation for every change to a session key to `pushes` (and the
    /// client a `Disconnection` when one closes): to `cache.url`, to the
    /// master the sentinels name, or to every master of the cluster.
    pub async fn tracking_connection(
        &self,
        pushes: UnboundedSender<PushInfo>,
    ) -> Result<Tracking, StoreError> {
        let unavailable = |e: redis::RedisError| StoreError::Unavailable(e.to_string());
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_push_sender(pushes);
        let connect = async {
            let (connections, master, slots) = match &self.pool.manager().target {
                Target::Url(client) => {
                    let info = client.get_connection_info().clone();
                    let resp3 = info
                        .redis_settings()
                        .clone()
                        .set_protocol(ProtocolVersion::RESP3);
                    let conn = Client::open(info.set_redis_settings(resp3))
                        .map_err(unavailable)?
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map_err(unavailable)?;
                    (vec![conn], None, None)
                }
                Target::Sentinel(sentinels) => {
                    // Failovers are noticed by the pool's watcher.
                    self.follow_sentinels();
                    let (conn, address) = sentinels
                        .connect(&config, ProtocolVersion::RESP3)
                        .await
                        .map_err(unavailable)?;
                    (vec![conn], Some(sentinels.watch(address)), None)
                }
                Target::Cluster(cluster) => {
                    let map = self.slot_map().await?;
                    let masters = map.masters();
                    let mut connections = Vec::with_capacity(masters.len());
                    for master in &masters {
                        connections.push(
                            cluster
                                .connect_node(master, &config)
                                .await
                                .map_err(unavailable)?,
                        );
                    }
                    (connections, None, Some(map))
                }
            };
            for conn in &connections {
                start_tracking(conn.clone()).await.map_err(unavailable)?;
            }
            // A slot that moved while we connected may be served by a master
            // these connections do not hear: try again for the new map.
            if let Some(made_for) = &slots
                && self.slot_map().await? != *made_for
            {
                return Err(StoreError::Unavailable(
                    "the cluster's slot map changed while tracking started".into(),
                ));
            }
            let topology = slots.is_some().then(|| self.clone());
            Ok(Tracking {
                connections,
                slots,
                master,
                topology,
            })
        };
        tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| StoreError::Timeout)?
    }
}

/// Names the connection and turns tracking on, for every session key.
async fn start_tracking(mut conn: MultiplexedConnection) -> redis::RedisResult<()> {
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(TRACKING_NAME)
        .query_async::<()>(&mut conn)
        .await?;
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(OWNER_PREFIX)
        .arg("NOLOOP")
        .query_async::<()>(&mut conn)
        .await
}

/// `peek_browser.lua`'s `{left, jti, sub, email, verified, amr}`.
fn browser_peek(reply: Vec<redis::Value>) -> Result<BrowserPeek, StoreError> {
    let bad = || StoreError::Protocol("peek_browser.lua replied something else".into());
    let mut fields = reply.into_iter();
    let left = match fields.next() {
        Some(redis::Value::Int(left)) => left,
        _ => return Err(bad()),
    };
    let mut bytes = fields.map(|field| match field {
        redis::Value::BulkString(bytes) => Ok(bytes),
        _ => Err(bad()),
    });
    let jti = Uuid::from_slice(&bytes.next().ok_or_else(bad)??).map_err(|_| bad())?;
    let session = super::browser::session(bytes.collect::<Result<_, _>>()?)?;
    Ok(BrowserPeek {
        peek: if left > 0 {
            Peek::Live(left.unsigned_abs())
        } else {
            Peek::Touched
        },
        jti,
        session,
    })
}
