//! The shared store: one Redis hash per session, one Lua script per
//! operation, one round trip per request.
//!
//! Key `tg:s:<sid>`; fields `s` sub, `a` current access jti (16 raw bytes),
//! `r` refresh-secret hash (16 raw bytes), `g` generation, `t` last rotation
//! (ms), `e` end of the refresh lifetime (ms), `m` the session's absolute end
//! (ms), `q` the current access token's scope (after a rotation), and for
//! OAuth clients `c` client id and `p` granted scope. Short field names and raw bytes keep the hash in
//! Redis's compact listpack encoding. Rate-limit windows are `tg:rl:<client>`,
//! failed credential checks `tg:fail:<kind>:a:<address>`,
//! `tg:fail:<kind>:p:<address>:<id>` and `tg:fail:<kind>:c:<id>`, the API-token cache `tg:at:<sha256 hex>`
//! (see `scripts/api_token.lua`), and each owner's index of sessions
//! `tg:u:<owner>` (a sorted set of sids by the end of their refresh
//! lifetime; the owner is a user's `sub`, or `client:<id>` for an OAuth
//! client's sessions; `scripts/sessions.lua` and `logout_all.lua` read it).
//! Fields `x` and `v` hold a password login's email and whether it is
//! verified; `h` the hash of a browser session's cookie handle and `f` how
//! its user signed in (`scripts/browser.lua`, SPEC §15). The revocation feed's log is the stream `tg:ended`, with
//! `tg:expiry` (which watches every session's expiry, for the
//! `SessionEnded` events of idle and max_session ends too) and `tg:epoch`
//! (see [`ended`]). The scripts that log in or end sessions append their
//! events to the stream `events.stream` in the same step.
//!
//! Scripts run with `EVALSHA`; `redis::Script` reloads them after `NOSCRIPT`,
//! so a restarted Redis needs nothing from us.
//!
//! Connections come from a deadpool pool with our own [`Connections`]
//! manager: deadpool-redis's manager sends `UNWATCH`+`PING` every time a
//! connection leaves the pool, which would double the round trips of every
//! request. Ours checks nothing on the way out. Connections are multiplexed
//! and shared by concurrent requests (see [`RedisStore::with_connection`]);
//! when one breaks or stops answering, the pool forgets its connections and
//! a request that is safe to repeat is retried once on a fresh one — after a
//! Redis restart, replicas recover by themselves without failing a request.
//! Every operation has one deadline covering pool wait, connecting and the
//! command.
//!
//! A node that answers as no (serving) master — `READONLY` (demoted to a
//! replica), `MASTERDOWN`, `LOADING` — did not run the command. The pool
//! then forgets its connections as for a broken one, the request is tried
//! once more on a fresh connection if its own was an old one, and
//! otherwise fails closed: writes never go on against a demoted master.
//! With `cache.sentinel` a fresh connection goes wherever the sentinels
//! name the master now, and a watcher follows their failovers (see
//! [`sentinel`]).
//!
//! A `rediss://` URL connects with TLS (rustls, with aws-lc-rs as its crypto
//! provider — the one jsonwebtoken uses). Redis's certificate must chain to
//! `cache.tls_ca_file`, or to the system's trust store when that is unset,
//! and name the URL's host; `cache.tls_cert_file`/`tls_key_file` answer a
//! Redis that asks for client certificates. A failed handshake is a failed
//! connection like any other: requests fail closed.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool::managed::{self, Object, PoolConfig, QueueMode, Timeouts};
use deadpool_redis::redis::{self, AsyncConnectionConfig, FromRedisValue, RedisError, Script};

use super::{StoreError, Timing};
use crate::config::CacheSettings;
use crate::store::event_log::EventStream;

mod api_token_cache;
mod browser;
mod cluster;
mod connections;
mod ended;
mod event_log;
mod feed;
mod keys;
mod operations;
mod replies;
mod sentinel;
mod tracking;
pub use connections::{Conn, Link};
use connections::{
    Connections, Pool, Target, Watcher, answered, client, cluster_client, not_the_master,
};
pub use ended::EndedTail;
use ended::with_feed;
use feed::Feed;
pub use keys::{OWNER_PREFIX, session_key, session_of_key};
use keys::{flag, num, user_key};
use sentinel::Sentinels;
pub use tracking::{BrowserPeek, Peek, TRACKING_NAME, Touch, Tracking};

const RATE_PREFIX: &str = "tg:rl:";
/// One tag for the counters of one credential check (`admit.lua` reads
/// them together).
const FAILURE_PREFIX: &str = "tg:{fail}:";
const API_TOKEN_PREFIX: &str = "tg:at:";
/// Index entries one run of `logout_all.lua` looks at: a few ms of Redis
/// (each end appends two stream entries, one of them a JSON event).
const LOGOUT_ALL_BATCH: u64 = 200;

/// Whether an operation may run twice without changing its outcome.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Safe,
    Unsafe,
}

/// Why the store could not be built; each names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cache.url: {0}")]
    Url(RedisError),
    #[error("cache.tls_ca_file / cache.tls_cert_file / cache.tls_key_file: {0}")]
    Tls(RedisError),
    #[error("cache.pool_size: {0}")]
    Pool(managed::BuildError),
    #[error("{}: {}", .0.key, .0.message)]
    Config(crate::config::ConfigError),
}

/// A handle on the pool; clones share its connections and its watcher (the
/// local cache holds one).
#[derive(Clone)]
pub struct RedisStore {
    pool: Pool,
    /// The task following the sentinels' failovers (`cache.sentinel` only),
    /// started with the first request or tracking connection; it ends with
    /// the last clone of the store.
    watcher: Arc<OnceLock<Watcher>>,
    timeout: Duration,
    timing: Timing,
    /// The log of events (`events.stream`).
    events: Arc<EventStream>,
    /// On a Redis Cluster, the writer of the feed behind the requests (see
    /// [`feed`]); `None` on one Redis, whose scripts write it themselves.
    feed: Option<Arc<Feed>>,
    feed_script: Script,
    login: Script,
    authenticate: Script,
    browser: Script,
    rotate: Script,
    revoke: Script,
    inspect: Script,
    count: Script,
    admit: Script,
    forgive: Script,
    api_token: Script,
    api_token_put: Script,
    end: Script,
    sessions: Script,
    logout_all: Script,
    sweep: Script,
}

impl RedisStore {
    /// Builds the pool; connects lazily, so a replica starts even while Redis
    /// is still coming up (requests fail closed until it is there).
    pub fn new(cache: &CacheSettings, timing: Timing) -> Result<Self, SetupError> {
        let timeout = cache.timeout;
        let target = match (&cache.sentinel, &cache.cluster) {
            (Some(sentinel), _) => {
                Target::Sentinel(Sentinels::new(sentinel, timeout).map_err(SetupError::Config)?)
            }
            (None, Some(cluster)) => Target::Cluster(cluster_client(cache, cluster)?),
            (None, None) => Target::Url(client(cache)?),
        };
        let feed = matches!(target, Target::Cluster(_)).then(|| Arc::new(Feed::default()));
        // One deadline, ours (see `with_connection`); a second one inside the
        // client would race it.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None);
        let mut pool = PoolConfig::new(cache.pool_size);
        pool.timeouts = Timeouts {
            wait: Some(timeout),
            create: Some(timeout),
            recycle: None,
        };
        // Reuse the most recently used connection: fewer sockets at low load.
        pool.queue_mode = QueueMode::Lifo;
        let pool = Pool::builder(Connections { target, config })
            .config(pool)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(SetupError::Pool)?;
        Ok(Self {
            pool,
            watcher: Arc::new(OnceLock::new()),
            timeout,
            timing,
            events: Arc::new(match feed {
                // Its writes go with the rest of the feed, on its slot.
                Some(_) => EventStream {
                    key: crate::config::CLUSTER_STREAM.into(),
                    ..EventStream::default()
                },
                None => EventStream::default(),
            }),
            feed,
            feed_script: with_feed(include_str!("scripts/feed.lua")),
            login: with_feed(include_str!("scripts/login.lua")),
            authenticate: Script::new(include_str!("scripts/authenticate.lua")),
            browser: Script::new(include_str!("scripts/browser.lua")),
            rotate: with_feed(include_str!("scripts/rotate.lua")),
            revoke: with_feed(include_str!("scripts/revoke.lua")),
            inspect: Script::new(include_str!("scripts/inspect.lua")),
            count: Script::new(include_str!("scripts/count.lua")),
            admit: Script::new(include_str!("scripts/admit.lua")),
            forgive: Script::new(include_str!("scripts/forgive.lua")),
            api_token: Script::new(include_str!("scripts/api_token.lua")),
            api_token_put: Script::new(include_str!("scripts/api_token_put.lua")),
            end: with_feed(include_str!("scripts/end.lua")),
            sessions: with_owner(include_str!("scripts/sessions.lua")),
            logout_all: with_feed(include_str!("scripts/logout_all.lua")),
            sweep: with_feed(include_str!("scripts/sweep.lua")),
        })
    }

    /// Appends events to `stream` rather than the default `tg:events`.
    pub fn with_event_stream(mut self, stream: EventStream) -> Self {
        self.events = Arc::new(stream);
        self
    }

    /// Connections open, idle and waited for, for `/metrics`.
    pub fn pool_status(&self) -> deadpool::Status {
        self.pool.status()
    }

    /// Runs `op` on a pooled connection within the deadline.
    ///
    /// The pooled object goes straight back to the pool; `op` gets a clone of
    /// the multiplexed handle. Concurrent requests thus share one socket and
    /// their commands travel in batches — one write and one read for many
    /// requests, on our side and on Redis's — which measured at +30%
    /// authenticates per second and half of Redis's CPU per request.
    async fn with_connection<T, F, Fut>(&self, repeat: Repeat, op: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.follow_sentinels();
        let attempts = async {
            let mut retried = false;
            loop {
                let (conn, reused) = {
                    let pooled = self
                        .pool
                        .get()
                        .await
                        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                    let reused = Object::metrics(&pooled).recycle_count > 0;
                    (pooled.connection.clone(), reused)
                };
                match op(conn).await {
                    Ok(value) => return Ok(value),
                    Err(e) => {
                        // Only a reply proves the shared socket still in step;
                        // a node that is no master must not be written again.
                        let refused = not_the_master(&e);
                        if refused || !answered(&e) {
                            self.forget_connections();
                        }
                        let dropped = e.is_connection_dropped() || e.is_unrecoverable_error();
                        // A refusal ran nothing: any operation may go again.
                        let again = refused || (dropped && repeat == Repeat::Safe);
                        if again && reused && !retried {
                            retried = true;
                            continue;
                        }
                        return Err(StoreError::Unavailable(e.to_string()));
                    }
                }
            }
        };
        tokio::time::timeout(self.timeout, attempts)
            .await
            .map_err(|_| {
                // A silent socket may be a dead one (no RST ever comes): reconnect.
                self.forget_connections();
                StoreError::Timeout
            })?
    }

    /// With `cache.sentinel`, makes sure the watcher runs.
    fn follow_sentinels(&self) {
        if let Target::Sentinel(_) = self.pool.manager().target {
            self.watcher
                .get_or_init(|| Watcher::start(self.pool.weak()));
        }
    }

    /// Drops every pooled connection, so the next request connects afresh
    /// (and nothing more is queued behind a stalled command).
    /// A broken socket breaks every clone of it at once, and usually means
    /// Redis went away; requests still holding a clone finish on their own.
    ///
    /// A cluster's connection stays: it reconnects to each node by itself,
    /// and dropping it would cut every slot off for one node's failure.
    fn forget_connections(&self) {
        if !matches!(self.pool.manager().target, Target::Cluster(_)) {
            self.pool.retain(|_, _| false);
        }
    }

    /// Invokes a script with one key and the given arguments.
    async fn eval<T: FromRedisValue>(
        &self,
        repeat: Repeat,
        script: &Script,
        key: String,
        args: &[Vec<u8>],
    ) -> Result<T, StoreError> {
        self.eval_keys(repeat, script, &[key], args).await
    }

    /// Invokes a script with the given keys and arguments.
    async fn eval_keys<T: FromRedisValue>(
        &self,
        repeat: Repeat,
        script: &Script,
        keys: &[String],
        args: &[Vec<u8>],
    ) -> Result<T, StoreError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key.as_str());
        }
        for arg in args {
            invocation.arg(arg.as_slice());
        }
        let invocation = &invocation;
        self.with_connection(repeat, |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await
    }
}

/// A script that names sessions' owners: `scripts/owner.lua` before it.
fn with_owner(script: &str) -> Script {
    Script::new(&[include_str!("scripts/owner.lua"), script].concat())
}
