//! Throttling of failed credential checks (login clients, OAuth clients, the
//! admin token, user passwords), counted in the store so every replica sees
//! the same counts (SPEC §11: nobody is locked out from elsewhere).
//!
//! Callers [`check`](Throttle::check) before any argon2 work and
//! [`fail`](Throttle::fail) after a refused secret. Each failure counts on
//! up to three counters, each with its own limit:
//! - **the pair** (this identity from this address): guesses from one place
//!   close the door for that place only, never for the identity's owner
//!   elsewhere;
//! - **the address** (any identity): one source cannot walk through many
//!   ids, nor fill the store with counters of invented ones;
//! - **the identity's total** (from anywhere), for user accounts only: a
//!   password is low-entropy, so a distributed attack must meet a ceiling
//!   too (NIST SP 800-63B's 100). Client and admin secrets are high-entropy;
//!   a total there would only hand attackers a way to lock their owner out.
//!
//! A counter starts with its first failure and lives one `window`; the
//! failure that reaches its limit holds it a full `window` more, and
//! meanwhile checks answer how long to wait, without hashing anything.
//! IPv6 addresses count per /64, the block one host usually holds.

use std::net::IpAddr;

use crate::config::{ThrottleSettings, UserSettings};
use crate::store::{Counter, Millis, SessionStore, StoreError, millis};

/// The limits of one kind of credential; a limit of 0 never closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    /// Failures of one identity from one address.
    pub per_pair: u32,
    /// Failures from one address, whatever the identity.
    pub per_address: u32,
    /// Failures of one identity from every address together.
    pub per_identity: u32,
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
    /// For client secrets and the admin token (`throttle.*`): no total per
    /// identity.
    pub fn for_clients(settings: &ThrottleSettings) -> Self {
        Self {
            per_pair: settings.max_failures,
            per_address: settings.max_failures_per_address,
            per_identity: 0,
            window: millis(settings.window),
        }
    }

    /// For passwords (`users.*`), with the address limit of `throttle`.
    pub fn for_users(users: &UserSettings, throttle: &ThrottleSettings) -> Self {
        Self {
            per_pair: users.max_failures,
            per_address: throttle.max_failures_per_address,
            per_identity: users.max_failures_per_account,
            window: millis(users.failure_window),
        }
    }

    /// The counters an attempt of `kind` (`login`, `oauth`, `user`, …)
    /// touches: its address, and for a real identity the pair and (when
    /// limited) the identity's total. Unknown identities are counted by
    /// address only: a counter per invented id would let a flood fill the
    /// store.
    pub fn counters(&self, kind: &str, identity: Option<&str>, addr: IpAddr) -> Vec<Counter> {
        let addr = address_block(addr);
        let mut counters = Vec::with_capacity(3);
        let mut add = |key: String, limit: u32| {
            if limit > 0 {
                counters.push(Counter { key, limit });
            }
        };
        add(format!("{kind}:a:{addr}"), self.per_address);
        if let Some(id) = identity {
            add(format!("{kind}:p:{addr}:{id}"), self.per_pair);
            add(format!("{kind}:c:{id}"), self.per_identity);
        }
        counters
    }

    /// `Throttled` if any counter is at its limit.
    pub async fn check(
        &self,
        store: &impl SessionStore,
        counters: &[Counter],
        now: Millis,
    ) -> Result<(), ThrottleError> {
        if counters.is_empty() {
            return Ok(());
        }
        match store.failures_over(counters, now).await? {
            None => Ok(()),
            Some(left) => Err(ThrottleError::Throttled(left.div_ceil(1000).max(1))),
        }
    }

    /// Counts one failure on every counter.
    pub async fn fail(
        &self,
        store: &impl SessionStore,
        counters: &[Counter],
        now: Millis,
    ) -> Result<(), ThrottleError> {
        if counters.is_empty() {
            return Ok(());
        }
        store.record_failure(counters, self.window, now).await?;
        Ok(())
    }
}

/// The address as counted: IPv4 as is (also when mapped into IPv6), IPv6 by
/// its /64 prefix.
pub fn address_block(addr: IpAddr) -> String {
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

    const T0: Millis = 1_800_000_000_000;
    /// A client's limits: no total per identity.
    const CLIENTS: Throttle = Throttle {
        per_pair: 3,
        per_address: 5,
        per_identity: 0,
        window: 60_000,
    };
    /// An account's limits.
    const USERS: Throttle = Throttle {
        per_pair: 2,
        per_address: 100,
        per_identity: 4,
        window: 60_000,
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    async fn fail_n(t: &Throttle, store: &MemoryStore, id: &str, addr: &str, n: u64) {
        let counters = t.counters("k", Some(id), ip(addr));
        for i in 0..n {
            t.fail(store, &counters, T0 + i).await.unwrap();
        }
    }

    async fn refused(t: &Throttle, store: &MemoryStore, id: Option<&str>, addr: &str) -> bool {
        let counters = t.counters("k", id, ip(addr));
        match t.check(store, &counters, T0 + 1_000).await {
            Ok(()) => false,
            Err(ThrottleError::Throttled(_)) => true,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a = ip("2001:db8:1:2:aaaa::1");
        let b = ip("2001:db8:1:2:bbbb::2");
        assert_eq!(address_block(a), address_block(b));
        let mapped = ip("::ffff:192.0.2.7");
        assert_eq!(address_block(mapped), "192.0.2.7");
        let keys: Vec<String> = USERS
            .counters("user", Some("abc"), mapped)
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert_eq!(
            keys,
            ["user:a:192.0.2.7", "user:p:192.0.2.7:abc", "user:c:abc"]
        );
    }

    #[test]
    fn unknown_identities_and_unlimited_counters_make_no_keys() {
        assert_eq!(
            CLIENTS.counters("login", None, ip("192.0.2.1")),
            [Counter {
                key: "login:a:192.0.2.1".into(),
                limit: 5
            }]
        );
        // Clients have no total per identity: two counters, not three.
        assert_eq!(
            CLIENTS
                .counters("login", Some("web"), ip("192.0.2.1"))
                .len(),
            2
        );
        let off = Throttle {
            per_pair: 0,
            per_address: 0,
            per_identity: 0,
            window: 1,
        };
        assert!(
            off.counters("login", Some("web"), ip("192.0.2.1"))
                .is_empty()
        );
    }

    #[tokio::test]
    async fn guesses_from_one_address_never_lock_out_another() {
        let store = MemoryStore::for_tests();
        fail_n(&CLIENTS, &store, "web", "192.0.2.1", 3).await;
        assert!(refused(&CLIENTS, &store, Some("web"), "192.0.2.1").await);
        assert!(!refused(&CLIENTS, &store, Some("web"), "192.0.2.2").await);
        // However many addresses guess, a client's own total never closes.
        for i in 3..50 {
            fail_n(&CLIENTS, &store, "web", &format!("192.0.2.{i}"), 3).await;
        }
        assert!(!refused(&CLIENTS, &store, Some("web"), "198.51.100.1").await);
    }

    #[tokio::test]
    async fn the_address_closes_for_every_identity_and_reopens_after_the_window() {
        let store = MemoryStore::for_tests();
        for id in ["a", "b", "c", "d", "e"] {
            fail_n(&CLIENTS, &store, id, "192.0.2.1", 1).await;
        }
        assert!(refused(&CLIENTS, &store, Some("fresh"), "192.0.2.1").await);
        assert!(refused(&CLIENTS, &store, None, "192.0.2.1").await);
        assert!(!refused(&CLIENTS, &store, Some("fresh"), "192.0.2.9").await);
        // The fifth failure (at T0) holds the door for a full window.
        let counters = CLIENTS.counters("k", None, ip("192.0.2.1"));
        match CLIENTS.check(&store, &counters, T0 + 30_000).await {
            Err(ThrottleError::Throttled(seconds)) => assert_eq!(seconds, 30),
            other => panic!("expected throttled, got {other:?}"),
        }
        CLIENTS.check(&store, &counters, T0 + 60_000).await.unwrap();
    }

    #[tokio::test]
    async fn an_account_has_a_total_across_addresses() {
        let store = MemoryStore::for_tests();
        fail_n(&USERS, &store, "alice", "192.0.2.1", 2).await;
        assert!(refused(&USERS, &store, Some("alice"), "192.0.2.1").await);
        assert!(!refused(&USERS, &store, Some("alice"), "192.0.2.2").await);
        fail_n(&USERS, &store, "alice", "192.0.2.2", 1).await;
        fail_n(&USERS, &store, "alice", "192.0.2.3", 1).await;
        // Four in all, from three addresses: closed everywhere.
        assert!(refused(&USERS, &store, Some("alice"), "198.51.100.1").await);
        assert!(!refused(&USERS, &store, Some("bob"), "192.0.2.3").await);
    }

    #[tokio::test]
    async fn store_answers_are_passed_through_and_no_counters_ask_nothing() {
        let counters = CLIENTS.counters("login", Some("web"), ip("192.0.2.1"));
        let mut store = MockSessionStore::new();
        let expected = counters.clone();
        store
            .expect_failures_over()
            .withf(move |c, now| c == expected.as_slice() && *now == T0)
            .times(1)
            .returning(|_, _| Ok(Some(1_500)));
        store.expect_record_failure().never();
        assert!(matches!(
            CLIENTS.check(&store, &counters, T0).await,
            Err(ThrottleError::Throttled(2))
        ));
        CLIENTS.check(&store, &[], T0).await.unwrap();
        CLIENTS.fail(&store, &[], T0).await.unwrap();
    }
}
