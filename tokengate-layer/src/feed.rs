//! The revocation feed (SPEC §13): tokengate's `GET /events/sessions`
//! stream of ended sessions, kept as a set the layer consults on every
//! request, so a logged-out session's access tokens stop passing within
//! milliseconds instead of when they expire.
//!
//! One background task per [`Feed`] keeps the stream open and reconnects
//! (resuming with `Last-Event-ID`); the handles share its set, and the task
//! stops when the last handle is dropped or on [`Feed::shutdown`].
//!
//! The set is only as good as the stream: it is *trusted* from the first
//! `live` event (the snapshot is complete) and through an outage shorter
//! than [`FeedBuilder::max_outage`] (the reconnect replays what was
//! missed). Beyond that, or before the first `live`, a session could have
//! ended unseen, so the layer fails closed (`503`) or, with
//! [`FeedBuilder::fallback_authenticate`], asks tokengate's `/authenticate`
//! per request until the feed is live again. An end the set holds is always
//! refused, trusted or not: an end never un-happens.

mod client;
mod ended;
mod fallback;
mod sse;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use http::HeaderValue;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::endpoint::{Endpoint, UrlError};
use client::Connector;
use ended::Ended;
pub(crate) use fallback::{Fallback, Verdict as FallbackVerdict};

/// Why a feed could not be started.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("feed URL: {0}")]
    Url(UrlError),
    #[error("fallback /authenticate URL: {0}")]
    FallbackUrl(UrlError),
    #[error("the API token is not a valid header value")]
    Token,
    #[error("a feed is started from within a tokio runtime")]
    NoRuntime,
}

/// Builds a [`Feed`]; see [`Feed::builder`].
pub struct FeedBuilder {
    url: String,
    api_token: String,
    max_outage: Duration,
    fallback: Option<String>,
    fallback_timeout: Duration,
    backoff: (Duration, Duration),
    idle_timeout: Duration,
    max_event: usize,
}

impl FeedBuilder {
    /// How long the set is still trusted after the stream drops (default
    /// 5 s): a reconnect within it replays what was missed, so a brief blip
    /// (a tokengate restart) costs nothing. A longer outage is the delay by
    /// which a logout may be missed, so keep it short.
    pub fn max_outage(mut self, bound: Duration) -> Self {
        self.max_outage = bound;
        self
    }

    /// While the set is not trusted, ask tokengate's public `/authenticate`
    /// (e.g. `http://tokengate:8080/authenticate`) about each request
    /// instead of refusing it with `503`: correct, at one round trip per
    /// request while the feed is down.
    pub fn fallback_authenticate(mut self, url: impl Into<String>) -> Self {
        self.fallback = Some(url.into());
        self
    }

    /// How long one `/authenticate` call may take before the request gets
    /// `503` (default 2 s).
    pub fn fallback_timeout(mut self, timeout: Duration) -> Self {
        self.fallback_timeout = timeout;
        self
    }

    /// The wait before reconnecting: `first`, doubling up to `max` while
    /// reconnecting fails (default 50 ms to 2 s, so a restarted tokengate is
    /// found again quickly).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = (first, max.max(first));
        self
    }

    /// A stream silent for this long is dead, and is dropped and reopened
    /// (default 35 s; tokengate sends a comment at least every 15 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The largest event accepted (default 64 KiB); a bigger one means a
    /// broken stream, which is reopened.
    pub fn max_event(mut self, bytes: usize) -> Self {
        self.max_event = bytes;
        self
    }

    /// Starts the feed's task (on the current tokio runtime) and returns
    /// its first handle. The feed is not live yet: see [`Feed::wait_live`].
    pub fn start(self) -> Result<Feed, FeedError> {
        let endpoint = Endpoint::parse(&self.url).map_err(FeedError::Url)?;
        let fallback = match &self.fallback {
            Some(url) => Some(Fallback::new(
                Endpoint::parse(url).map_err(FeedError::FallbackUrl)?,
                self.fallback_timeout,
            )),
            None => None,
        };
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", self.api_token))
            .map_err(|_| FeedError::Token)?;
        authorization.set_sensitive(true);
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| FeedError::NoRuntime)?;
        let (live, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: RwLock::new(State {
                ended: Ended::default(),
                since_ms: 0,
                up: false,
                ever_live: false,
                down_since: Instant::now(),
            }),
            live,
            leeway: AtomicU64::new(0),
            max_outage: self.max_outage,
            fallback,
        });
        let connector = Connector {
            endpoint,
            authorization,
            backoff: self.backoff,
            idle_timeout: self.idle_timeout,
            max_event: self.max_event,
        };
        let task = runtime.spawn(client::run(connector, Arc::clone(&shared)));
        Ok(Feed {
            shared,
            task: Arc::new(Task(task.abort_handle())),
        })
    }
}

impl fmt::Debug for FeedBuilder {
    /// Never the API token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedBuilder")
            .field("url", &self.url)
            .field("max_outage", &self.max_outage)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

/// A handle on a revocation feed. Cheap to clone; one feed serves every
/// layer of a service ([`AuthLayer::with_feed`](crate::AuthLayer::with_feed)).
#[derive(Clone)]
pub struct Feed {
    shared: Arc<Shared>,
    task: Arc<Task>,
}

/// Aborts the task when the last handle goes.
struct Task(tokio::task::AbortHandle);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a request's session is, as far as the feed can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Not among the ends, and the set is trusted.
    Clear,
    /// Ended: refuse.
    Ended,
    /// Not among the ends, but the set is not trusted right now.
    Unknown,
}

impl Feed {
    /// A feed from tokengate's admin listener, e.g.
    /// `http://tokengate:9090/events/sessions`, read with an API token
    /// (`tg_live_…`) holding the scope `sessions:watch`.
    pub fn builder(url: impl Into<String>, api_token: impl Into<String>) -> FeedBuilder {
        FeedBuilder {
            url: url.into(),
            api_token: api_token.into(),
            max_outage: Duration::from_secs(5),
            fallback: None,
            fallback_timeout: Duration::from_secs(2),
            backoff: (Duration::from_millis(50), Duration::from_secs(2)),
            idle_timeout: Duration::from_secs(35),
            max_event: 64 * 1024,
        }
    }

    /// Whether the stream is caught up right now (between a `live` event and
    /// the next drop).
    pub fn is_live(&self) -> bool {
        *self.shared.live.borrow()
    }

    /// Waits until the stream is caught up, e.g. at start-up so a service
    /// answers its first requests without a `503`. It may never be (a wrong
    /// API token, tokengate down, [`Feed::shutdown`]): wrap it in a timeout.
    pub async fn wait_live(&self) {
        let mut live = self.shared.live.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail here.
        let _ = live.wait_for(|live| *live).await;
    }

    /// Whether the feed has seen `sid` end and its tokens could still verify
    /// now (with the leeway of the layers using the feed), whatever the
    /// feed's health.
    pub fn has_ended(&self, sid: &Uuid) -> bool {
        self.shared
            .read()
            .ended
            .refuses(sid, crate::verifier::now_secs(), self.shared.leeway())
    }

    /// Stops the task now (dropping every handle does too). The set stays
    /// as it was, no longer trusted after `max_outage`.
    pub fn shutdown(&self) {
        self.task.0.abort();
        self.shared.went_down();
    }

    /// The session's standing for a token issued at `iat` and verified at
    /// `now` (Unix seconds) with `leeway`. A session begun before the
    /// store's epoch (`since_ms` of the `live` event) is one tokengate no
    /// longer knows — its Redis lost its data — and has ended: told by the
    /// time in its id (a UUIDv7), else by the token's `iat`.
    pub(crate) fn standing(&self, sid: &Uuid, iat: u64, now: u64, leeway: u64) -> Standing {
        let state = self.shared.read();
        let begun_ms = match sid.get_timestamp() {
            Some(ts) => {
                let (secs, nanos) = ts.to_unix();
                secs * 1000 + u64::from(nanos / 1_000_000)
            }
            // Whole seconds, rounded down: a token of the epoch's first
            // second counts as before it.
            None => iat.saturating_mul(1000),
        };
        if state.ended.refuses(sid, now, leeway) || begun_ms < state.since_ms {
            Standing::Ended
        } else if state.trusted(self.shared.max_outage) {
            Standing::Clear
        } else {
            Standing::Unknown
        }
    }

    /// Ends are kept at least `leeway` past their `until`: a layer whose
    /// verifier allows that much skew would still accept their tokens.
    pub(crate) fn retain_for(&self, leeway: u64) {
        self.shared.leeway.fetch_max(leeway, Ordering::Relaxed);
    }

    pub(crate) fn fallback(&self) -> Option<&Fallback> {
        self.shared.fallback.as_ref()
    }

    #[cfg(test)]
    pub(crate) fn ended_len(&self) -> usize {
        self.shared.read().ended.len()
    }
}

impl fmt::Debug for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.read();
        f.debug_struct("Feed")
            .field("live", &state.up)
            .field("ended", &state.ended.len())
            .field("fallback", &self.shared.fallback.is_some())
            .finish_non_exhaustive()
    }
}

/// What the task writes and the handles read.
struct Shared {
    state: RwLock<State>,
    /// Mirrors `State::up`, for waiting on it.
    live: watch::Sender<bool>,
    /// The largest leeway of the layers using the feed.
    leeway: AtomicU64,
    max_outage: Duration,
    fallback: Option<Fallback>,
}

struct State {
    ended: Ended,
    /// The store's epoch (Unix ms): sessions begun before it are refused.
    since_ms: u64,
    up: bool,
    ever_live: bool,
    /// When the stream last dropped (or the feed started).
    down_since: Instant,
}

impl State {
    fn trusted(&self, max_outage: Duration) -> bool {
        self.ever_live && (self.up || self.down_since.elapsed() <= max_outage)
    }
}

/// What one read of the stream brought.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) ended: Vec<(Uuid, u64)>,
    pub(crate) live: bool,
    /// The `since_ms` of the `live` event, if it had one.
    pub(crate) since_ms: Option<u64>,
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn leeway(&self) -> u64 {
        self.leeway.load(Ordering::Relaxed)
    }

    /// Applies a batch under one write lock.
    fn apply(&self, batch: Batch) {
        if batch.ended.is_empty() && !batch.live {
            return;
        }
        let now = crate::verifier::now_secs();
        let leeway = self.leeway();
        let became_live = {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            for (sid, until) in batch.ended {
                state.ended.insert(sid, until);
            }
            state.ended.prune(now, leeway);
            let became_live = batch.live && !state.up;
            if let Some(since_ms) = batch.since_ms {
                state.since_ms = since_ms;
            }
            if batch.live {
                state.up = true;
                state.ever_live = true;
            }
            became_live
        };
        if became_live {
            self.live.send_replace(true);
        }
    }

    /// The stream dropped: the outage clock starts (unless it already runs).
    fn went_down(&self) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if state.up {
            state.up = false;
            state.down_since = Instant::now();
        }
        drop(state);
        self.live.send_replace(false);
    }
}

#[cfg(test)]
mod tests;
