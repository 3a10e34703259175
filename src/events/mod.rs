//! Events for other services (SPEC §7): the relay that moves the outbox to
//! the Redis stream `events.stream` (`tg:events`).
//!
//! A registration writes its event into the outbox in the same transaction
//! as the user, so an event exists exactly when its cause does. Every
//! replica runs a relay; each round takes a batch from the outbox (rows a
//! concurrent relay holds are skipped), appends it to the stream and deletes
//! it only after Redis acknowledged, all inside one database transaction.
//! While Redis is down the rows stay and are retried every
//! `events.relay_interval`: nothing is lost, and an event is delivered at
//! least once — a crash between Redis's acknowledgment and the commit
//! delivers it again, which its `id` lets consumers notice.
//!
//! Stream entries have the fields `id` (uuid v7 of the event), `type`
//! (`UserRegistered`), `data` (the event as JSON) and `created_at` (Unix
//! milliseconds).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::EventSettings;
use crate::db::{Database, DurableStore, EventSink, OutboxEvent, SinkError};
use crate::store::Store;
use crate::store::event_log::NewEvent;

pub mod dispatch;
pub mod kafka;
pub mod sink;
mod sinks;
pub use sinks::Sinks;

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
                .append_events(&events)
                .await
                .map_err(|e| SinkError(e.to_string()))
        })
    }
}

/// An outbox row as the log takes it.
fn logged(event: &OutboxEvent) -> NewEvent {
    NewEvent {
        id: event.id,
        kind: event.kind.clone(),
        subject: String::new(),
        occurred_at: event.created_at,
        data: event.payload.clone(),
    }
}

/// Relays until the task is dropped. `wake` shortens the wait after a
/// registration on this replica; rows from other replicas, or left behind
/// by a failure, are found within `relay_interval`.
pub async fn relay(
    db: &Database,
    sink: &dyn EventSink,
    settings: &EventSettings,
    wake: Arc<Notify>,
    status: &RelayStatus,
) {
    let mut failing = false;
    loop {
        match db.relay_events(sink, BATCH).await {
            Ok(delivered) => {
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
