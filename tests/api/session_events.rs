//! SPEC §14: the session events born in Redis land in the events stream
//! (`tg:events`) atomically with their cause — `UserLoggedIn` at a login,
//! `SessionEnded` with its reason at every end (logout, logout_all, admin,
//! reuse, idle, max_session, evicted) — and `LoginFailed` at a refused
//! password login, never with the password. Read back with `XRANGE`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use deadpool_redis::redis;
use http::Method;
use serde_json::{Value, json};
use tokengate::config::Settings;
use uuid::Uuid;

use crate::helpers::{Backend, Cluster, Pair};
use crate::support::client;

const ADMIN_TOKEN: &str = "admin-token-for-the-session-events-tests";
const PASSWORD: &str = "correct horse battery";

/// One entry of the stream: its fields, in order.
type Entry = Vec<(String, String)>;

fn entries(c: &Cluster) -> Vec<Entry> {
    let mut xrange = redis::cmd("XRANGE");
    xrange.arg(&c.settings.events.stream).arg("-").arg("+");
    let reply: Vec<(String, Vec<(String, String)>)> = match &c.redis_cluster {
        Some(cluster) => cluster.route(&xrange),
        None => xrange.query(&mut c.redis().connection()),
    }
    .unwrap();
    reply.into_iter().map(|(_, fields)| fields).collect()
}

fn field<'a>(entry: &'a Entry, name: &str) -> &'a str {
    entry
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {entry:?}"))
}

fn data(entry: &Entry) -> Value {
    serde_json::from_str(field(entry, "data")).unwrap()
}

/// The `SessionEnded` of `sid`, if logged.
fn ended_of(c: &Cluster, sid: &str) -> Option<Entry> {
    entries(c)
        .into_iter()
        .find(|e| field(e, "type") == "SessionEnded" && data(e)["sid"] == sid)
}

fn sid(pair: &Pair) -> String {
    pair.claims()["sid"].as_str().unwrap().to_owned()
}

fn settings(s: &mut Settings) {
    s.admin.token_hash = tokengate::clients::hash_secret(ADMIN_TOKEN.as_bytes()).unwrap();
    s.auth.refresh_grace = Duration::ZERO;
}

async fn reason_of(c: &Cluster, pair: &Pair) -> String {
    let entry = ended_of(c, &sid(pair)).expect("a SessionEnded");
    assert_eq!(field(&entry, "subject"), pair.claims()["sub"]);
    let d = data(&entry);
    assert_eq!(d["sub"], pair.claims()["sub"], "{d}");
    d["reason"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_every_end_are_events_with_their_reason() {
    let c = Cluster::start_with(Backend::Redis, 2, settings).await;
    let one = c.a().login(json!("ada")).await;
    let entries_now = entries(&c);
    let login = entries_now.last().unwrap();
    let names: Vec<&str> = login.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "type",
            "version",
            "subject",
            "occurred_at",
            "data",
            "created_at"
        ]
    );
    assert_eq!(field(login, "type"), "UserLoggedIn");
    assert_eq!(field(login, "version"), "1");
    assert_eq!(field(login, "subject"), "ada");
    assert_eq!(field(login, "occurred_at"), field(login, "created_at"));
    assert_eq!(
        data(login),
        json!({"sid": sid(&one), "client_id": null, "scope": null})
    );

    // logout
    assert_eq!(c.b().logout(&one.access).await.status, 200);
    assert_eq!(reason_of(&c, &one).await, "logout");

    // logout everywhere
    let (two, three) = (
        c.a().login(json!("bob")).await,
        c.b().login(json!("bob")).await,
    );
    let all = client::request(Method::POST, "/logout")
        .header("authorization", format!("Bearer {}", two.access))
        .header("content-type", "application/json")
        .body(client::json_body(&json!({"all": true})))
        .unwrap();
    assert_eq!(client::send(c.a().addr, all).await.status, 200);
    assert_eq!(reason_of(&c, &two).await, "logout_all");
    assert_eq!(reason_of(&c, &three).await, "logout_all");

    // an operator
    let four = c.a().login(json!("cyd")).await;
    let reply = client::with_bearer(
        c.b().admin_addr,
        Method::POST,
        "/admin/users/cyd/logout",
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reason_of(&c, &four).await, "admin");

    // refresh-token reuse
    let five = c.a().login(json!("dan")).await;
    assert_eq!(c.b().refresh(&five.refresh).await.status, 200);
    assert_eq!(c.a().refresh(&five.refresh).await.status, 401);
    assert_eq!(reason_of(&c, &five).await, "reuse");

    // DELETE /sessions/{sid} by its owner
    let (six, seven) = (
        c.a().login(json!("eve")).await,
        c.a().login(json!("eve")).await,
    );
    let path = format!("/sessions/{}", sid(&seven));
    let reply = client::with_bearer(c.b().addr, Method::DELETE, &path, &six.access).await;
    assert!(reply.status.is_success(), "{:?}", reply.body);
    assert_eq!(reason_of(&c, &seven).await, "logout");

    // Every entry has a distinct uuid v7 id.
    let all = entries(&c);
    let ids: HashSet<&str> = all.iter().map(|e| field(e, "id")).collect();
    assert_eq!(ids.len(), all.len());
    for id in ids {
        assert_eq!(Uuid::parse_str(id).unwrap().get_version_num(), 7, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_past_the_cap_ends_the_oldest_as_evicted() {
    let c = Cluster::start_with(Backend::Redis, 1, |s| s.auth.max_sessions_per_user = 1).await;
    let first = c.a().login(json!("ada")).await;
    let _second = c.a().login(json!("ada")).await;
    assert_eq!(reason_of(&c, &first).await, "evicted");
}

/// Waits up to `within` for the `SessionEnded` of `pair`; its reason.
async fn reason_within(c: &Cluster, pair: &Pair, within: Duration) -> String {
    let start = Instant::now();
    loop {
        if ended_of(c, &sid(pair)).is_some() {
            return reason_of(c, pair).await;
        }
        assert!(start.elapsed() < within, "no SessionEnded after {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiries_are_idle_or_max_session_ends_within_two_seconds() {
    expiries_are_idle_or_max_session_ends(Backend::Redis).await;
}

/// On a cluster the sweep spans slots (store/redis/feed.rs): the same ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_expiries_are_idle_or_max_session_ends_too() {
    expiries_are_idle_or_max_session_ends(Backend::RedisCluster).await;
}

async fn expiries_are_idle_or_max_session_ends(backend: Backend) {
    let c = Cluster::start_with(backend, 2, |s| {
        s.auth.auto_logout = Duration::from_secs(1);
        s.auth.access_lifetime = Duration::from_secs(2);
        s.auth.max_session = Duration::from_secs(3);
    })
    .await;
    let idle = c.a().login(json!("ada")).await;
    let kept = c.b().login(json!("bob")).await;
    // `kept` stays active until its absolute end; `idle` does nothing.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2_700) {
        c.a().accepts(&kept.access).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Idle after 1 s: logged by now, within 2 s of its expiry.
    assert_eq!(
        reason_within(&c, &idle, Duration::ZERO).await,
        "idle",
        "ended within about 1.7 s of its expiry"
    );
    assert!(ended_of(&c, &sid(&kept)).is_none(), "still live");
    assert_eq!(
        reason_within(&c, &kept, Duration::from_millis(2_300)).await,
        "max_session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_password_login_is_logged_without_the_password() {
    let c = Cluster::start_with(Backend::Redis, 1, |s| s.users.max_failures = 2).await;
    let reply = c
        .a()
        .post_json(
            "/register",
            &json!({"email": "grace@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let user = reply.json()["user_id"].as_str().map(str::to_owned);
    let a = c.a();
    let login = |email: &'static str, password: &'static str| async move {
        a.post_json("/login", &json!({"email": email, "password": password}))
            .await
            .status
    };
    assert_eq!(login("Grace@Example.com", "wrong horse battery").await, 401);
    assert_eq!(
        login("nobody@example.com", "wrong horse battery").await,
        401
    );
    assert_eq!(login("grace@example.com", "wrong horse battery").await, 401);
    assert_eq!(login("grace@example.com", PASSWORD).await, 429);
    let failed: Vec<Entry> = entries(&c)
        .into_iter()
        .filter(|e| field(e, "type") == "LoginFailed")
        .collect();
    let seen: Vec<(String, Value)> = failed
        .iter()
        .map(|e| (field(e, "subject").to_owned(), data(e)))
        .collect();
    let grace = user.unwrap_or_else(|| seen[0].0.clone());
    let address = "127.0.0.1";
    assert_eq!(
        seen,
        [
            (
                grace.clone(),
                json!({"email": "grace@example.com", "reason": "wrong_password", "address": address})
            ),
            (
                "nobody@example.com".into(),
                json!({"email": "nobody@example.com", "reason": "unknown_email", "address": address})
            ),
            (
                grace.clone(),
                json!({"email": "grace@example.com", "reason": "wrong_password", "address": address})
            ),
            (
                // A refusal reads no database: about the email.
                "grace@example.com".into(),
                json!({"email": "grace@example.com", "reason": "throttled", "address": address})
            ),
        ]
    );
    for entry in &failed {
        for (_, value) in entry {
            assert!(!value.contains("horse"), "{entry:?}");
        }
    }
}
