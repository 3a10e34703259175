//! Throttling of failed credential checks (login clients, OAuth clients and,
//! later, users), counted in the store so every replica sees the same counts.
//!
//! Callers [`check`](Throttle::check) before any argon2 work and
//! [`fail`](Throttle::fail) after a refused secret. A counter starts with its
//! first failure and lives one `window`; the failure that reaches
//! `max_failures` holds it a full `window` more, and meanwhile checks answer
//! how long to wait, without hashing anything. Counting per address stops
//! one source guessing many ids; counting per id stops many sources guessing
//! one. IPv6 addresses count per /64, the block one host usually holds.

use std::net::IpAddr;

use crate::store::{Millis, SessionStore, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    /// Failures within `window` that close the door; 0 = never.
    pub max_failures: u32,
    pub window: Millis,
}

#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    #[error("too many failed attempts; retry in {0}s")]
    Throttled(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Throttle {
    /// The counters an attempt of `kind` (`login`, `oauth`, …) touches: its
    /// address, and its id when the id is a real one.
    pub fn keys(&self, kind: &str, id: Option<&str>, addr: IpAddr) -> Vec<String> {
        let mut keys = vec![format!("{kind}:a:{}", address_block(addr))];
        if let Some(id) = id {
            keys.push(format!("{kind}:c:{id}"));
        }
        keys
    }

    /// `Throttled` if any counter is at the limit.
    pub async fn check(
        &self,
        store: &impl SessionStore,
        keys: &[String],
        now: Millis,
    ) -> Result<(), ThrottleError> {
        if self.max_failures == 0 {
            return Ok(());
        }
        match store.failures_over(keys, self.max_failures, now).await? {
            None => Ok(()),
            Some(left) => Err(ThrottleError::Throttled(left.div_ceil(1000).max(1))),
        }
    }

    /// Counts one failure on every counter.
    pub async fn fail(
        &self,
        store: &impl SessionStore,
        keys: &[String],
        now: Millis,
    ) -> Result<(), ThrottleError> {
        if self.max_failures == 0 {
            return Ok(());
        }
        store
            .record_failure(keys, self.max_failures, self.window, now)
            .await?;
        Ok(())
    }
}

/// The address as counted: IPv4 as is (also when mapped into IPv6), IPv6 by
/// its /64 prefix.
fn address_block(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MockSessionStore;
    use crate::store::memory::MemoryStore;
    use mockall::predicate::eq;

    const T0: Millis = 1_800_000_000_000;
    const THROTTLE: Throttle = Throttle {
        max_failures: 3,
        window: 60_000,
    };

    fn memory() -> MemoryStore {
        MemoryStore::for_tests()
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(address_block(a), address_block(b));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_block(mapped), "192.0.2.7");
        assert_eq!(
            THROTTLE.keys("login", Some("web"), mapped),
            ["login:a:192.0.2.7", "login:c:web"]
        );
    }

    #[tokio::test]
    async fn the_limit_closes_for_a_window_then_reopens() {
        let store = memory();
        let keys = THROTTLE.keys("oauth", Some("billing"), "192.0.2.1".parse().unwrap());
        for i in 0..3 {
            THROTTLE.check(&store, &keys, T0 + i).await.unwrap();
            THROTTLE.fail(&store, &keys, T0 + i).await.unwrap();
        }
        // The third failure (at T0 + 2) holds the door for a full window.
        match THROTTLE.check(&store, &keys, T0 + 30_000).await {
            Err(ThrottleError::Throttled(seconds)) => assert_eq!(seconds, 31),
            other => panic!("expected throttled, got {other:?}"),
        }
        let other_id = THROTTLE.keys("oauth", Some("other"), "192.0.2.9".parse().unwrap());
        THROTTLE
            .check(&store, &other_id, T0 + 30_000)
            .await
            .unwrap();
        THROTTLE
            .check(&store, &keys, T0 + 2 + 60_000)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_address_alone_closes_the_door_to_any_id() {
        let store = memory();
        let addr = "192.0.2.1".parse().unwrap();
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            let keys = THROTTLE.keys("login", Some(id), addr);
            THROTTLE.fail(&store, &keys, T0 + i as u64).await.unwrap();
        }
        let fresh_id = THROTTLE.keys("login", Some("d"), addr);
        assert!(matches!(
            THROTTLE.check(&store, &fresh_id, T0 + 10).await,
            Err(ThrottleError::Throttled(_))
        ));
    }

    #[tokio::test]
    async fn store_answers_are_passed_through_and_zero_disables() {
        let keys = vec!["login:a:x".to_owned()];
        let mut store = MockSessionStore::new();
        store
            .expect_failures_over()
            .with(eq(keys.clone()), eq(3), eq(T0))
            .times(1)
            .returning(|_, _, _| Ok(Some(1_500)));
        store.expect_record_failure().never();
        assert!(matches!(
            THROTTLE.check(&store, &keys, T0).await,
            Err(ThrottleError::Throttled(2))
        ));
        let off = Throttle {
            max_failures: 0,
            ..THROTTLE
        };
        off.check(&store, &keys, T0).await.unwrap();
        off.fail(&store, &keys, T0).await.unwrap();
    }
}
