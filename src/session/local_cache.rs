//! `/authenticate` from memory (SPEC §10, `auth.local_cache`, off by
//! default): a replica remembers `sid → current jti` learned from Redis and
//! answers from it, with no round trip, for as long as Redis has not said
//! the session changed.
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
//!   only while it is established with tracking on; when it closes, errs or
//!   misses a heartbeat, the map is cleared and every request takes the SPEC
//!   §3 path until it is back. Pending slots are only placed while it is up,
//!   and clearing removes them, so nothing learned across a gap survives.
//!   The bound: a partition that silently stops pushes is noticed within one
//!   heartbeat (1 s) plus `cache.timeout`.
//! - **Idle expiry still happens.** An entry carries Redis's own deadline for
//!   the session (its `PTTL` when learned, counted from before the look-up),
//!   and a hit needs that deadline further away than the touch margin. Each
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use deadpool_redis::redis::{self, PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use uuid::Uuid;

use crate::config::{CacheSettings, Settings, touch_interval};
use crate::store::redis::{Peek, RedisStore, SetupError, tracked_sid, tracking_connection};
use crate::store::{Millis, StoreError, Timing, millis};

/// How often the tracking connection is asked for a `PING`.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The cache's answer, when it has one.
#[derive(Debug)]
pub enum Answer {
    /// Decided here (from memory, or by the read-only look-up).
    Decided(Result<bool, StoreError>),
    /// Ask Redis as SPEC §3 says (cache bypassed, full, or the session
    /// close to its end).
    Bypass,
}

enum Slot {
    /// A look-up is on its way; only the holder of this ticket may fill.
    Pending(u64),
    Ready {
        jti: Uuid,
        deadline: Millis,
    },
}

struct Entries {
    /// The invalidation channel is established with tracking on.
    up: bool,
    map: HashMap<Uuid, Slot>,
    next_ticket: u64,
}

struct Inner {
    store: RedisStore,
    entries: Mutex<Entries>,
    /// Mirrors `entries.up` for the lock-free bypass check.
    up: AtomicBool,
    /// Sessions answered since the last drain, with the token seen.
    touches: Mutex<HashMap<Uuid, Uuid>>,
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

fn now_millis() -> Millis {
    millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

impl LocalCache {
    /// Starts the tracking connection and the touch drain (inside a Tokio
    /// runtime); requests bypass the cache until tracking is on.
    pub fn start(settings: &Settings, timing: Timing) -> Result<Self, SetupError> {
        let local = &settings.auth.local_cache;
        let interval = touch_interval(&settings.auth);
        let inner = Arc::new(Inner {
            store: RedisStore::new(&settings.cache, timing)?,
            entries: Mutex::new(Entries {
                up: false,
                map: HashMap::new(),
                next_ticket: 0,
            }),
            up: AtomicBool::new(false),
            touches: Mutex::new(HashMap::new()),
            max_entries: local.max_entries,
            // The touch may be sent up to one interval after the hit, and
            // take up to `cache.timeout` to land.
            margin: millis(interval + settings.cache.timeout),
            follow_invalidations: !local.ignore_invalidations,
        });
        let follow = tokio::spawn(follow(Arc::downgrade(&inner), settings.cache.clone()));
        let drain = tokio::spawn(drain(Arc::downgrade(&inner), interval));
        Ok(Self {
            inner,
            tasks: vec![follow.abort_handle(), drain.abort_handle()],
        })
    }

    /// Is `jti` the current token of `sid`? From memory when possible.
    pub async fn authenticate(&self, sid: Uuid, jti: Uuid, now: Millis) -> Answer {
        let inner = &self.inner;
        if !inner.up.load(Ordering::Acquire) {
            return Answer::Bypass;
        }
        let ticket = {
            let mut entries = lock(&inner.entries);
            if !entries.up {
                return Answer::Bypass;
            }
            match entries.map.get(&sid) {
                Some(Slot::Ready {
                    jti: current,
                    deadline,
                }) if *current == jti && now + inner.margin < *deadline => {
                    drop(entries);
                    inner.note_touch(sid, jti);
                    return Answer::Decided(Ok(true));
                }
                Some(_) => {}
                None if entries.map.len() >= inner.max_entries => return Answer::Bypass,
                None => {}
            }
            entries.next_ticket += 1;
            let ticket = entries.next_ticket;
            entries.map.insert(sid, Slot::Pending(ticket));
            ticket
        };
        let peek = inner.store.peek(sid, jti, inner.margin).await;
        let mut entries = lock(&inner.entries);
        let ours = matches!(entries.map.get(&sid), Some(Slot::Pending(t)) if *t == ticket);
        match peek {
            Ok(Peek::Live(left)) => {
                if ours {
                    let deadline = now + left;
                    entries.map.insert(sid, Slot::Ready { jti, deadline });
                }
                drop(entries);
                // This request's activity, written behind like a hit's.
                inner.note_touch(sid, jti);
                Answer::Decided(Ok(true))
            }
            other => {
                if ours {
                    entries.map.remove(&sid);
                }
                match other {
                    Ok(Peek::NotCurrent) => Answer::Decided(Ok(false)),
                    Ok(_) => Answer::Bypass,
                    Err(e) => Answer::Decided(Err(e)),
                }
            }
        }
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
}

impl Inner {
    fn note_touch(&self, sid: Uuid, jti: Uuid) {
        lock(&self.touches).entry(sid).or_insert(jti);
    }

    /// Marks the channel up or down; either way nothing learned before stays.
    fn set_up(&self, up: bool) {
        let mut entries = lock(&self.entries);
        entries.map.clear();
        entries.up = up;
        self.up.store(up, Ordering::Release);
    }

    /// Applies one push from the tracking connection.
    fn invalidate(&self, push: &PushInfo) {
        if !self.follow_invalidations {
            return;
        }
        let mut entries = lock(&self.entries);
        for value in &push.data {
            match value {
                // `FLUSHALL`/`FLUSHDB`, or tracking's table overflowed.
                Value::Nil => entries.map.clear(),
                Value::Array(keys) | Value::Set(keys) => {
                    for key in keys {
                        match key {
                            Value::BulkString(key) => {
                                if let Some(sid) = tracked_sid(key) {
                                    entries.map.remove(&sid);
                                }
                            }
                            _ => entries.map.clear(),
                        }
                    }
                }
                Value::BulkString(key) => {
                    if let Some(sid) = tracked_sid(key) {
                        entries.map.remove(&sid);
                    }
                }
                _ => entries.map.clear(),
            }
        }
    }
}

/// Keeps the tracking connection up and applies its pushes; clears the
/// cache and bypasses it whenever the connection is not known to be up.
async fn follow(inner: Weak<Inner>, cache: CacheSettings) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut conn = match tracking_connection(&cache, tx).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(error = %e, "local cache: tracking connection failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        match inner.upgrade() {
            Some(inner) => inner.set_up(true),
            None => return,
        }
        tracing::info!("local cache: invalidation channel up, answering from memory");
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                push = rx.recv() => match push {
                    Some(push) if push.kind == PushKind::Invalidate => {
                        let Some(inner) = inner.upgrade() else { return };
                        inner.invalidate(&push);
                    }
                    Some(push) if push.kind == PushKind::Disconnection => break,
                    Some(_) => {}
                    None => break,
                },
                _ = heartbeat.tick() => {
                    let ping = redis::cmd("PING");
                    let ping = ping.query_async::<String>(&mut conn);
                    if !matches!(tokio::time::timeout(cache.timeout, ping).await, Ok(Ok(_))) {
                        break;
                    }
                }
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        inner.set_up(false);
        tracing::warn!("local cache: invalidation channel lost; cache cleared and bypassed");
    }
}

/// Writes behind, every `interval`, the idle clocks of the sessions
/// answered since the last drain; forgets entries past their deadline.
async fn drain(inner: Weak<Inner>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let now = now_millis();
        lock(&inner.entries)
            .map
            .retain(|_, slot| !matches!(slot, Slot::Ready { deadline, .. } if *deadline <= now));
        let touches: Vec<(Uuid, Uuid)> = lock(&inner.touches).drain().collect();
        if touches.is_empty() {
            continue;
        }
        match inner.store.touch_all(&touches, now).await {
            Ok(touched) => {
                let mut entries = lock(&inner.entries);
                for ((sid, _), alive) in touches.iter().zip(touched) {
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
                for (sid, _) in &touches {
                    entries.map.remove(sid);
                }
            }
        }
    }
}
