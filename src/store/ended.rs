//! The ended-sessions log behind the revocation feed (SPEC §13,
//! `GET /events/sessions`).
//!
//! Every end of a session — logout, logout everywhere, refresh-token
//! reuse, revocation, the per-user cap, an operator's — is appended by the
//! same atomic step that ends it, with the time until which the session's
//! last access token can still verify (`until`). A session whose record
//! expires by itself (inactivity, its end) runs no script; where that can
//! happen before its last access token expires, the store watches it and a
//! sweep, run by every replica, logs the end once it is due. Expiries that
//! come after the last access token expires are not logged: no token of
//! that session verifies any more.
//!
//! Entries are kept as long as an access token lives (plus a minute for
//! clocks), so a feed that resumes after its last entry was trimmed has
//! missed nothing that still matters. The log's *epoch* is the time since
//! which this store has kept sessions: a Redis that lost its data starts a
//! new one, which tells a downstream service that every token issued
//! before it belongs to a session the store no longer knows.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::time::Millis;

/// Where an entry sits in the log: a Redis stream id (`ms-seq`), or the
/// memory store's count in `seq`. Ordered as the log is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogId {
    pub ms: u64,
    pub seq: u64,
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for LogId {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (ms, seq) = s.split_once('-').ok_or(())?;
        Ok(Self {
            ms: ms.parse().map_err(|_| ())?,
            seq: seq.parse().map_err(|_| ())?,
        })
    }
}

/// A position as the feed shows it (`id:`, `Last-Event-ID`):
/// `<epoch>.<ms>-<seq>`. A cursor of another epoch resumes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub epoch: Millis,
    pub id: LogId,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epoch, self.id)
    }
}

impl FromStr for Cursor {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (epoch, id) = s.split_once('.').ok_or(())?;
        Ok(Self {
            epoch: epoch.parse().map_err(|_| ())?,
            id: id.parse()?,
        })
    }
}

/// One ended session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedSession {
    pub id: LogId,
    pub sid: Uuid,
    pub sub: String,
    /// Unix seconds until which its last access token can verify.
    pub until: u64,
}

/// Where a read of the log starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStart {
    /// Entries after this one.
    After(LogId),
    /// Entries logged at or after this time (ms): a snapshot.
    Since(Millis),
}

/// A read of the log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogPage {
    /// Since when the store has kept sessions (ms).
    pub epoch: Millis,
    /// The log's newest entry (`0-0` when empty).
    pub last: LogId,
    pub entries: Vec<EndedSession>,
}

/// How long the log keeps an entry: an access token's lifetime and a minute
/// for clocks.
pub fn retention(access: Millis) -> Millis {
    access + 60_000
}

/// `until` for a session whose last access token was issued at `issued`.
pub fn until(issued: Millis, access: Millis) -> u64 {
    (issued + access).div_ceil(1000)
}

/// The memory store's log: the same entries, in one process.
#[derive(Debug, Default)]
pub(super) struct MemoryLog {
    pub epoch: Millis,
    entries: std::collections::VecDeque<EndedSession>,
    next: u64,
}

impl MemoryLog {
    pub fn new(epoch: Millis) -> Self {
        Self {
            epoch,
            ..Self::default()
        }
    }

    /// Appends an end logged at `now`, forgetting entries past retention.
    pub fn push(&mut self, sid: Uuid, sub: String, until: u64, now: Millis, access: Millis) {
        let oldest = now.saturating_sub(retention(access));
        while self.entries.front().is_some_and(|e| e.id.ms < oldest) {
            self.entries.pop_front();
        }
        self.next += 1;
        // Ids only grow, as a stream's do, whatever clock the caller had.
        let ms = now.max(self.newest().ms);
        self.entries.push_back(EndedSession {
            id: LogId { ms, seq: self.next },
            sid,
            sub,
            until,
        });
    }

    pub fn newest(&self) -> LogId {
        self.entries.back().map(|e| e.id).unwrap_or_default()
    }

    pub fn read(&self, start: LogStart, limit: usize) -> LogPage {
        let entries = self
            .entries
            .iter()
            .filter(|e| match start {
                LogStart::After(id) => e.id.seq > id.seq,
                LogStart::Since(ms) => e.id.ms >= ms,
            })
            .take(limit)
            .cloned()
            .collect();
        LogPage {
            epoch: self.epoch,
            last: self.newest(),
            entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = Cursor {
            epoch: 1_700_000_000_000,
            id: LogId {
                ms: 1_700_000_100_000,
                seq: 3,
            },
        };
        assert_eq!(cursor.to_string(), "1700000000000.1700000100000-3");
        assert_eq!(cursor.to_string().parse(), Ok(cursor));
        for bad in ["", "1.2", "x.1-2", "1.1-", "1-2", "1.2-3-4", "1.-2"] {
            assert_eq!(bad.parse::<Cursor>(), Err(()), "{bad:?}");
        }
    }

    #[test]
    fn until_rounds_up_to_the_second() {
        assert_eq!(until(1_000, 900_000), 901);
        assert_eq!(until(1_001, 900_000), 902);
    }

    #[test]
    fn the_memory_log_reads_after_an_entry_or_since_a_time_and_forgets_old_ones() {
        let mut log = MemoryLog::new(5);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        log.push(a, "alice".into(), 10, 1_000, 1_000);
        log.push(b, "bob".into(), 20, 2_000, 1_000);
        let all = log.read(LogStart::Since(0), 10);
        assert_eq!(all.epoch, 5);
        assert_eq!(all.entries.len(), 2);
        assert_eq!(all.last, all.entries[1].id);
        let after = log.read(LogStart::After(all.entries[0].id), 10);
        assert_eq!(after.entries.len(), 1);
        assert_eq!(after.entries[0].sid, b);
        assert_eq!(log.read(LogStart::Since(1_500), 10).entries.len(), 1);
        // Past retention (1 s + a minute), the first goes.
        log.push(a, "alice".into(), 30, 62_500, 1_000);
        let left = log.read(LogStart::Since(0), 10);
        assert_eq!(left.entries.len(), 2);
        assert_eq!(left.entries[0].sid, b);
    }
}
