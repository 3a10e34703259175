//! The revocation feed's source on each replica (SPEC §13): one tail that
//! follows the ended-sessions log (see [`crate::store::ended`]) and hands
//! every new end to the replica's watchers (`GET /events/sessions`), and
//! one sweep that logs the ends of sessions that expired by themselves.
//!
//! A watcher subscribes before it reads its snapshot, so nothing logged in
//! between is lost (it skips what it has already sent, by id). Whenever the
//! tail loses its connection, or finds the log's epoch changed (a Redis
//! that lost its data), every watcher is cut off: a downstream service
//! must know it may have missed an end, and reconnects to read again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::store::redis::EndedTail;
use crate::store::{EndedSession, LogId, LogStart, SessionStore, Store, StoreError};
use crate::time::{Millis, now};

/// How often each replica sweeps for expired sessions; an idle expiry
/// reaches watchers within about this.
const SWEEP_EVERY: Duration = Duration::from_millis(25);
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
            access,
        }
    }

    pub fn access(&self) -> Millis {
        self.access
    }

    /// The ends from now on; `None` while the log cannot be followed.
    pub fn subscribe(&self) -> Option<Subscription> {
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
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Following>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the log and sweeps, until dropped.
    pub async fn run(&self, store: &Store) {
        tokio::join!(self.follow_always(store), sweep(store));
    }

    async fn follow_always(&self, store: &Store) {
        let mut retry = RETRY;
        while !self.closed.load(Ordering::Relaxed) {
            let error = self.follow(store).await;
            self.lock().take();
            if self.closed.load(Ordering::Relaxed) {
                return;
            }
            tracing::warn!(error = %error, "revocation feed: cannot follow the ended-sessions log; watchers cut off");
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_MAX);
            // A follow that got going starts the next wait short again.
            if matches!(error, Stop::AfterFollowing(_)) {
                retry = RETRY;
            }
        }
    }

    /// Follows until something goes wrong.
    async fn follow(&self, store: &Store) -> Stop {
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
        if self.closed.load(Ordering::Relaxed) {
            return Stop::Before(StoreError::Unavailable("closed".into()));
        }
        *self.lock() = Some(Following {
            ends: ends.clone(),
            epoch,
        });
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
            if self.lock().is_none() {
                return Stop::AfterFollowing(StoreError::Unavailable("closed".into()));
            }
        }
    }
}

/// Why following stopped; before it started, retries back off further.
enum Stop {
    Before(StoreError),
    AfterFollowing(StoreError),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Before(e) | Self::AfterFollowing(e) => e.fmt(f),
        }
    }
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

/// Logs the ends of sessions that expired by themselves, every
/// [`SWEEP_EVERY`].
async fn sweep(store: &Store) {
    let mut failing = false;
    loop {
        match store.sweep_ended(now()).await {
            Ok(logged) => {
                failing = false;
                if logged > 0 {
                    tracing::debug!(logged, "revocation feed: expired sessions logged");
                }
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "revocation feed: cannot sweep expired sessions");
            }
            Err(_) => {}
        }
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}
