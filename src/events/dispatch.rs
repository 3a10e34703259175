//! Moves the log of events to one sink (Kafka, a webhook endpoint), at
//! least once and in order.
//!
//! Every replica runs a dispatcher per sink; the one holding the sink's
//! lease reads the sink's consumer group (see `store::event_log`), hands
//! the sink a batch, acknowledges what it delivered, and after a failure
//! waits the sink's backoff before it hands the rest again — the lease is
//! renewed all the while, so no other replica jumps the queue. The others
//! stand by, take over within a lease after the holder dies, and keep the
//! sink's gauges fresh for their own `/metrics`.
//!
//! A sink that cannot deliver never blocks the service or the other sinks:
//! its events wait in the log, bounded by `events.max_len` (a warning when
//! half of it is pending; beyond it the oldest are dropped and counted).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::sink::Sink;
use crate::store::Store;
use crate::store::event_log::{Backlog, LoggedEvent};
use crate::time::{Millis, now};

/// Events handed to a sink at once.
const BATCH: usize = 100;
/// How long a lease lasts unless renewed; renewed every third of it.
const LEASE: Duration = Duration::from_secs(15);
/// How often an idle holder looks for new events.
const POLL: Duration = Duration::from_millis(50);
/// How often a replica not holding the lease tries for it and refreshes
/// the gauges.
const STANDBY: Duration = Duration::from_secs(1);

/// `tokengate_events_*{sink}`, for every sink.
#[derive(Default)]
pub struct EventMetrics {
    delivered: Family<SinkLabel, Counter>,
    retried: Family<SinkLabel, Counter>,
    dropped: Family<SinkLabel, Counter>,
    given_up: Family<SinkLabel, Counter>,
    pending: Family<SinkLabel, Gauge>,
    oldest: Family<SinkLabel, Gauge<f64, AtomicU64>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

impl EventMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("events");
        sub.register(
            "delivered",
            "Events a sink took (Kafka acknowledged, the webhook answered 2xx)",
            self.delivered.clone(),
        );
        sub.register(
            "retried",
            "Deliveries that failed and will be tried again after a backoff",
            self.retried.clone(),
        );
        sub.register(
            "dropped",
            "Events trimmed from the log (events.max_len) before the sink took them",
            self.dropped.clone(),
        );
        sub.register(
            "given_up",
            "Events a sink gave up on after retrying for its whole retry period",
            self.given_up.clone(),
        );
        sub.register(
            "pending",
            "Events in the log the sink has not taken yet",
            self.pending.clone(),
        );
        sub.register(
            "oldest_pending_seconds",
            "Age of the oldest event the sink has not taken yet (0 when none)",
            self.oldest.clone(),
        );
    }

    fn label(sink: &str) -> SinkLabel {
        SinkLabel {
            sink: sink.to_owned(),
        }
    }

    /// Sets the gauges from a backlog read at `now`.
    pub fn backlog(&self, sink: &str, backlog: Backlog, now: Millis) {
        let label = Self::label(sink);
        self.pending
            .get_or_create(&label)
            .set(i64::try_from(backlog.pending).unwrap_or(i64::MAX));
        let age = backlog
            .oldest
            .map_or(0.0, |at| now.saturating_sub(at) as f64 / 1000.0);
        self.oldest.get_or_create(&label).set(age);
    }

    pub fn delivered(&self, sink: &str, n: usize) {
        self.delivered
            .get_or_create(&Self::label(sink))
            .inc_by(n as u64);
    }

    pub fn retried(&self, sink: &str) {
        self.retried.get_or_create(&Self::label(sink)).inc();
    }

    fn dropped(&self, sink: &str, n: u64) {
        self.dropped.get_or_create(&Self::label(sink)).inc_by(n);
    }

    fn given_up(&self, sink: &str) {
        self.given_up.get_or_create(&Self::label(sink)).inc();
    }
}

/// One sink's dispatcher on this replica.
pub struct Dispatcher<'a> {
    pub store: &'a Store,
    pub sink: Arc<dyn Sink>,
    pub metrics: &'a EventMetrics,
    /// This replica's name in leases.
    pub holder: &'a str,
    /// `events.max_len`: the bound warned of.
    pub max_len: u64,
}

/// How a dispatcher's run of failures stands.
#[derive(Default)]
struct Failing {
    /// Failures in a row.
    count: u32,
    /// Since when the event at the head has failed.
    head: Option<(String, Instant)>,
}

impl Dispatcher<'_> {
    /// Runs until dropped.
    pub async fn run(&self) {
        let name = self.sink.name().to_owned();
        while let Err(e) = self.store.join_events(&name).await {
            tracing::warn!(sink = %name, error = %e, "events: cannot join the log; retrying");
            tokio::time::sleep(STANDBY).await;
        }
        let mut failing = Failing::default();
        let mut gauges_at = Instant::now();
        let mut warned_full = false;
        loop {
            match self.store.lease_events(&name, self.holder, LEASE).await {
                Ok(true) => {}
                Ok(false) => {
                    self.refresh_gauges(&mut warned_full).await;
                    tokio::time::sleep(STANDBY).await;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(sink = %name, error = %e, "events: lease not renewed");
                    tokio::time::sleep(STANDBY).await;
                    continue;
                }
            }
            if gauges_at.elapsed() >= STANDBY {
                self.refresh_gauges(&mut warned_full).await;
                gauges_at = Instant::now();
            }
            let batch = match self.store.next_events(&name, BATCH).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::debug!(sink = %name, error = %e, "events: cannot read the log");
                    tokio::time::sleep(STANDBY).await;
                    continue;
                }
            };
            if batch.dropped > 0 {
                self.metrics.dropped(&name, batch.dropped);
                tracing::error!(
                    sink = %name,
                    dropped = batch.dropped,
                    "events: dropped before this sink took them (beyond events.max_len)"
                );
            }
            if batch.events.is_empty() {
                tokio::time::sleep(POLL).await;
                continue;
            }
            if let Some(wait) = self.deliver(&batch.events, &mut failing).await {
                self.wait_holding(wait).await;
            }
        }
    }

    /// Hands `events` to the sink and acknowledges what it took; the wait
    /// before the next try after a failure.
    async fn deliver(&self, events: &[LoggedEvent], failing: &mut Failing) -> Option<Duration> {
        let name = self.sink.name();
        let (wanted, unwanted): (Vec<LoggedEvent>, Vec<LoggedEvent>) = events
            .iter()
            .cloned()
            .partition(|e| self.sink.wants(&e.kind));
        let skip: Vec<String> = unwanted.into_iter().map(|e| e.entry).collect();
        self.acknowledge(&skip).await;
        if wanted.is_empty() {
            return None;
        }
        let delivered = self.holding(self.sink.deliver(&wanted)).await;
        let taken: Vec<String> = wanted[..delivered.count.min(wanted.len())]
            .iter()
            .map(|e| e.entry.clone())
            .collect();
        self.metrics.delivered(name, taken.len());
        self.acknowledge(&taken).await;
        let Some(error) = delivered.error else {
            if failing.count > 0 {
                tracing::info!(sink = %name, "events: delivering again");
            }
            *failing = Failing::default();
            return None;
        };
        let head = &wanted[taken.len().min(wanted.len() - 1)];
        let since = match &failing.head {
            Some((entry, since)) if *entry == head.entry => *since,
            _ => Instant::now(),
        };
        failing.head = Some((head.entry.clone(), since));
        failing.count += 1;
        let backoff = self.sink.backoff();
        if backoff
            .give_up_after
            .is_some_and(|limit| since.elapsed() >= limit)
        {
            tracing::error!(
                sink = %name, event = %head.id, kind = %head.kind, error = %error,
                "events: giving up on an event after retrying for its whole retry period"
            );
            self.metrics.given_up(name);
            self.acknowledge(std::slice::from_ref(&head.entry)).await;
            failing.head = None;
            return None;
        }
        self.metrics.retried(name);
        let wait = backoff.delay(failing.count);
        // Once per outage, then every tenth try: enough to see it is still on.
        if failing.count == 1 || failing.count.is_multiple_of(10) {
            tracing::warn!(
                sink = %name, error = %error, failures = failing.count,
                retry_in = ?wait, "events: cannot deliver; events wait in the log"
            );
        }
        Some(wait)
    }

    async fn acknowledge(&self, entries: &[String]) {
        if entries.is_empty() {
            return;
        }
        // Unacknowledged, they are handed out again: at least once.
        if let Err(e) = self.store.ack_events(self.sink.name(), entries).await {
            tracing::warn!(sink = %self.sink.name(), error = %e, "events: acknowledgement lost; some will be delivered again");
        }
    }

    /// Runs `work` while renewing the lease.
    async fn holding<T>(&self, work: impl Future<Output = T>) -> T {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                () = tokio::time::sleep(LEASE / 3) => {
                    let _ = self.store.lease_events(self.sink.name(), self.holder, LEASE).await;
                }
            }
        }
    }

    /// Waits out a backoff, still holding the lease: no other replica
    /// retries sooner.
    async fn wait_holding(&self, wait: Duration) {
        self.holding(tokio::time::sleep(wait)).await;
    }

    async fn refresh_gauges(&self, warned_full: &mut bool) {
        let name = self.sink.name();
        let Ok(backlog) = self.store.events_backlog(name).await else {
            return;
        };
        self.metrics.backlog(name, backlog, now());
        let half = self.max_len / 2;
        if self.max_len > 0 && backlog.pending > half && !*warned_full {
            tracing::warn!(
                sink = %name, pending = backlog.pending, max_len = self.max_len,
                "events: more than half of events.max_len waits for this sink; beyond it the oldest are dropped"
            );
        }
        *warned_full = self.max_len > 0 && backlog.pending > half;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::sink::{Backoff, BoxFuture, Delivered, DeliveryError};
    use crate::store::SessionStore;
    use crate::store::event_log::NewEvent;
    use crate::store::memory::MemoryStore;
    use std::sync::Mutex;

    /// Takes events, failing the first `fail` tries.
    struct Recorder {
        fail: Mutex<u32>,
        seen: Mutex<Vec<String>>,
        only: Option<&'static str>,
    }

    impl Sink for Recorder {
        fn name(&self) -> &str {
            "test"
        }
        fn wants(&self, kind: &str) -> bool {
            self.only.is_none_or(|only| only == kind)
        }
        fn backoff(&self) -> Backoff {
            Backoff {
                first: Duration::from_millis(1),
                max: Duration::from_millis(4),
                give_up_after: None,
            }
        }
        fn deliver<'a>(&'a self, events: &'a [LoggedEvent]) -> BoxFuture<'a, Delivered> {
            Box::pin(async move {
                let mut fail = self.fail.lock().expect("lock");
                if *fail > 0 {
                    *fail -= 1;
                    // The first one gets through, the rest waits.
                    self.seen
                        .lock()
                        .expect("lock")
                        .push(events[0].subject.clone());
                    return Delivered {
                        count: 1,
                        error: Some(DeliveryError("down".into())),
                    };
                }
                let mut seen = self.seen.lock().expect("lock");
                seen.extend(events.iter().map(|e| e.subject.clone()));
                Delivered::all(events)
            })
        }
    }

    fn event(kind: &str, subject: &str) -> NewEvent {
        NewEvent {
            id: uuid::Uuid::now_v7(),
            kind: kind.into(),
            subject: subject.into(),
            occurred_at: now(),
            data: "{}".into(),
        }
    }

    async fn run_until(store: &Store, sink: Arc<Recorder>, want: usize) -> Vec<String> {
        let metrics = EventMetrics::default();
        let dispatcher = Dispatcher {
            store,
            sink: sink.clone(),
            metrics: &metrics,
            holder: "me",
            max_len: 100,
        };
        let run = dispatcher.run();
        tokio::pin!(run);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            tokio::select! {
                () = &mut run => unreachable!("runs until dropped"),
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
            let seen = sink.seen.lock().expect("lock").clone();
            if seen.len() >= want || tokio::time::Instant::now() > deadline {
                return seen;
            }
        }
    }

    #[tokio::test]
    async fn a_failing_sink_gets_the_rest_in_order_after_its_backoff() {
        let store = Store::Memory(MemoryStore::for_tests());
        store.join_events("test").await.expect("join");
        let events: Vec<NewEvent> = (0..5)
            .map(|i| event("SessionEnded", &format!("u{i}")))
            .collect();
        store.log_events(&events).await.expect("append");
        let sink = Arc::new(Recorder {
            fail: Mutex::new(2),
            seen: Mutex::default(),
            only: None,
        });
        let seen = run_until(&store, sink, 5).await;
        assert_eq!(seen, ["u0", "u1", "u2", "u3", "u4"]);
    }

    #[tokio::test]
    async fn events_a_sink_does_not_want_are_acknowledged_without_it() {
        let store = Store::Memory(MemoryStore::for_tests());
        store.join_events("test").await.expect("join");
        store
            .log_events(&[
                event("UserLoggedIn", "a"),
                event("SessionEnded", "b"),
                event("UserLoggedIn", "c"),
            ])
            .await
            .expect("append");
        let sink = Arc::new(Recorder {
            fail: Mutex::new(0),
            seen: Mutex::default(),
            only: Some("SessionEnded"),
        });
        assert_eq!(run_until(&store, sink, 1).await, ["b"]);
        assert_eq!(
            store.events_backlog("test").await.expect("backlog").pending,
            0
        );
    }
}
