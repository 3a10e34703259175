//! Floods of bad credentials (the hardening issue): failed client
//! authentications are counted per (client id, address) and per address in
//! the store — shared by replicas — and refused with `429` before any argon2
//! work; the argon2 queue is bounded and answers `503` fast;
//! `X-Forwarded-For` is believed only from `server.trusted_proxies`. That no
//! address locks out another is `lockout.rs`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::future::join_all;
use http::Method;
use serde_json::json;
use tokengate::config::{LoginClient, Settings};

use crate::helpers::{Backend, Cluster, Replica};
use crate::support::client::{Reply, json_body, request};
use crate::{on_both_stores, on_redis_cluster};

on_both_stores!(
    failures_are_throttled_before_hashing_on_every_replica,
    a_remembered_client_is_served_through_a_flood,
    forwarded_for_counts_only_from_trusted_proxies,
    a_full_hash_queue_answers_503_fast,
);

on_redis_cluster!(failures_are_throttled_before_hashing_on_every_replica);

const SECRET: &str = "web-client-secret";

fn login_client() -> LoginClient {
    static HASH: OnceLock<String> = OnceLock::new();
    LoginClient {
        id: "web".into(),
        secret_hash: HASH
            .get_or_init(|| tokengate::clients::hash_secret(SECRET.as_bytes()).unwrap())
            .clone(),
        ..LoginClient::default()
    }
}

fn guarded(settings: &mut Settings) {
    settings.login.clients = vec![login_client()];
    settings.login.open = false;
    settings.throttle.max_failures = 3;
    settings.throttle.max_failures_per_address = 5;
}

/// `/login` as client `id` with `secret`, claiming to come from `forwarded`.
async fn login(replica: &Replica, id: &str, secret: &str, forwarded: Option<&str>) -> Reply {
    let credentials = STANDARD.encode(format!("{id}:{secret}"));
    let mut builder = request(Method::POST, "/login")
        .header("content-type", "application/json")
        .header("authorization", format!("Basic {credentials}"));
    if let Some(addr) = forwarded {
        builder = builder.header("x-forwarded-for", addr);
    }
    replica
        .send(builder.body(json_body(&json!({"user_id": "u"}))).unwrap())
        .await
}

fn assert_throttled(reply: &Reply) {
    assert_eq!(reply.status, 429, "{:?}", reply.body);
    assert_eq!(reply.error(), "too_many_attempts");
    let wait: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=300).contains(&wait), "Retry-After {wait}");
}

async fn failures_are_throttled_before_hashing_on_every_replica(backend: Backend) {
    let c = Cluster::start_with(backend, 2, guarded).await;
    for _ in 0..3 {
        assert_eq!(login(c.a(), "web", "guess", None).await.status, 401);
    }
    // The other replica sees the same count, and answers without argon2.
    let hashed = c.b().verifications().await;
    assert_throttled(&login(c.b(), "web", "guess", None).await);
    assert_eq!(c.b().verifications().await, hashed, "no hash ran");
    // Unknown ids from the same address count for the address: two more
    // reach its limit of five.
    for _ in 0..2 {
        assert_eq!(login(c.b(), "ghost", "x", None).await.status, 401);
    }
    assert_throttled(&login(c.b(), "ghost", "x", None).await);
}

async fn a_remembered_client_is_served_through_a_flood(backend: Backend) {
    let c = Cluster::start_with(backend, 2, |s| {
        guarded(s);
        s.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let honest = Some("198.51.100.7");
    assert_eq!(login(c.a(), "web", SECRET, honest).await.status, 200);
    let attacker = Some("203.0.113.9");
    for _ in 0..6 {
        let reply = login(c.a(), "web", "guess", attacker).await;
        assert!(
            matches!(reply.status.as_u16(), 401 | 429),
            "{:?}",
            reply.body
        );
    }
    assert_throttled(&login(c.b(), "web", "guess", attacker).await);
    // The attacker is closed out, and a secret this replica already verified
    // still passes without touching the counters.
    assert_eq!(login(c.a(), "web", SECRET, honest).await.status, 200);
}

async fn forwarded_for_counts_only_from_trusted_proxies(backend: Backend) {
    // Untrusted peer: every claimed address is the same peer (127.0.0.1).
    let c = Cluster::start_with(backend, 1, guarded).await;
    for i in 0..5 {
        let spoof = format!("203.0.113.{i}");
        assert_eq!(login(c.a(), "ghost", "x", Some(&spoof)).await.status, 401);
    }
    assert_throttled(&login(c.a(), "ghost", "x", Some("203.0.113.200")).await);

    // Trusted proxy: each forwarded address counts on its own, read from the
    // right, so a client-sent address on the left changes nothing.
    let c = Cluster::start_with(backend, 1, |s| {
        guarded(s);
        s.server.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    for _ in 0..5 {
        let chain = "192.0.2.1, 203.0.113.1";
        assert_eq!(login(c.a(), "ghost", "x", Some(chain)).await.status, 401);
    }
    assert_throttled(&login(c.a(), "ghost", "x", Some("192.0.2.77, 203.0.113.1")).await);
    assert_eq!(
        login(c.a(), "ghost", "x", Some("203.0.113.2")).await.status,
        401,
        "another client address is not throttled"
    );
}

async fn a_full_hash_queue_answers_503_fast(backend: Backend) {
    let wait = Duration::from_millis(100);
    let c = Cluster::start_with(backend, 1, |s| {
        guarded(s);
        // Only the queue bound here.
        s.throttle.max_failures = 0;
        s.throttle.max_failures_per_address = 0;
        s.throttle.hash_queue = 1;
        s.throttle.hash_wait = wait;
    })
    .await;
    assert_eq!(login(c.a(), "web", SECRET, None).await.status, 200);
    let replica = c.a();
    let flood = (0..24).map(|i| async move {
        let started = Instant::now();
        let reply = login(replica, "web", &format!("guess-{i}"), None).await;
        (reply, started.elapsed())
    });
    let honest = async {
        // Served from the remembered secret: never queues behind argon2.
        let started = Instant::now();
        let reply = login(c.a(), "web", SECRET, None).await;
        (reply.status, started.elapsed())
    };
    let (replies, (honest_status, honest_took)) = tokio::join!(join_all(flood), honest);
    let busy: Vec<_> = replies.iter().filter(|(r, _)| r.status == 503).collect();
    assert!(
        replies
            .iter()
            .all(|(r, _)| matches!(r.status.as_u16(), 401 | 503)),
        "only refusals: {:?}",
        replies.iter().map(|(r, _)| r.status).collect::<Vec<_>>()
    );
    assert!(
        busy.len() >= 12,
        "{} of 24 found the queue full",
        busy.len()
    );
    for (reply, took) in &busy {
        assert_eq!(reply.error(), "temporarily_unavailable");
        assert_eq!(reply.header("retry-after"), Some("1"));
        assert!(*took < wait + Duration::from_secs(1), "503 took {took:?}");
    }
    assert_eq!(honest_status, 200);
    assert!(
        honest_took < Duration::from_secs(1),
        "honest took {honest_took:?}"
    );
}
