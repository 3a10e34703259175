//! Throttling of failed credential checks (login clients, OAuth clients, the
//! admin token, user passwords), counted in the store so every replica sees
//! the same counts (SPEC §11: nobody is locked out from elsewhere).
//!
//! Callers [`admit`](Throttle::admit) an attempt before any argon2 work,
//! which counts it as a failure at once (atomically with the check, so a
//! burst of concurrent guesses cannot slip past a limit together), and
//! [`forgive`](Throttle::forgive) it when the secret proves right. Each
//! failure counts on up to three counters, each with its own limit:
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
//!
//! Each replica also remembers, for as long as the store said, the counters
//! it saw closed: a flood of guesses that is already refused then costs no
//! store round trip at all, sparing the Redis every replica shares. The
//! memory can only refuse what the store refused, never admit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::config::{ThrottleSettings, UserSettings};
use crate::store::{Admission, Counter, SessionStore, StoreError};
use crate::time::{Millis, millis};

/// Closed counters one replica remembers at most; beyond, the store alone
/// decides (a flood that varies its keys that much meets the address limit).
const REMEMBERED_CLOSED: usize = 10_000;

/// The limits of one kind of credential; a limit of 0 never closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failures of one identity from one address.
    pub per_pair: u32,
    /// Failures from one address, whatever the identity.
    pub per_address: u32,
    /// Failures of one identity from every address together.
    pub per_identity: u32,
    pub window: Millis,
}

/// One kind of credential's limits, and the counters this replica saw
/// closed (key → when it opens again).
#[derive(Debug)]
pub struct Throttle {
    limits: Limits,
    closed: Mutex<HashMap<String, Millis>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    #[error("too many failed attempts; retry in {0}s")]
    Throttled(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            closed: Mutex::default(),
        }
    }

    /// For client secrets and the admin token (`throttle.*`): no total per
    /// identity.
    pub fn for_clients(settings: &ThrottleSettings) -> Self {
        Self::new(Limits {
            per_pair: settings.max_failures,
            per_address: settings.max_failures_per_address,
            per_identity: 0,
            window: millis(settings.window),
        })
    }

    /// For passwords (`users.*`), with the address limit of `throttle`.
    pub fn for_users(users: &UserSettings, throttle: &ThrottleSettings) -> Self {
        Self::new(Limits {
            per_pair: users.max_failures,
            per_address: throttle.max_failures_per_address,
            per_identity: users.max_failures_per_account,
            window: millis(users.failure_window),
        })
    }

    /// The counters an attempt of `kind` (`login`, `oauth`, `user`, …)
    /// touches: its address, and for a real identity the pair and (when
    /// limited) the identity's total. Unknown identities are counted by
    /// address only: a counter per invented id would let a flood fill the
    /// store.
    pub fn counters(&self, kind: &str, identity: Option<&str>, addr: IpAddr) -> Vec<Counter> {
        let limits = &self.limits;
        let addr = address_block(addr);
        let mut counters = Vec::with_capacity(3);
        let mut add = |key: String, limit: u32| {
            if limit > 0 {
                counters.push(Counter { key, limit });
            }
        };
        add(format!("{kind}:a:{addr}"), limits.per_address);
        if let Some(id) = identity {
            add(format!("{kind}:p:{addr}:{id}"), limits.per_pair);
            add(format!("{kind}:c:{id}"), limits.per_identity);
        }
        counters
    }

    /// Before a credential check: `Throttled` if any counter is at its
    /// limit, else the attempt is counted as a failure right away, so that
    /// a burst of concurrent guesses gets exactly the limit's worth of
    /// checks (argon2 work), never more. Call [`Throttle::forgive`] if it
    /// was no failure after all.
    pub async fn admit(
        &self,
        store: &impl SessionStore,
        counters: &[Counter],
        now: Millis,
    ) -> Result<(), ThrottleError> {
        if counters.is_empty() {
            return Ok(());
        }
        let remembered = {
            let closed = self.closed();
            counters
                .iter()
                .filter_map(|c| closed.get(&c.key))
                .filter(|until| **until > now)
                .max()
                .map(|until| until - now)
        };
        let left = match remembered {
            Some(left) => left,
            None => match store
                .admit_attempt(counters, self.limits.window, now)
                .await?
            {
                Admission::Admitted => return Ok(()),
                Admission::Refused(waits) => self.remember_closed(counters, &waits, now),
            },
        };
        Err(ThrottleError::Throttled(left.div_ceil(1000).max(1)))
    }

    /// Remembers the counters the store said are closed, for as long as it
    /// said; returns the longest wait.
    fn remember_closed(
        &self,
        counters: &[Counter],
        waits: &[Option<Millis>],
        now: Millis,
    ) -> Millis {
        let mut closed = self.closed();
        if closed.len() >= REMEMBERED_CLOSED {
            closed.retain(|_, until| *until > now);
        }
        let mut longest = 0;
        for (counter, wait) in counters.iter().zip(waits) {
            let Some(wait) = *wait else { continue };
            longest = longest.max(wait);
            if closed.len() < REMEMBERED_CLOSED {
                closed.insert(counter.key.clone(), now + wait);
            }
        }
        longest
    }

    fn closed(&self) -> std::sync::MutexGuard<'_, HashMap<String, Millis>> {
        // Single inserts and removals: whole after any panic.
        self.closed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes back an admitted attempt: the secret was right, or could not
    /// be checked (the verifier was busy, the database down). A store
    /// that cannot be reached leaves the failure counted, which only errs
    /// on the careful side; it is logged, not passed on.
    pub async fn forgive(&self, store: &impl SessionStore, counters: &[Counter], now: Millis) {
        if counters.is_empty() {
            return;
        }
        if let Err(e) = store.forgive_attempt(counters, now).await {
            tracing::warn!(error = %e, "could not take back a counted attempt");
        }
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
    const CLIENTS: Limits = Limits {
        per_pair: 3,
        per_address: 5,
        per_identity: 0,
        window: 60_000,
    };
    /// An account's limits.
    const USERS: Limits = Limits {
        per_pair: 2,
        per_address: 100,
        per_identity: 4,
        window: 60_000,
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// `n` wrong secrets: admitted, and never forgiven.
    async fn fail_n(t: &Throttle, store: &MemoryStore, id: &str, addr: &str, n: u64) {
        let counters = t.counters("k", Some(id), ip(addr));
        for i in 0..n {
            t.admit(store, &counters, T0 + i).await.unwrap();
        }
    }

    /// Whether the right secret would be refused unhashed; when it is
    /// admitted, it proves right and is forgiven.
    async fn refused(t: &Throttle, store: &MemoryStore, id: Option<&str>, addr: &str) -> bool {
        let counters = t.counters("k", id, ip(addr));
        match t.admit(store, &counters, T0 + 1_000).await {
            Ok(()) => {
                t.forgive(store, &counters, T0 + 1_000).await;
                false
            }
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
        let keys: Vec<String> = Throttle::new(USERS)
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
        let clients = Throttle::new(CLIENTS);
        assert_eq!(
            clients.counters("login", None, ip("192.0.2.1")),
            [Counter {
                key: "login:a:192.0.2.1".into(),
                limit: 5
            }]
        );
        // Clients have no total per identity: two counters, not three.
        assert_eq!(
            clients
                .counters("login", Some("web"), ip("192.0.2.1"))
                .len(),
            2
        );
        let off = Throttle::new(Limits {
            per_pair: 0,
            per_address: 0,
            per_identity: 0,
            window: 1,
        });
        assert!(
            off.counters("login", Some("web"), ip("192.0.2.1"))
                .is_empty()
        );
    }

    #[tokio::test]
    async fn guesses_from_one_address_never_lock_out_another() {
        let clients = Throttle::new(CLIENTS);
        let store = MemoryStore::for_tests();
        fail_n(&clients, &store, "web", "192.0.2.1", 3).await;
        assert!(refused(&clients, &store, Some("web"), "192.0.2.1").await);
        assert!(!refused(&clients, &store, Some("web"), "192.0.2.2").await);
        // However many addresses guess, a client's own total never closes.
        for i in 3..50 {
            fail_n(&clients, &store, "web", &format!("192.0.2.{i}"), 3).await;
        }
        assert!(!refused(&clients, &store, Some("web"), "198.51.100.1").await);
    }

    #[tokio::test]
    async fn the_address_closes_for_every_identity_and_reopens_after_the_window() {
        let clients = Throttle::new(CLIENTS);
        let store = MemoryStore::for_tests();
        for id in ["a", "b", "c", "d", "e"] {
            fail_n(&clients, &store, id, "192.0.2.1", 1).await;
        }
        assert!(refused(&clients, &store, Some("fresh"), "192.0.2.1").await);
        assert!(refused(&clients, &store, None, "192.0.2.1").await);
        assert!(!refused(&clients, &store, Some("fresh"), "192.0.2.9").await);
        // The fifth failure (at T0) holds the door for a full window.
        let counters = clients.counters("k", None, ip("192.0.2.1"));
        match clients.admit(&store, &counters, T0 + 30_000).await {
            Err(ThrottleError::Throttled(seconds)) => assert_eq!(seconds, 30),
            other => panic!("expected throttled, got {other:?}"),
        }
        clients.admit(&store, &counters, T0 + 60_000).await.unwrap();
    }

    #[tokio::test]
    async fn a_right_secret_is_no_failure_and_a_burst_gets_the_limit_exactly() {
        let clients = Throttle::new(CLIENTS);
        let store = MemoryStore::for_tests();
        let counters = clients.counters("k", Some("web"), ip("192.0.2.1"));
        for _ in 0..10 {
            clients.admit(&store, &counters, T0).await.unwrap();
            clients.forgive(&store, &counters, T0).await;
        }
        // Three guesses in flight at once are admitted, a fourth is not,
        // before any of them is decided.
        for _ in 0..3 {
            clients.admit(&store, &counters, T0).await.unwrap();
        }
        assert!(matches!(
            clients.admit(&store, &counters, T0).await,
            Err(ThrottleError::Throttled(_))
        ));
    }

    #[tokio::test]
    async fn an_account_has_a_total_across_addresses() {
        let users = Throttle::new(USERS);
        let store = MemoryStore::for_tests();
        fail_n(&users, &store, "alice", "192.0.2.1", 2).await;
        assert!(refused(&users, &store, Some("alice"), "192.0.2.1").await);
        assert!(!refused(&users, &store, Some("alice"), "192.0.2.2").await);
        fail_n(&users, &store, "alice", "192.0.2.2", 1).await;
        fail_n(&users, &store, "alice", "192.0.2.3", 1).await;
        // Four in all, from three addresses: closed everywhere.
        assert!(refused(&users, &store, Some("alice"), "198.51.100.1").await);
        assert!(!refused(&users, &store, Some("bob"), "192.0.2.3").await);
    }

    #[tokio::test]
    async fn store_answers_are_passed_through_and_no_counters_ask_nothing() {
        let clients = Throttle::new(CLIENTS);
        let counters = clients.counters("login", Some("web"), ip("192.0.2.1"));
        let mut store = MockSessionStore::new();
        let expected = counters.clone();
        store
            .expect_admit_attempt()
            .withf(move |c, window, now| {
                c == expected.as_slice() && *window == 60_000 && *now == T0
            })
            .times(1)
            .returning(|_, _, _| Ok(Admission::Refused(vec![Some(1_500), None])));
        store
            .expect_forgive_attempt()
            .times(1)
            .returning(|_, _| Err(crate::store::StoreError::Timeout));
        assert!(matches!(
            clients.admit(&store, &counters, T0).await,
            Err(ThrottleError::Throttled(2))
        ));
        // Remembered: the next guess is refused without asking the store
        // (which is asked once), until the counter opens.
        assert!(matches!(
            clients.admit(&store, &counters, T0 + 1_000).await,
            Err(ThrottleError::Throttled(1))
        ));
        // A forgiveness that cannot reach the store is only logged.
        clients.forgive(&store, &counters, T0).await;
        clients.admit(&store, &[], T0).await.unwrap();
        clients.forgive(&store, &[], T0).await;
    }
}
