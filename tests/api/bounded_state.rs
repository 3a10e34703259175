//! Bounded state per caller (SPEC §11): one user cannot fill Redis with
//! sessions (`auth.max_sessions_per_user`), ending every session of a huge
//! index never holds Redis for long, and one address cannot register
//! without end (`users.registrations_per_address`).

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use deadpool_redis::redis as r;
use http::Method;
use serde_json::json;
use tokengate::config::LoginClient;

use crate::helpers::{Backend, Cluster, Pair};
use crate::on_both_stores;
use crate::support::client::{self, json_body, request, send_from};

on_both_stores!(a_login_past_the_cap_ends_the_users_oldest_session_on_every_replica);

async fn a_login_past_the_cap_ends_the_users_oldest_session_on_every_replica(backend: Backend) {
    let c = Cluster::start_with(backend, 2, |s| s.auth.max_sessions_per_user = 3).await;
    let mut pairs: Vec<Pair> = Vec::new();
    for n in 0..3 {
        let replica = if n % 2 == 0 { c.a() } else { c.b() };
        pairs.push(replica.login(json!("ada")).await);
        // "Oldest" is by the clock: let it move between logins.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let other = c.a().login(json!("bob")).await;
    let fourth = c.b().login(json!("ada")).await;
    for replica in [c.a(), c.b()] {
        assert!(!replica.accepts(&pairs[0].access).await, "the oldest ended");
        let refreshed = replica.refresh(&pairs[0].refresh).await;
        assert_eq!(refreshed.status, 401);
        for pair in pairs[1..].iter().chain([&fourth, &other]) {
            assert!(replica.accepts(&pair.access).await);
        }
    }
    let listed = client::with_bearer(c.a().addr, Method::GET, "/sessions", &fourth.access).await;
    assert_eq!(listed.json()["sessions"].as_array().unwrap().len(), 3);
}

/// The attack: one self-registered account logging in as fast as it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_logins_by_one_account_keeps_its_sessions_bounded() {
    let c = Cluster::start_with(Backend::Redis, 1, |s| s.auth.max_sessions_per_user = 20).await;
    let mut last = None;
    for _ in 0..60 {
        last = Some(c.a().login(json!("mallory")).await);
    }
    let redis = c.redis();
    let mut conn = redis.connection();
    let indexed: u64 = r::cmd("ZCARD")
        .arg("tg:{u:mallory}:idx")
        .query(&mut conn)
        .unwrap();
    assert_eq!(indexed, 20);
    assert_eq!(
        redis.keys("tg:{u:*}:s:*").len(),
        20,
        "no more sessions than the cap"
    );
    assert!(c.a().accepts(&last.unwrap().access).await);
}

/// Logout everywhere of a user with 30,000 sessions (the cap off): done in
/// batches, none of which holds Redis for long; every session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_over_a_huge_index_never_blocks_redis_for_long() {
    const SESSIONS: u64 = 30_000;
    let c = Cluster::start_with(Backend::Redis, 1, |s| s.auth.max_sessions_per_user = 0).await;
    let pair = c.a().login(json!("hoarder")).await;
    let redis = c.redis();
    let mut conn = redis.connection();
    // Sessions as login.lua writes them, made inside Redis in one go.
    let seeded: u64 = r::Script::new(
        r"
        local far = tonumber(ARGV[2])
        for i = 1, tonumber(ARGV[1]) do
          local sid = 'seeded-' .. i
          redis.call('HSET', 'tg:{u:hoarder}:s:' .. sid, 's', 'hoarder', 'g', 0, 'e', far, 'k', 1)
          redis.call('ZADD', KEYS[1], far, sid)
        end
        return redis.call('ZCARD', KEYS[1])
        ",
    )
    .key("tg:{u:hoarder}:idx")
    .arg(SESSIONS)
    .arg(4_000_000_000_000u64)
    .invoke(&mut conn)
    .unwrap();
    assert_eq!(seeded, SESSIONS + 1);
    let _: () = r::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(20_000) // µs
        .query(&mut conn)
        .unwrap();
    let _: () = r::cmd("SLOWLOG").arg("RESET").query(&mut conn).unwrap();

    let reply = client::send(
        c.a().addr,
        request(Method::POST, "/logout")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", pair.access))
            .body(json_body(&json!({"all": true})))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert!(redis.keys("tg:{u:*}:s:*").is_empty(), "every session ended");
    assert!(
        redis.keys("tg:{u:*}:idx").is_empty(),
        "and the index with them"
    );
    let slow: Vec<r::Value> = r::cmd("SLOWLOG")
        .arg("GET")
        .arg(10)
        .query(&mut conn)
        .unwrap();
    assert!(slow.is_empty(), "commands over 20 ms: {slow:?}");
}

const WEB: (&str, &str) = ("web", "web-client-secret");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_limited_per_address_unless_a_trusted_client_vouches() {
    let c = Cluster::start_with(Backend::Redis, 2, |s| {
        s.users.registrations_per_address = 3;
        s.login.clients = vec![LoginClient {
            id: WEB.0.into(),
            secret_hash: tokengate::clients::hash_secret(WEB.1.as_bytes()).unwrap(),
            ..LoginClient::default()
        }];
    })
    .await;
    let register = |from: IpAddr, n: u32, trusted: bool| {
        let mut builder =
            request(Method::POST, "/register").header("content-type", "application/json");
        if trusted {
            let credentials = STANDARD.encode(format!("{}:{}", WEB.0, WEB.1));
            builder = builder.header("authorization", format!("Basic {credentials}"));
        }
        let body = json!({"email": format!("user-{from}-{n}@example.com"), "password": "correct horse battery"});
        let replica = if n.is_multiple_of(2) { c.a() } else { c.b() };
        send_from(from, replica.addr, builder.body(json_body(&body)).unwrap())
    };
    let spammer: IpAddr = "127.0.0.2".parse().unwrap();
    for n in 0..3 {
        assert_eq!(register(spammer, n, false).await.status, 201);
    }
    let refused = register(spammer, 3, false).await;
    assert_eq!(refused.status, 429, "{:?}", refused.body);
    assert_eq!(refused.error(), "too_many_attempts");
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((3_500..=3_600).contains(&wait), "Retry-After {wait}");
    // Others register; a backend behind the same address, vouched for by
    // its client credentials, registers without limit.
    assert_eq!(
        register("127.0.0.3".parse().unwrap(), 0, false)
            .await
            .status,
        201
    );
    for n in 4..8 {
        assert_eq!(register(spammer, n, true).await.status, 201);
    }
}
