//! Events for other services (SPEC §7, §14; docs/events.md).
//!
//! Every event passes through one log, the Redis stream `events.stream`
//! (`tg:events`, see `store::event_log`), and is appended there atomically
//! with its cause: session events (`UserLoggedIn`, `SessionEnded`) by the
//! Lua script that logs in or ends the session — no database write on the
//! hot path — and `LoginFailed` by the password check. Events the database
//! commits (`UserRegistered`, `ApiToken*`) go through the transactional
//! outbox, written in the same transaction as their cause, and this
//! module's relay.
//!
//! The relay: the request that committed an event runs a relay round
//! itself before it answers ([`deliver_now`]), so the event is in the log
//! before anything the client does next; besides, every replica runs a
//! relay in the background. Each round takes a batch from the outbox (one
//! round at a time: a concurrent one waits), appends it to the log and
//! deletes it only after Redis acknowledged, all inside one database
//! transaction. While Redis is down the rows stay and are retried every
//! `events.relay_interval`: nothing is lost, and an event is delivered at
//! least once — a crash between Redis's acknowledgment and the commit
//! delivers it again, which its `id` lets consumers notice.
//!
//! The stream is the default sink; [`Sinks`] feeds the others (Kafka, each
//! webhook endpoint) from it, one [`dispatch::Dispatcher`] per sink.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::EventSettings;
use crate::db::events::USER_REGISTERED;
use crate::db::{Database, DurableStore, EventSink, OutboxEvent, SinkError};
use crate::store::event_log::{Backlog, NewEvent};
use crate::store::{SessionStore, Store};
use dispatch::EventMetrics;

pub mod dispatch;
pub mod kafka;
pub mod sink;
mod sinks;
pub mod webhooks;
pub use sinks::Sinks;

/// The stream's name in the metrics: its pending events are the outbox's.
const STREAM: &str = "stream";

/// Events per round; a full batch is followed by another round at once.
const BATCH: u32 = 100;

/// The log of events (the Redis stream, or memory with the embedded
/// store): where the relay hands the outbox.
pub struct ToLog<'a>(pub &'a Store);

impl EventSink for ToLog<'_> {
    fn publish<'a>(
        &'a self,
        events: &'a [OutboxEvent],
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>> {
        Box::pin(async move {
            let events: Vec<NewEvent> = events.iter().map(logged).collect();
            self.0
                .log_events(&events)
                .await
                .map_err(|e| SinkError(e.to_string()))
        })
    }
}

/// An outbox row as the log takes it. Rows written before the outbox had
/// subjects (`""`) are `UserRegistered`: their data names the user.
fn logged(event: &OutboxEvent) -> NewEvent {
    let subject = if event.subject.is_empty() && event.kind == USER_REGISTERED {
        serde_json::from_str::<serde_json::Value>(&event.payload)
            .ok()
            .and_then(|data| data["user_id"].as_str().map(str::to_owned))
            .unwrap_or_default()
    } else {
        event.subject.clone()
    };
    NewEvent {
        id: event.id,
        kind: event.kind.clone(),
        subject,
        occurred_at: event.created_at,
        data: event.payload.clone(),
    }
}

/// Most rounds a request runs on its own before it answers: its event is
/// normally in the first, unless a backlog waits ahead of it.
const ROUNDS_NOW: usize = 4;

/// Moves the outbox to the log now, on behalf of a request that just
/// committed an event (a registration, an API token created or revoked),
/// before it answers: so an answer means the event is in the log, ahead of
/// anything the client does next (the `UserLoggedIn` of the user it just
/// registered, which the login script appends directly). Rounds are
/// serialized with the background relays (see [`Database::relay_events`]),
/// so the order stays the outbox's. A failure, or a backlog longer than
/// [`ROUNDS_NOW`] batches, only wakes the background relay, which retries:
/// the request still succeeds, its event is safe in the outbox.
pub async fn deliver_now(
    db: &Database,
    sink: &dyn EventSink,
    wake: &Notify,
    metrics: &EventMetrics,
) {
    for _ in 0..ROUNDS_NOW {
        match db.relay_events(sink, BATCH).await {
            Ok(delivered) => {
                metrics.delivered(STREAM, delivered);
                if delivered < BATCH as usize {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e,
                    "event relay: cannot deliver now; the event stays in the outbox and is retried");
                break;
            }
        }
    }
    wake.notify_one();
}

/// Relays until the task is dropped. `wake` shortens the wait after a
/// request could not deliver its event itself ([`deliver_now`]); rows from
/// other replicas, or left behind by a failure, are found within
/// `relay_interval`.
pub async fn relay(
    db: &Database,
    sink: &dyn EventSink,
    settings: &EventSettings,
    wake: Arc<Notify>,
    status: &RelayStatus,
    metrics: &EventMetrics,
) {
    let mut failing = false;
    loop {
        let round = db.relay_events(sink, BATCH).await;
        if let Ok(pending) = db.pending_events().await {
            metrics.backlog(
                STREAM,
                Backlog {
                    pending,
                    ..Backlog::default()
                },
                0,
            );
        }
        match round {
            Ok(delivered) => {
                metrics.delivered(STREAM, delivered);
                status.set(Relay::Delivering);
                if failing {
                    tracing::info!("event relay: delivering again");
                    failing = false;
                }
                if delivered == BATCH as usize {
                    continue;
                }
            }
            Err(e) => {
                metrics.retried(STREAM);
                status.set(Relay::Failing);
                // Once per outage, not once per round.
                if !failing {
                    tracing::warn!(error = %e, "event relay: cannot deliver; events stay in the outbox");
                    failing = true;
                }
            }
        }
        wait(&wake, settings.relay_interval).await;
    }
}

/// What the relay last managed, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// Not running: the embedded store has no stream; events wait in the outbox.
    Off,
    /// Not yet tried (just started), or delivered on its last round.
    Delivering,
    /// Its last round failed; events wait in the outbox.
    Failing,
}

/// [`Relay`], shared between the relay and `/health`.
#[derive(Debug)]
pub struct RelayStatus(std::sync::atomic::AtomicU8);

impl RelayStatus {
    pub fn new(relay: Relay) -> Self {
        Self(std::sync::atomic::AtomicU8::new(relay as u8))
    }

    pub fn get(&self) -> Relay {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => Relay::Off,
            1 => Relay::Delivering,
            _ => Relay::Failing,
        }
    }

    fn set(&self, relay: Relay) {
        self.0
            .store(relay as u8, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn wait(wake: &Notify, interval: Duration) {
    tokio::select! {
        () = wake.notified() => {},
        () = tokio::time::sleep(interval) => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, subject: &str, payload: &str) -> OutboxEvent {
        OutboxEvent {
            id: uuid::Uuid::now_v7(),
            kind: kind.into(),
            subject: subject.into(),
            payload: payload.into(),
            created_at: 1_800_000_000_000,
        }
    }

    #[test]
    fn a_row_keeps_its_subject_and_old_registrations_name_their_user() {
        let token = row("ApiTokenCreated", "token:billing", "{}");
        assert_eq!(logged(&token).subject, "token:billing");
        let old = row(
            "UserRegistered",
            "",
            r#"{"user_id":"7d0c2b7e-5a3f-4c1e-9b8a-0f6e5d4c3b2a"}"#,
        );
        let event = logged(&old);
        assert_eq!(event.subject, "7d0c2b7e-5a3f-4c1e-9b8a-0f6e5d4c3b2a");
        assert_eq!((event.id, event.occurred_at), (old.id, old.created_at));
        assert_eq!(logged(&row("UserRegistered", "", "not json")).subject, "");
    }
}
