//! The sessions that have ended, each with the time (`until`, Unix seconds)
//! after which none of its access tokens can verify any more: past `until`
//! plus the verifiers' leeway the entry can only waste memory, so it goes.
//! Memory is therefore bounded by the ends within one access-token lifetime.
//!
//! Read on every request (a read lock and one hash lookup, nothing awaited);
//! written by the feed's task, once per batch of events.

use std::collections::HashMap;

use uuid::Uuid;

/// How often, at most, a batch of inserts also sweeps out what is past.
const PRUNE_EVERY_SECS: u64 = 1;

#[derive(Debug, Default)]
pub(crate) struct Ended {
    until: HashMap<Uuid, u64>,
    last_prune: u64,
}

impl Ended {
    /// Whether `sid` has ended and its tokens (valid until `until + leeway`
    /// at most) could still verify at `now`.
    pub(crate) fn refuses(&self, sid: &Uuid, now: u64, leeway: u64) -> bool {
        self.until
            .get(sid)
            .is_some_and(|&until| now <= until.saturating_add(leeway))
    }

    /// Records an end; seen twice (a replay after reconnecting), the later
    /// `until` holds.
    pub(crate) fn insert(&mut self, sid: Uuid, until: u64) {
        let entry = self.until.entry(sid).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Forgets the ends whose tokens cannot verify any more, at most once
    /// per second of `now`.
    pub(crate) fn prune(&mut self, now: u64, leeway: u64) {
        if now < self.last_prune.saturating_add(PRUNE_EVERY_SECS) {
            return;
        }
        self.last_prune = now;
        self.until
            .retain(|_, until| now <= until.saturating_add(leeway));
    }

    pub(crate) fn len(&self) -> usize {
        self.until.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn an_end_refuses_until_its_tokens_expire_then_is_pruned() {
        let (sid, other) = (Uuid::new_v4(), Uuid::new_v4());
        let mut ended = Ended::default();
        ended.insert(sid, NOW + 900);
        ended.insert(sid, NOW + 10);
        assert!(ended.refuses(&sid, NOW + 905, 5), "the later until holds");
        assert!(!ended.refuses(&sid, NOW + 906, 5));
        assert!(!ended.refuses(&other, NOW, 5));

        ended.insert(other, NOW);
        ended.prune(NOW + 905, 5);
        assert_eq!(ended.len(), 1, "other is past NOW + 5");
        assert!(ended.refuses(&sid, NOW + 905, 5));
        ended.insert(other, NOW);
        ended.prune(NOW + 905, 5);
        assert_eq!(ended.len(), 2, "once per second at most");
        ended.prune(NOW + 906, 5);
        assert_eq!(ended.len(), 0);
    }
}
