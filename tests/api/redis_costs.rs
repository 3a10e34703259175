//! SPEC §3 costs, measured on a real Redis with `INFO commandstats`:
//! `/authenticate` is exactly one round trip (one `EVALSHA`, nothing else
//! sent), and so are `/login`, `/refresh` and `/logout`. Every key has a TTL.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_redis::redis;
use serde_json::json;

use crate::helpers::{Backend, Cluster, Pair};
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
/// test itself sends and what scripts call inside Redis.
fn sent_between(
    before: &HashMap<String, u64>,
    after: &HashMap<String, u64>,
    inside_scripts: &[&str],
) -> HashMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| !["info", "hello", "client|setinfo"].contains(&name.as_str()))
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
                "exists",
                "pttl"
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
            &["hmget", "hset", "pexpire", "zadd", "pttl"]
        ),
        HashMap::from([("evalsha".to_owned(), 1)]),
        "refresh"
    );

    let before = commandstats(redis);
    assert_eq!(c.a().logout(&next.access).await.status, 200);
    let after = commandstats(redis);
    assert_eq!(
        sent_between(&before, &after, &["hget", "del", "zrem", "zcard"]),
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
    // (the logged-out user's index went with its only session), nothing else.
    let keys = c.redis().keys("*");
    assert_eq!(keys.len(), 8, "{keys:?}");
    let refresh_lifetime = c.settings.auth.refresh_lifetime.as_millis() as i64;
    for key in keys {
        let ttl = c.redis().pttl(&key);
        let limit = if key.starts_with("tg:s:") {
            idle.as_millis() as i64
        } else {
            assert!(key.starts_with("tg:u:"), "{key}");
            refresh_lifetime
        };
        assert!(ttl > 0 && ttl <= limit, "{key}: TTL {ttl}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_by_theft_leaves_nothing_behind() {
    let c = Cluster::start_with(Backend::Redis, 2, |s| s.auth.refresh_grace = Duration::ZERO).await;
    let first = c.a().login(json!(1)).await;
    let _second = c.b().refresh(&first.refresh).await;
    assert_eq!(c.a().refresh(&first.refresh).await.status, 401);
    assert!(c.redis().keys("*").is_empty());
}
