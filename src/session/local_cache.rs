//! `/authenticate` from memory (SPEC §10, `auth.local_cache`, off by
//! default): a replica remembers `sid → current jti` learned from Redis and
//! answers from it, with no round trip, for as long as Redis has not said
//! the session changed. The cookie gate (`/oauth2/auth`, SPEC §15) uses the
//! same entries: a browser session's also holds the hash of its cookie's
//! handle and who it is, learned by `peek_browser.lua`, and its touches
//! name the session by its (never shown) access jti, as a token's do.
//!
//! Three rules keep it from ever accepting what Redis would refuse:
//!
//! - **Learned only from Redis, never past a change.** An entry is filled
//!   from `peek.lua` (read-only: a write would invalidate the entry being
//!   learned). Before the look-up is sent, a *pending* slot with a fresh
//!   ticket is put in the map; an invalidation for that session, or any
//!   flush, removes whatever slot is there. The answer fills the slot only
//!   if our pending ticket is still in it, so an invalidation that overtakes
//!   the answer is never lost: it either removed the pending slot (no fill)
//!   or comes after the fill (removes it).
//! - **Trusted only while the channel is up.** Redis pushes invalidations on
//!   one tracking connection (see `store::redis::tracking`). Entries exist
//!   only while it is established with tracking on; when it closes, errs,
//!   misses a heartbeat or — with `cache.sentinel` — goes to a master the
//!   sentinels no longer name, the map is cleared and every request takes
//!   the SPEC §3 path until it is back (on the new master). Pending slots
//!   are only placed while it is up, and clearing removes them, so nothing
//!   learned across a gap (or from an old master) survives.
//!   The bound: a partition that silently stops pushes is noticed within one
//!   heartbeat (1 s) plus `cache.timeout`.
//! - **Idle expiry still happens.** An entry carries Redis's own deadline for
//!   the session (its `PTTL` when learned, counted from before the look-up),
//!   and a hit needs that deadline further away than the touch margin
//!   (`auth.touch_interval` + `cache.timeout`: the touch must land in time);
//!   closer, the look-up restarts the idle clock itself, one round trip as
//!   in SPEC §3, and nothing is learned. Each
//!   hit notes the session in a set that a background task drains every
//!   `auth.touch_interval` in one pipeline of `authenticate.lua`, which
//!   restarts the idle clock in Redis; a touch is a write, so Redis then
//!   invalidates the session on every replica, which learn the new deadline
//!   on their next request. A session no replica answers for `auto_logout`
//!   is expired by Redis, and its entries end at that deadline at the latest.
//!
//! A token that is not the entry's jti goes to Redis (it may be a newer one
//! whose rotation's invalidation is still on the way). When the map holds
//! `max_entries`, sessions not in it take the SPEC §3 path.
//!
//! What it does is counted in [`Counts`] (`tokengate_local_cache_*` in
//! `/metrics`): each count is one relaxed atomic increment, a hit's too.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, PushInfo, PushKind, Value};
use futures_util::FutureExt;
use futures_util::future::{Fuse, FusedFuture};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use uuid::Uuid;

use crate::config::{Settings, touch_interval};
use crate::store::redis::{Peek, RedisStore, Touch, Tracking, session_of_key};
use crate::store::{BrowserSession, StoreError};
use crate::time::{Millis, millis};
use crate::tokens::SecretHash;

/// How often the tracking connection is asked for a `PING`.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The cache's answer, when it has one.
#[derive(Debug)]
pub enum Answer {
    /// Decided here (from memory, or by the read-only look-up).
    Decided(Result<bool, StoreError>),
    /// Ask Redis as SPEC §3 says (channel down, or no room).
    Bypass,
}

/// The cache's answer for a browser's cookie, when it has one.
#[derive(Debug)]
pub enum BrowserAnswer {
    /// Decided here: the session, or `None` if the handle opens none.
    Decided(Result<Option<BrowserSession>, StoreError>),
    /// Ask Redis as SPEC §3 says.
    Bypass,
}

enum Slot {
    /// A look-up is on its way; only the holder of this ticket may fill.
    Pending(u64),
    Ready {
        jti: Uuid,
        deadline: Millis,
        /// A browser session's: what its cookie opens (SPEC §15).
        browser: Option<Arc<BrowserEntry>>,
    },
}

/// A browser session as the cache knows it: the hash of its cookie's
/// handle and who it is.
#[derive(Debug, PartialEq, Eq)]
struct BrowserEntry {
    handle_hash: SecretHash,
    session: BrowserSession,
}

struct Entries {
    /// The invalidation channel is established with tracking on.
    up: bool,
    map: HashMap<Uuid, Slot>,
    next_ticket: u64,
}

/// What [`Entries::begin`] decided.
#[derive(Debug, PartialEq, Eq)]
enum Begin {
    /// Current, and far enough from its deadline: accept from memory.
    Hit,
    /// Take the SPEC §3 path (channel down, or no room).
    Bypass,
    /// Look it up; only this ticket may fill the slot with the answer.
    Ask(u64),
}

impl Entries {
    fn new() -> Self {
        Self {
            up: false,
            map: HashMap::new(),
            next_ticket: 0,
        }
    }

    fn begin(&mut self, sid: Uuid, jti: Uuid, now: Millis, margin: Millis, max: usize) -> Begin {
        if !self.up {
            return Begin::Bypass;
        }
        match self.map.get(&sid) {
            Some(Slot::Ready {
                jti: current,
                deadline,
                ..
            }) if *current == jti && now + margin < *deadline => Begin::Hit,
            _ => self.ask(sid, max),
        }
    }

    /// [`Entries::begin`] for a browser's cookie: on a hit, the session's
    /// jti (for its touch) and who it is.
    fn begin_browser(
        &mut self,
        sid: Uuid,
        handle_hash: &SecretHash,
        now: Millis,
        margin: Millis,
        max: usize,
    ) -> Result<(Uuid, Arc<BrowserEntry>), Begin> {
        if !self.up {
            return Err(Begin::Bypass);
        }
        match self.map.get(&sid) {
            Some(Slot::Ready {
                jti,
                deadline,
                browser: Some(entry),
            }) if entry.handle_hash == *handle_hash && now + margin < *deadline => {
                Ok((*jti, entry.clone()))
            }
            _ => Err(self.ask(sid, max)),
        }
    }

    /// A pending slot for a look-up of `sid`, unless there is no room.
    fn ask(&mut self, sid: Uuid, max: usize) -> Begin {
        if !self.map.contains_key(&sid) && self.map.len() >= max {
            return Begin::Bypass;
        }
        self.next_ticket += 1;
        self.map.insert(sid, Slot::Pending(self.next_ticket));
        Begin::Ask(self.next_ticket)
    }

    /// Applies the look-up begun with `ticket` at `now`: fills the slot if
    /// the ticket still holds it (nothing invalidated or flushed since),
    /// else leaves whatever is there.
    fn finish(
        &mut self,
        sid: Uuid,
        ticket: u64,
        jti: Uuid,
        now: Millis,
        peek: Option<Peek>,
        browser: Option<Arc<BrowserEntry>>,
    ) {
        if !matches!(self.map.get(&sid), Some(Slot::Pending(t)) if *t == ticket) {
            return;
        }
        match peek {
            Some(Peek::Live(left)) => {
                let deadline = now + left;
                let ready = Slot::Ready {
                    jti,
                    deadline,
                    browser,
                };
                self.map.insert(sid, ready);
            }
            _ => {
                self.map.remove(&sid);
            }
        }
    }

    /// Marks the channel up or down; either way nothing learned before stays.
    fn set_up(&mut self, up: bool) {
        self.map.clear();
        self.up = up;
    }

    /// Applies one invalidation push's data.
    fn invalidate(&mut self, data: &[Value]) {
        for value in data {
            match value {
                // `FLUSHALL`/`FLUSHDB`, or tracking's table overflowed.
                Value::Nil => self.map.clear(),
                Value::Array(keys) | Value::Set(keys) => self.invalidate(keys),
                Value::BulkString(key) => {
                    if let Some(sid) = session_of_key(key) {
                        self.map.remove(&sid);
                    }
                }
                // Not understood: trust nothing.
                _ => self.map.clear(),
            }
        }
    }
}

/// What the cache did, shared with the `/metrics` registry (like the
/// verifier's count of argon2 runs): an increment is one relaxed atomic add.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Answered from memory.
    pub hits: Counter,
    /// Looked up with `peek.lua`.
    pub lookups: Counter,
    /// Sent the SPEC §3 way: channel down, or no room for the session.
    pub bypasses: Counter,
    /// Invalidation pushes applied (a session changed, or a flush).
    pub invalidations: Counter,
    /// Times the invalidation channel was lost after being up.
    pub losses: Counter,
}

/// What `/metrics` reads of a cache when it renders; outlives nothing.
#[derive(Clone)]
pub struct Gauges(Weak<Inner>);

impl Gauges {
    /// Sessions remembered now (pending look-ups included); 0 once the
    /// cache is gone.
    pub fn entries(&self) -> usize {
        self.0
            .upgrade()
            .map_or(0, |inner| lock(&inner.entries).map.len())
    }

    /// Whether requests are answered from memory now.
    pub fn is_up(&self) -> bool {
        self.0
            .upgrade()
            .is_some_and(|inner| inner.up.load(Ordering::Acquire))
    }
}

struct Inner {
    store: RedisStore,
    counts: Counts,
    entries: Mutex<Entries>,
    /// Mirrors `entries.up` for the lock-free bypass check.
    up: AtomicBool,
    /// Sessions answered since the last drain, with their owner and the
    /// token seen.
    touches: Mutex<HashMap<Uuid, (String, Uuid)>>,
    max_entries: usize,
    /// A hit needs the session's deadline at least this far away.
    margin: Millis,
    /// Only false in the mutation check (`ignore_invalidations`).
    follow_invalidations: bool,
}

/// One replica's cache; its background tasks end when it is dropped.
pub struct LocalCache {
    inner: Arc<Inner>,
    tasks: Vec<AbortHandle>,
}

impl Drop for LocalCache {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LocalCache {
    /// Starts the tracking connection and the touch drain (inside a Tokio
    /// runtime); requests bypass the cache until tracking is on.
    /// Look-ups and touches share `store`'s pool, and with Sentinel its
    /// view of the master.
    pub fn start(settings: &Settings, store: &RedisStore) -> Self {
        let local = &settings.auth.local_cache;
        let interval = touch_interval(&settings.auth);
        let inner = Arc::new(Inner {
            store: store.clone(),
            counts: Counts::default(),
            entries: Mutex::new(Entries::new()),
            up: AtomicBool::new(false),
            touches: Mutex::new(HashMap::new()),
            max_entries: local.max_entries,
            // The touch may be sent up to one interval after the hit, and
            // take up to `cache.timeout` to land.
            margin: millis(interval + settings.cache.timeout),
            follow_invalidations: !local.ignore_invalidations,
        });
        let follow = tokio::spawn(follow(
            Arc::downgrade(&inner),
            store.clone(),
            settings.cache.timeout,
        ));
        let drain = tokio::spawn(drain(Arc::downgrade(&inner), interval));
        Self {
            inner,
            tasks: vec![follow.abort_handle(), drain.abort_handle()],
        }
    }

    /// Is `jti` the current token of `sid`? From memory when possible.
    pub async fn authenticate(&self, owner: &str, sid: Uuid, jti: Uuid, now: Millis) -> Answer {
        let inner = &self.inner;
        if !inner.up.load(Ordering::Acquire) {
            inner.counts.bypasses.inc();
            return Answer::Bypass;
        }
        let begun = lock(&inner.entries).begin(sid, jti, now, inner.margin, inner.max_entries);
        let ticket = match begun {
            Begin::Hit => {
                inner.counts.hits.inc();
                inner.note_touch(owner, sid, jti);
                return Answer::Decided(Ok(true));
            }
            Begin::Bypass => {
                inner.counts.bypasses.inc();
                return Answer::Bypass;
            }
            Begin::Ask(ticket) => ticket,
        };
        inner.counts.lookups.inc();
        let peek = inner.store.peek(owner, sid, jti, inner.margin, now).await;
        lock(&inner.entries).finish(sid, ticket, jti, now, peek.as_ref().ok().copied(), None);
        match peek {
            Ok(Peek::Live(_)) => {
                // This request's activity, written behind like a hit's.
                inner.note_touch(owner, sid, jti);
                Answer::Decided(Ok(true))
            }
            Ok(Peek::Touched) => Answer::Decided(Ok(true)),
            Ok(Peek::NotCurrent) => Answer::Decided(Ok(false)),
            Err(e) => Answer::Decided(Err(e)),
        }
    }

    /// The live browser session `handle_hash` opens (SPEC §15), from
    /// memory when possible, by the same rules as a token: learned only
    /// from Redis, forgotten on any change to the session, touched behind
    /// (the session's own jti names it to `authenticate.lua`).
    pub async fn authenticate_browser(
        &self,
        owner: &str,
        sid: Uuid,
        handle_hash: SecretHash,
        now: Millis,
    ) -> BrowserAnswer {
        let inner = &self.inner;
        if !inner.up.load(Ordering::Acquire) {
            inner.counts.bypasses.inc();
            return BrowserAnswer::Bypass;
        }
        let begun = lock(&inner.entries).begin_browser(
            sid,
            &handle_hash,
            now,
            inner.margin,
            inner.max_entries,
        );
        let ticket = match begun {
            Ok((jti, entry)) => {
                inner.counts.hits.inc();
                inner.note_touch(owner, sid, jti);
                return BrowserAnswer::Decided(Ok(Some(entry.session.clone())));
            }
            Err(Begin::Ask(ticket)) => ticket,
            Err(_) => {
                inner.counts.bypasses.inc();
                return BrowserAnswer::Bypass;
            }
        };
        inner.counts.lookups.inc();
        let peeked = inner
            .store
            .peek_browser(owner, sid, handle_hash, inner.margin, now)
            .await;
        let found = match peeked {
            Ok(Some(found)) => found,
            // No session, or no answer: nothing learned (the slot goes).
            other => {
                lock(&inner.entries).finish(sid, ticket, Uuid::nil(), now, None, None);
                return BrowserAnswer::Decided(other.map(|_| None));
            }
        };
        let entry = Arc::new(BrowserEntry {
            handle_hash,
            session: found.session,
        });
        let learned = Some(entry.clone());
        lock(&inner.entries).finish(sid, ticket, found.jti, now, Some(found.peek), learned);
        if let Peek::Live(_) = found.peek {
            // This request's activity, written behind like a hit's.
            inner.note_touch(owner, sid, found.jti);
        }
        BrowserAnswer::Decided(Ok(Some(entry.session.clone())))
    }

    /// Whether requests are answered from memory now (for tests and logs).
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    /// Sessions remembered (pending look-ups included).
    pub fn len(&self) -> usize {
        lock(&self.inner.entries).map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The counters, for the `/metrics` registry to share.
    pub fn counts(&self) -> &Counts {
        &self.inner.counts
    }

    /// The gauges `/metrics` reads when it renders.
    pub fn gauges(&self) -> Gauges {
        Gauges(Arc::downgrade(&self.inner))
    }
}

impl Inner {
    fn note_touch(&self, owner: &str, sid: Uuid, jti: Uuid) {
        lock(&self.touches)
            .entry(sid)
            .or_insert_with(|| (owner.to_owned(), jti));
    }

    fn set_up(&self, up: bool) {
        lock(&self.entries).set_up(up);
        self.up.store(up, Ordering::Release);
    }

    fn invalidate(&self, push: &PushInfo) {
        if self.follow_invalidations {
            lock(&self.entries).invalidate(&push.data);
            self.counts.invalidations.inc();
        }
    }
}

/// Keeps the tracking connection up and applies its pushes; clears the
/// cache and bypasses it whenever the connection is not known to be up, or
/// goes to a master the sentinels no longer name.
async fn follow(inner: Weak<Inner>, store: RedisStore, timeout: Duration) {
    let mut backoff = Duration::from_millis(50);
    // Said once per outage; a Redis that refuses tracking (older than 6, or
    // an ACL without CLIENT) leaves the cache bypassed for good.
    let mut warned = false;
    loop {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let tracking = match store.tracking_connection(tx).await {
            // Learned of a failover while connecting: that master's pushes
            // would not cover the writes of the next.
            Ok(tracking) if tracking.is_superseded() => {
                tracing::debug!("local cache: the sentinels name another master; reconnecting");
                tokio::time::sleep(backoff).await;
                continue;
            }
            Ok(tracking) => tracking,
            Err(e) => {
                if warned {
                    tracing::debug!(error = %e, "local cache: tracking connection failed");
                } else {
                    tracing::warn!(error = %e, "local cache: no tracking connection; bypassed");
                    warned = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        warned = false;
        match inner.upgrade() {
            Some(inner) => inner.set_up(true),
            None => return,
        }
        tracing::info!("local cache: invalidation channel up, answering from memory");
        let lost = watch(&inner, tracking, &mut rx, timeout).await;
        let Some(inner) = inner.upgrade() else { return };
        inner.set_up(false);
        inner.counts.losses.inc();
        tracing::warn!(
            why = lost.reason(),
            "local cache: invalidation channel lost; cache cleared and bypassed"
        );
    }
}

/// Why [`watch`] gave up on a tracking connection.
enum Lost {
    /// Closed (`Disconnection`, or the client's push sender went away).
    Closed,
    /// No `PONG` within `cache.timeout`.
    Heartbeat,
    /// The sentinels name another master.
    Failover,
    /// The cache is gone.
    Dropped,
}

impl Lost {
    fn reason(&self) -> &'static str {
        match self {
            Self::Closed => "connection closed",
            Self::Heartbeat => "heartbeat unanswered",
            Self::Failover => "the sentinels name another master",
            Self::Dropped => "cache dropped",
        }
    }
}

/// Applies the pushes of an established tracking connection until it is
/// lost or superseded by a failover, sending it a `PING` every
/// [`HEARTBEAT`].
///
/// The `PING` in flight is a branch of its own, never awaited inside
/// another: Redis answers in order, so a push that arrives while the
/// `PONG` is due (a slow network, a busy Redis) is applied at once rather
/// than queued behind the heartbeat for up to `cache.timeout`.
async fn watch(
    inner: &Weak<Inner>,
    mut tracking: Tracking,
    rx: &mut mpsc::UnboundedReceiver<PushInfo>,
    timeout: Duration,
) -> Lost {
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    // A tick missed while a PING was out is not made up in a burst.
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pong = pin!(Fuse::terminated());
    loop {
        tokio::select! {
            push = rx.recv() => match push {
                Some(push) if push.kind == PushKind::Invalidate => {
                    let Some(inner) = inner.upgrade() else { return Lost::Dropped };
                    inner.invalidate(&push);
                }
                Some(push) if push.kind == PushKind::Disconnection => return Lost::Closed,
                Some(_) => {}
                None => return Lost::Closed,
            },
            _ = heartbeat.tick(), if pong.is_terminated() => {
                pong.set(ping(tracking.connections.clone(), timeout).fuse());
            }
            answered = &mut pong => if !answered {
                return Lost::Heartbeat;
            },
            () = tracking.superseded() => return Lost::Failover,
        }
    }
}

/// Whether every connection's `PONG` came back within `timeout`.
async fn ping(connections: Vec<MultiplexedConnection>, timeout: Duration) -> bool {
    let pongs = connections.into_iter().map(|mut conn| async move {
        let ping = redis::cmd("PING");
        ping.query_async::<String>(&mut conn).await.is_ok()
    });
    let all = futures_util::future::join_all(pongs);
    matches!(tokio::time::timeout(timeout, all).await, Ok(answers) if answers.iter().all(|ok| *ok))
}

/// Writes behind, every `interval`, the idle clocks of the sessions
/// answered since the last drain; forgets entries past their deadline.
async fn drain(inner: Weak<Inner>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let now = crate::time::now();
        lock(&inner.entries)
            .map
            .retain(|_, slot| !matches!(slot, Slot::Ready { deadline, .. } if *deadline <= now));
        let touches: Vec<Touch> = lock(&inner.touches)
            .drain()
            .map(|(sid, (owner, jti))| (owner, sid, jti))
            .collect();
        if touches.is_empty() {
            continue;
        }
        match inner.store.touch_all(&touches, now).await {
            Ok(touched) => {
                let mut entries = lock(&inner.entries);
                for ((_, sid, _), alive) in touches.iter().zip(touched) {
                    if !alive {
                        entries.map.remove(sid);
                    }
                }
            }
            Err(e) => {
                // Their idle clocks may not move: forget them, so that
                // their next requests ask Redis.
                tracing::warn!(error = %e, sessions = touches.len(), "local cache: touches failed");
                let mut entries = lock(&inner.entries);
                for (_, sid, _) in &touches {
                    entries.map.remove(sid);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARGIN: Millis = 100;
    const MAX: usize = 10;

    fn key(sid: Uuid) -> Value {
        Value::BulkString(crate::store::redis::session_key("alice", sid).into_bytes())
    }

    fn up() -> Entries {
        let mut entries = Entries::new();
        entries.set_up(true);
        entries
    }

    fn learned(entries: &mut Entries, sid: Uuid, jti: Uuid) {
        let Begin::Ask(ticket) = entries.begin(sid, jti, 0, MARGIN, MAX) else {
            panic!("a first request asks Redis");
        };
        entries.finish(sid, ticket, jti, 0, Some(Peek::Live(1_000)), None);
    }

    #[test]
    fn a_learned_token_is_answered_from_memory_until_close_to_its_deadline() {
        let (sid, jti) = (Uuid::new_v4(), Uuid::new_v4());
        let mut entries = up();
        learned(&mut entries, sid, jti);
        assert_eq!(entries.begin(sid, jti, 899, MARGIN, MAX), Begin::Hit);
        assert!(matches!(
            entries.begin(sid, jti, 900, MARGIN, MAX),
            Begin::Ask(_)
        ));
    }

    #[test]
    fn another_token_of_a_cached_session_asks_redis() {
        // It may be the successor whose rotation's invalidation is on its way.
        let (sid, jti) = (Uuid::new_v4(), Uuid::new_v4());
        let mut entries = up();
        learned(&mut entries, sid, jti);
        let other = Uuid::new_v4();
        assert!(matches!(
            entries.begin(sid, other, 1, MARGIN, MAX),
            Begin::Ask(_)
        ));
    }

    #[test]
    fn an_invalidation_that_overtakes_the_answer_is_not_lost() {
        let (sid, jti) = (Uuid::new_v4(), Uuid::new_v4());
        let mut entries = up();
        let Begin::Ask(ticket) = entries.begin(sid, jti, 0, MARGIN, MAX) else {
            panic!()
        };
        entries.invalidate(&[Value::Array(vec![key(sid)])]);
        entries.finish(sid, ticket, jti, 0, Some(Peek::Live(1_000)), None);
        assert!(matches!(
            entries.begin(sid, jti, 1, MARGIN, MAX),
            Begin::Ask(_)
        ));
    }

    #[test]
    fn a_flush_or_a_lost_channel_during_a_look_up_leaves_nothing_learned() {
        let (sid, jti) = (Uuid::new_v4(), Uuid::new_v4());
        for interruption in [
            |e: &mut Entries| e.invalidate(&[Value::Nil]),
            |e: &mut Entries| {
                e.set_up(false);
                e.set_up(true);
            },
        ] {
            let mut entries = up();
            let Begin::Ask(ticket) = entries.begin(sid, jti, 0, MARGIN, MAX) else {
                panic!()
            };
            interruption(&mut entries);
            entries.finish(sid, ticket, jti, 0, Some(Peek::Live(1_000)), None);
            assert!(entries.map.is_empty());
        }
    }

    #[test]
    fn only_the_latest_look_up_of_a_session_fills_it() {
        let (sid, jti) = (Uuid::new_v4(), Uuid::new_v4());
        let mut entries = up();
        let Begin::Ask(first) = entries.begin(sid, jti, 0, MARGIN, MAX) else {
            panic!()
        };
        let Begin::Ask(second) = entries.begin(sid, jti, 0, MARGIN, MAX) else {
            panic!()
        };
        entries.finish(sid, first, jti, 0, Some(Peek::Live(1_000)), None);
        assert!(matches!(entries.map.get(&sid), Some(Slot::Pending(t)) if *t == second));
        entries.finish(sid, second, jti, 0, Some(Peek::NotCurrent), None);
        assert!(entries.map.is_empty());
    }

    #[test]
    fn invalidations_name_sessions_and_anything_else_flushes() {
        let (a, b, jti) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut entries = up();
        learned(&mut entries, a, jti);
        learned(&mut entries, b, jti);
        entries.invalidate(&[Value::Array(vec![
            key(a),
            Value::BulkString(b"tg:{u:someone}:idx".to_vec()),
        ])]);
        assert!(!entries.map.contains_key(&a));
        assert!(entries.map.contains_key(&b));
        entries.invalidate(&[Value::Int(1)]);
        assert!(entries.map.is_empty());
    }

    #[test]
    fn a_down_channel_or_a_full_map_bypasses_the_cache() {
        let (sid, jti) = (Uuid::new_v4(), Uuid::new_v4());
        let mut entries = Entries::new();
        assert_eq!(entries.begin(sid, jti, 0, MARGIN, MAX), Begin::Bypass);
        let mut entries = up();
        learned(&mut entries, sid, jti);
        assert_eq!(
            entries.begin(Uuid::new_v4(), jti, 0, MARGIN, 1),
            Begin::Bypass
        );
        assert_eq!(entries.begin(sid, jti, 0, MARGIN, 1), Begin::Hit);
    }
}
