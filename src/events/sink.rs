//! What every sink beside the stream itself (Kafka, each webhook endpoint)
//! offers the dispatcher (`dispatch.rs`), which reads the log for it, hands
//! it events in order and acknowledges what it delivered.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::store::event_log::LoggedEvent;

/// A boxed future: the dispatcher holds sinks as `dyn Sink`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How far a delivery got.
#[derive(Debug)]
pub struct Delivered {
    /// Events delivered from the front of the batch; the dispatcher
    /// acknowledges these.
    pub count: usize,
    /// Why the rest was not; `None` when all of it was.
    pub error: Option<DeliveryError>,
}

impl Delivered {
    pub fn all(events: &[LoggedEvent]) -> Self {
        Self {
            count: events.len(),
            error: None,
        }
    }
}

/// Why a sink could not deliver; the dispatcher retries after a backoff.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DeliveryError(pub String);

/// When to try again after the `n`th failure in a row (1-based), and when
/// to give up on an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// Give up on the event at the head of the queue after failing for
    /// this long (`None`: never; the event waits as long as the log keeps it).
    pub give_up_after: Option<Duration>,
}

impl Backoff {
    /// Doubling from `first`, at most `max`.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }
}

pub trait Sink: Send + Sync {
    /// Its name in metrics, logs and the log's consumer groups, e.g.
    /// `kafka` or `webhook:hooks.example.com/tokengate`.
    fn name(&self) -> &str;

    /// Whether it wants events of this type; the others are acknowledged
    /// without being handed to it.
    fn wants(&self, kind: &str) -> bool {
        let _ = kind;
        true
    }

    /// How it retries.
    fn backoff(&self) -> Backoff;

    /// Delivers `events` in order, as far as it can. Called again with what
    /// is left (from the first event not delivered) after a backoff;
    /// delivering an event twice is allowed (consumers deduplicate by `id`).
    fn deliver<'a>(&'a self, events: &'a [LoggedEvent]) -> BoxFuture<'a, Delivered>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let backoff = Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
            give_up_after: None,
        };
        assert_eq!(backoff.delay(1), Duration::from_secs(1));
        assert_eq!(backoff.delay(2), Duration::from_secs(2));
        assert_eq!(backoff.delay(4), Duration::from_secs(8));
        assert_eq!(backoff.delay(7), Duration::from_secs(60));
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(60));
    }
}
