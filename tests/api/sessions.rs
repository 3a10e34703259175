//! SPEC §2–3: sessions across replicas — logout, rotation with a single
//! successor, grace window, reuse detection, auto-logout, lifetimes. Every
//! scenario runs on two replicas over Redis and over the shared memory store.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{Backend, Cluster, Pair, eventually};
use crate::{on_both_stores, on_redis_cluster};

on_both_stores!(
    logout_on_one_replica_holds_on_the_other,
    logout_with_the_refresh_token_ends_the_session,
    logout_with_a_superseded_access_token_ends_the_session,
    logout_is_idempotent,
    refresh_on_b_kills_the_pair_issued_by_a,
    refresh_keeps_the_session_and_user,
    sessions_of_one_user_are_independent,
    concurrent_refreshes_get_exactly_one_successor,
    retry_within_grace_gets_the_same_successor,
    reuse_after_grace_ends_the_session,
    reuse_after_the_successor_was_used_ends_the_session,
    reuse_of_an_older_generation_ends_the_session,
    strict_mode_treats_any_retry_as_theft,
    auto_logout_ends_idle_sessions_everywhere,
    activity_on_any_replica_keeps_a_session_alive,
    refresh_lifetime_ends_the_session,
    max_session_ends_a_session_however_often_it_rotates,
    unknown_session_or_token_is_refused,
);

on_redis_cluster!(
    logout_on_one_replica_holds_on_the_other,
    logout_with_the_refresh_token_ends_the_session,
    refresh_on_b_kills_the_pair_issued_by_a,
    concurrent_refreshes_get_exactly_one_successor,
    retry_within_grace_gets_the_same_successor,
    reuse_of_an_older_generation_ends_the_session,
    auto_logout_ends_idle_sessions_everywhere,
    max_session_ends_a_session_however_often_it_rotates,
);

async fn logout_on_one_replica_holds_on_the_other(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let pair = c.a().login(json!(1)).await;
    assert!(c.b().accepts(&pair.access).await);

    let reply = c.a().logout(&pair.access).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({}));

    assert!(!c.b().accepts(&pair.access).await);
    assert!(!c.a().accepts(&pair.access).await);
    assert_eq!(c.b().refresh(&pair.refresh).await.status, 401);
}

async fn logout_with_the_refresh_token_ends_the_session(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let pair = c.a().login(json!("alice")).await;
    let reply = c
        .b()
        .post_json("/logout", &json!({ "refresh": pair.refresh }))
        .await;
    assert_eq!(reply.status, 200);
    assert!(!c.a().accepts(&pair.access).await);
    assert_eq!(c.a().refresh(&pair.refresh).await.status, 401);
}

async fn logout_with_a_superseded_access_token_ends_the_session(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let first = c.a().login(json!(1)).await;
    let second = Pair::from_reply(&c.b().refresh(&first.refresh).await);
    assert!(!c.a().accepts(&first.access).await);

    assert_eq!(c.a().logout(&first.access).await.status, 200);
    assert!(!c.b().accepts(&second.access).await);
    assert_eq!(c.b().refresh(&second.refresh).await.status, 401);
}

async fn logout_is_idempotent(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let pair = c.a().login(json!(1)).await;
    assert_eq!(c.a().logout(&pair.access).await.status, 200);
    assert_eq!(c.b().logout(&pair.access).await.status, 200);
    let by_refresh = c
        .b()
        .post_json("/logout", &json!({ "refresh": pair.refresh }))
        .await;
    assert_eq!(by_refresh.status, 200);
}

async fn refresh_on_b_kills_the_pair_issued_by_a(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let old = c.a().login(json!(1)).await;
    let reply = c.b().refresh(&old.refresh).await;
    assert_eq!(reply.status, 200);
    let new = Pair::from_reply(&reply);

    assert!(!c.a().accepts(&old.access).await, "old access dies on A");
    assert!(!c.b().accepts(&old.access).await, "old access dies on B");
    assert!(c.a().accepts(&new.access).await);
    assert!(c.b().accepts(&new.access).await);
    assert_ne!(new.refresh, old.refresh);
    assert_ne!(new.claims()["jti"], old.claims()["jti"]);
}

async fn refresh_keeps_the_session_and_user(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let old = c.a().login(json!("bob")).await;
    let new = Pair::from_reply(&c.b().refresh(&old.refresh).await);
    assert_eq!(new.session_id, old.session_id);
    assert_eq!(new.claims()["sub"], "bob");
    assert_eq!(new.claims()["sid"], old.session_id.as_str());
    assert_eq!(new.json["token_type"], "Bearer");
    assert_eq!(new.json["expires_in"], 900);
    // max_session (720h from login) caps the rotated refresh token.
    let left = new.json["refresh_expires_in"].as_u64().unwrap();
    assert!((720 * 3600 - 5..=720 * 3600).contains(&left), "{left}");
    let third = Pair::from_reply(&c.a().refresh(&new.refresh).await);
    assert!(c.b().accepts(&third.access).await);
}

async fn sessions_of_one_user_are_independent(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let laptop = c.a().login(json!(7)).await;
    let phone = c.b().login(json!(7)).await;
    assert_ne!(laptop.session_id, phone.session_id);

    assert_eq!(c.a().logout(&laptop.access).await.status, 200);
    assert!(!c.b().accepts(&laptop.access).await);
    assert!(
        c.a().accepts(&phone.access).await,
        "the other session lives"
    );
    assert_eq!(c.a().refresh(&phone.refresh).await.status, 200);
}

async fn concurrent_refreshes_get_exactly_one_successor(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let old = c.a().login(json!(1)).await;
    let replies = join_all((0..24).map(|i| c.replicas[i % 2].refresh(&old.refresh))).await;

    let pairs: Vec<Pair> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{:?}", r.body);
            Pair::from_reply(r)
        })
        .collect();
    let refreshes: HashSet<&str> = pairs.iter().map(|p| p.refresh.as_str()).collect();
    let jtis: HashSet<String> = pairs
        .iter()
        .map(|p| p.claims()["jti"].to_string())
        .collect();
    assert_eq!(refreshes.len(), 1, "one successor refresh token");
    assert_eq!(jtis.len(), 1, "one successor access token");

    let successor = &pairs[0];
    assert!(c.b().accepts(&successor.access).await);
    assert!(!c.a().accepts(&old.access).await);
    assert_eq!(c.a().refresh(&successor.refresh).await.status, 200);
}

async fn retry_within_grace_gets_the_same_successor(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let old = c.a().login(json!(1)).await;
    let first = Pair::from_reply(&c.a().refresh(&old.refresh).await);
    // The response was "lost"; the client retries on another replica.
    let retry = Pair::from_reply(&c.b().refresh(&old.refresh).await);

    assert_eq!(retry.refresh, first.refresh);
    assert_eq!(retry.claims()["jti"], first.claims()["jti"]);
    assert_eq!(
        retry.access, first.access,
        "exactly the successor, claim for claim"
    );
    assert_eq!(retry.session_id, first.session_id);
    assert!(c.a().accepts(&retry.access).await);
    assert!(
        !c.a().accepts(&old.access).await,
        "the old access stays dead"
    );
}

async fn reuse_after_grace_ends_the_session(backend: Backend) {
    let grace = Duration::from_millis(300);
    let c = Cluster::start_with(backend, 2, |s| s.auth.refresh_grace = grace).await;
    let old = c.a().login(json!(1)).await;
    let new = Pair::from_reply(&c.a().refresh(&old.refresh).await);

    // Waiting out a time window is the point here; nothing to poll for.
    tokio::time::sleep(grace + Duration::from_millis(100)).await;
    let reuse = c.b().refresh(&old.refresh).await;
    assert_eq!(reuse.status, 401);
    assert_eq!(reuse.error(), "invalid_grant");

    assert!(!c.a().accepts(&new.access).await, "current access dies too");
    assert_eq!(c.b().refresh(&new.refresh).await.status, 401);
}

async fn reuse_after_the_successor_was_used_ends_the_session(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let r0 = c.a().login(json!(1)).await;
    let r1 = Pair::from_reply(&c.a().refresh(&r0.refresh).await);
    let r2 = Pair::from_reply(&c.b().refresh(&r1.refresh).await);

    assert_eq!(c.a().refresh(&r1.refresh).await.status, 200, "r1 in grace");
    let theft = c.b().refresh(&r0.refresh).await;
    assert_eq!(theft.status, 401, "r0's successor r1 was used");
    assert!(!c.a().accepts(&r2.access).await);
    assert_eq!(c.a().refresh(&r2.refresh).await.status, 401);
}

async fn reuse_of_an_older_generation_ends_the_session(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let mut pairs = vec![c.a().login(json!(1)).await];
    for i in 0..4 {
        let last = &pairs[pairs.len() - 1];
        let reply = c.replicas[i % 2].refresh(&last.refresh).await;
        pairs.push(Pair::from_reply(&reply));
    }
    assert_eq!(c.b().refresh(&pairs[1].refresh).await.status, 401);
    let current = pairs.last().unwrap();
    assert!(!c.a().accepts(&current.access).await);
    assert_eq!(c.a().refresh(&current.refresh).await.status, 401);
}

async fn strict_mode_treats_any_retry_as_theft(backend: Backend) {
    let c = Cluster::start_with(backend, 2, |s| s.auth.refresh_grace = Duration::ZERO).await;
    let old = c.a().login(json!(1)).await;
    let new = Pair::from_reply(&c.a().refresh(&old.refresh).await);
    assert_eq!(c.b().refresh(&old.refresh).await.status, 401);
    assert!(!c.a().accepts(&new.access).await);
}

async fn auto_logout_ends_idle_sessions_everywhere(backend: Backend) {
    let c = Cluster::start_with(backend, 2, |s| {
        s.auth.auto_logout = Duration::from_millis(600);
    })
    .await;
    let pair = c.a().login(json!(1)).await;
    assert!(c.b().accepts(&pair.access).await);
    let ended = eventually(Duration::from_secs(5), || async {
        // Probing would count as activity; look without touching.
        !session_alive(&c, &pair).await
    })
    .await;
    assert!(ended, "idle session still alive");
    assert!(!c.a().accepts(&pair.access).await);
    assert!(!c.b().accepts(&pair.access).await);
    assert_eq!(c.b().refresh(&pair.refresh).await.status, 401);
}

/// Whether the store still holds the session, without counting as activity.
async fn session_alive(c: &Cluster, pair: &Pair) -> bool {
    if let Some(cluster) = &c.redis_cluster {
        let key = format!(
            "tg:{{u:{}}}:s:{}",
            pair.claims()["sub"].as_str().unwrap(),
            pair.session_id
        );
        return cluster.pttl(&key) > 0;
    }
    match &c.redis {
        Some(redis) => redis.pttl(&redis.session_key(&pair.session_id)) > 0,
        // The memory store has no side door: wait out the idle time instead.
        None => {
            tokio::time::sleep(c.settings.auth.auto_logout + Duration::from_millis(50)).await;
            false
        }
    }
}

async fn activity_on_any_replica_keeps_a_session_alive(backend: Backend) {
    let idle = Duration::from_millis(800);
    let c = Cluster::start_with(backend, 2, |s| s.auth.auto_logout = idle).await;
    let pair = c.a().login(json!(1)).await;
    // Active for three times the idle limit, alternating replicas.
    for i in 0..12 {
        tokio::time::sleep(idle / 4).await;
        assert!(c.replicas[i % 2].accepts(&pair.access).await, "step {i}");
    }
    let rotated = c.b().refresh(&pair.refresh).await;
    assert_eq!(rotated.status, 200);
}

async fn refresh_lifetime_ends_the_session(backend: Backend) {
    let c = Cluster::start_with(backend, 2, |s| {
        s.auth.refresh_lifetime = Duration::from_millis(700);
    })
    .await;
    let pair = c.a().login(json!(1)).await;
    assert_eq!(pair.json["refresh_expires_in"], 0);
    // Activity does not extend the refresh lifetime.
    let ended = eventually(Duration::from_secs(5), || async {
        !c.b().accepts(&pair.access).await
    })
    .await;
    assert!(ended);
    assert_eq!(c.a().refresh(&pair.refresh).await.status, 401);
}

async fn unknown_session_or_token_is_refused(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let pair = c.a().login(json!(1)).await;
    for garbage in ["", "x", &pair.access, &format!("{}A", pair.refresh)] {
        let reply = c.b().refresh(garbage).await;
        assert_eq!(reply.status, 401, "{garbage:?}");
        assert_eq!(reply.error(), "invalid_grant");
    }
    assert!(c.a().accepts(&pair.access).await, "garbage ends nothing");
    assert_eq!(c.a().refresh(&pair.refresh).await.status, 200);
}

async fn max_session_ends_a_session_however_often_it_rotates(backend: Backend) {
    let max = Duration::from_millis(1500);
    let c = Cluster::start_with(backend, 2, |s| {
        s.auth.max_session = max;
        s.auth.access_lifetime = Duration::from_secs(1);
        s.auth.refresh_lifetime = Duration::from_secs(3600);
    })
    .await;
    let login = c.a().login(json!("marathon")).await;
    let started = std::time::Instant::now();
    assert!(
        login.json["refresh_expires_in"].as_u64().unwrap() <= 2,
        "the first refresh token is capped by max_session: {}",
        login.json
    );
    // Keep rotating, alternating replicas, well inside every other limit.
    let mut refresh = login.refresh;
    let mut rotations = 0;
    let ended = loop {
        let replica = if rotations % 2 == 0 { c.b() } else { c.a() };
        let reply = replica.refresh(&refresh).await;
        if reply.status != 200 {
            break reply;
        }
        let next = Pair::from_reply(&reply);
        let left = next.json["refresh_expires_in"].as_u64().unwrap();
        let honest = max.saturating_sub(started.elapsed()).as_secs() + 1;
        assert!(left <= honest, "refresh_expires_in {left}s tells the truth");
        refresh = next.refresh;
        rotations += 1;
        assert!(started.elapsed() < max * 3, "the session never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(rotations >= 5, "rotated {rotations} times before the end");
    assert!(started.elapsed() >= max - Duration::from_millis(200));
    assert_eq!(ended.status, 401, "{:?}", ended.body);
    assert_eq!(ended.error(), "invalid_grant");
}
