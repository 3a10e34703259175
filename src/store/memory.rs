//! The embedded store: sessions in this process's memory.
//!
//! For `cargo run` and single-replica development only — another replica
//! cannot see these sessions. It implements exactly the rules of the Redis
//! scripts (see `scripts/*.lua`), so one behaviour suite runs against both;
//! sessions are found by sid alone (the owner a caller passes only names a
//! Redis key, and comes from a token we signed).
//! Expiry is lazy (checked on access) plus a sweep at most once a minute, so
//! abandoned sessions do not accumulate. Every end, an expiry included,
//! goes through [`Sessions::remove`], which logs it for the revocation feed
//! while its access tokens can still verify (see [`super::ended`]), and
//! appends `SessionEnded` to the log of events; every login appends
//! `UserLoggedIn` (see [`super::session_events`]). The background sweep
//! ([`SessionStore::sweep_ended`]) makes expiries events within its period.

use super::event_log::{EventStream, MemoryEventLog};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use tokio::sync::Notify;

use super::ended::{self, LogId, LogPage, LogStart, MemoryLog};
use super::event_log::NewEvent;
use super::rotation::{self, Current, Verdict};
use super::session_events::{self, EndReason};
use super::{
    Admission, BrowserLogin, BrowserSession, CacheEntry, CacheLookup, Counter, NewSession,
    RefreshState, Revocation, Rotation, RotationOutcome, SessionInfo, SessionStore, StoreError,
    Subject, Successor, Timing,
};
use crate::time::Millis;
use crate::tokens::SecretHash;
use crate::tokens::api::TokenHash;

const SWEEP_EVERY: Millis = 60_000;

#[derive(Debug, Clone)]
struct Record {
    subject: Subject,
    access_jti: Uuid,
    /// Scope of the current access token (set by rotation).
    access_scope: Option<String>,
    refresh_hash: SecretHash,
    generation: u32,
    rotated_at: Millis,
    ends_at: Millis,
    max_ends_at: Millis,
    expires_at: Millis,
    created_at: Millis,
    last_active: Millis,
    browser: Option<BrowserLogin>,
}

impl Record {
    fn current(&self) -> Current<'_> {
        Current {
            generation: self.generation,
            refresh_hash: self.refresh_hash,
            rotated_at: self.rotated_at,
            ends_at: self.ends_at,
            max_ends_at: self.max_ends_at,
            client: self.subject.client.as_deref(),
            scope: self.subject.scope.as_deref(),
            successor_scope: self.access_scope.as_deref(),
        }
    }

    /// Why the record ended when it expired by itself: at the session's
    /// absolute end, or before it (inactivity, or the refresh lifetime).
    fn expiry_reason(&self) -> EndReason {
        if self.expires_at >= self.max_ends_at {
            EndReason::MaxSession
        } else {
            EndReason::Idle
        }
    }

    /// The current access token and refresh lifetime, as rotation issued them.
    fn successor(&self) -> Successor {
        Successor {
            subject: self.subject.clone(),
            scope: self.access_scope.clone(),
            access_jti: self.access_jti,
            issued_at: self.rotated_at,
            ends_at: self.ends_at,
        }
    }
}

#[derive(Default)]
struct Sessions {
    by_sid: HashMap<Uuid, Record>,
    /// Rate-limit windows: key → (count, window end).
    counters: HashMap<String, (u32, Millis)>,
    /// Failed credential checks: key → (count, counter end).
    failures: HashMap<String, (u32, Millis)>,
    next_sweep: Millis,
    log: MemoryLog,
}

/// Cheap to clone; clones share the same sessions (as replicas share Redis).
#[derive(Clone)]
pub struct MemoryStore {
    timing: Timing,
    sessions: Arc<Mutex<Sessions>>,
    /// Woken by every logged end (see [`MemoryStore::next_ended`]).
    ended: Arc<Notify>,
    /// The log of events (SPEC §14).
    events: MemoryEventLog,
}

#[cfg(test)]
impl MemoryStore {
    /// A store for tests of what sits on top of it (throttle counters,
    /// client checks), where session timing does not matter.
    pub(crate) fn for_tests() -> Self {
        Self::new(Timing {
            idle: 1,
            refresh_lifetime: 1,
            grace: 0,
            max_session: 1,
            access: 1,
        })
    }
}

impl MemoryStore {
    pub fn new(timing: Timing) -> Self {
        let epoch = crate::time::now();
        Self {
            timing,
            sessions: Arc::new(Mutex::new(Sessions {
                log: MemoryLog::new(epoch),
                ..Sessions::default()
            })),
            ended: Arc::default(),
            events: MemoryEventLog::new(EventStream::default().max_len),
        }
    }

    /// Keeps at most `stream.max_len` events in the log, as Redis would
    /// (`events.max_len`; the key means nothing in memory).
    pub fn with_event_stream(mut self, stream: &EventStream) -> Self {
        self.events = MemoryEventLog::new(stream.max_len);
        self
    }

    /// The log of events.
    pub fn event_log(&self) -> &MemoryEventLog {
        &self.events
    }

    /// Whether an end was logged after `after`, waiting up to `wait` for
    /// one (the feed's tail on this store).
    pub async fn has_ended_after(&self, after: LogId, wait: std::time::Duration) -> bool {
        let notified = self.ended.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.lock().log.newest() > after {
            return true;
        }
        let _ = tokio::time::timeout(wait, notified).await;
        self.lock().log.newest() > after
    }

    /// Ends `sids` for `reason`, then wakes the feed's tail.
    fn end_each(&self, sessions: &mut Sessions, sids: &[Uuid], reason: EndReason, now: Millis) {
        self.end_for(sessions, sids, now, |_| reason);
    }

    /// Ends `sids`, which expired by themselves.
    fn expire_each(&self, sessions: &mut Sessions, sids: &[Uuid], now: Millis) {
        self.end_for(sessions, sids, now, Record::expiry_reason);
    }

    /// Ends `sids`, each for what `reason` says of it, appending their
    /// `SessionEnded`; then wakes the feed's tail.
    fn end_for(
        &self,
        sessions: &mut Sessions,
        sids: &[Uuid],
        now: Millis,
        reason: impl Fn(&Record) -> EndReason,
    ) {
        let events: Vec<NewEvent> = sids
            .iter()
            .filter_map(|sid| {
                let record = sessions.remove(*sid, now, self.timing.access)?;
                Some(session_events::ended(
                    *sid,
                    &record.subject.sub,
                    reason(&record),
                    now,
                ))
            })
            .collect();
        if !events.is_empty() {
            self.events.append(&events);
            self.ended.notify_waiters();
        }
    }

    /// Number of sessions held, expired ones included until swept.
    pub fn len(&self) -> usize {
        self.lock().by_sid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        // A panic while holding the lock cannot leave a record half-written
        // (each update is a single assignment), so poisoning is ignored.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sessions {
    /// Drops the session, logging its end while its last access token can
    /// still verify.
    fn remove(&mut self, sid: Uuid, now: Millis, access: Millis) -> Option<Record> {
        let record = self.by_sid.remove(&sid)?;
        let until = ended::until(record.created_at.max(record.rotated_at), access);
        if until * 1000 > now {
            self.log
                .push(sid, record.subject.sub.clone(), until, now, access);
        }
        Some(record)
    }

    /// The live sessions of `owner`, oldest first as the Redis index orders
    /// them (by refresh end). A scan: this store is for one process and
    /// few sessions.
    fn owned_by(&self, owner: &str, now: Millis) -> Vec<(&Uuid, &Record)> {
        let mut live: Vec<(&Uuid, &Record)> = self
            .by_sid
            .iter()
            .filter(|(_, r)| r.expires_at > now && r.subject.is_owned_by(owner))
            .collect();
        live.sort_by_key(|(sid, r)| (r.ends_at, r.created_at, **sid));
        live
    }

    /// The live record of `sid`; one that has expired is not (it goes at
    /// the next sweep, which logs its end).
    fn live(&mut self, sid: Uuid, now: Millis) -> Option<&mut Record> {
        self.by_sid.get_mut(&sid).filter(|r| r.expires_at > now)
    }

    /// The sessions that have expired by `now`.
    fn expired(&self, now: Millis) -> Vec<Uuid> {
        self.by_sid
            .iter()
            .filter(|(_, r)| r.expires_at <= now)
            .map(|(sid, _)| *sid)
            .collect()
    }
}

impl SessionStore for MemoryStore {
    async fn create(&self, s: &NewSession) -> Result<(), StoreError> {
        let mut sessions = self.lock();
        if s.now >= sessions.next_sweep {
            let expired = sessions.expired(s.now);
            self.expire_each(&mut sessions, &expired, s.now);
            sessions.counters.retain(|_, (_, end)| *end > s.now);
            sessions.failures.retain(|_, (_, end)| *end > s.now);
            sessions.next_sweep = s.now + SWEEP_EVERY;
        }
        self.events
            .append(&[session_events::logged_in(s.sid, &s.subject, s.now)]);
        if s.max_sessions > 0 {
            let owner = s.subject.owner();
            let older = sessions.owned_by(&owner, s.now);
            let excess = (older.len() + 1).saturating_sub(s.max_sessions as usize);
            let ended: Vec<Uuid> = older.iter().take(excess).map(|(sid, _)| **sid).collect();
            self.end_each(&mut sessions, &ended, EndReason::Evicted, s.now);
        }
        sessions.by_sid.insert(
            s.sid,
            Record {
                subject: s.subject.clone(),
                access_jti: s.access_jti,
                access_scope: s.subject.scope.clone(),
                refresh_hash: s.refresh_hash,
                generation: 0,
                rotated_at: 0,
                ends_at: s.ends_at,
                max_ends_at: s.max_ends_at,
                expires_at: s.now + self.timing.ttl(s.ends_at, s.now),
                created_at: s.now,
                last_active: s.now,
                browser: s.browser.clone(),
            },
        );
        Ok(())
    }

    async fn authenticate(
        &self,
        _owner: &str,
        sid: Uuid,
        jti: Uuid,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut sessions = self.lock();
        let Some(record) = sessions.live(sid, now) else {
            return Ok(false);
        };
        if record.access_jti != jti {
            return Ok(false);
        }
        record.expires_at = now + self.timing.ttl(record.ends_at, now);
        record.last_active = now;
        Ok(true)
    }

    async fn authenticate_browser(
        &self,
        _owner: &str,
        sid: Uuid,
        handle_hash: SecretHash,
        now: Millis,
    ) -> Result<Option<BrowserSession>, StoreError> {
        let mut sessions = self.lock();
        let Some(record) = sessions.live(sid, now) else {
            return Ok(None);
        };
        let Some(browser) = &record.browser else {
            return Ok(None);
        };
        if browser.handle_hash != handle_hash {
            return Ok(None);
        }
        let session = BrowserSession {
            subject: record.subject.clone(),
            amr: browser.amr.clone(),
        };
        record.expires_at = now + self.timing.ttl(record.ends_at, now);
        record.last_active = now;
        Ok(Some(session))
    }

    async fn rotate(&self, r: &Rotation) -> Result<RotationOutcome, StoreError> {
        let timing = self.timing;
        let mut sessions = self.lock();
        let Some(record) = sessions.live(r.sid, r.now) else {
            return Ok(RotationOutcome::Unknown);
        };
        Ok(match rotation::decide(&record.current(), r, &timing) {
            Verdict::Rotate {
                scope,
                ends_at,
                session_scope,
            } => {
                record.subject.scope = session_scope;
                record.generation += 1;
                record.refresh_hash = r.successor_hash;
                record.access_jti = r.successor_jti;
                record.access_scope = scope;
                record.rotated_at = r.now;
                record.ends_at = ends_at;
                record.expires_at = r.now + timing.ttl(ends_at, r.now);
                record.last_active = r.now;
                RotationOutcome::Rotated(record.successor())
            }
            Verdict::Replay => {
                record.expires_at = r.now + timing.ttl(record.ends_at, r.now);
                RotationOutcome::Replayed(record.successor())
            }
            Verdict::Reuse => {
                self.end_each(&mut sessions, &[r.sid], EndReason::Reuse, r.now);
                RotationOutcome::Reused
            }
            Verdict::Expired => {
                self.expire_each(&mut sessions, &[r.sid], r.now);
                RotationOutcome::Unknown
            }
            Verdict::NotGranted => RotationOutcome::NotGranted,
            Verdict::Unknown => RotationOutcome::Unknown,
        })
    }

    async fn end(
        &self,
        _owner: &str,
        sid: Uuid,
        reason: EndReason,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut sessions = self.lock();
        if sessions.live(sid, now).is_some() {
            self.end_each(&mut sessions, &[sid], reason, now);
        }
        Ok(())
    }

    async fn revoke(
        &self,
        _owner: &str,
        sid: Uuid,
        client: &str,
        reason: EndReason,
        now: Millis,
    ) -> Result<Revocation, StoreError> {
        let mut sessions = self.lock();
        let Some(record) = sessions.live(sid, now) else {
            return Ok(Revocation::Unknown);
        };
        if record.subject.client.as_deref() != Some(client) {
            return Ok(Revocation::NotOwner);
        }
        self.end_each(&mut sessions, &[sid], reason, now);
        Ok(Revocation::Ended)
    }

    async fn end_owned(
        &self,
        sid: Uuid,
        owner: &str,
        reason: EndReason,
        now: Millis,
    ) -> Result<Revocation, StoreError> {
        let mut sessions = self.lock();
        let Some(record) = sessions.live(sid, now) else {
            return Ok(Revocation::Unknown);
        };
        if !record.subject.is_owned_by(owner) {
            return Ok(Revocation::NotOwner);
        }
        self.end_each(&mut sessions, &[sid], reason, now);
        Ok(Revocation::Ended)
    }

    async fn sessions_of(
        &self,
        owner: &str,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        let sessions = self.lock();
        let mut live = sessions.owned_by(owner, now);
        live.truncate(limit as usize);
        Ok(live
            .into_iter()
            .map(|(sid, r)| SessionInfo {
                sid: *sid,
                client: r.subject.client.clone(),
                created_at: r.created_at,
                last_active: r.last_active,
                browser: r.browser.is_some(),
            })
            .collect())
    }

    async fn end_all(
        &self,
        owner: &str,
        reason: EndReason,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let mut sessions = self.lock();
        let owned: Vec<Uuid> = sessions
            .owned_by(owner, now)
            .into_iter()
            .map(|(sid, _)| *sid)
            .collect();
        self.end_each(&mut sessions, &owned, reason, now);
        Ok(owned.len() as u64)
    }

    async fn inspect_refresh(
        &self,
        _owner: &str,
        sid: Uuid,
        generation: u32,
        hash: SecretHash,
        now: Millis,
    ) -> Result<Option<RefreshState>, StoreError> {
        let mut sessions = self.lock();
        Ok(sessions
            .live(sid, now)
            .filter(|r| r.generation == generation && r.refresh_hash == hash)
            .map(|r| RefreshState {
                subject: r.subject.clone(),
                ends_at: r.ends_at,
            }))
    }

    async fn count_request(
        &self,
        key: &str,
        limit: u32,
        window: Millis,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let mut sessions = self.lock();
        let (count, ends) = sessions
            .counters
            .entry(key.to_owned())
            .or_insert((0, now + window));
        if *ends <= now {
            (*count, *ends) = (0, now + window);
        }
        *count = count.saturating_add(1);
        Ok((*count > limit).then(|| *ends - now))
    }

    async fn admit_attempt(
        &self,
        counters: &[Counter],
        window: Millis,
        now: Millis,
    ) -> Result<Admission, StoreError> {
        let mut sessions = self.lock();
        let failures = &mut sessions.failures;
        for counter in counters {
            if failures
                .get(&counter.key)
                .is_some_and(|(_, end)| *end <= now)
            {
                failures.remove(&counter.key);
            }
        }
        let waits: Vec<Option<Millis>> = counters
            .iter()
            .map(|c| {
                let (count, end) = failures.get(&c.key)?;
                (*count >= c.limit).then(|| end - now)
            })
            .collect();
        if waits.iter().any(Option::is_some) {
            return Ok(Admission::Refused(waits));
        }
        for counter in counters {
            let (count, end) = failures.entry(counter.key.clone()).or_insert((0, 0));
            *count = count.saturating_add(1);
            if *count == 1 || *count >= counter.limit {
                *end = now + window;
            }
        }
        Ok(Admission::Admitted)
    }

    async fn forgive_attempt(&self, counters: &[Counter], now: Millis) -> Result<(), StoreError> {
        let mut sessions = self.lock();
        for counter in counters {
            if let Some((count, end)) = sessions.failures.get_mut(&counter.key)
                && *end > now
            {
                *count = count.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// No cache here: every validation reads the database, which is as
    /// fast as a cache on one host, and a revocation by the CLI (another
    /// process) holds at once.
    async fn api_token_lookup(
        &self,
        _: &TokenHash,
        _: Millis,
        _: Millis,
    ) -> Result<CacheLookup, StoreError> {
        Ok(CacheLookup::Miss)
    }

    async fn cache_api_token(
        &self,
        _: &TokenHash,
        _: &CacheEntry,
        _: Millis,
        _: bool,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn sweep_ended(&self, now: Millis) -> Result<u32, StoreError> {
        let mut sessions = self.lock();
        let expired = sessions.expired(now);
        self.expire_each(&mut sessions, &expired, now);
        Ok(u32::try_from(expired.len()).unwrap_or(u32::MAX))
    }

    async fn log_events(&self, events: &[NewEvent]) -> Result<(), StoreError> {
        self.events.append(events);
        Ok(())
    }

    async fn ended_log(
        &self,
        start: LogStart,
        limit: u32,
        _now: Millis,
    ) -> Result<LogPage, StoreError> {
        Ok(self.lock().log.read(start, limit as usize))
    }
}

#[cfg(test)]
mod event_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_800_000_000_000;
    const TIMING: Timing = Timing {
        access: 900_000,
        idle: 60_000,
        refresh_lifetime: 3_600_000,
        grace: 10_000,
        max_session: 7_200_000,
    };

    async fn new_session(store: &MemoryStore, now: Millis) -> (Uuid, Uuid) {
        let (sid, jti) = (Uuid::new_v4(), Uuid::new_v4());
        let session = NewSession {
            sid,
            subject: Subject {
                sub: "7".into(),
                ..Subject::default()
            },
            access_jti: jti,
            refresh_hash: [1; 16],
            ends_at: now + TIMING.refresh_lifetime,
            max_ends_at: now + TIMING.max_session,
            max_sessions: 0,
            browser: None,
            now,
        };
        store.create(&session).await.unwrap();
        (sid, jti)
    }

    fn rotation(sid: Uuid, generation: u32, presented: u8, now: Millis) -> Rotation {
        Rotation {
            owner: "ada".into(),
            sid,
            client: None,
            narrow: Vec::new(),
            ceiling: None,
            presented_generation: generation,
            presented_hash: [presented; 16],
            successor_hash: [presented + 1; 16],
            successor_jti: Uuid::new_v4(),
            now,
        }
    }

    #[tokio::test]
    async fn idle_sessions_expire_and_activity_extends_them() {
        let store = MemoryStore::new(TIMING);
        let (sid, jti) = new_session(&store, T0).await;
        assert!(
            store
                .authenticate("ada", sid, jti, T0 + 59_000)
                .await
                .unwrap()
        );
        assert!(
            store
                .authenticate("ada", sid, jti, T0 + 118_000)
                .await
                .unwrap(),
            "activity restarted the clock"
        );
        assert!(
            !store
                .authenticate("ada", sid, jti, T0 + 178_000)
                .await
                .unwrap()
        );
        assert_eq!(store.sweep_ended(T0 + 178_000).await.unwrap(), 1);
        assert!(store.is_empty(), "an expired session is dropped");
    }

    #[tokio::test]
    async fn every_end_is_logged_while_its_access_tokens_can_verify() {
        let store = MemoryStore::new(TIMING);
        let (ended_by_logout, _) = new_session(&store, T0).await;
        let (expired, _) = new_session(&store, T0).await;
        let (too_late, _) = new_session(&store, T0).await;
        store
            .end("ada", ended_by_logout, EndReason::Logout, T0 + 1_000)
            .await
            .unwrap();
        store
            .end("ada", ended_by_logout, EndReason::Logout, T0 + 2_000)
            .await
            .unwrap();
        store
            .end("ada", Uuid::new_v4(), EndReason::Logout, T0 + 2_000)
            .await
            .unwrap();
        // Idle past 60 s: the sweep logs it.
        assert_eq!(store.sweep_ended(T0 + 61_000).await.unwrap(), 2);
        let log = store
            .ended_log(LogStart::Since(0), 10, T0 + 61_000)
            .await
            .unwrap();
        let sids: Vec<Uuid> = log.entries.iter().map(|e| e.sid).collect();
        assert_eq!(sids.len(), 3, "one entry per end: {sids:?}");
        assert_eq!(sids[0], ended_by_logout);
        assert!(sids.contains(&expired) && sids.contains(&too_late));
        // `until`: the login's access token, issued at T0, lives 900 s.
        assert!(log.entries.iter().all(|e| e.until == T0 / 1000 + 900));
        assert_eq!(log.last, log.entries[2].id);
        // An end after the last access token expired is not logged.
        let (late, _) = new_session(&store, T0 + 100_000).await;
        store
            .end("ada", late, EndReason::Logout, T0 + 100_000 + 900_001)
            .await
            .unwrap();
        let after = store
            .ended_log(LogStart::After(log.last), 10, T0)
            .await
            .unwrap();
        assert!(after.entries.is_empty(), "{after:?}");
        assert!(
            !store
                .has_ended_after(log.last, std::time::Duration::ZERO)
                .await
        );
    }

    #[tokio::test]
    async fn refresh_lifetime_caps_the_session() {
        let store = MemoryStore::new(TIMING);
        let (sid, jti) = (Uuid::new_v4(), Uuid::new_v4());
        let session = NewSession {
            sid,
            subject: Subject::default(),
            access_jti: jti,
            refresh_hash: [1; 16],
            ends_at: T0 + 90_000,
            max_ends_at: T0 + 90_000,
            max_sessions: 0,
            browser: None,
            now: T0,
        };
        store.create(&session).await.unwrap();
        assert!(
            store
                .authenticate("ada", sid, jti, T0 + 50_000)
                .await
                .unwrap()
        );
        assert!(
            store
                .authenticate("ada", sid, jti, T0 + 89_000)
                .await
                .unwrap()
        );
        assert!(
            !store
                .authenticate("ada", sid, jti, T0 + 90_000)
                .await
                .unwrap(),
            "refresh lifetime is over"
        );
    }

    #[tokio::test]
    async fn only_the_current_access_token_authenticates() {
        let store = MemoryStore::new(TIMING);
        let (sid, jti) = new_session(&store, T0).await;
        assert!(
            !store
                .authenticate("ada", sid, Uuid::new_v4(), T0)
                .await
                .unwrap()
        );
        assert!(
            !store
                .authenticate("ada", Uuid::new_v4(), jti, T0)
                .await
                .unwrap()
        );
        store.end("ada", sid, EndReason::Logout, T0).await.unwrap();
        assert!(!store.authenticate("ada", sid, jti, T0).await.unwrap());
    }

    #[tokio::test]
    async fn rotation_replay_and_reuse() {
        let store = MemoryStore::new(TIMING);
        let (sid, _) = new_session(&store, T0).await;

        let first = rotation(sid, 0, 1, T0 + 1000);
        let outcome = store.rotate(&first).await.unwrap();
        assert!(matches!(outcome, RotationOutcome::Rotated(_)));
        let replay = store
            .rotate(&rotation(sid, 0, 1, T0 + 10_999))
            .await
            .unwrap();
        let issued = Successor {
            subject: Subject {
                sub: "7".into(),
                ..Subject::default()
            },
            scope: None,
            access_jti: first.successor_jti,
            issued_at: T0 + 1000,
            ends_at: T0 + 1000 + TIMING.refresh_lifetime,
        };
        assert_eq!(outcome, RotationOutcome::Rotated(issued.clone()));
        assert_eq!(replay, RotationOutcome::Replayed(issued));
        let late = store
            .rotate(&rotation(sid, 0, 1, T0 + 11_000))
            .await
            .unwrap();
        assert_eq!(late, RotationOutcome::Reused);
        let after = store
            .rotate(&rotation(sid, 1, 2, T0 + 12_000))
            .await
            .unwrap();
        assert_eq!(after, RotationOutcome::Unknown, "the session is gone");
    }

    #[tokio::test]
    async fn a_wrong_hash_for_the_current_generation_changes_nothing() {
        let store = MemoryStore::new(TIMING);
        let (sid, _) = new_session(&store, T0).await;
        let wrong = store.rotate(&rotation(sid, 0, 9, T0)).await.unwrap();
        assert_eq!(wrong, RotationOutcome::Unknown);
        let right = store.rotate(&rotation(sid, 0, 1, T0)).await.unwrap();
        assert!(matches!(right, RotationOutcome::Rotated(_)));
    }

    #[tokio::test]
    async fn only_the_owning_client_rotates_or_revokes() {
        let store = MemoryStore::new(TIMING);
        let (sid, _) = new_session(&store, T0).await;
        let mut as_client = rotation(sid, 0, 1, T0);
        as_client.client = Some("billing".into());
        assert_eq!(
            store.rotate(&as_client).await.unwrap(),
            RotationOutcome::Unknown
        );
        assert_eq!(
            store
                .revoke("ada", sid, "billing", EndReason::Logout, T0)
                .await
                .unwrap(),
            Revocation::NotOwner
        );
        assert_eq!(
            store
                .revoke("ada", Uuid::new_v4(), "billing", EndReason::Logout, T0)
                .await
                .unwrap(),
            Revocation::Unknown
        );
        let first_party = store.rotate(&rotation(sid, 0, 1, T0)).await.unwrap();
        assert!(matches!(first_party, RotationOutcome::Rotated(_)));
    }

    #[tokio::test]
    async fn inspecting_a_refresh_token_sees_only_the_current_one() {
        let store = MemoryStore::new(TIMING);
        let (sid, _) = new_session(&store, T0).await;
        let live = store
            .inspect_refresh("ada", sid, 0, [1; 16], T0)
            .await
            .unwrap();
        assert_eq!(live.unwrap().ends_at, T0 + TIMING.refresh_lifetime);
        assert!(
            store
                .inspect_refresh("ada", sid, 0, [2; 16], T0)
                .await
                .unwrap()
                .is_none()
        );
        store.rotate(&rotation(sid, 0, 1, T0)).await.unwrap();
        assert!(
            store
                .inspect_refresh("ada", sid, 0, [1; 16], T0)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .inspect_refresh("ada", sid, 1, [2; 16], T0)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn rate_windows_count_and_reset() {
        let store = MemoryStore::new(TIMING);
        for _ in 0..3 {
            assert_eq!(store.count_request("c", 3, 60_000, T0).await.unwrap(), None);
        }
        assert_eq!(
            store
                .count_request("c", 3, 60_000, T0 + 1_000)
                .await
                .unwrap(),
            Some(59_000)
        );
        assert_eq!(
            store.count_request("other", 3, 60_000, T0).await.unwrap(),
            None
        );
        assert_eq!(
            store
                .count_request("c", 3, 60_000, T0 + 60_000)
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn rotation_never_outlives_max_session() {
        let store = MemoryStore::new(TIMING);
        let (sid, _) = new_session(&store, T0).await;
        // Rotate every 50 s, always active and before the refresh token expires.
        let mut now = T0;
        let mut generation = 0;
        let ends = loop {
            now += 50_000;
            let r = rotation(sid, generation, generation as u8 + 1, now);
            match store.rotate(&r).await.unwrap() {
                RotationOutcome::Rotated(successor) => {
                    assert!(successor.ends_at <= T0 + TIMING.max_session);
                    generation += 1;
                    if successor.ends_at == T0 + TIMING.max_session {
                        break successor.ends_at;
                    }
                }
                other => panic!("rotation {generation} at {now}: {other:?}"),
            }
        };
        assert_eq!(ends, T0 + TIMING.max_session);
        let at_end = rotation(sid, generation, generation as u8 + 1, ends);
        assert_eq!(
            store.rotate(&at_end).await.unwrap(),
            RotationOutcome::Unknown,
            "the session is over at max_session, however often it rotated"
        );
    }

    #[tokio::test]
    async fn a_grace_retry_returns_the_narrowed_successor() {
        let store = MemoryStore::new(TIMING);
        let sid = Uuid::new_v4();
        let session = NewSession {
            sid,
            subject: Subject {
                sub: "billing".into(),
                client: Some("billing".into()),
                scope: Some("read write".into()),
                ..Subject::default()
            },
            access_jti: Uuid::new_v4(),
            refresh_hash: [1; 16],
            ends_at: T0 + TIMING.refresh_lifetime,
            max_ends_at: T0 + TIMING.max_session,
            max_sessions: 0,
            browser: None,
            now: T0,
        };
        store.create(&session).await.unwrap();
        let with = |narrow: &[&str], now| Rotation {
            client: Some("billing".into()),
            narrow: narrow.iter().map(|s| (*s).to_owned()).collect(),
            ..rotation(sid, 0, 1, now)
        };
        let RotationOutcome::Rotated(first) = store.rotate(&with(&["read"], T0)).await.unwrap()
        else {
            panic!("the first use rotates");
        };
        assert_eq!(first.scope.as_deref(), Some("read"));
        assert_eq!(
            store
                .rotate(&with(&["read", "write"], T0 + 1))
                .await
                .unwrap(),
            RotationOutcome::NotGranted,
            "a retry cannot widen the successor"
        );
        for narrow in [&[][..], &["read"]] {
            assert_eq!(
                store.rotate(&with(narrow, T0 + 2)).await.unwrap(),
                RotationOutcome::Replayed(first.clone()),
                "a retry gets exactly the successor"
            );
        }
    }

    #[tokio::test]
    async fn sweep_drops_abandoned_sessions() {
        let store = MemoryStore::new(TIMING);
        new_session(&store, T0).await;
        assert_eq!(store.len(), 1);
        new_session(&store, T0 + 10 * TIMING.idle).await;
        assert_eq!(store.len(), 1, "only the new session is left");
    }
}
