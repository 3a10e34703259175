//! SPEC §7 durable records, below HTTP: the one behaviour suite of
//! [`DurableStore`], run against SQLite (a temp file) and a real PostgreSQL
//! (a fresh database on the process's shared server), through
//! `Database::open` as the service opens it. Users are unique by email, a
//! registration and its event are one transaction, the outbox relay hands
//! events over in order and deletes only what the sink took — also with two
//! replicas relaying at once — API tokens are unique by id and by hash, listed
//! without the revoked and expired ones unless all are asked for, revoked
//! once for good and touched only forward — and a database that is gone answers
//! `Unavailable` within the deadline and is used again once it is back.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use sqlx::Connection;
use tokengate::config::{DatabaseSettings, Secret};
use tokengate::db::{
    ApiTokenRecord, ClientKind, Database, DbError, DurableStore, EventSink, NewUser, OutboxEvent,
    SinkError, StoredClient,
};
use tokengate::tokens::api as format;
use uuid::Uuid;

use crate::helpers::Db;
use crate::on_both_databases;
use crate::support::postgres::PostgresServer;

on_both_databases!(
    migrating_again_changes_nothing,
    a_registered_user_is_found_by_email,
    a_second_registration_of_an_email_is_refused_and_writes_nothing,
    sixteen_concurrent_registrations_of_one_email_create_one_user,
    the_relay_hands_events_over_oldest_first_and_then_deletes_them,
    events_stay_pending_while_the_sink_fails_and_all_arrive_later,
    two_relays_at_once_never_deliver_an_event_twice,
    relays_at_once_hand_events_over_in_the_outbox_order,
    an_api_token_writes_its_events_with_its_changes,
    clients_are_added_listed_and_removed_and_ids_are_unique,
    an_unreachable_database_answers_unavailable_within_the_deadline_and_recovers,
    replicas_starting_together_migrate_once,
    api_tokens_are_found_by_hash_and_by_id_and_are_unique,
    listing_api_tokens_leaves_out_revoked_and_expired_ones_unless_all,
    revoking_an_api_token_twice_keeps_the_first_time,
    a_revocation_leaves_its_cache_clear_pending_until_it_is_done,
    touching_an_api_token_only_moves_its_last_use_forward,
);

/// Generous for a loaded machine; the outage test sets its own.
const TIMEOUT: Duration = Duration::from_secs(5);

/// One empty database, opened like the service opens it: by URL, once per
/// replica.
pub(crate) struct TestDb {
    settings: DatabaseSettings,
    /// SQLite: the directory of its file, removed on drop.
    dir: Option<PathBuf>,
    /// Postgres with a server of its own (the outage test).
    server: Option<PostgresServer>,
}

impl TestDb {
    /// A fresh database; Postgres on the process's shared server.
    pub(crate) fn new(db: Db) -> Self {
        match db {
            Db::Sqlite => {
                let dir = std::env::temp_dir().join(format!("tokengate-sqlite-{}", Uuid::new_v4()));
                std::fs::create_dir_all(&dir).expect("create the SQLite directory");
                let url = format!("sqlite://{}?mode=rwc", dir.join("tokengate.db").display());
                Self::with_url(url, Some(dir), None)
            }
            Db::Postgres => Self::with_url(PostgresServer::shared().create_database(), None, None),
        }
    }

    /// A fresh database on a Postgres server of its own, for a test that
    /// stops and restarts it.
    fn on_own_server() -> Self {
        let server = PostgresServer::start();
        Self::with_url(server.create_database(), None, Some(server))
    }

    fn with_url(url: String, dir: Option<PathBuf>, server: Option<PostgresServer>) -> Self {
        let settings = DatabaseSettings {
            url: Secret::new(url),
            timeout: TIMEOUT,
            ..DatabaseSettings::default()
        };
        Self {
            settings,
            dir,
            server,
        }
    }

    /// A replica's handle; nothing is connected yet.
    fn open(&self) -> Database {
        Database::open(&self.settings).expect("open the database")
    }

    /// A replica's handle on the migrated database.
    pub(crate) async fn migrated(&self) -> Database {
        let database = self.open();
        database.migrate().await.expect("migrate");
        database
    }

    fn url(&self) -> &str {
        self.settings.url.expose()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A user with a normalized email, and its `UserRegistered` event.
pub(crate) fn registration(email: &str) -> (NewUser, OutboxEvent) {
    let user = NewUser {
        id: Uuid::now_v7(),
        email: email.to_owned(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$hash-of-{email}"),
        email_verified: false,
        created_at: 1_700_000_000_000,
    };
    let event = OutboxEvent {
        id: Uuid::now_v7(),
        kind: "UserRegistered".to_owned(),
        subject: user.id.to_string(),
        payload: serde_json::json!({
            "user_id": user.id,
            "email": email,
            "registered_at": user.created_at,
        })
        .to_string(),
        created_at: user.created_at,
    };
    (user, event)
}

/// Registers `count` users one after the other; their events, in order.
async fn register_users(database: &Database, count: usize) -> Vec<OutboxEvent> {
    let mut events = Vec::new();
    for n in 0..count {
        let (user, event) = registration(&format!("user{n}@example.com"));
        database
            .create_user(&user, &event)
            .await
            .expect("create_user");
        events.push(event);
    }
    events
}

/// Takes every batch, after `delay` (so concurrent relays overlap), and
/// keeps them in the order it got them.
#[derive(Default)]
struct RecordingSink {
    delay: Duration,
    batches: Mutex<Vec<Vec<OutboxEvent>>>,
}

impl RecordingSink {
    fn slow(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    fn batches(&self) -> Vec<Vec<OutboxEvent>> {
        self.batches.lock().expect("sink lock").clone()
    }

    fn events(&self) -> Vec<OutboxEvent> {
        self.batches().concat()
    }
}

impl EventSink for RecordingSink {
    fn publish<'a>(
        &'a self,
        events: &'a [OutboxEvent],
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.batches
                .lock()
                .expect("sink lock")
                .push(events.to_vec());
            Ok(())
        })
    }
}

/// A sink that is down (Redis unreachable).
struct FailingSink;

impl EventSink for FailingSink {
    fn publish<'a>(
        &'a self,
        _events: &'a [OutboxEvent],
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>> {
        Box::pin(async { Err(SinkError("connection refused".into())) })
    }
}

async fn migrating_again_changes_nothing(db: Db) {
    let test = TestDb::new(db);
    let database = test.migrated().await;
    let (user, event) = registration("kept@example.com");
    database.create_user(&user, &event).await.expect("create");

    database.migrate().await.expect("a second migration");
    test.open().migrate().await.expect("another replica's");

    let found = database.user_by_email("kept@example.com").await.unwrap();
    assert_eq!(found.map(|u| u.id), Some(user.id));
    assert_eq!(database.pending_events().await.unwrap(), 1);
}

/// Postgres serializes migrations with an advisory lock; SQLite has none,
/// and its `migrate` retries instead.
async fn replicas_starting_together_migrate_once(db: Db) {
    let test = TestDb::new(db);
    let replicas: Vec<Database> = (0..4).map(|_| test.open()).collect();

    let results = join_all(replicas.iter().map(|r| r.migrate())).await;

    for result in results {
        result.expect("every replica's migration succeeds");
    }
    let (user, event) = registration("first@example.com");
    replicas[3]
        .create_user(&user, &event)
        .await
        .expect("create");
    let found = replicas[0]
        .user_by_email("first@example.com")
        .await
        .unwrap();
    assert_eq!(found.map(|u| u.id), Some(user.id));
}

async fn a_registered_user_is_found_by_email(db: Db) {
    let test = TestDb::new(db);
    let database = test.migrated().await;
    let (user, event) = registration("ada@example.com");

    database.create_user(&user, &event).await.expect("create");

    let found = database
        .user_by_email("ada@example.com")
        .await
        .unwrap()
        .expect("found");
    assert_eq!(found.id, user.id);
    assert_eq!(found.password_hash, user.password_hash);
    assert_eq!(
        database.user_by_email("bob@example.com").await.unwrap(),
        None
    );
    // Another replica sees it too.
    let other = test.open();
    let found = other.user_by_email("ada@example.com").await.unwrap();
    assert_eq!(found.map(|u| u.id), Some(user.id));
    assert_eq!(database.pending_events().await.unwrap(), 1);
}

async fn a_second_registration_of_an_email_is_refused_and_writes_nothing(db: Db) {
    let test = TestDb::new(db);
    let database = test.migrated().await;
    let (first, first_event) = registration("ada@example.com");
    database.create_user(&first, &first_event).await.unwrap();

    let (second, second_event) = registration("ada@example.com");
    let refused = database.create_user(&second, &second_event).await;

    assert!(matches!(refused, Err(DbError::EmailTaken)), "{refused:?}");
    let found = database.user_by_email("ada@example.com").await.unwrap();
    assert_eq!(found.map(|u| u.id), Some(first.id), "the first one stays");
    assert_eq!(
        database.pending_events().await.unwrap(),
        1,
        "no event for the refused registration"
    );
    let sink = RecordingSink::default();
    database.relay_events(&sink, 100).await.unwrap();
    assert_eq!(sink.events(), vec![first_event]);
}

async fn sixteen_concurrent_registrations_of_one_email_create_one_user(db: Db) {
    let test = TestDb::new(db);
    let replicas = [test.migrated().await, test.migrated().await];
    let attempts: Vec<(NewUser, OutboxEvent)> =
        (0..16).map(|_| registration("race@example.com")).collect();

    let results = join_all(
        attempts
            .iter()
            .enumerate()
            .map(|(n, (user, event))| replicas[n % 2].create_user(user, event)),
    )
    .await;

    let created: Vec<usize> = (0..16).filter(|&n| results[n].is_ok()).collect();
    assert_eq!(created.len(), 1, "{results:?}");
    for result in &results {
        assert!(
            matches!(result, Ok(()) | Err(DbError::EmailTaken)),
            "{result:?}"
        );
    }
    let winner = &attempts[created[0]];
    let found = replicas[0].user_by_email("race@example.com").await.unwrap();
    assert_eq!(found.map(|u| u.id), Some(winner.0.id));
    let sink = RecordingSink::default();
    replicas[1].relay_events(&sink, 100).await.unwrap();
    assert_eq!(
        sink.events(),
        vec![winner.1.clone()],
        "one event, the winner's"
    );
}

async fn the_relay_hands_events_over_oldest_first_and_then_deletes_them(db: Db) {
    let test = TestDb::new(db);
    let database = test.migrated().await;
    let written = register_users(&database, 5).await;
    let sink = RecordingSink::default();

    assert_eq!(database.relay_events(&sink, 2).await.unwrap(), 2);
    assert_eq!(sink.events(), written[..2], "the two oldest");
    assert_eq!(database.pending_events().await.unwrap(), 3);

    assert_eq!(database.relay_events(&sink, 100).await.unwrap(), 3);
    assert_eq!(sink.events(), written, "all of them, in order, as written");
    assert_eq!(database.pending_events().await.unwrap(), 0);

    assert_eq!(database.relay_events(&sink, 100).await.unwrap(), 0);
    assert_eq!(sink.batches().len(), 2, "nothing to hand over, no call");
}

async fn events_stay_pending_while_the_sink_fails_and_all_arrive_later(db: Db) {
    let test = TestDb::new(db);
    let database = test.migrated().await;
    let written = register_users(&database, 3).await;

    for _ in 0..2 {
        let failed = database.relay_events(&FailingSink, 100).await;
        assert!(matches!(failed, Err(DbError::Unavailable(_))), "{failed:?}");
        assert_eq!(database.pending_events().await.unwrap(), 3, "none lost");
    }

    let sink = RecordingSink::default();
    assert_eq!(database.relay_events(&sink, 100).await.unwrap(), 3);
    assert_eq!(sink.events(), written);
    assert_eq!(database.pending_events().await.unwrap(), 0);
}

async fn two_relays_at_once_never_deliver_an_event_twice(db: Db) {
    let test = TestDb::new(db);
    let replicas = [test.migrated().await, test.migrated().await];
    let written = register_users(&replicas[0], 20).await;
    // Slow sinks keep each relay's transaction open while the other runs.
    let sinks = [
        RecordingSink::slow(Duration::from_millis(50)),
        RecordingSink::slow(Duration::from_millis(50)),
    ];

    let mut delivered = Vec::new();
    for round in 0.. {
        assert!(round < 20, "the relays stopped making progress");
        let before = [sinks[0].events().len(), sinks[1].events().len()];
        let (a, b) = tokio::join!(
            replicas[0].relay_events(&sinks[0], 3),
            replicas[1].relay_events(&sinks[1], 3),
        );
        let (a, b) = (a.expect("relay a"), b.expect("relay b"));
        let this_round: Vec<OutboxEvent> = [&sinks[0], &sinks[1]]
            .iter()
            .zip(before)
            .flat_map(|(sink, seen)| sink.events().split_off(seen))
            .collect();
        assert_eq!(this_round.len(), a + b);
        let ids: HashSet<Uuid> = this_round.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), this_round.len(), "round {round}: {this_round:?}");
        delivered.extend(this_round);
        if a + b == 0 {
            break;
        }
    }

    let ids: HashSet<Uuid> = delivered.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), delivered.len(), "no event delivered twice");
    let written_ids: HashSet<Uuid> = written.iter().map(|e| e.id).collect();
    assert_eq!(ids, written_ids, "together they delivered everything");
    for sink in &sinks {
        let seqs: Vec<usize> = sink
            .events()
            .iter()
            .map(|e| written.iter().position(|w| w.id == e.id).unwrap())
            .collect();
        assert!(seqs.is_sorted(), "each relay goes oldest first: {seqs:?}");
    }
    assert_eq!(replicas[1].pending_events().await.unwrap(), 0);
}

/// Relays run one at a time: the second waits for the first's commit, so
/// the events reach the one sink they share in the outbox's order — a
/// later row never passes an earlier one (order per subject).
async fn relays_at_once_hand_events_over_in_the_outbox_order(db: Db) {
    let test = TestDb::new(db);
    let replicas = [
        test.migrated().await,
        test.migrated().await,
        test.migrated().await,
    ];
    let written = register_users(&replicas[0], 12).await;
    let sink = RecordingSink::slow(Duration::from_millis(30));

    let rounds = join_all(replicas.iter().map(|r| r.relay_events(&sink, 3))).await;
    let first: usize = rounds.into_iter().map(|r| r.expect("relay")).sum();
    assert_eq!(first, 9, "three rounds of three, one after the other");
    let rounds = join_all(replicas.iter().map(|r| r.relay_events(&sink, 3))).await;
    let second: usize = rounds.into_iter().map(|r| r.expect("relay")).sum();
    assert_eq!(second, 3);

    assert_eq!(sink.events(), written, "in the outbox's order");
    assert_eq!(replicas[0].pending_events().await.unwrap(), 0);
}

/// `ApiTokenCreated` is written with the token, `ApiTokenRevoked` with its
/// first revocation only, both about `token:<name>`; a refused creation,
/// a second revocation and an unknown token write none.
async fn an_api_token_writes_its_events_with_its_changes(db: Db) {
    let test = TestDb::new(db);
    let database = test.migrated().await;
    let token = api_token("billing", T0, Some(T0 + 86_400_000));
    database.create_api_token(&token).await.expect("create");
    let duplicate = ApiTokenRecord {
        id: token.id,
        ..api_token("impostor", T0 + 1, None)
    };
    assert!(database.create_api_token(&duplicate).await.is_err());
    assert_eq!(database.pending_events().await.unwrap(), 1);

    database.revoke_api_token(token.id, T0 + 100).await.unwrap();
    database.revoke_api_token(token.id, T0 + 200).await.unwrap();
    database.revoke_api_token(Uuid::now_v7(), T0).await.unwrap();
    assert_eq!(database.pending_events().await.unwrap(), 2);

    let sink = RecordingSink::default();
    assert_eq!(database.relay_events(&sink, 100).await.unwrap(), 2);
    let events = sink.events();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["ApiTokenCreated", "ApiTokenRevoked"]);
    for event in &events {
        assert_eq!(event.subject, "token:billing");
        assert_eq!(event.id.get_version_num(), 7);
        assert!(!event.payload.contains(&token.token_hash), "never the hash");
    }
    assert_eq!((events[0].created_at, events[1].created_at), (T0, T0 + 100));
    let created: serde_json::Value = serde_json::from_str(&events[0].payload).unwrap();
    assert_eq!(
        created,
        serde_json::json!({
            "token_id": token.id,
            "name": "billing",
            "scopes": ["read", "write"],
            "expires_at": "2027-01-16T08:00:00.000Z",
            "created_at": "2027-01-15T08:00:00.000Z",
        })
    );
    let revoked: serde_json::Value = serde_json::from_str(&events[1].payload).unwrap();
    assert_eq!(
        revoked,
        serde_json::json!({
            "token_id": token.id,
            "name": "billing",
            "revoked_at": "2027-01-15T08:00:00.100Z",
        })
    );
}

async fn clients_are_added_listed_and_removed_and_ids_are_unique(db: Db) {
    let test = TestDb::new(db);
    let database = test.migrated().await;
    let oauth = StoredClient {
        id: "reports".to_owned(),
        kind: ClientKind::OAuth,
        secret_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$reports".to_owned(),
        scopes: vec!["read".to_owned(), "write".to_owned()],
        refresh_tokens: true,
        rate_limit: 120,
        created_at: 1_700_000_000_000,
    };
    let login = StoredClient {
        id: "frontend".to_owned(),
        kind: ClientKind::Login,
        secret_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$frontend".to_owned(),
        scopes: Vec::new(),
        refresh_tokens: false,
        rate_limit: 0,
        created_at: 1_700_000_000_001,
    };
    assert_eq!(database.clients().await.unwrap(), Vec::new());

    database.add_client(&oauth).await.expect("add oauth");
    database.add_client(&login).await.expect("add login");
    assert_eq!(
        database.clients().await.unwrap(),
        vec![login.clone(), oauth.clone()],
        "every field back, by id"
    );

    let impostor = StoredClient {
        kind: ClientKind::Login,
        secret_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$other".to_owned(),
        ..oauth.clone()
    };
    let refused = database.add_client(&impostor).await;
    assert!(matches!(refused, Err(DbError::ClientExists)), "{refused:?}");
    assert_eq!(
        database.clients().await.unwrap(),
        vec![login.clone(), oauth.clone()],
        "the first one stays as it was"
    );

    assert!(database.remove_client("reports").await.unwrap());
    assert!(!database.remove_client("reports").await.unwrap(), "gone");
    assert_eq!(database.clients().await.unwrap(), vec![login]);
}

/// A token's record as `api_tokens::create` writes it: a fresh id and the
/// hash of a fresh token.
fn api_token(name: &str, created_at: u64, expires_at: Option<u64>) -> ApiTokenRecord {
    let (_, hash) = format::generate();
    ApiTokenRecord {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        token_hash: hash.hex(),
        scopes: vec!["read".to_owned(), "write".to_owned()],
        created_at,
        expires_at,
        last_used_at: None,
        revoked_at: None,
    }
}

const T0: u64 = 1_800_000_000_000;

async fn api_tokens_are_found_by_hash_and_by_id_and_are_unique(db: Db) {
    let test = TestDb::new(db);
    let database = test.migrated().await;
    let mut billing = api_token("billing", T0, Some(T0 + 86_400_000));
    billing.last_used_at = Some(T0 + 5);
    let ci = ApiTokenRecord {
        scopes: Vec::new(),
        ..api_token("ci", T0 + 1, None)
    };
    database.create_api_token(&billing).await.expect("create");
    database.create_api_token(&ci).await.expect("create");

    let by_hash = database.api_token_by_hash(&billing.token_hash).await;
    assert_eq!(by_hash.unwrap(), Some(billing.clone()), "every field back");
    assert_eq!(database.api_token(ci.id).await.unwrap(), Some(ci.clone()));
    // Another replica sees them too.
    let other = test.open();
    assert_eq!(
        other.api_token(billing.id).await.unwrap(),
        Some(billing.clone())
    );
    let (_, unknown) = format::generate();
    assert_eq!(
        database.api_token_by_hash(&unknown.hex()).await.unwrap(),
        None
    );
    assert_eq!(database.api_token(Uuid::now_v7()).await.unwrap(), None);

    let same_id = ApiTokenRecord {
        id: billing.id,
        ..api_token("impostor", T0 + 2, None)
    };
    let same_hash = ApiTokenRecord {
        token_hash: billing.token_hash.clone(),
        ..api_token("impostor", T0 + 3, None)
    };
    for duplicate in [same_id, same_hash] {
        let refused = database.create_api_token(&duplicate).await;
        assert!(matches!(refused, Err(DbError::TokenExists)), "{refused:?}");
    }
    assert_eq!(
        database.api_token(billing.id).await.unwrap(),
        Some(billing.clone()),
        "the first one stays as it was"
    );
    assert_eq!(
        database.api_tokens(true, T0).await.unwrap(),
        vec![billing, ci],
        "nothing else was written"
    );
}

async fn listing_api_tokens_leaves_out_revoked_and_expired_ones_unless_all(db: Db) {
    let test = TestDb::new(db);
    let database = test.migrated().await;
    let now = T0 + 10_000;
    let forever = api_token("forever", T0, None);
    let later = api_token("later", T0 + 1, Some(now + 1));
    let expired = api_token("expired", T0 + 2, Some(now - 1));
    // Expiry is exclusive: at its instant the token is gone.
    let at_now = api_token("at-now", T0 + 3, Some(now));
    let revoked = api_token("revoked", T0 + 4, None);
    // Written out of order: the listing is by creation time.
    for record in [&revoked, &at_now, &expired, &later, &forever] {
        database.create_api_token(record).await.expect("create");
    }
    let revoked = database
        .revoke_api_token(revoked.id, now - 5)
        .await
        .unwrap()
        .expect("revoked");

    let names = |records: Vec<ApiTokenRecord>| -> Vec<String> {
        records.into_iter().map(|r| r.name).collect()
    };
    assert_eq!(
        names(database.api_tokens(false, now).await.unwrap()),
        ["forever", "later"]
    );
    assert_eq!(
        database.api_tokens(true, now).await.unwrap(),
        vec![forever.clone(), later.clone(), expired, at_now, revoked],
        "all of them, oldest first, every field"
    );
    // Before the expiries, those tokens were active (the revoked one never is again).
    assert_eq!(
        names(database.api_tokens(false, T0 + 5).await.unwrap()),
        ["forever", "later", "expired", "at-now"]
    );
    assert_eq!(
        names(database.api_tokens(false, now + 1).await.unwrap()),
        ["forever"]
    );
}

async fn revoking_an_api_token_twice_keeps_the_first_time(db: Db) {
    let test = TestDb::new(db);
    let database = test.migrated().await;
    let token = api_token("billing", T0, None);
    let bystander = api_token("bystander", T0 + 1, None);
    database.create_api_token(&token).await.unwrap();
    database.create_api_token(&bystander).await.unwrap();

    let first = database.revoke_api_token(token.id, T0 + 100).await.unwrap();
    let expected = ApiTokenRecord {
        revoked_at: Some(T0 + 100),
        ..token.clone()
    };
    assert_eq!(first, Some(expected.clone()), "the record, revoked");
    let again = database.revoke_api_token(token.id, T0 + 200).await.unwrap();
    assert_eq!(again, Some(expected.clone()), "the first time stays");
    let earlier = database.revoke_api_token(token.id, T0 + 50).await.unwrap();
    assert_eq!(
        earlier,
        Some(expected.clone()),
        "even against an earlier one"
    );
    assert_eq!(database.api_token(token.id).await.unwrap(), Some(expected));
    let by_hash = database.api_token_by_hash(&token.token_hash).await.unwrap();
    assert_eq!(by_hash.and_then(|r| r.revoked_at), Some(T0 + 100));

    assert_eq!(
        database.revoke_api_token(Uuid::now_v7(), T0).await.unwrap(),
        None,
        "no such token"
    );
    assert_eq!(
        database.api_token(bystander.id).await.unwrap(),
        Some(bystander),
        "only that token is revoked"
    );
}

/// A revocation records, with `revoked_at`, that the cache must still hear
/// of it; the clears are listed oldest first, at most as many as asked,
/// once per token however often it is revoked, until they are done.
async fn a_revocation_leaves_its_cache_clear_pending_until_it_is_done(db: Db) {
    let test = TestDb::new(db);
    let database = test.migrated().await;
    let tokens: Vec<ApiTokenRecord> = (0..3)
        .map(|i| api_token(&format!("t{i}"), T0 + i, None))
        .collect();
    for token in &tokens {
        database.create_api_token(token).await.unwrap();
    }
    assert!(database.pending_cache_clears(10).await.unwrap().is_empty());
    for (i, token) in tokens.iter().enumerate().rev() {
        let at = T0 + 100 - i as u64; // the last token first, the first last
        assert!(
            database
                .revoke_api_token(token.id, at)
                .await
                .unwrap()
                .is_some()
        );
    }
    assert!(
        database
            .revoke_api_token(Uuid::now_v7(), T0)
            .await
            .unwrap()
            .is_none()
    );
    let hashes: Vec<String> = tokens.iter().rev().map(|t| t.token_hash.clone()).collect();
    assert_eq!(database.pending_cache_clears(10).await.unwrap(), hashes);
    assert_eq!(database.pending_cache_clears(2).await.unwrap(), hashes[..2]);
    // Revoked again: still one clear.
    database
        .revoke_api_token(tokens[0].id, T0 + 500)
        .await
        .unwrap();
    assert_eq!(database.pending_cache_clears(10).await.unwrap(), hashes);

    database.cache_cleared(&hashes[..2]).await.unwrap();
    assert_eq!(
        database.pending_cache_clears(10).await.unwrap(),
        hashes[2..]
    );
    database.cache_cleared(&hashes).await.unwrap(); // done twice: no harm
    assert!(database.pending_cache_clears(10).await.unwrap().is_empty());
    // Revoked once more after it was done: pending once more.
    database
        .revoke_api_token(tokens[1].id, T0 + 600)
        .await
        .unwrap();
    assert_eq!(
        database.pending_cache_clears(10).await.unwrap(),
        [tokens[1].token_hash.clone()]
    );
}

async fn touching_an_api_token_only_moves_its_last_use_forward(db: Db) {
    let test = TestDb::new(db);
    let database = test.migrated().await;
    let token = api_token("billing", T0, None);
    let bystander = api_token("bystander", T0 + 1, None);
    database.create_api_token(&token).await.unwrap();
    database.create_api_token(&bystander).await.unwrap();
    let last_used = |id| {
        let database = &database;
        async move {
            database
                .api_token(id)
                .await
                .unwrap()
                .expect("the token")
                .last_used_at
        }
    };

    database
        .touch_api_token(token.id, T0 + 2_000)
        .await
        .unwrap();
    assert_eq!(last_used(token.id).await, Some(T0 + 2_000));
    // A write-behind that arrives late does not take it back.
    database
        .touch_api_token(token.id, T0 + 1_000)
        .await
        .unwrap();
    assert_eq!(last_used(token.id).await, Some(T0 + 2_000));
    database
        .touch_api_token(token.id, T0 + 2_000)
        .await
        .unwrap();
    assert_eq!(last_used(token.id).await, Some(T0 + 2_000));
    database
        .touch_api_token(token.id, T0 + 3_000)
        .await
        .unwrap();
    assert_eq!(last_used(token.id).await, Some(T0 + 3_000));

    database
        .touch_api_token(Uuid::now_v7(), T0 + 4_000)
        .await
        .expect("touching an unknown token is no error");
    assert_eq!(last_used(bystander.id).await, None, "only that token");
    // A revoked token keeps its history.
    database
        .revoke_api_token(token.id, T0 + 5_000)
        .await
        .unwrap();
    let record = database.api_token(token.id).await.unwrap().unwrap();
    assert_eq!(record.last_used_at, Some(T0 + 3_000));
    assert_eq!(record.revoked_at, Some(T0 + 5_000));
}

/// What takes the database away, and gives it back.
enum Outage {
    /// The Postgres server stops.
    Postgres(PostgresServer),
    /// SQLite has no server to lose: another writer holds its lock past the
    /// deadline (readers carry on beside it, in WAL mode).
    Sqlite(sqlx::SqliteConnection),
}

async fn an_unreachable_database_answers_unavailable_within_the_deadline_and_recovers(db: Db) {
    let timeout = Duration::from_millis(800);
    let mut test = match db {
        Db::Sqlite => TestDb::new(db),
        Db::Postgres => TestDb::on_own_server(),
    };
    test.settings.timeout = timeout;
    let database = test.migrated().await;
    let (before, before_event) = registration("before@example.com");
    database.create_user(&before, &before_event).await.unwrap();

    let outage = match db {
        Db::Postgres => {
            let server = test.server.take().expect("a server of its own");
            tokio::task::block_in_place(|| server.stop());
            Outage::Postgres(server)
        }
        Db::Sqlite => {
            let mut writer = sqlx::SqliteConnection::connect(test.url())
                .await
                .expect("a second writer");
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut writer)
                .await
                .expect("take the write lock");
            Outage::Sqlite(writer)
        }
    };

    let (during, during_event) = registration("during@example.com");
    let sink = RecordingSink::default();
    let calls: Vec<(&str, Result<(), DbError>, Duration)> = vec![
        timed("create_user", database.create_user(&during, &during_event)).await,
        timed("relay_events", database.relay_events(&sink, 100)).await,
        timed(
            "user_by_email",
            database.user_by_email("before@example.com"),
        )
        .await,
        timed("ping", database.ping()).await,
    ];
    for (name, result, elapsed) in calls {
        let is_read = matches!(name, "user_by_email" | "ping");
        if db == Db::Sqlite && is_read {
            assert!(result.is_ok(), "{name}: {result:?}");
        } else {
            assert!(
                matches!(result, Err(DbError::Unavailable(_))),
                "{name}: {result:?}"
            );
        }
        assert!(
            elapsed < timeout + Duration::from_secs(1),
            "{name} took {elapsed:?}"
        );
    }
    assert!(sink.batches().is_empty());

    match outage {
        Outage::Postgres(server) => {
            tokio::task::block_in_place(|| server.restart());
            test.server = Some(server);
        }
        Outage::Sqlite(writer) => writer.close().await.expect("release the lock"),
    }

    // The same handle, not reopened.
    database
        .create_user(&during, &during_event)
        .await
        .expect("create_user once the database is back");
    let found = database.user_by_email("before@example.com").await.unwrap();
    assert_eq!(found.map(|u| u.id), Some(before.id), "nothing lost");
    assert_eq!(database.relay_events(&sink, 100).await.unwrap(), 2);
    assert_eq!(sink.events(), vec![before_event, during_event]);
}

async fn timed<T>(
    name: &str,
    call: impl Future<Output = Result<T, DbError>>,
) -> (&str, Result<(), DbError>, Duration) {
    let started = Instant::now();
    let result = call.await.map(drop);
    (name, result, started.elapsed())
}
