//! SPEC §3 faults: Redis killed or hanging → fail closed (`503`) within 2 s,
//! `/health` names the store, `/ping` stays up; Redis back → replicas
//! recover by themselves.

use std::time::{Duration, Instant};

use http::Method;
use http_body_util::Full;
use serde_json::json;

use crate::helpers::{Backend, Cluster, Replica, eventually};
use crate::support::client::{Reply, request};

const FAIL_CLOSED_WITHIN: Duration = Duration::from_secs(2);

/// Every store-backed endpoint answers 503 in time; liveness stays 200.
async fn assert_fails_closed(replica: &Replica, access: &str, refresh: &str) {
    let calls: Vec<(&str, Reply, Duration)> = vec![
        timed("authenticate", replica.authenticate(access)).await,
        timed("login", replica.post_json("/login", &json!({"user_id": 1}))).await,
        timed("refresh", replica.refresh(refresh)).await,
        timed("logout", replica.logout(access)).await,
        timed("health", replica.get("/health")).await,
    ];
    for (name, reply, elapsed) in calls {
        assert_eq!(reply.status, 503, "{name}: {:?}", reply.body);
        assert!(elapsed < FAIL_CLOSED_WITHIN, "{name} took {elapsed:?}");
        if name == "health" {
            let body = reply.json();
            assert_eq!(body["status"], "unavailable");
            assert_eq!(body["store"], "unavailable");
        } else {
            assert_eq!(reply.error(), "temporarily_unavailable");
            assert_eq!(reply.header("retry-after"), Some("1"));
        }
    }
    let ping = replica.get("/ping").await;
    assert_eq!(ping.status, 200, "liveness is not readiness");
}

async fn timed(
    name: &'static str,
    call: impl Future<Output = Reply>,
) -> (&'static str, Reply, Duration) {
    let started = Instant::now();
    let reply = call.await;
    (name, reply, started.elapsed())
}

async fn recovered(replica: &Replica) -> bool {
    eventually(Duration::from_secs(10), || async {
        replica.get("/health").await.status == 200
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fails_closed_then_recovers_without_restart() {
    let mut c = Cluster::start(Backend::Redis, 2).await;
    let pair = c.a().login(json!(1)).await;
    assert!(c.b().accepts(&pair.access).await);

    c.redis_mut().kill();
    for replica in &c.replicas {
        assert_fails_closed(replica, &pair.access, &pair.refresh).await;
    }
    let metrics = String::from_utf8(c.a().get_admin("/metrics").await.body.to_vec()).unwrap();
    let errors: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tokengate_store_errors_total "))
        .expect("store error counter")
        .parse()
        .unwrap();
    assert!(errors >= 4.0, "the outage is counted: {errors}");

    c.redis_mut().restart();
    for replica in &c.replicas {
        assert!(recovered(replica).await, "replica did not recover");
    }
    // The new Redis is empty: old sessions are gone, new ones work everywhere.
    assert!(!c.a().accepts(&pair.access).await);
    let fresh = c.a().login(json!(2)).await;
    assert!(c.b().accepts(&fresh.access).await);
    assert_eq!(c.b().refresh(&fresh.refresh).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hanging_fails_closed_within_the_deadline() {
    let c = Cluster::start(Backend::Redis, 2).await;
    let pair = c.a().login(json!(1)).await;
    let pid = c.redis().pid().expect("running").to_string();

    signal("-STOP", &pid);
    let result = std::panic::AssertUnwindSafe(async {
        for replica in &c.replicas {
            assert_fails_closed(replica, &pair.access, &pair.refresh).await;
        }
    });
    let outcome = futures_util::FutureExt::catch_unwind(result).await;
    signal("-CONT", &pid);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }

    for replica in &c.replicas {
        assert!(recovered(replica).await, "replica did not recover");
    }
    assert!(
        c.b().accepts(&pair.access).await,
        "the session survived the stall"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_starts_while_redis_is_down_and_serves_once_it_is_up() {
    let mut c = Cluster::start(Backend::Redis, 1).await;
    c.redis_mut().kill();
    c.add_replica().await;
    let late = &c.replicas[1];
    assert_eq!(late.get("/health").await.status, 503);
    assert_eq!(late.get("/ping").await.status, 200);
    c.redis_mut().restart();
    let late = &c.replicas[1];
    assert!(recovered(late).await);
    let pair = late.login(json!(3)).await;
    assert!(c.a().accepts(&pair.access).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_refuses_connections_while_others_serve() {
    let mut c = Cluster::start(Backend::Redis, 2).await;
    let pair = c.a().login(json!(1)).await;
    let addr = c.replicas[0].addr;
    c.replicas[0].stop().await;
    let refused = crate::support::client::try_send(
        addr,
        request(Method::GET, "/ping").body(Full::default()).unwrap(),
    )
    .await;
    assert!(refused.is_err(), "a stopped replica accepts nothing");
    assert!(
        c.b().accepts(&pair.access).await,
        "the other replica serves"
    );
}

fn signal(which: &str, pid: &str) {
    let status = std::process::Command::new("kill")
        .args([which, pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_request_after_a_redis_restart_succeeds() {
    let mut c = Cluster::start(Backend::Redis, 2).await;
    // Warm both pools so they hold connections to the old server.
    for replica in &c.replicas {
        let pair = replica.login(json!(1)).await;
        assert!(replica.accepts(&pair.access).await);
    }
    c.redis_mut().restart();
    for replica in &c.replicas {
        let reply = replica.post_json("/login", &json!({"user_id": 2})).await;
        assert_eq!(reply.status, 200, "stale pooled connection leaked an error");
        let pair = crate::helpers::Pair::from_reply(&reply);
        assert!(replica.accepts(&pair.access).await);
    }
}
