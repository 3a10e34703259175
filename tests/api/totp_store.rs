//! SPEC §15 TOTP records below the rules, on SQLite and a real
//! PostgreSQL: an enrolment is stored whole or not at all and only once
//! per account, a time step is taken once even by replicas racing for it,
//! a recovery code is used up once, and turning TOTP off removes the
//! codes with it.

use futures_util::future::join_all;
use tokengate::db::{Database, DurableStore, NewTotp};
use uuid::Uuid;

use crate::durable_store::{TestDb, registration};
use crate::helpers::Db;
use crate::on_both_databases;

on_both_databases!(
    an_enrolment_is_stored_once_with_its_codes,
    an_enrolment_needs_an_account,
    a_step_is_taken_once_even_by_replicas_racing,
    a_recovery_code_is_used_once_even_by_replicas_racing,
    turning_totp_off_removes_its_codes,
);

/// A registered account's id.
async fn account(database: &Database, email: &str) -> Uuid {
    let (user, event) = registration(email);
    database
        .create_user(&user, &event)
        .await
        .expect("create_user");
    user.id
}

fn enrolment(user: Uuid, step: u64, codes: &[&str]) -> NewTotp {
    NewTotp {
        user,
        secret: vec![0, 1, 2, 255, 254],
        last_step: step,
        recovery_hashes: codes.iter().map(|c| c.to_string()).collect(),
        created_at: 1_800_000_000_000,
    }
}

async fn an_enrolment_is_stored_once_with_its_codes(db: Db) {
    let test = TestDb::new(db);
    let database = test.migrated().await;
    let alice = account(&database, "alice@example.com").await;
    assert_eq!(database.totp(alice).await.unwrap(), None);
    assert!(
        database
            .enable_totp(&enrolment(alice, 100, &["h1", "h2"]))
            .await
            .unwrap()
    );
    let stored = database.totp(alice).await.unwrap().expect("enrolled");
    assert_eq!(stored.secret, vec![0, 1, 2, 255, 254]);
    assert_eq!(stored.last_step, 100);
    // A second enrolment writes nothing, not even its codes.
    let second = enrolment(alice, 200, &["h3"]);
    assert!(!database.enable_totp(&second).await.unwrap());
    assert_eq!(database.totp(alice).await.unwrap().unwrap().last_step, 100);
    assert!(!database.use_recovery_code(alice, "h3").await.unwrap());
    assert!(database.use_recovery_code(alice, "h2").await.unwrap());
}

async fn an_enrolment_needs_an_account(db: Db) {
    let test = TestDb::new(db);
    let database = test.migrated().await;
    let nobody = Uuid::new_v4();
    assert!(
        database
            .enable_totp(&enrolment(nobody, 1, &["h1"]))
            .await
            .is_err()
    );
    assert_eq!(database.totp(nobody).await.unwrap(), None);
    assert!(!database.use_recovery_code(nobody, "h1").await.unwrap());
}

async fn a_step_is_taken_once_even_by_replicas_racing(db: Db) {
    let test = TestDb::new(db);
    let replicas: Vec<Database> = join_all((0..4).map(|_| test.migrated())).await;
    let alice = account(&replicas[0], "alice@example.com").await;
    assert!(
        replicas[0]
            .enable_totp(&enrolment(alice, 100, &[]))
            .await
            .unwrap()
    );
    assert!(!replicas[1].use_totp_step(alice, 100).await.unwrap());
    assert!(!replicas[1].use_totp_step(alice, 99).await.unwrap());
    let tries = (0..16).map(|i| replicas[i % 4].use_totp_step(alice, 101));
    let won = join_all(tries).await;
    let winners = won.iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(winners, 1, "{won:?}");
    assert_eq!(
        replicas[2].totp(alice).await.unwrap().unwrap().last_step,
        101
    );
    assert!(replicas[3].use_totp_step(alice, 103).await.unwrap());
    assert!(!replicas[3].use_totp_step(alice, 102).await.unwrap());
    // Another account's steps are its own.
    let bob = account(&replicas[0], "bob@example.com").await;
    assert!(!replicas[0].use_totp_step(bob, 500).await.unwrap());
}

async fn a_recovery_code_is_used_once_even_by_replicas_racing(db: Db) {
    let test = TestDb::new(db);
    let replicas: Vec<Database> = join_all((0..4).map(|_| test.migrated())).await;
    let alice = account(&replicas[0], "alice@example.com").await;
    let bob = account(&replicas[0], "bob@example.com").await;
    let codes = ["a1", "a2", "a3"];
    assert!(
        replicas[0]
            .enable_totp(&enrolment(alice, 1, &codes))
            .await
            .unwrap()
    );
    assert!(
        replicas[0]
            .enable_totp(&enrolment(bob, 1, &["b1"]))
            .await
            .unwrap()
    );
    // Not another account's code.
    assert!(!replicas[0].use_recovery_code(bob, "a1").await.unwrap());
    let tries = (0..16).map(|i| replicas[i % 4].use_recovery_code(alice, "a1"));
    let won = join_all(tries).await;
    assert_eq!(won.iter().filter(|r| *r.as_ref().unwrap()).count(), 1);
    assert!(replicas[1].use_recovery_code(alice, "a2").await.unwrap());
    assert!(!replicas[1].use_recovery_code(alice, "a2").await.unwrap());
    assert!(replicas[2].use_recovery_code(bob, "b1").await.unwrap());
}

async fn turning_totp_off_removes_its_codes(db: Db) {
    let test = TestDb::new(db);
    let database = test.migrated().await;
    let alice = account(&database, "alice@example.com").await;
    assert!(!database.disable_totp(alice).await.unwrap());
    assert!(
        database
            .enable_totp(&enrolment(alice, 7, &["h1", "h2"]))
            .await
            .unwrap()
    );
    assert!(database.disable_totp(alice).await.unwrap());
    assert_eq!(database.totp(alice).await.unwrap(), None);
    assert!(!database.use_recovery_code(alice, "h1").await.unwrap());
    // Enrolling again starts afresh: its own step and codes.
    assert!(
        database
            .enable_totp(&enrolment(alice, 3, &["h1"]))
            .await
            .unwrap()
    );
    assert_eq!(database.totp(alice).await.unwrap().unwrap().last_step, 3);
    assert!(database.use_recovery_code(alice, "h1").await.unwrap());
    assert!(!database.use_recovery_code(alice, "h2").await.unwrap());
}
