//! The revocation feed's source on each replica (SPEC §13): one tail that
//! follows the ended-sessions log (see [`crate::store::ended`]) and hands
//! every new end to the replica's watchers (`GET /events/sessions`), and
//! one sweep that logs the ends of sessions that expired by themselves.
//! Both run only while the replica has watchers (the first one starts
//! them), so a deployment without downstream services pays nothing; a
//! watcher's snapshot is read after a sweep of its own.
//!
//! A watcher subscribes before it reads its snapshot, so nothing logged in
//! between is lost (it skips what it has already sent, by id). Whenever the
//! tail loses its connection, or finds the log's epoch changed (a Redis
//! that lost its data), every watcher is cut off: a downstream service
//! must know it may have missed an end, and reconnects to read again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;

use crate::store::redis::EndedTail;
use crate::store::{EndedSession, LogId, LogStart, SessionStore, Store, StoreError};
use crate::time::{Millis, now};

/// How often a replica with watchers sweeps for expired sessions; an idle
/// expiry reaches watchers within about this.
const SWEEP_EVERY: Duration = Duration::from_millis(25);
/// How long a watcher waits for the log to be followed.
const START_WAIT: Duration = Duration::from_secs(2);
/// A replica stops following this long after its last watcher left.
const UNWATCHED: Duration = Duration::from_secs(30);
/// A blocked read of the log returns this often, to check the epoch.
const TAIL_WAIT: Duration = Duration::from_secs(1);
/// Entries read from the log at a time.
pub const PAGE: u32 = 500;
/// Ends held for a watcher that is behind; one further behind is cut off
/// and resumes from the log.
const BACKLOG: usize = 4096;
/// Waits between attempts while the log cannot be followed.
const RETRY: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// One replica's feed; clones share it.
#[derive(Clone)]
pub struct SessionFeed {
    state: Arc<Mutex<Option<Following>>>,
    closed: Arc<AtomicBool>,
    /// Woken by a watcher while nobody follows the log.
    wanted: Arc<Notify>,
    /// Woken when following starts, or fails to.
    started: Arc<Notify>,
    /// `auth.access_lifetime`: how far back a snapshot reads.
    access: Millis,
}

/// While the tail follows the log: where new ends go, and the log's epoch.
struct Following {
    ends: broadcast::Sender<Arc<EndedSession>>,
    epoch: Millis,
}

/// A watcher's subscription: the ends from now on, of the log of `epoch`.
pub struct Subscription {
    pub ends: broadcast::Receiver<Arc<EndedSession>>,
    pub epoch: Millis,
}

impl SessionFeed {
    pub fn new(access: Millis) -> Self {
        Self {
            state: Arc::default(),
            closed: Arc::default(),
            wanted: Arc::default(),
            started: Arc::default(),
            access,
        }
    }

    pub fn access(&self) -> Millis {
        self.access
    }

    /// The ends from now on, once the log is followed (the first watcher
    /// starts that); `None` if it cannot be within [`START_WAIT`].
    pub async fn subscribe(&self) -> Option<Subscription> {
        if let Some(subscription) = self.try_subscribe() {
            return Some(subscription);
        }
        let started = self.started.notified();
        tokio::pin!(started);
        started.as_mut().enable();
        self.wanted.notify_one();
        let _ = tokio::time::timeout(START_WAIT, started).await;
        self.try_subscribe()
    }

    fn try_subscribe(&self) -> Option<Subscription> {
        let state = self.lock();
        let following = state.as_ref()?;
        Some(Subscription {
            ends: following.ends.subscribe(),
            epoch: following.epoch,
        })
    }

    /// Cuts every watcher off for good (shutdown).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.lock().take();
        self.wanted.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Following>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Until dropped: while this replica has watchers, follows the log and
    /// sweeps; without any for [`UNWATCHED`], sends Redis nothing.
    pub async fn run(&self, store: &Store) {
        while !self.is_closed() {
            self.wanted.notified().await;
            if self.is_closed() {
                return;
            }
            tracing::debug!("revocation feed: following the ended-sessions log");
            tokio::select! {
                () = self.follow_while_watched(store) => {}
                () = sweep(store, SWEEP_EVERY) => {}
            }
            self.lock().take();
            tracing::debug!("revocation feed: no watcher left; not following");
        }
    }

    async fn follow_while_watched(&self, store: &Store) {
        let mut retry = RETRY;
        let mut watched_at = Instant::now();
        loop {
            let stop = self.follow(store, &mut watched_at).await;
            self.lock().take();
            self.started.notify_waiters();
            let error = match stop {
                Stop::Unwatched => return,
                _ if self.is_closed() => return,
                Stop::Before(e) => e,
                Stop::AfterFollowing(e) => {
                    retry = RETRY;
                    e
                }
            };
            tracing::warn!(error = %error, "revocation feed: cannot follow the ended-sessions log; watchers cut off");
            if watched_at.elapsed() > UNWATCHED {
                return;
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_MAX);
        }
    }

    /// Follows until something goes wrong, or nobody has watched for
    /// [`UNWATCHED`] (`watched_at`: when somebody last did).
    async fn follow(&self, store: &Store, watched_at: &mut Instant) -> Stop {
        let mut tail = match Tail::open(store).await {
            Ok(tail) => tail,
            Err(e) => return Stop::Before(e),
        };
        let newest = LogStart::Since(Millis::MAX);
        let start = match store.ended_log(newest, 1, now()).await {
            Ok(page) => page,
            Err(e) => return Stop::Before(e),
        };
        let (epoch, mut last) = (start.epoch, start.last);
        let (ends, _) = broadcast::channel(BACKLOG);
        if self.is_closed() {
            return Stop::Before(StoreError::Unavailable("closed".into()));
        }
        *self.lock() = Some(Following {
            ends: ends.clone(),
            epoch,
        });
        self.started.notify_waiters();
        loop {
            // Without news, a read of no entry checks the epoch.
            let more = match tail.wait(last, TAIL_WAIT).await {
                Ok(more) => more,
                Err(e) => return Stop::AfterFollowing(e),
            };
            let mut from = if more { LogStart::After(last) } else { newest };
            loop {
                let page = match store.ended_log(from, PAGE, now()).await {
                    Ok(page) => page,
                    Err(e) => return Stop::AfterFollowing(e),
                };
                if page.epoch != epoch {
                    return Stop::AfterFollowing(StoreError::Protocol(
                        "the ended-sessions log started again: the store lost its data".into(),
                    ));
                }
                let full = page.entries.len() >= PAGE as usize;
                for end in page.entries {
                    last = end.id;
                    // No watcher is no error.
                    let _ = ends.send(Arc::new(end));
                }
                if !(more && full) {
                    break;
                }
                from = LogStart::After(last);
            }
            if self.is_closed() {
                return Stop::AfterFollowing(StoreError::Unavailable("closed".into()));
            }
            if ends.receiver_count() > 0 {
                *watched_at = Instant::now();
            } else if watched_at.elapsed() > UNWATCHED {
                return Stop::Unwatched;
            }
        }
    }
}

/// Why following stopped; before it started, retries back off further.
enum Stop {
    Before(StoreError),
    AfterFollowing(StoreError),
    Unwatched,
}

/// Waits for new entries of the log.
enum Tail {
    Redis(EndedTail),
    Memory(crate::store::memory::MemoryStore),
}

impl Tail {
    async fn open(store: &Store) -> Result<Self, StoreError> {
        Ok(match store {
            Store::Redis(redis) => Self::Redis(redis.ended_tail().await?),
            Store::Memory(memory) => Self::Memory(memory.clone()),
        })
    }

    /// True once an entry after `after` exists; false after `wait`.
    async fn wait(&mut self, after: LogId, wait: Duration) -> Result<bool, StoreError> {
        match self {
            Self::Redis(tail) => tail.wait(after, wait).await,
            Self::Memory(memory) => Ok(memory.has_ended_after(after, wait).await),
        }
    }
}

/// How often every replica sweeps for expired sessions whatever its
/// watchers: an idle or max_session end becomes a `SessionEnded` event
/// within about this (SPEC §14). The sweep is atomic and idempotent, so
/// replicas sweeping together only share the work.
pub const EVENTS_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Logs the ends of sessions that expired by themselves, every `every`
/// ([`SWEEP_EVERY`] while watched, [`EVENTS_SWEEP_EVERY`] always).
pub async fn sweep(store: &Store, every: Duration) {
    let mut failing = false;
    loop {
        match store.sweep_ended(now()).await {
            Ok(logged) => {
                failing = false;
                if logged > 0 {
                    tracing::debug!(logged, "expired sessions logged");
                }
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot sweep expired sessions (SessionEnded, revocation feed)");
            }
            Err(_) => {}
        }
        tokio::time::sleep(every).await;
    }
}
