//! SPEC §3 costs, measured on a real Redis with `INFO commandstats`:
//! `/authenticate` is exactly one round trip (one `EVALSHA`, nothing else
//! sent), and so are `/login`, `/refresh` and `/logout` — their events
//! (SPEC §14) are appended inside the same script. Every key has a TTL but
//! the events stream, which `events.max_len` caps instead.
//! SPEC §9: an API token at `/authenticate` is one `EVALSHA` when cached, two
//! on a miss (look up, then fill from the database), and its cache keys expire.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_redis::redis;
use http::Method;
use serde_json::json;

use crate::helpers::{Backend, Cluster, Pair, Replica};
use crate::support::client::{self, request};
use crate::support::redis::RedisServer;

/// Calls per command since start-up.
fn commandstats(redis: &RedisServer) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.connection())
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// Commands sent by replicas between two snapshots, leaving out what the
/// test itself sends, what scripts call inside Redis, and the `PING` each
/// replica's gRPC health follower sends once a second whatever the requests
/// (src/grpc/mod.rs), which would otherwise land in a window now and then.
fn sent_between(
    before: &HashMap<String, u64>,
    after: &HashMap<String, u64>,
    inside_scripts: &[&str],
) -> HashMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| !["info", "hello", "client|setinfo", "ping"].contains(&name.as_str()))
        .filter(|(name, _)| !inside_scripts.contains(&name.as_str()))
        .filter_map(|(name, calls)| {
            let delta = calls - before.get(name).copied().unwrap_or(0);
            (delta > 0).then(|| (name.clone(), delta))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_is_one_round_trip() {
    let c = Cluster::start(Backend::Redis, 2).await;
    let redis = c.redis();
    // Warm up: connections and script loading are one-off costs.
    let warm = c.a().login(json!(0)).await;
    assert!(c.b().accepts(&warm.access).await);
    let warm2 = Pair::from_reply(&c.b().refresh(&warm.refresh).await);
    assert_eq!(c.a().logout(&warm2.access).await.status, 200);

    let before = commandstats(redis);
    let pair = c.a().login(json!(1)).await;
    let after = commandstats(redis);
    assert_eq!(
        sent_between(
            &before,
            &after,
            &[
                "hset",
                "pexpire",
                "zadd",
                "zremrangebyscore",
                "zrange",
                "hmget",
                "zcard",
                "zscore",
                "pttl",
                "set",
                "xadd"
            ]
        ),
        HashMap::from([("evalsha".to_owned(), 1)]),
        "login"
    );

    let before = commandstats(redis);
    for i in 0..10 {
        assert!(c.replicas[i % 2].accepts(&pair.access).await);
    }
    let after = commandstats(redis);
    assert_eq!(
        sent_between(&before, &after, &["hmget", "pexpire", "hset"]),
        HashMap::from([("evalsha".to_owned(), 10)]),
        "authenticate"
    );

    let before = commandstats(redis);
    let next = Pair::from_reply(&c.b().refresh(&pair.refresh).await);
    let after = commandstats(redis);
    assert_eq!(
        sent_between(
            &before,
            &after,
            &["hmget", "hset", "pexpire", "zadd", "pttl", "zrem"]
        ),
        HashMap::from([("evalsha".to_owned(), 1)]),
        "refresh"
    );

    let before = commandstats(redis);
    assert_eq!(c.a().logout(&next.access).await.status, 200);
    let after = commandstats(redis);
    assert_eq!(
        sent_between(
            &before,
            &after,
            &["hmget", "del", "zrem", "xadd", "pexpire"]
        ),
        HashMap::from([("evalsha".to_owned(), 1)]),
        "logout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_has_a_ttl_within_the_idle_limit() {
    let idle = Duration::from_secs(60);
    let c = Cluster::start_with(Backend::Redis, 2, |s| s.auth.auto_logout = idle).await;
    let mut pairs = Vec::new();
    for user in 0..5 {
        let pair = c.replicas[user % 2].login(json!(user)).await;
        pairs.push(Pair::from_reply(
            &c.replicas[(user + 1) % 2].refresh(&pair.refresh).await,
        ));
    }
    assert!(c.a().accepts(&pairs[0].access).await);
    assert_eq!(c.b().logout(&pairs[1].access).await.status, 200);

    // One key per live session and one index per user with a live session
    // (the logged-out user's index went with its only session), the
    // revocation feed's: the log of ends, the sessions whose expiry is
    // watched (every one, for the events) and its epoch; and the events.
    let keys = c.redis().keys("*");
    assert_eq!(keys.len(), 12, "{keys:?}");
    let refresh_lifetime = c.settings.auth.refresh_lifetime.as_millis() as i64;
    let access = c.settings.auth.access_lifetime.as_millis() as i64;
    let max_session = c.settings.auth.max_session.as_millis() as i64;
    for key in keys {
        if key == "tg:events" {
            continue; // capped by events.max_len
        }
        let ttl = c.redis().pttl(&key);
        let limit = match key.as_str() {
            "tg:{feed}:ended" => access + 60_000,
            "tg:{feed}:expiry" => idle.as_millis() as i64 + 60_000,
            "tg:{feed}:epoch" => max_session + access,
            _ if key.starts_with("tg:{u:") && key.contains("}:s:") => idle.as_millis() as i64,
            _ => {
                assert!(key.starts_with("tg:{u:") && key.ends_with("}:idx"), "{key}");
                refresh_lifetime
            }
        };
        assert!(ttl > 0 && ttl <= limit, "{key}: TTL {ttl}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_by_theft_leaves_nothing_behind_but_its_end_in_the_log() {
    let c = Cluster::start_with(Backend::Redis, 2, |s| s.auth.refresh_grace = Duration::ZERO).await;
    let first = c.a().login(json!(1)).await;
    let _second = c.b().refresh(&first.refresh).await;
    assert_eq!(c.a().refresh(&first.refresh).await.status, 401);
    let mut keys = c.redis().keys("*");
    keys.sort();
    assert_eq!(
        keys,
        ["tg:events", "tg:{feed}:ended", "tg:{feed}:epoch"],
        "the revocation feed's, which expire, and the events"
    );
    assert!(keys[1..].iter().all(|key| c.redis().pttl(key) > 0));
}

/// The admin token of the API-token cost tests (admin.token_hash holds its hash).
const ADMIN_TOKEN: &str = "redis-costs-admin-token-of-at-least-32-characters";

/// `POST /admin/tokens` at `replica`; the new token and its id.
async fn create_api_token(replica: &Replica, name: &str, scopes: &[&str]) -> (String, String) {
    let reply = replica
        .send_admin(
            request(Method::POST, "/admin/tokens")
                .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                .header("content-type", "application/json")
                .body(client::json_body(
                    &json!({ "name": name, "scopes": scopes }),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 201, "create {name}: {:?}", reply.body);
    (reply.field("token"), reply.field("id"))
}

/// Everything Redis ran while `requests` ran, commands inside scripts
/// included: an exact count of each also shows that nothing was sent beside
/// the scripts (a stray `HMGET` would make two where the script makes one).
async fn ran_during(
    redis: &RedisServer,
    requests: impl Future<Output = ()>,
) -> HashMap<String, u64> {
    let before = commandstats(redis);
    requests.await;
    sent_between(&before, &commandstats(redis), &[])
}

fn counts(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_token_check_is_one_evalsha_cached_and_three_on_a_miss() {
    let hash = tokengate::clients::hash_secret(ADMIN_TOKEN.as_bytes()).expect("hash");
    let c = Cluster::start_with(Backend::Redis, 2, |s| s.admin.token_hash = hash).await;
    let redis = c.redis();
    let (warm, _) = create_api_token(c.a(), "warm-up", &["read"]).await;
    let (token, id) = create_api_token(c.a(), "costs", &["read"]).await;
    // Warm up: a miss runs every script of a check, so each is loaded
    // (NOSCRIPT, SCRIPT LOAD: once per Redis), and both replicas have a
    // connection.
    assert!(c.a().accepts(&warm).await);
    assert!(c.b().accepts(&warm).await);
    // One check, cached: one EVALSHA (HMGET inside), nothing else.
    let one = counts(&[("evalsha", 1), ("hmget", 1)]);

    // A miss: one EVALSHA finds nothing (HMGET), one counts the miss against
    // the address (INCR of a window the warm-up opened; SPEC §11), the
    // database answers, one EVALSHA fills the cache if nobody did meanwhile
    // (EXISTS, HSET, PEXPIRE).
    let miss = ran_during(redis, async { assert!(c.b().accepts(&token).await) }).await;
    assert_eq!(
        miss,
        counts(&[
            ("evalsha", 3),
            ("hmget", 1),
            ("incr", 1),
            ("exists", 1),
            ("hset", 1),
            ("pexpire", 1)
        ]),
        "API token, cache miss"
    );

    // Cached, on either replica. The fill recorded the use, so no lookup
    // within a minute writes it again (no HSET).
    let hits = ran_during(redis, async {
        for i in 0..10 {
            assert!(c.replicas[i % 2].accepts(&token).await);
        }
    })
    .await;
    assert_eq!(
        hits,
        counts(&[("evalsha", 10), ("hmget", 10)]),
        "API token, cached"
    );
    // The same with a scope required at the gate: the scopes are in the entry.
    let scoped = ran_during(redis, async {
        let path = "/authenticate?scope=read";
        let reply = client::with_bearer(c.a().addr, Method::GET, path, &token).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
    })
    .await;
    assert_eq!(scoped, one, "API token, cached, scope required");

    // An unknown (well-formed) token is cached as such: a repeat costs one
    // EVALSHA and no database query.
    let unknown = format!("tg_live_{}", "A".repeat(43));
    assert!(!c.a().accepts(&unknown).await);
    let repeat = ran_during(redis, async { assert!(!c.b().accepts(&unknown).await) }).await;
    assert_eq!(repeat, one, "unknown API token, cached");

    // Revoked on one replica (a tombstone over the entry), refused on the
    // other in one EVALSHA.
    let reply = c
        .a()
        .send_admin(
            request(Method::POST, format!("/admin/tokens/{id}/revoke").as_str())
                .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200, "revoke: {:?}", reply.body);
    let refused = ran_during(redis, async { assert!(!c.b().accepts(&token).await) }).await;
    assert_eq!(refused, one, "revoked API token");

    // Every cache key expires: the warm-up's live entry, the tombstone (both
    // within the cache's 10 minutes) and the unknown token's, within 30 s.
    let keys = redis.keys("tg:at:*");
    assert_eq!(keys.len(), 3, "warm-up, revoked, unknown: {keys:?}");
    for key in &keys {
        let ttl = redis.pttl(key);
        assert!(ttl > 0 && ttl <= 10 * 60_000, "{key}: TTL {ttl}");
    }
    let hash = tokengate::tokens::api::parse(&unknown).expect("well-formed");
    let ttl = redis.pttl(&format!("tg:at:{}", hash.hex()));
    assert!(
        ttl > 0 && ttl <= 30_000,
        "the unknown token's entry: TTL {ttl}"
    );
}
