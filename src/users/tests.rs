use std::sync::Mutex;

use mockall::predicate::eq;

use super::*;
use crate::db::{MockDurableStore, UserLogin};
use crate::store::memory::MemoryStore;

const T0: Millis = 1_800_000_000_000;

/// Users with `per_pair` failures allowed per account and address, and
/// `per_account` in all.
fn users_with(per_pair: u32, per_account: u32) -> Users {
    let settings = UserSettings {
        max_failures: per_pair,
        max_failures_per_account: per_account,
        ..UserSettings::default()
    };
    let throttle = Throttle::for_users(&settings, &Default::default());
    let verifier = Arc::new(Verifier::new(2, 16, std::time::Duration::from_secs(10)));
    Users::new(&settings, throttle, verifier).unwrap()
}

fn sessions() -> MemoryStore {
    MemoryStore::for_tests()
}

/// An anonymous registration from `addr`.
fn anyone(addr: &str) -> Registrant {
    Registrant {
        addr: addr.parse().unwrap(),
        trusted: false,
        email_verified: false,
    }
}

fn from(addr: &str) -> Attempt {
    Attempt {
        addr: addr.parse().unwrap(),
        now: T0,
    }
}

/// A database holding one account, alice@example.com with `password`.
fn db_with_alice(id: Uuid, password: &str) -> MockDurableStore {
    let hash = crate::clients::hash_secret(password.as_bytes()).unwrap();
    let mut db = MockDurableStore::new();
    db.expect_user_by_email().returning(move |email| {
        Ok((email == "alice@example.com").then(|| UserLogin {
            id,
            password_hash: hash.clone(),
            email_verified: false,
        }))
    });
    db
}

#[tokio::test]
async fn registration_stores_a_normalized_email_a_hash_and_its_event() {
    let users = users_with(5, 100);
    let written = Arc::new(Mutex::new(None));
    let mut db = MockDurableStore::new();
    let sink = written.clone();
    db.expect_create_user()
        .times(1)
        .returning(move |user, event| {
            *sink.lock().unwrap() = Some((user.clone(), event.clone()));
            Ok(())
        });
    let id = users
        .register(
            &db,
            &sessions(),
            "  Alice@Example.COM ",
            "correct horse",
            anyone("192.0.2.1"),
            T0,
        )
        .await
        .unwrap();
    let (user, event) = written.lock().unwrap().take().unwrap();
    assert_eq!(user.id, id);
    assert_eq!(user.email, "alice@example.com");
    assert_eq!(user.created_at, T0);
    assert!(!user.email_verified, "self-registered: not verified");
    assert!(!user.password_hash.contains("correct horse"));
    let hash = parse_secret_hash(&user.password_hash).unwrap();
    assert_eq!(
        users.verifier.verify(b"correct horse".to_vec(), hash).await,
        Ok(true)
    );
    assert_eq!(event.kind, "UserRegistered");
    assert_eq!(event.subject, id.to_string(), "about the user");
    assert_eq!(event.id.get_version_num(), 7);
    let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
    assert_eq!(payload["user_id"], id.to_string());
    assert_eq!(payload["email"], "alice@example.com");
    assert_eq!(payload["registered_at"], "2027-01-15T08:00:00.000Z");
}

#[tokio::test]
async fn refused_registrations_write_nothing_and_hash_nothing() {
    let users = users_with(5, 100);
    let mut db = MockDurableStore::new();
    db.expect_create_user().never();
    for (email, password) in [
        ("not-an-email", "correct horse"),
        ("alice\0@example.com", "correct horse"),
        ("alice@example.com", "short"),
        ("alice@example.com", "password123"),
    ] {
        let refused = users
            .register(&db, &sessions(), email, password, anyone("192.0.2.1"), T0)
            .await;
        assert!(
            matches!(
                refused,
                Err(UserError::InvalidEmail(_) | UserError::InvalidPassword(_))
            ),
            "{email:?} / {password:?}: {refused:?}"
        );
    }
    let huge = "x".repeat(crate::config::MAX_PASSWORD_BYTES + 1);
    assert!(matches!(
        users
            .register(
                &db,
                &sessions(),
                "alice@example.com",
                &huge,
                anyone("192.0.2.1"),
                T0
            )
            .await,
        Err(UserError::InvalidPassword(_))
    ));
    assert_eq!(users.verifier.runs().get(), 0);
}

#[tokio::test]
async fn a_taken_email_is_email_taken() {
    let users = users_with(5, 100);
    let mut db = MockDurableStore::new();
    db.expect_create_user()
        .returning(|_, _| Err(DbError::EmailTaken));
    assert!(matches!(
        users
            .register(
                &db,
                &sessions(),
                "alice@example.com",
                "correct horse",
                anyone("192.0.2.1"),
                T0
            )
            .await,
        Err(UserError::EmailTaken)
    ));
}

#[tokio::test]
async fn registrations_are_limited_per_address_unless_a_trusted_client_vouches() {
    let users = Users::new(
        &UserSettings {
            registrations_per_address: 2,
            ..UserSettings::default()
        },
        Throttle::for_users(&UserSettings::default(), &Default::default()),
        Arc::new(Verifier::new(2, 16, std::time::Duration::from_secs(10))),
    )
    .unwrap();
    let store = sessions();
    let mut db = MockDurableStore::new();
    let made = Arc::new(Mutex::new(Vec::new()));
    let sink = made.clone();
    db.expect_create_user().returning(move |user, _| {
        sink.lock().unwrap().push(user.email_verified);
        Ok(())
    });
    let register = |email: &'static str, by: Registrant| {
        let (users, db, store) = (&users, &db, &store);
        async move {
            users
                .register(db, store, email, "correct horse", by, T0)
                .await
        }
    };
    assert!(register("a@example.com", anyone("192.0.2.1")).await.is_ok());
    assert!(register("b@example.com", anyone("192.0.2.1")).await.is_ok());
    let runs = users.verifier.runs().get();
    assert!(matches!(
        register("c@example.com", anyone("192.0.2.1")).await,
        Err(UserError::Throttled(s)) if s == 3600
    ));
    assert_eq!(users.verifier.runs().get(), runs, "refused before hashing");
    assert!(register("c@example.com", anyone("192.0.2.2")).await.is_ok());
    let backend = Registrant {
        trusted: true,
        email_verified: true,
        ..anyone("192.0.2.1")
    };
    assert!(register("d@example.com", backend).await.is_ok());
    // Only a trusted client's word makes an email verified.
    let claimed = Registrant {
        email_verified: true,
        ..anyone("192.0.2.3")
    };
    assert!(register("e@example.com", claimed).await.is_ok());
    assert_eq!(*made.lock().unwrap(), [false, false, false, true, false]);
}

#[tokio::test]
async fn the_right_password_logs_in_with_any_case_of_the_email() {
    let (users, store) = (users_with(5, 100), sessions());
    let id = Uuid::new_v4();
    let db = db_with_alice(id, "correct horse");
    let got = users
        .login(
            &db,
            &store,
            " ALICE@example.com",
            "correct horse",
            from("192.0.2.1"),
        )
        .await
        .unwrap();
    assert_eq!(got.id, id);
    assert_eq!(got.email, "alice@example.com", "as stored: normalized");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_cost_the_same_and_answer_the_same() {
    let (users, store) = (users_with(5, 100), sessions());
    let db = db_with_alice(Uuid::new_v4(), "correct horse");
    for email in ["alice@example.com", "nobody@example.com", "not an email"] {
        let before = users.verifier.runs().get();
        let refused = users
            .login(&db, &store, email, "wrong horse", from("192.0.2.1"))
            .await;
        assert!(
            matches!(refused, Err(UserError::InvalidCredentials)),
            "{email}"
        );
        assert_eq!(
            users.verifier.runs().get(),
            before + 1,
            "{email}: one argon2 run"
        );
    }
}

#[tokio::test]
async fn a_distributed_attack_closes_the_account_without_hashing_or_reading_the_database() {
    let (users, store) = (users_with(5, 3), sessions());
    let id = Uuid::new_v4();
    let db = db_with_alice(id, "correct horse");
    for i in 0..3 {
        let addr = format!("192.0.2.{i}"); // a new address each time
        let refused = users
            .login(&db, &store, "alice@example.com", "guess", from(&addr))
            .await;
        assert!(matches!(refused, Err(UserError::InvalidCredentials)));
    }
    let mut untouched = MockDurableStore::new();
    untouched.expect_user_by_email().never();
    let runs = users.verifier.runs().get();
    let throttled = users
        .login(
            &untouched,
            &store,
            "alice@example.com",
            "correct horse",
            from("198.51.100.7"),
        )
        .await;
    assert!(matches!(throttled, Err(UserError::Throttled(s)) if s == 300));
    assert_eq!(users.verifier.runs().get(), runs);
}

#[tokio::test]
async fn guesses_lock_out_their_own_address_only() {
    let (users, store) = (users_with(2, 100), sessions());
    let id = Uuid::new_v4();
    let db = db_with_alice(id, "correct horse");
    let nat = "192.0.2.1";
    for _ in 0..2 {
        let _ = users
            .login(&db, &store, "alice@example.com", "guess", from(nat))
            .await;
    }
    assert!(matches!(
        users
            .login(&db, &store, "alice@example.com", "correct horse", from(nat))
            .await,
        Err(UserError::Throttled(_))
    ));
    let elsewhere = users
        .login(
            &db,
            &store,
            "alice@example.com",
            "correct horse",
            from("192.0.2.2"),
        )
        .await;
    assert_eq!(elsewhere.unwrap().id, id);
}

#[tokio::test]
async fn made_up_emails_from_a_shared_address_never_lock_out_a_real_user_there() {
    let (users, store) = (users_with(5, 100), sessions());
    let id = Uuid::new_v4();
    let db = db_with_alice(id, "correct horse");
    let nat = "192.0.2.1";
    for i in 0..20 {
        let email = format!("nobody{i}@example.com");
        let refused = users.login(&db, &store, &email, "guess", from(nat)).await;
        assert!(matches!(refused, Err(UserError::InvalidCredentials)));
    }
    let alice = users
        .login(&db, &store, "alice@example.com", "correct horse", from(nat))
        .await;
    assert_eq!(alice.unwrap().id, id);
}

#[tokio::test]
async fn unknown_accounts_are_counted_too() {
    // A 429 that only real accounts earned would tell which emails exist.
    let (users, store) = (users_with(5, 2), sessions());
    let db = db_with_alice(Uuid::new_v4(), "correct horse");
    for (email, addr) in [
        ("ghost@example.com", "192.0.2.1"),
        ("ghost@example.com", "192.0.2.2"),
    ] {
        let _ = users.login(&db, &store, email, "guess", from(addr)).await;
    }
    assert!(matches!(
        users
            .login(&db, &store, "ghost@example.com", "guess", from("192.0.2.3"))
            .await,
        Err(UserError::Throttled(_))
    ));
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_not_a_refusal() {
    let (users, store) = (users_with(5, 100), sessions());
    let mut db = MockDurableStore::new();
    db.expect_user_by_email()
        .with(eq("alice@example.com"))
        .returning(|_| Err(DbError::Unavailable("connection refused".into())));
    assert!(matches!(
        users
            .login(
                &db,
                &store,
                "alice@example.com",
                "correct horse",
                from("192.0.2.1")
            )
            .await,
        Err(UserError::Database(DbError::Unavailable(_)))
    ));
}

#[test]
fn the_dummy_hash_costs_what_a_registration_hash_costs() {
    let dummy = parse_secret_hash(DUMMY_HASH).unwrap();
    let params = argon2::Params::try_from(&dummy).unwrap();
    let default = argon2::Params::default();
    assert_eq!(
        (params.m_cost(), params.t_cost(), params.p_cost()),
        (default.m_cost(), default.t_cost(), default.p_cost())
    );
}
