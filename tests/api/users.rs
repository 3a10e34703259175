//! Users and passwords (SPEC §7): `/register`, email + password `/login`,
//! failed-login throttling shared by replicas, and the `UserRegistered`
//! events that reach the Redis stream `tg:events` even across a Redis outage.
//! Every scenario runs on SQLite and on a real PostgreSQL.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use deadpool_redis::redis;
use futures_util::future::join_all;
use http::Method;
use serde_json::{Value, json};
use tokengate::config::{LoginClient, Registration, Settings};
use tokengate::db::{Database, DurableStore};

use crate::helpers::{Backend, Cluster, Db, Pair, Replica, eventually};
use crate::on_both_databases;
use crate::support::client::{Reply, request};
use crate::support::postgres::PostgresServer;

on_both_databases!(
    a_registered_user_logs_in_on_one_replica_and_is_known_on_the_other,
    emails_are_unique_whatever_their_case_and_spacing,
    sixteen_concurrent_registrations_of_one_email_create_one_user,
    weak_passwords_and_malformed_emails_are_refused_naming_the_rule,
    hostile_input_gets_a_json_4xx_and_writes_nothing,
    unknown_email_and_wrong_password_are_answered_alike,
    failed_logins_are_throttled_on_every_replica,
    closed_registration_is_for_trusted_login_clients,
    registrations_reach_the_event_stream,
    a_registration_is_logged_before_the_users_first_login,
    events_written_while_redis_is_down_arrive_after_it_returns,
);

const PASSWORD: &str = "correct horse battery";

async fn register(replica: &Replica, email: &str, password: &str) -> Reply {
    replica
        .post_json(
            "/register",
            &json!({ "email": email, "password": password }),
        )
        .await
}

async fn password_login(replica: &Replica, email: &str, password: &str) -> Reply {
    replica
        .post_json("/login", &json!({ "email": email, "password": password }))
        .await
}

/// A cluster of `replicas` on Redis and the database `db`.
async fn cluster(db: Db, replicas: usize, configure: impl FnOnce(&mut Settings)) -> Cluster {
    Cluster::start_with(Backend::Redis, replicas, |s| {
        db.configure(s);
        s.events.relay_interval = Duration::from_millis(100);
        configure(s);
    })
    .await
}

/// The cluster's database, as a second process would open it.
async fn database(c: &Cluster) -> Database {
    Database::open(&c.settings.database).expect("open the cluster's database")
}

async fn a_registered_user_logs_in_on_one_replica_and_is_known_on_the_other(db: Db) {
    let c = cluster(db, 2, |_| {}).await;
    let created = register(c.a(), "alice@example.com", PASSWORD).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let user_id = created.field("user_id");
    assert!(uuid::Uuid::parse_str(&user_id).is_ok(), "{user_id}");

    let login = password_login(c.b(), "Alice@Example.com", PASSWORD).await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    let pair = Pair::from_reply(&login);
    assert_eq!(pair.claims()["sub"], user_id.as_str());
    let seen = c.a().authenticate(&pair.access).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.header("x-user-id"), Some(user_id.as_str()));
    // The pair is an ordinary session: it refreshes and logs out anywhere.
    let next = c.a().refresh(&pair.refresh).await;
    assert_eq!(next.status, 200, "{:?}", next.body);
    let next = Pair::from_reply(&next);
    assert_eq!(c.b().logout(&next.access).await.status, 200);
    assert!(!c.a().accepts(&next.access).await);
}

async fn emails_are_unique_whatever_their_case_and_spacing(db: Db) {
    let c = cluster(db, 2, |_| {}).await;
    assert_eq!(
        register(c.a(), "bob@example.com", PASSWORD).await.status,
        201
    );
    for again in ["bob@example.com", "  BOB@Example.COM\t", "Bob@example.com"] {
        let reply = register(c.b(), again, "another good password").await;
        assert_eq!(reply.status, 409, "{again:?}: {:?}", reply.body);
        assert_eq!(reply.error(), "email_taken");
    }
    // The first password is still the one that works.
    assert_eq!(
        password_login(c.a(), "bob@example.com", PASSWORD)
            .await
            .status,
        200
    );
    let refused = password_login(c.a(), "bob@example.com", "another good password").await;
    assert_eq!(refused.status, 401);
}

async fn sixteen_concurrent_registrations_of_one_email_create_one_user(db: Db) {
    let c = cluster(db, 2, |s| s.throttle.hash_queue = 64).await;
    let attempts = (0..16).map(|i| {
        let replica = if i % 2 == 0 { c.a() } else { c.b() };
        let password = format!("password number {i}");
        async move { register(replica, "carol@example.com", &password).await }
    });
    let replies = join_all(attempts).await;
    let created: Vec<&Reply> = replies.iter().filter(|r| r.status == 201).collect();
    assert_eq!(
        created.len(),
        1,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for reply in replies.iter().filter(|r| r.status != 201) {
        assert_eq!(reply.status, 409, "{:?}", reply.body);
        assert_eq!(reply.error(), "email_taken");
    }
    // Exactly one event, for the one user.
    let id = created[0].field("user_id");
    let db = database(&c).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            db.pending_events().await.unwrap() == 0 && stream(&c).len() == 1
        })
        .await
    );
    assert_eq!(stream(&c)[0]["data"]["user_id"], id.as_str());
}

async fn weak_passwords_and_malformed_emails_are_refused_naming_the_rule(db: Db) {
    let c = cluster(db, 1, |s| s.users.password_min = 10).await;
    let short = register(c.a(), "dave@example.com", "ninechars").await;
    assert_eq!(short.status, 400);
    assert_eq!(short.error(), "invalid_password");
    assert!(
        short.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("at least 10 characters")
    );
    let common = register(c.a(), "dave@example.com", "password123").await;
    assert_eq!(common.error(), "invalid_password");
    let long = register(c.a(), "dave@example.com", &"x".repeat(1025)).await;
    assert_eq!(long.error(), "invalid_password");
    assert!(
        long.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("1024 bytes")
    );
    let email = register(c.a(), "dave at example.com", PASSWORD).await;
    assert_eq!(email.status, 400);
    assert_eq!(email.error(), "invalid_email");
    // None of it created the account.
    assert_eq!(
        register(c.a(), "dave@example.com", PASSWORD).await.status,
        201
    );
}

async fn hostile_input_gets_a_json_4xx_and_writes_nothing(db: Db) {
    // No Redis relay here: every event written would stay in the outbox.
    let c = Cluster::start_with(Backend::Memory, 1, |s| db.configure(s)).await;
    let huge_email = format!("{}@example.com", "a".repeat(10_000));
    // Over the 16 KiB limit, and small enough to sit in the socket's buffer
    // whole: the 413 comes before the body is read, and a client still
    // writing a megabyte would get a broken pipe instead of the answer.
    let oversized = "p".repeat(17 * 1024);
    let bodies: Vec<(Value, u16)> = vec![
        (json!({"email": huge_email, "password": PASSWORD}), 400),
        (
            json!({"email": "eve\u{0}@example.com", "password": PASSWORD}),
            400,
        ),
        (
            json!({"email": "ève@exämple.com", "password": PASSWORD}),
            400,
        ),
        (
            json!({"email": "eve@example.com\u{202e}", "password": PASSWORD}),
            400,
        ),
        (
            json!({"email": "eve@example.com", "password": oversized}),
            413,
        ),
        (json!({"email": 42, "password": PASSWORD}), 400),
        (json!({"email": "eve@example.com"}), 400),
        (
            json!({"email": ["eve@example.com"], "password": PASSWORD}),
            400,
        ),
        (json!("eve@example.com"), 400),
    ];
    for (body, status) in bodies {
        for path in ["/register", "/login"] {
            let reply = c.a().post_json(path, &body).await;
            let expected = if path == "/login"
                && status == 400
                && body["email"].is_string()
                && body["password"].is_string()
            {
                401 // a malformed address is simply not an account
            } else {
                status
            };
            assert_eq!(
                reply.status,
                expected,
                "{path} {:.80}: {:?}",
                body.to_string(),
                reply.body
            );
            assert!(!reply.error().is_empty());
        }
    }
    let raw = c
        .a()
        .send(
            request(Method::POST, "/register")
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    b"{\"email\":\"eve@example.com\",\"password\":\"\xff\xfe bad utf-8\"}",
                )))
                .unwrap(),
        )
        .await;
    assert_eq!(raw.status, 400, "{:?}", raw.body);
    let db = database(&c).await;
    assert_eq!(db.pending_events().await.unwrap(), 0, "no user, no event");
    assert_eq!(db.user_by_email("eve@example.com").await.unwrap(), None);
}

async fn unknown_email_and_wrong_password_are_answered_alike(db: Db) {
    let c = cluster(db, 1, |_| {}).await;
    assert_eq!(
        register(c.a(), "frank@example.com", PASSWORD).await.status,
        201
    );
    let mut answers = Vec::new();
    for email in ["frank@example.com", "nobody@example.com"] {
        let before = c.a().verifications().await;
        let reply = password_login(c.a(), email, "not the password").await;
        assert_eq!(reply.status, 401, "{email}");
        // The same work: one argon2 verification either way.
        assert_eq!(c.a().verifications().await, before + 1, "{email}");
        answers.push((
            reply.json(),
            reply.header("www-authenticate").map(str::to_owned),
        ));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0["error"], "invalid_credentials");
}

async fn failed_logins_are_throttled_on_every_replica(db: Db) {
    let c = cluster(db, 2, |s| s.users.max_failures = 3).await;
    assert_eq!(
        register(c.a(), "grace@example.com", PASSWORD).await.status,
        201
    );
    for i in 0..3 {
        let replica = if i % 2 == 0 { c.a() } else { c.b() };
        assert_eq!(
            password_login(replica, "grace@example.com", "guess")
                .await
                .status,
            401
        );
    }
    // The other replica knows, and refuses even the right password, unhashed.
    let before = c.b().verifications().await;
    let throttled = password_login(c.b(), "grace@example.com", PASSWORD).await;
    assert_eq!(throttled.status, 429, "{:?}", throttled.body);
    assert_eq!(throttled.error(), "too_many_attempts");
    let wait: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=300).contains(&wait), "Retry-After {wait}");
    assert_eq!(c.b().verifications().await, before, "no hash ran");
    // Sessions of trusted clients are not users: they still log in.
    assert_eq!(
        c.a()
            .post_json("/login", &json!({"user_id": "svc"}))
            .await
            .status,
        200
    );
}

fn web_client() -> LoginClient {
    LoginClient {
        id: "web".into(),
        secret_hash: tokengate::clients::hash_secret(b"web-secret").unwrap(),
        ..LoginClient::default()
    }
}

async fn closed_registration_is_for_trusted_login_clients(db: Db) {
    let c = cluster(db, 1, |s| {
        s.users.registration = Registration::Closed;
        s.login.clients = vec![web_client()];
        s.login.open = false;
    })
    .await;
    let anonymous = register(c.a(), "heidi@example.com", PASSWORD).await;
    assert_eq!(anonymous.status, 401, "{:?}", anonymous.body);
    assert_eq!(anonymous.error(), "invalid_client");
    let body = json!({"email": "heidi@example.com", "password": PASSWORD});
    let trusted = c
        .a()
        .send(
            request(Method::POST, "/register")
                .header("content-type", "application/json")
                .header(
                    "authorization",
                    format!("Basic {}", STANDARD.encode("web:web-secret")),
                )
                .body(crate::support::client::json_body(&body))
                .unwrap(),
        )
        .await;
    assert_eq!(trusted.status, 201, "{:?}", trusted.body);
    // Password login needs no client: the password is the credential.
    assert_eq!(
        password_login(c.a(), "heidi@example.com", PASSWORD)
            .await
            .status,
        200
    );
}

/// The entries of `tg:events`, oldest first, with `data` parsed.
fn stream(c: &Cluster) -> Vec<Value> {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("tg:events")
        .arg("-")
        .arg("+")
        .query(&mut c.redis().connection())
        .unwrap_or_default();
    entries
        .into_iter()
        .map(|(_, fields)| {
            let mut entry = serde_json::Map::new();
            for (name, value) in fields {
                let value = if name == "data" {
                    serde_json::from_str(&value).expect("data is JSON")
                } else {
                    Value::String(value)
                };
                entry.insert(name, value);
            }
            Value::Object(entry)
        })
        .collect()
}

async fn registrations_reach_the_event_stream(db: Db) {
    let c = cluster(db, 2, |_| {}).await;
    let id = register(c.a(), " Ivan@Example.com ", PASSWORD)
        .await
        .field("user_id");
    // The request ran a relay round before it answered: the event is in
    // the stream already.
    let events = stream(&c);
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["type"], "UserRegistered");
    assert_eq!(event["subject"], id.as_str(), "about the user");
    assert_eq!(event["version"], "1");
    assert!(uuid::Uuid::parse_str(event["id"].as_str().unwrap()).is_ok());
    assert_eq!(event["data"]["user_id"], id.as_str());
    assert_eq!(event["data"]["email"], "ivan@example.com");
    let at = event["data"]["registered_at"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(at).is_ok(), "{at}");
    assert!(event["created_at"].as_str().unwrap().parse::<u64>().is_ok());
    // The relay deletes the event right after the stream took it, in the
    // same transaction: a moment after it appears there, not before.
    let db = database(&c).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            db.pending_events().await.unwrap() == 0
        })
        .await,
        "the outbox keeps a delivered event"
    );
}

/// Order per subject: a user's UserRegistered is in the log when
/// `/register` answers, so before anything that user's login appends
/// (`UserLoggedIn`, which the login script writes directly).
async fn a_registration_is_logged_before_the_users_first_login(db: Db) {
    let c = cluster(db, 2, |_| {}).await;
    let id = register(c.b(), "judy@example.com", PASSWORD)
        .await
        .field("user_id");
    let login = password_login(c.a(), "judy@example.com", PASSWORD).await;
    assert_eq!(login.status, 200, "{:?}", login.body);

    let about_judy: Vec<String> = stream(&c)
        .iter()
        .filter(|e| e["subject"] == id.as_str())
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        about_judy.first().map(String::as_str),
        Some("UserRegistered"),
        "{about_judy:?}"
    );
    assert_eq!(
        about_judy.iter().filter(|t| *t == "UserRegistered").count(),
        1
    );
}

async fn events_written_while_redis_is_down_arrive_after_it_returns(db: Db) {
    let mut c = cluster(db, 2, |_| {}).await;
    c.redis_mut().kill();
    let mut ids = Vec::new();
    for i in 0..6 {
        let replica = if i % 2 == 0 { c.a() } else { c.b() };
        // Registration needs the database only.
        let reply = register(replica, &format!("user{i}@example.com"), PASSWORD).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        ids.push(reply.field("user_id"));
    }
    let db = database(&c).await;
    assert_eq!(db.pending_events().await.unwrap(), 6, "kept in the outbox");
    c.redis_mut().restart();
    assert!(
        eventually(Duration::from_secs(15), || async {
            db.pending_events().await.unwrap() == 0
        })
        .await,
        "the relay empties the outbox"
    );
    let mut delivered: Vec<String> = stream(&c)
        .iter()
        .map(|e| e["data"]["user_id"].as_str().unwrap().to_owned())
        .collect();
    delivered.sort();
    ids.sort();
    // Two relays took turns; without a crash, nothing arrives twice.
    assert_eq!(delivered, ids, "every event arrived, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_is_503_for_users_while_sessions_go_on() {
    let postgres = PostgresServer::start();
    let url = postgres.create_database();
    let c = Cluster::start_with(Backend::Redis, 2, |s| {
        s.database.url = tokengate::config::Secret::new(url);
        s.database.timeout = Duration::from_millis(500);
    })
    .await;
    assert_eq!(
        register(c.a(), "judy@example.com", PASSWORD).await.status,
        201
    );
    let pair = Pair::from_reply(&password_login(c.a(), "judy@example.com", PASSWORD).await);

    postgres.stop();
    let started = std::time::Instant::now();
    for reply in [
        register(c.b(), "ken@example.com", PASSWORD).await,
        password_login(c.b(), "judy@example.com", PASSWORD).await,
    ] {
        assert_eq!(reply.status, 503, "{:?}", reply.body);
        assert_eq!(reply.error(), "temporarily_unavailable");
        assert_eq!(reply.header("retry-after"), Some("1"));
    }
    assert!(started.elapsed() < Duration::from_secs(5), "fails fast");
    // Sessions never touch the database.
    assert!(c.b().accepts(&pair.access).await);
    let next = c.a().refresh(&pair.refresh).await;
    assert_eq!(next.status, 200, "{:?}", next.body);
    assert_eq!(
        c.a()
            .post_json("/login", &json!({"user_id": "svc"}))
            .await
            .status,
        200
    );

    postgres.restart();
    assert!(
        eventually(Duration::from_secs(15), || async {
            password_login(c.b(), "judy@example.com", PASSWORD)
                .await
                .status
                == 200
        })
        .await,
        "recovers without a restart"
    );
    assert_eq!(
        register(c.b(), "ken@example.com", PASSWORD).await.status,
        201
    );
}
