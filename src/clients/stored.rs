//! Clients kept in the database (SPEC §7, `tokengate client add|list|remove`),
//! beside those in `config.yml`.
//!
//! Requests never wait for the database: each replica reads the `clients`
//! table once before serving ([`load`]) and again every
//! `database.clients_refresh` (5 s by default, [`refresh`]), and swaps the
//! result in with [`ClientSecrets::replace_stored`]. A client added or
//! removed on the command line therefore works, or stops working, on every
//! replica within one refresh; a remembered secret goes with its client. A
//! stored client whose id `config.yml` also has (for the same kind) is
//! ignored: the configuration wins, and says so once. While the database is
//! unreachable the clients last read stay in use — removing a client needs
//! the database to be up anyway — and the outage is warned about once.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::{ClientSecrets, Policy};
use crate::db::{DbError, DurableStore};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the clients in the database: {0}")]
    Database(#[from] DbError),
    #[error("clients in the database: {0}")]
    Clients(String),
}

/// Reads the stored clients once (one query) and hands each set the rows
/// of its kind.
pub async fn load<L: Policy, O: Policy>(
    db: &impl DurableStore,
    login: &ClientSecrets<L>,
    oauth: &ClientSecrets<O>,
) -> Result<(), LoadError> {
    let stored = db.clients().await?;
    login
        .replace_stored(&stored)
        .await
        .map_err(LoadError::Clients)?;
    oauth
        .replace_stored(&stored)
        .await
        .map_err(LoadError::Clients)?;
    Ok(())
}

/// Re-reads the stored clients every `every` until dropped. The first
/// round is one period after the call: start-up has just [`load`]ed.
pub async fn refresh<L: Policy, O: Policy>(
    db: &impl DurableStore,
    login: &ClientSecrets<L>,
    oauth: &ClientSecrets<O>,
    every: Duration,
) {
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    // A slow round delays the next one rather than causing a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut refresher = Refresher::default();
    loop {
        ticks.tick().await;
        refresher.round(db, login, oauth).await;
    }
}

/// One replica's refreshes, and whether the last one failed (so an outage
/// is warned about once, not every round).
#[derive(Default)]
struct Refresher {
    failing: bool,
}

impl Refresher {
    async fn round<L: Policy, O: Policy>(
        &mut self,
        db: &impl DurableStore,
        login: &ClientSecrets<L>,
        oauth: &ClientSecrets<O>,
    ) {
        match load(db, login, oauth).await {
            Ok(()) => {
                if self.failing {
                    tracing::info!("clients in the database: read again");
                    self.failing = false;
                }
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(
                        error = %e,
                        "clients in the database: keeping the ones last read until it answers"
                    );
                    self.failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};

    use super::super::tests::Named;
    use super::super::{Attempt, ClientError, Credential, lock};
    use super::*;
    use crate::db::{ClientKind, MockDurableStore, StoredClient};
    use crate::oauth::ClientPolicy;
    use crate::store::memory::MemoryStore;
    use crate::throttle::{Limits, Throttle};
    use crate::verifier::Verifier;

    /// argon2id with tiny costs: these tests are about sets, not hashing.
    fn cheap_hash(secret: &str) -> String {
        Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password(secret.as_bytes())
        .unwrap()
        .to_string()
    }

    fn throttle() -> Throttle {
        Throttle::new(Limits {
            per_pair: 0,
            per_address: 0,
            per_identity: 0,
            window: 60_000,
        })
    }

    fn verifier() -> Arc<Verifier> {
        Arc::new(Verifier::new(2, 16, Duration::from_secs(10)))
    }

    /// Login clients with `web` (secret `web-secret`) in the configuration.
    fn login_set(verifier: &Arc<Verifier>) -> ClientSecrets<Named> {
        let hash = cheap_hash("web-secret");
        let web = ("web", Credential::Hash(&hash), Named("web".into()));
        ClientSecrets::new(ClientKind::Login, [web], verifier.clone(), throttle()).unwrap()
    }

    /// OAuth clients, none configured.
    fn oauth_set(verifier: &Arc<Verifier>) -> ClientSecrets<ClientPolicy> {
        ClientSecrets::new(ClientKind::OAuth, [], verifier.clone(), throttle()).unwrap()
    }

    fn row(id: &str, kind: ClientKind, secret: &str) -> StoredClient {
        StoredClient {
            id: id.into(),
            kind,
            secret_hash: cheap_hash(secret),
            scopes: vec![],
            refresh_tokens: false,
            rate_limit: 0,
            created_at: 1_800_000_000_000,
        }
    }

    fn db_with(rows: Vec<StoredClient>) -> MockDurableStore {
        let mut db = MockDurableStore::new();
        db.expect_clients().returning(move || Ok(rows.clone()));
        db
    }

    fn db_down() -> MockDurableStore {
        let mut db = MockDurableStore::new();
        db.expect_clients()
            .returning(|| Err(DbError::Unavailable("connection refused".into())));
        db
    }

    fn sessions() -> MemoryStore {
        MemoryStore::for_tests()
    }

    const FROM: Attempt = Attempt {
        addr: std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
        now: 1_800_000_000_000,
    };

    async fn who<P: Policy + Clone>(
        set: &ClientSecrets<P>,
        id: &str,
        secret: &str,
    ) -> Result<P, ClientError> {
        let policy = set
            .verify(&sessions(), id, secret.as_bytes().to_vec(), FROM)
            .await?;
        Ok((*policy).clone())
    }

    fn rejected<P>(result: Result<P, ClientError>) -> bool {
        matches!(result, Err(ClientError::Rejected))
    }

    #[tokio::test]
    async fn stored_clients_work_beside_the_configured_ones_each_in_its_kind() {
        let v = verifier();
        let (login, oauth) = (login_set(&v), oauth_set(&v));
        let mut billing = row("billing", ClientKind::OAuth, "billing-secret");
        billing.scopes = vec!["read".into(), "write".into()];
        billing.refresh_tokens = true;
        billing.rate_limit = 60;
        let db = db_with(vec![
            billing,
            row("robot", ClientKind::Login, "robot-secret"),
        ]);
        load(&db, &login, &oauth).await.unwrap();

        assert_eq!(who(&login, "web", "web-secret").await.unwrap().0, "web");
        assert_eq!(
            who(&login, "robot", "robot-secret").await.unwrap().0,
            "stored robot"
        );
        let policy = who(&oauth, "billing", "billing-secret").await.unwrap();
        assert_eq!(
            policy,
            ClientPolicy {
                id: "billing".into(),
                scopes: vec!["read".into(), "write".into()],
                refresh_tokens: true,
                rate_limit: 60,
            }
        );
        assert_eq!(oauth.scopes_supported(), ["read", "write"]);
        assert!(rejected(who(&oauth, "robot", "robot-secret").await));
        assert!(rejected(who(&login, "billing", "billing-secret").await));
    }

    #[tokio::test]
    async fn the_configuration_wins_over_a_stored_client_with_its_id() {
        let v = verifier();
        let (login, oauth) = (login_set(&v), oauth_set(&v));
        let db = db_with(vec![row("web", ClientKind::Login, "stored-secret")]);
        for _ in 0..3 {
            load(&db, &login, &oauth).await.unwrap();
        }
        assert_eq!(who(&login, "web", "web-secret").await.unwrap().0, "web");
        assert!(rejected(who(&login, "web", "stored-secret").await));
        // Warned once, and remembered as warned while the row stays.
        assert_eq!(
            lock(&login.warned).iter().collect::<Vec<_>>(),
            [&"web".to_string()]
        );
        load(&db_with(vec![]), &login, &oauth).await.unwrap();
        assert!(lock(&login.warned).is_empty(), "warned again if re-added");
    }

    #[tokio::test]
    async fn a_removed_client_stops_working_even_with_a_remembered_secret() {
        let v = verifier();
        let (login, oauth) = (login_set(&v), oauth_set(&v));
        load(
            &db_with(vec![row("robot", ClientKind::Login, "robot-secret")]),
            &login,
            &oauth,
        )
        .await
        .unwrap();
        who(&login, "robot", "robot-secret").await.unwrap();
        who(&login, "robot", "robot-secret").await.unwrap();
        assert_eq!(v.runs().get(), 1, "remembered after one verification");

        load(&db_with(vec![]), &login, &oauth).await.unwrap();
        assert!(rejected(who(&login, "robot", "robot-secret").await));
        assert_eq!(who(&login, "web", "web-secret").await.unwrap().0, "web");
    }

    #[tokio::test]
    async fn an_unchanged_hash_keeps_the_remembered_secret_a_changed_one_drops_it() {
        let v = verifier();
        let (login, oauth) = (login_set(&v), oauth_set(&v));
        let robot = row("robot", ClientKind::Login, "old-secret");
        let db = db_with(vec![robot.clone()]);
        load(&db, &login, &oauth).await.unwrap();
        who(&login, "robot", "old-secret").await.unwrap();
        assert_eq!(v.runs().get(), 1);

        for _ in 0..3 {
            load(&db, &login, &oauth).await.unwrap();
        }
        who(&login, "robot", "old-secret").await.unwrap();
        assert_eq!(v.runs().get(), 1, "refreshes re-hash nothing");

        let rotated = StoredClient {
            secret_hash: cheap_hash("new-secret"),
            ..robot
        };
        load(&db_with(vec![rotated]), &login, &oauth).await.unwrap();
        assert!(rejected(who(&login, "robot", "old-secret").await));
        assert_eq!(v.runs().get(), 2, "the old secret is no longer remembered");
        who(&login, "robot", "new-secret").await.unwrap();
    }

    #[tokio::test]
    async fn a_changed_policy_applies_without_forgetting_the_secret() {
        let v = verifier();
        let (login, oauth) = (login_set(&v), oauth_set(&v));
        let billing = row("billing", ClientKind::OAuth, "billing-secret");
        load(&db_with(vec![billing.clone()]), &login, &oauth)
            .await
            .unwrap();
        who(&oauth, "billing", "billing-secret").await.unwrap();
        let wider = StoredClient {
            scopes: vec!["read".into()],
            ..billing
        };
        load(&db_with(vec![wider]), &login, &oauth).await.unwrap();
        let policy = who(&oauth, "billing", "billing-secret").await.unwrap();
        assert_eq!(policy.scopes, ["read"]);
        assert_eq!(v.runs().get(), 1);
    }

    #[tokio::test]
    async fn the_last_clients_read_stay_while_the_database_is_down() {
        let v = verifier();
        let (login, oauth) = (login_set(&v), oauth_set(&v));
        let mut refresher = Refresher::default();
        let robot = vec![row("robot", ClientKind::Login, "robot-secret")];
        refresher.round(&db_with(robot), &login, &oauth).await;
        assert!(!refresher.failing);

        for _ in 0..2 {
            refresher.round(&db_down(), &login, &oauth).await;
            assert!(refresher.failing, "an outage, warned about once");
            assert_eq!(
                who(&login, "robot", "robot-secret").await.unwrap().0,
                "stored robot"
            );
        }
        assert!(matches!(
            load(&db_down(), &login, &oauth).await,
            Err(LoadError::Database(DbError::Unavailable(_)))
        ));

        refresher.round(&db_with(vec![]), &login, &oauth).await;
        assert!(!refresher.failing);
        assert!(rejected(who(&login, "robot", "robot-secret").await));
    }

    #[tokio::test]
    async fn unknown_ids_cost_a_verification_once_stored_clients_exist() {
        let v = verifier();
        let (login, oauth) = (login_set(&v), oauth_set(&v));
        assert!(oauth.is_empty());
        assert!(rejected(who(&oauth, "ghost", "x").await));
        assert_eq!(v.runs().get(), 0, "no clients, nothing to hide");

        let db = db_with(vec![row("billing", ClientKind::OAuth, "s")]);
        load(&db, &login, &oauth).await.unwrap();
        assert!(!oauth.is_empty());
        assert!(rejected(who(&oauth, "ghost", "x").await));
        assert_eq!(v.runs().get(), 1, "verified against the dummy");
        let params = |set: &ClientSecrets<ClientPolicy>| {
            let dummy = set.snapshot().dummy.clone().expect("a dummy");
            (dummy.params.m_cost(), dummy.params.t_cost())
        };
        assert_eq!(params(&oauth), (8, 1), "the stored client's costs");
    }

    #[tokio::test]
    async fn an_unusable_stored_hash_is_skipped() {
        let v = verifier();
        let (login, oauth) = (login_set(&v), oauth_set(&v));
        let mut broken = row("broken", ClientKind::Login, "x");
        broken.secret_hash = "plain".into();
        let db = db_with(vec![
            broken,
            row("robot", ClientKind::Login, "robot-secret"),
        ]);
        load(&db, &login, &oauth).await.unwrap();
        assert!(rejected(who(&login, "broken", "plain").await));
        who(&login, "robot", "robot-secret").await.unwrap();
    }
}
