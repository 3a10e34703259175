//! The log of events (SPEC §14): one ordered log every event passes
//! through, the Redis stream `events.stream` (`tg:events`) or, with the
//! embedded store, a bounded queue in memory.
//!
//! Events are appended where they happen, atomically with their cause:
//! by the Lua script that logs a user in or ends a session (no database
//! write on the hot path), or by the outbox relay for the events the
//! database commits (registrations, API tokens). Each sink other than the
//! stream itself (Kafka, every webhook endpoint) reads the log as a
//! consumer *group* of its own: the log remembers what the group was handed
//! and what it acknowledged, so a delivery interrupted by a crash is handed
//! out again (at least once), and a slow sink only falls behind itself.
//! One replica at a time reads for a group (a lease), which keeps the
//! order per subject.
//!
//! Every entry has the fields `id` (uuid v7), `type`, `version`, `subject`,
//! `occurred_at` (Unix ms), `data` (the event's JSON object) and, for
//! readers of phase 2, `created_at` (= `occurred_at`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use uuid::Uuid;

use super::StoreError;
use crate::time::Millis;

/// The version of every event's schema (docs/events.md).
pub const EVENT_VERSION: u32 = 1;

/// Where the log lives in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventStream {
    /// The stream's key (`events.stream`).
    pub key: String,
    /// Approximate cap (`XADD MAXLEN ~`); 0 = unbounded. Also the bound on
    /// what a sink that cannot deliver may have pending.
    pub max_len: u64,
}

impl Default for EventStream {
    fn default() -> Self {
        Self {
            key: "tg:events".into(),
            max_len: 100_000,
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub id: Uuid,
    /// e.g. `SessionEnded`.
    pub kind: String,
    /// Whom it is about: the key of its Kafka message, the unit of order.
    pub subject: String,
    pub occurred_at: Millis,
    /// The `data` object, as JSON.
    pub data: String,
}

impl NewEvent {
    /// An event of `kind` about `subject` with a fresh id, `data` a JSON
    /// object.
    pub fn new(kind: &str, subject: &str, data: &serde_json::Value, at: Millis) -> Self {
        Self {
            id: Uuid::now_v7(),
            kind: kind.into(),
            subject: subject.into(),
            occurred_at: at,
            data: data.to_string(),
        }
    }

    /// The fields of its log entry, in order.
    pub fn fields(&self) -> [(&'static str, String); 7] {
        [
            ("id", self.id.to_string()),
            ("type", self.kind.clone()),
            ("version", EVENT_VERSION.to_string()),
            ("subject", self.subject.clone()),
            ("occurred_at", self.occurred_at.to_string()),
            ("data", self.data.clone()),
            ("created_at", self.occurred_at.to_string()),
        ]
    }
}

/// An event read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    /// Its place in the log (a stream entry id `<ms>-<seq>`), what a group
    /// acknowledges.
    pub entry: String,
    pub id: String,
    pub kind: String,
    pub version: u32,
    pub subject: String,
    pub occurred_at: Millis,
    /// The `data` object, as JSON.
    pub data: String,
}

impl LoggedEvent {
    /// Reads an entry's fields; `None` for an entry that is not an event
    /// (or was trimmed away while a group still held it).
    pub fn from_fields<'a>(
        entry: String,
        fields: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Option<Self> {
        let mut found: BTreeMap<&str, String> = fields.into_iter().collect();
        let mut take = |name: &str| found.remove(name);
        let occurred_at = take("occurred_at")
            .or_else(|| take("created_at"))?
            .parse()
            .ok()?;
        Some(Self {
            id: take("id")?,
            kind: take("type")?,
            version: take("version").and_then(|v| v.parse().ok()).unwrap_or(1),
            // Entries of phase 2 (UserRegistered) carry no subject: their
            // data names the user.
            subject: take("subject").unwrap_or_default(),
            occurred_at,
            data: take("data").unwrap_or_else(|| "{}".into()),
            entry,
        })
    }

    /// The event as every sink sends it: `{id, type, version, occurred_at
    /// (RFC 3339), subject, data}`.
    pub fn envelope(&self) -> String {
        let data: serde_json::Value =
            serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null);
        serde_json::json!({
            "id": self.id,
            "type": self.kind,
            "version": self.version,
            "occurred_at": crate::time::rfc3339_millis(self.occurred_at),
            "subject": self.subject,
            "data": data,
        })
        .to_string()
    }
}

/// What one read of a group returns.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EventBatch {
    /// In log order: first those handed out before and not acknowledged,
    /// then new ones.
    pub events: Vec<LoggedEvent>,
    /// Entries the group held that were trimmed before it acknowledged
    /// them; already acknowledged, counted as dropped.
    pub dropped: u64,
}

/// How far behind a group is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Events not yet acknowledged (handed out or not).
    pub pending: u64,
    /// When the oldest of them happened (by its place in the log).
    pub oldest: Option<Millis>,
    /// Events trimmed from the log before the group read them, since the
    /// group was made.
    pub dropped: u64,
}

/// The log in memory, for the embedded store: one process, so no lease is
/// needed, and what is pending is lost with the process (as the sessions
/// are).
#[derive(Clone, Default)]
pub struct MemoryEventLog {
    inner: Arc<Mutex<MemoryLogInner>>,
}

#[derive(Default)]
struct MemoryLogInner {
    max_len: u64,
    /// Events with their sequence number (the entry is `<ms>-<seq>`).
    events: VecDeque<(u64, LoggedEvent)>,
    next_seq: u64,
    /// Per group: the next sequence number it reads, and the number it
    /// holds unacknowledged before it.
    groups: BTreeMap<String, Group>,
    /// Events trimmed in all.
    trimmed: u64,
}

#[derive(Default, Clone)]
struct Group {
    /// Sequence of the first event not acknowledged.
    acked_to: u64,
    /// Events acknowledged beyond it (a sink skips the types it does not
    /// want, ahead of one it is still retrying).
    acked: std::collections::BTreeSet<u64>,
    dropped: u64,
}

impl MemoryEventLog {
    pub fn new(max_len: u64) -> Self {
        let log = Self::default();
        log.lock().max_len = max_len;
        log
    }

    fn lock(&self) -> MutexGuard<'_, MemoryLogInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn append(&self, events: &[NewEvent]) {
        let mut log = self.lock();
        for event in events {
            let seq = log.next_seq;
            log.next_seq += 1;
            let logged = LoggedEvent::from_fields(
                format!("{}-{seq}", event.occurred_at),
                event.fields().iter().map(|(k, v)| (*k, v.clone())),
            );
            if let Some(logged) = logged {
                log.events.push_back((seq, logged));
            }
        }
        while log.max_len > 0 && log.events.len() as u64 > log.max_len {
            log.events.pop_front();
            log.trimmed += 1;
        }
    }

    /// Events in the log now (for tests).
    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn join(&self, group: &str) {
        let mut log = self.lock();
        let next = log.next_seq;
        log.groups.entry(group.to_owned()).or_insert(Group {
            acked_to: next,
            ..Group::default()
        });
    }

    pub fn next(&self, group: &str, count: usize) -> EventBatch {
        let mut log = self.lock();
        let first = log.events.front().map_or(log.next_seq, |(seq, _)| *seq);
        let Some(mut state) = log.groups.get(group).cloned() else {
            return EventBatch::default();
        };
        let skipped = state.acked.range(..first).count() as u64;
        let dropped = first.saturating_sub(state.acked_to).saturating_sub(skipped);
        state.dropped += dropped;
        state.acked_to = state.acked_to.max(first);
        state.acked = state.acked.split_off(&state.acked_to);
        let events: Vec<LoggedEvent> = log
            .events
            .iter()
            .filter(|(seq, _)| *seq >= state.acked_to && !state.acked.contains(seq))
            .take(count)
            .map(|(_, event)| event.clone())
            .collect();
        log.groups.insert(group.to_owned(), state);
        EventBatch { events, dropped }
    }

    pub fn acknowledge(&self, group: &str, entries: &[String]) {
        let mut log = self.lock();
        let Some(state) = log.groups.get_mut(group) else {
            return;
        };
        for seq in entries
            .iter()
            .filter_map(|e| e.rsplit_once('-')?.1.parse::<u64>().ok())
        {
            if seq >= state.acked_to {
                state.acked.insert(seq);
            }
        }
        while state.acked.remove(&state.acked_to) {
            state.acked_to += 1;
        }
    }

    pub fn backlog(&self, group: &str) -> Backlog {
        let log = self.lock();
        let Some(state) = log.groups.get(group) else {
            return Backlog::default();
        };
        let mut waiting = log
            .events
            .iter()
            .filter(|(seq, _)| *seq >= state.acked_to && !state.acked.contains(seq));
        let oldest = waiting.next().map(|(_, e)| e.occurred_at);
        Backlog {
            pending: log.next_seq.saturating_sub(state.acked_to) - state.acked.len() as u64,
            oldest,
            dropped: state.dropped,
        }
    }
}

/// The log of whichever store this is; with the embedded store, a lease
/// is always held (one process).
/// (Appending is [`super::SessionStore::log_events`].)
impl super::Store {
    pub async fn join_events(&self, group: &str) -> Result<(), StoreError> {
        match self {
            Self::Redis(redis) => redis.join_events(group).await,
            Self::Memory(memory) => {
                memory.event_log().join(group);
                Ok(())
            }
        }
    }

    pub async fn lease_events(
        &self,
        group: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Redis(redis) => redis.lease_events(group, holder, ttl).await,
            Self::Memory(_) => Ok(true),
        }
    }

    pub async fn next_events(&self, group: &str, count: usize) -> Result<EventBatch, StoreError> {
        match self {
            Self::Redis(redis) => redis.next_events(group, count).await,
            Self::Memory(memory) => Ok(memory.event_log().next(group, count)),
        }
    }

    pub async fn ack_events(&self, group: &str, entries: &[String]) -> Result<(), StoreError> {
        match self {
            Self::Redis(redis) => redis.ack_events(group, entries).await,
            Self::Memory(memory) => {
                memory.event_log().acknowledge(group, entries);
                Ok(())
            }
        }
    }

    pub async fn events_backlog(&self, group: &str) -> Result<Backlog, StoreError> {
        match self {
            Self::Redis(redis) => redis.events_backlog(group).await,
            Self::Memory(memory) => Ok(memory.event_log().backlog(group)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> NewEvent {
        NewEvent {
            id: Uuid::now_v7(),
            kind: "SessionEnded".into(),
            subject: format!("user-{n}"),
            occurred_at: 1_000 + n,
            data: format!(r#"{{"n":{n}}}"#),
        }
    }

    #[test]
    fn a_group_reads_from_when_it_joined_and_gets_back_what_it_did_not_acknowledge() {
        let log = MemoryEventLog::new(100);
        log.append(&[event(0)]);
        log.join("kafka");
        log.append(&[event(1), event(2), event(3)]);
        let batch = log.next("kafka", 2);
        assert_eq!(
            batch
                .events
                .iter()
                .map(|e| e.subject.as_str())
                .collect::<Vec<_>>(),
            ["user-1", "user-2"]
        );
        // Not acknowledged: handed out again.
        assert_eq!(log.next("kafka", 2).events, batch.events);
        log.acknowledge("kafka", &[batch.events[0].entry.clone()]);
        let again = log.next("kafka", 5);
        assert_eq!(
            again
                .events
                .iter()
                .map(|e| e.subject.as_str())
                .collect::<Vec<_>>(),
            ["user-2", "user-3"]
        );
        assert_eq!(log.backlog("kafka").pending, 2);
        assert_eq!(log.backlog("kafka").oldest, Some(1_002));
    }

    #[test]
    fn events_trimmed_before_a_group_read_them_are_counted() {
        let log = MemoryEventLog::new(2);
        log.join("hook");
        log.append(&[event(1), event(2), event(3), event(4)]);
        let batch = log.next("hook", 10);
        assert_eq!(batch.dropped, 2);
        assert_eq!(batch.events.len(), 2);
        assert_eq!(log.backlog("hook").dropped, 2);
    }

    #[test]
    fn the_envelope_names_every_field() {
        let log = MemoryEventLog::new(0);
        log.join("g");
        log.append(&[event(7)]);
        let logged = log.next("g", 1).events.remove(0);
        let envelope: serde_json::Value = serde_json::from_str(&logged.envelope()).expect("json");
        assert_eq!(envelope["type"], "SessionEnded");
        assert_eq!(envelope["version"], 1);
        assert_eq!(envelope["subject"], "user-7");
        assert_eq!(envelope["data"]["n"], 7);
        assert_eq!(envelope["occurred_at"], "1970-01-01T00:00:01.007Z");
        assert!(envelope["id"].as_str().is_some_and(|id| id.len() == 36));
    }
}
