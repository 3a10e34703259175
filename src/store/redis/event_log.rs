//! The log of events on Redis (see [`crate::store::event_log`]): the
//! stream `events.stream`, read by one consumer group per sink.
//!
//! Every replica reads for a group under the same consumer name, so what
//! one replica was handed and did not acknowledge (it crashed, or lost the
//! lease) is handed to the next one first: `XREADGROUP … 0` before
//! `XREADGROUP … >`. The lease `<stream>:lease:<group>` makes one replica at
//! a time the reader, which keeps the order per subject.

use std::sync::LazyLock;
use std::time::Duration;

use deadpool_redis::redis::{self, Script, Value};

use super::{RedisStore, Repeat, num};
use crate::store::StoreError;
use crate::store::event_log::{Backlog, EventBatch, EventStream, LoggedEvent, NewEvent};
use crate::time::{Millis, millis};

/// The one consumer name of every group (see the module's doc).
const CONSUMER: &str = "tokengate";

/// Takes the lease if free, or renews it if `holder` has it.
/// KEYS[1] the lease; ARGV: holder, ttl (ms). Returns 1 if held.
static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end \
         if redis.call('GET', KEYS[1]) == ARGV[1] then \
           redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end \
         return 0",
    )
});

impl RedisStore {
    /// The stream events go to.
    pub fn event_stream(&self) -> &EventStream {
        &self.events
    }

    /// Appends `events`, all or none (`MULTI`/`EXEC`). A retry after a
    /// dropped connection may append a batch twice: events are delivered at
    /// least once, and carry their own ids.
    pub async fn append_events(&self, events: &[NewEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for event in events {
            let cmd = pipe.cmd("XADD").arg(&self.events.key);
            if self.events.max_len > 0 {
                cmd.arg("MAXLEN").arg("~").arg(self.events.max_len);
            }
            cmd.arg("*");
            for (field, value) in event.fields() {
                cmd.arg(field).arg(value);
            }
            cmd.ignore();
        }
        self.with_connection(Repeat::Safe, |mut conn| {
            let pipe = pipe.clone();
            async move { pipe.query_async::<()>(&mut conn).await }
        })
        .await
    }

    /// Makes `group` read the stream from now on, if it does not yet.
    pub async fn join_events(&self, group: &str) -> Result<(), StoreError> {
        let created = self
            .with_connection(Repeat::Safe, |mut conn| async move {
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&self.events.key)
                    .arg(group)
                    .arg("$")
                    .arg("MKSTREAM")
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
        match created {
            Err(StoreError::Unavailable(e)) if e.contains("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Takes or renews `group`'s lease for `holder`; whether it holds it.
    pub async fn lease_events(
        &self,
        group: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let key = format!("{}:lease:{group}", self.events.key);
        let args = [holder.as_bytes().to_vec(), num(millis(ttl))];
        let held: i64 = self.eval(Repeat::Safe, &LEASE, key, &args).await?;
        Ok(held == 1)
    }

    /// Up to `count` events for `group`: those handed out before and not
    /// acknowledged first, else new ones. A group Redis forgot (it lost its
    /// data) is made again, reading from now.
    pub async fn next_events(&self, group: &str, count: usize) -> Result<EventBatch, StoreError> {
        let mut batch = match self.read_group(group, count, "0").await {
            Err(StoreError::Unavailable(e)) if e.contains("NOGROUP") => {
                self.join_events(group).await?;
                return Ok(EventBatch::default());
            }
            other => other?,
        };
        if batch.dropped > 0 {
            // Trimmed while held: nothing left to deliver of them.
            let gone = std::mem::take(&mut batch.trimmed);
            self.ack_events(group, &gone).await?;
        }
        if batch.events.is_empty() {
            let fresh = self.read_group(group, count, ">").await?;
            batch.events = fresh.events;
        }
        Ok(EventBatch {
            events: batch.events,
            dropped: batch.dropped,
        })
    }

    async fn read_group(
        &self,
        group: &str,
        count: usize,
        from: &str,
    ) -> Result<GroupRead, StoreError> {
        let reply: Value = self
            .with_connection(Repeat::Safe, |mut conn| async move {
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(group)
                    .arg(CONSUMER)
                    .arg("COUNT")
                    .arg(count)
                    .arg("STREAMS")
                    .arg(&self.events.key)
                    .arg(from)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(parse_read(reply))
    }

    pub async fn ack_events(&self, group: &str, entries: &[String]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.with_connection(Repeat::Safe, |mut conn| async move {
            redis::cmd("XACK")
                .arg(&self.events.key)
                .arg(group)
                .arg(entries)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    /// How far behind `group` is: `XINFO GROUPS` and `XINFO STREAM`, and
    /// the oldest entry it has not acknowledged.
    pub async fn events_backlog(&self, group: &str) -> Result<Backlog, StoreError> {
        let key = &self.events.key;
        let (groups, stream): (Value, Value) = self
            .with_connection(Repeat::Safe, |mut conn| async move {
                redis::pipe()
                    .cmd("XINFO")
                    .arg("GROUPS")
                    .arg(key)
                    .cmd("XINFO")
                    .arg("STREAM")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let Some(info) = as_list(&groups)
            .iter()
            .map(fields)
            .find(|g| text(g, "name").as_deref() == Some(group))
        else {
            return Ok(Backlog::default());
        };
        let stream = fields(&stream);
        let handed_out = int(&info, "pending").unwrap_or(0);
        let length = int(&stream, "length").unwrap_or(0);
        let lag = int(&info, "lag").unwrap_or(length);
        let trimmed = int(&stream, "entries-added")
            .unwrap_or(0)
            .saturating_sub(length);
        let dropped = int(&info, "entries-read").map_or(0, |read| trimmed.saturating_sub(read));
        let oldest = if handed_out > 0 {
            self.first_entry(&["XPENDING", key, group, "-", "+", "1"])
                .await?
        } else if lag > 0 {
            let after = format!("({}", text(&info, "last-delivered-id").unwrap_or_default());
            self.first_entry(&["XRANGE", key, &after, "+", "COUNT", "1"])
                .await?
        } else {
            None
        };
        Ok(Backlog {
            pending: handed_out + lag,
            oldest,
            dropped,
        })
    }

    /// The time of the first entry a range command (`XRANGE`, `XPENDING`)
    /// answers, read from its id.
    async fn first_entry(&self, command: &[&str]) -> Result<Option<Millis>, StoreError> {
        let reply: Value = self
            .with_connection(Repeat::Safe, |mut conn| async move {
                let mut cmd = redis::cmd(command[0]);
                cmd.arg(&command[1..]);
                cmd.query_async(&mut conn).await
            })
            .await?;
        Ok(as_list(&reply)
            .first()
            .and_then(|entry| as_list(entry).first().and_then(as_text))
            .and_then(|id| entry_millis(&id)))
    }
}

/// One `XREADGROUP` answer.
struct GroupRead {
    events: Vec<LoggedEvent>,
    /// Entries held by the group but trimmed from the stream.
    trimmed: Vec<String>,
    dropped: u64,
}

fn parse_read(reply: Value) -> GroupRead {
    let mut read = GroupRead {
        events: Vec::new(),
        trimmed: Vec::new(),
        dropped: 0,
    };
    // RESP2: [[key, entries]]; RESP3: {key: entries}.
    let entries: Vec<Value> = match reply {
        Value::Map(streams) => streams.into_iter().map(|(_, v)| v).collect(),
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| as_list(&s).get(1).cloned())
            .collect(),
        _ => Vec::new(),
    };
    for entry in entries.iter().flat_map(as_list) {
        let parts = as_list(entry);
        let Some(id) = parts.first().and_then(as_text) else {
            continue;
        };
        let values: Vec<String> = parts
            .get(1)
            .map(|f| as_list(f).iter().filter_map(as_text).collect())
            .unwrap_or_default();
        let pairs = values
            .chunks_exact(2)
            .map(|pair| (pair[0].as_str(), pair[1].clone()));
        match LoggedEvent::from_fields(id.clone(), pairs) {
            Some(event) => read.events.push(event),
            None => {
                read.trimmed.push(id);
                read.dropped += 1;
            }
        }
    }
    read
}

/// When a stream entry id (`<ms>-<seq>`) was made.
fn entry_millis(id: &str) -> Option<Millis> {
    id.split('-').next()?.parse().ok()
}

fn as_list(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A reply of name/value pairs (RESP2 flat array or RESP3 map).
fn fields(value: &Value) -> Vec<(String, Value)> {
    match value {
        Value::Map(pairs) => pairs
            .iter()
            .filter_map(|(k, v)| Some((as_text(k)?, v.clone())))
            .collect(),
        _ => as_list(value)
            .chunks_exact(2)
            .filter_map(|pair| Some((as_text(&pair[0])?, pair[1].clone())))
            .collect(),
    }
}

fn find<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn text(fields: &[(String, Value)], name: &str) -> Option<String> {
    find(fields, name).and_then(as_text)
}

fn int(fields: &[(String, Value)], name: &str) -> Option<u64> {
    match find(fields, name)? {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => as_text(other)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_read_parts_events_from_entries_trimmed_while_held() {
        let event = NewEvent {
            id: uuid::Uuid::now_v7(),
            kind: "SessionEnded".into(),
            subject: "u1".into(),
            occurred_at: 5,
            data: "{}".into(),
        };
        let flat: Vec<Value> = event
            .fields()
            .iter()
            .flat_map(|(k, v)| [bulk(k), bulk(v)])
            .collect();
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("tg:events"),
            Value::Array(vec![
                Value::Array(vec![bulk("5-0"), Value::Array(flat)]),
                Value::Array(vec![bulk("6-0"), Value::Nil]),
            ]),
        ])]);
        let read = parse_read(reply);
        assert_eq!(read.events.len(), 1);
        assert_eq!(read.events[0].entry, "5-0");
        assert_eq!(read.events[0].subject, "u1");
        assert_eq!(read.trimmed, ["6-0"]);
        assert_eq!(read.dropped, 1);
    }

    #[test]
    fn entry_ids_tell_their_time() {
        assert_eq!(entry_millis("1700000000123-4"), Some(1_700_000_000_123));
        assert_eq!(entry_millis("x"), None);
    }
}
