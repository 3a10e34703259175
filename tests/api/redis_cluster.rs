//! SPEC §16: tokengate on a real Redis Cluster (3 masters, 3 replicas on
//! loopback; `support::redis_cluster`). The behaviour suite runs here too
//! (`on_redis_cluster!` in sessions.rs, user_sessions.rs, oauth.rs,
//! floods.rs); this file holds what only a cluster has: keys by slot, one
//! round trip per operation across masters, the feed on its own slot, a
//! failover and a killed master under load, a slot moved while traffic
//! flows, and the local cache hearing every master.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_redis::redis::cmd;
use serde_json::json;

use crate::api_tokens::{admin_hash, create, refused_everywhere, revoke, validates};
use crate::helpers::{Backend, Cluster, Pair, Replica, eventually};
use crate::support::redis_cluster::RedisCluster;

/// How long a failover may take to be followed (node timeout 1 s, the
/// replica's election, our client's retries).
const RECOVERS_WITHIN: Duration = Duration::from_secs(20);

async fn cluster(
    replicas: usize,
    configure: impl FnOnce(&mut tokengate::config::Settings),
) -> Cluster {
    Cluster::start_with(Backend::RedisCluster, replicas, configure).await
}

/// A user id whose keys live on the master on `port`.
fn user_on(redis: &RedisCluster, port: u16, name: &str) -> String {
    let tag = redis.key_on(port, &format!("u:{name}-"));
    tag.strip_prefix("u:").expect("the prefix given").to_owned()
}

/// The key of a session, as the store names it.
fn session_key(user: &str, pair: &Pair) -> String {
    format!("tg:{{u:{user}}}:s:{}", pair.session_id)
}

/// `EVALSHA` and `EVAL` calls that ran on the master on `port` so far
/// (not those refused, as a first `NOSCRIPT`).
fn script_calls_on(redis: &RedisCluster, port: u16) -> u64 {
    let info: String = redis.query(port, cmd("INFO").arg("commandstats")).unwrap();
    let field = |line: &str, name: &str| -> u64 {
        line.split(&format!("{name}="))
            .nth(1)
            .and_then(|v| v.split(',').next()?.parse().ok())
            .unwrap_or(0)
    };
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .map(|l| field(l, "calls") - field(l, "failed_calls"))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_keys_share_a_slot_and_users_spread_over_every_master() {
    let c = cluster(2, |_| {}).await;
    let redis = c.redis_cluster();
    let masters = redis.masters();
    assert_eq!(masters.len(), 3);
    for (i, &port) in masters.iter().enumerate() {
        let user = user_on(redis, port, &format!("m{i}"));
        let pair = c.replicas[i % 2].login(json!(user)).await;
        let key = session_key(&user, &pair);
        let index = format!("tg:{{u:{user}}}:idx");
        assert_eq!(redis.slot_of(&key), redis.slot_of(&index));
        assert_eq!(redis.master_of_slot(redis.slot_of(&key)), port);
        assert!(redis.pttl(&key) > 0, "{key} on its master");
        // Rotation and logout on the other replica find it without a look-up.
        let next = Pair::from_reply(&c.replicas[(i + 1) % 2].refresh(&pair.refresh).await);
        assert!(c.replicas[i % 2].accepts(&next.access).await);
        assert_eq!(
            c.replicas[(i + 1) % 2].logout(&next.access).await.status,
            200
        );
        assert!(!c.replicas[i % 2].accepts(&next.access).await);
        assert_eq!(redis.pttl(&key), -2);
    }
    // The feed follows behind the requests, on its own slot.
    let feed = redis.slot_of("tg:{feed}:events");
    assert_eq!(redis.slot_of("tg:{feed}:ended"), feed);
    let events = || async {
        let len: u64 = redis.route(cmd("XLEN").arg("tg:{feed}:events")).unwrap();
        len
    };
    // Three logins and three logouts.
    let logged = eventually(Duration::from_secs(5), || async { events().await == 6 }).await;
    assert!(logged, "{} events", events().await);
    let ended: u64 = redis.route(cmd("XLEN").arg("tg:{feed}:ended")).unwrap();
    assert_eq!(ended, 3, "every logout in the revocation feed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_is_one_script_on_one_master() {
    let c = cluster(2, |_| {}).await;
    let redis = c.redis_cluster();
    // Users on the masters that do not hold the feed, whose writes follow
    // behind and are counted apart.
    let feed = redis.master_of_slot(redis.slot_of("tg:{feed}:events"));
    let masters: Vec<u16> = redis.masters().into_iter().filter(|&m| m != feed).collect();
    let users: Vec<String> = masters
        .iter()
        .enumerate()
        .map(|(i, &port)| user_on(redis, port, &format!("r{i}")))
        .collect();
    let pairs: Vec<Pair> =
        futures_util::future::join_all(users.iter().map(|u| c.a().login(json!(u)))).await;
    let scripts = |ports: &[u16]| {
        ports
            .iter()
            .map(|&p| script_calls_on(redis, p))
            .sum::<u64>()
    };
    let before = scripts(&masters);
    for pair in &pairs {
        for replica in &c.replicas {
            assert!(replica.accepts(&pair.access).await);
        }
    }
    assert_eq!(
        scripts(&masters) - before,
        4,
        "one EVALSHA per /authenticate"
    );
    let (before, feed_before) = (scripts(&masters), scripts(&[feed]));
    for pair in &pairs {
        assert_eq!(c.b().refresh(&pair.refresh).await.status, 200);
        assert_eq!(c.a().logout(&pair.access).await.status, 200);
    }
    assert_eq!(
        scripts(&masters) - before,
        4,
        "one EVALSHA per rotation and logout"
    );
    // The feed's writes follow in batches: at most one script per operation.
    let written = eventually(Duration::from_secs(5), || async {
        let logged: u64 = redis.route(cmd("XLEN").arg("tg:{feed}:ended")).unwrap_or(0);
        logged == 2
    })
    .await;
    assert!(written, "the logouts reach the revocation feed");
    let behind = scripts(&[feed]) - feed_before;
    assert!(
        (1..=4).contains(&behind),
        "{behind} feed scripts for 4 operations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_are_cached_and_revoked_on_a_cluster() {
    let c = cluster(2, |s| {
        s.admin.token_hash = admin_hash().to_owned();
        s.throttle.max_failures = 0;
    })
    .await;
    let created = create(c.a(), json!({"name": "on-a-cluster", "scopes": ["read"]})).await;
    for replica in &c.replicas {
        assert!(validates(replica, &created.token).await);
    }
    assert_eq!(
        c.redis_cluster().keys("tg:at:*").len(),
        1,
        "cached once for all"
    );
    assert_eq!(revoke(c.b(), &created.id).await.status, 200);
    assert!(refused_everywhere(&c, &created.token).await);
}

/// Authenticates sessions round-robin on every replica until stopped;
/// counts accepted, failed closed (503) and refused (401) answers.
struct Load {
    accepted: AtomicU64,
    unavailable: AtomicU64,
    refused: AtomicU64,
    stop: AtomicBool,
}

/// A [`Load`] under way: four clients.
struct Running {
    load: Arc<Load>,
    runners: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The counts and the stop flag, for another task.
    fn shared(&self) -> Arc<Load> {
        self.load.clone()
    }

    async fn stop(self) -> Arc<Load> {
        self.load.stop.store(true, Ordering::Relaxed);
        for runner in self.runners {
            runner.await.unwrap();
        }
        self.load
    }
}

impl Load {
    /// Starts authenticating `pairs`' access tokens on `c`'s replicas.
    fn start(c: &Cluster, pairs: &[Pair]) -> Running {
        let load = Arc::new(Self {
            accepted: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let addrs: Vec<_> = c.replicas.iter().map(|r| r.addr).collect();
        let tokens: Vec<String> = pairs.iter().map(|p| p.access.clone()).collect();
        let runners = (0..4)
            .map(|_| tokio::spawn(load.clone().run(addrs.clone(), tokens.clone())))
            .collect();
        Running { load, runners }
    }

    fn summary(&self) -> String {
        format!(
            "{} accepted, {} failed closed (503), {} refused under load",
            self.accepted.load(Ordering::Relaxed),
            self.unavailable.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }

    async fn run(self: Arc<Self>, replicas: Vec<std::net::SocketAddr>, tokens: Vec<String>) {
        let mut i = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let addr = replicas[i % replicas.len()];
            let token = &tokens[i % tokens.len()];
            let status = crate::support::client::send(
                addr,
                crate::support::client::request(http::Method::GET, "/authenticate")
                    .header("authorization", format!("Bearer {token}"))
                    .body(http_body_util::Full::<bytes::Bytes>::default())
                    .unwrap(),
            )
            .await
            .status
            .as_u16();
            match status {
                200 => self.accepted.fetch_add(1, Ordering::Relaxed),
                503 => self.unavailable.fetch_add(1, Ordering::Relaxed),
                401 => self.refused.fetch_add(1, Ordering::Relaxed),
                other => panic!("/authenticate answered {other} under load"),
            };
            i += 1;
        }
    }
}

/// Sessions of users on every master, live, and one more per master
/// logged out before the trouble starts (never to be accepted again).
async fn sessions_on_every_master(c: &Cluster, name: &str) -> (Vec<Pair>, Vec<Pair>) {
    let redis = c.redis_cluster();
    let (mut live, mut ended) = (Vec::new(), Vec::new());
    for (i, &port) in redis.masters().iter().enumerate() {
        let user = user_on(redis, port, &format!("{name}{i}"));
        live.push(c.a().login(json!(user)).await);
        let gone = c.b().login(json!(user)).await;
        assert_eq!(c.a().logout(&gone.access).await.status, 200);
        ended.push(gone);
    }
    // Each master's replica has copied the logouts (replication is
    // asynchronous: a failover may otherwise lose the last writes, which is
    // Redis's contract, not ours).
    let copied = eventually(Duration::from_secs(5), || async {
        redis.replicas().iter().all(|&replica| {
            let offset = |port: u16, field: &str| -> Option<u64> {
                let info: String = redis.query(port, cmd("INFO").arg("replication")).ok()?;
                info.lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|v| v.trim().parse().ok())
            };
            let master = redis
                .masters()
                .into_iter()
                .find(|&m| redis.replica_of(m) == Some(replica));
            match master {
                Some(m) => {
                    offset(replica, "slave_repl_offset:") >= offset(m, "master_repl_offset:")
                }
                None => true,
            }
        })
    })
    .await;
    assert!(copied, "the replicas did not catch up");
    (live, ended)
}

/// No live session was refused under `load`, and no `ended` one is accepted.
async fn nothing_stale(c: &Cluster, load: &Load, ended: &[Pair]) {
    assert_eq!(
        load.refused.load(Ordering::Relaxed),
        0,
        "a live session refused"
    );
    assert!(
        none_accepted(&c.replicas, ended).await,
        "a logged-out session accepted"
    );
}

async fn none_accepted(replicas: &[Replica], pairs: &[Pair]) -> bool {
    for replica in replicas {
        for pair in pairs {
            if replica.accepts(&pair.access).await {
                return false;
            }
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_planned_failover_under_load_recovers_without_a_restart() {
    let c = cluster(2, |s| s.cache.timeout = Duration::from_millis(500)).await;
    let (live, ended) = sessions_on_every_master(&c, "planned").await;
    let load = Load::start(&c, &live);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let redis = c.redis_cluster();
    let old = redis
        .master_of_slot(redis.slot_of(&format!("u:{}", live[0].claims()["sub"].as_str().unwrap())));
    let started = Instant::now();
    let new = tokio::task::block_in_place(|| redis.failover(old));
    assert_ne!(new, old);
    // Every session answers again from both replicas, none restarted.
    let recovered = eventually(RECOVERS_WITHIN, || async {
        for replica in &c.replicas {
            for pair in &live {
                if !replica.accepts(&pair.access).await {
                    return false;
                }
            }
        }
        true
    })
    .await;
    let took = started.elapsed();
    let load = load.stop().await;
    assert!(recovered, "not recovered after the failover");
    println!(
        "CLUSTER FAILOVER of {old} → {new}: all sessions answered {took:?} after it began; {}",
        load.summary()
    );
    nothing_stale(&c, &load, &ended).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_fails_its_slots_closed_and_the_rest_serve_on() {
    let c = cluster(2, |s| s.cache.timeout = Duration::from_millis(500)).await;
    let (live, ended) = sessions_on_every_master(&c, "killed").await;
    let mut c = c;
    let redis = c.redis_cluster();
    let owner_port = |pair: &Pair| {
        let sub = pair.claims()["sub"].as_str().unwrap().to_owned();
        redis.master_of_slot(redis.slot_of(&format!("u:{sub}")))
    };
    let victim = owner_port(&live[0]);
    let others: Vec<Pair> = live[1..].to_vec();

    let load = Load::start(&c, &live);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let killed_at = Instant::now();
    c.redis_cluster_mut().kill(victim);
    // Its slots fail closed, in time; the other masters' sessions answer.
    let asked = Instant::now();
    let reply = c.a().authenticate(&live[0].access).await;
    let waited = asked.elapsed();
    if reply.status == 503 {
        assert!(
            waited < Duration::from_millis(1_500),
            "failed closed after {waited:?}"
        );
    } else {
        assert_eq!(
            reply.status, 200,
            "the promoted replica answered: {:?}",
            reply.body
        );
    }
    for pair in &others {
        for replica in &c.replicas {
            assert!(
                replica.accepts(&pair.access).await,
                "a session on a live master refused"
            );
        }
    }
    // One master down fails its slots, not the replicas: still ready.
    let health = c.a().get("/health").await;
    assert_eq!(health.status, 200, "{:?}", health.body);
    let promoted = tokio::task::block_in_place(|| c.redis_cluster().wait_for_failover_of(victim));
    let recovered = eventually(RECOVERS_WITHIN, || async {
        for replica in &c.replicas {
            if !replica.accepts(&live[0].access).await {
                return false;
            }
        }
        true
    })
    .await;
    let took = killed_at.elapsed();
    let load = load.stop().await;
    assert!(recovered, "the killed master's sessions never came back");
    println!(
        "killed master {victim}, {promoted} promoted: its sessions answered again {took:?} after \
         the kill; {}",
        load.summary()
    );
    assert!(
        load.unavailable.load(Ordering::Relaxed) > 0,
        "the dead slots never failed closed"
    );
    nothing_stale(&c, &load, &ended).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_moved_while_traffic_flows_loses_no_session() {
    let c = cluster(2, |_| {}).await;
    let redis = c.redis_cluster();
    let masters = redis.masters();
    let user = user_on(redis, masters[0], "moving");
    // Several sessions of the user, so the slot holds several keys.
    let mut pairs = Vec::new();
    for i in 0..6 {
        pairs.push(c.replicas[i % 2].login(json!(user)).await);
    }
    // The first session rotates meanwhile; the others are authenticated.
    let load = Load::start(&c, &pairs[1..]);
    let churn = {
        let a = c.a().addr;
        let refresh = pairs[0].refresh.clone();
        tokio::spawn(async move {
            let mut refresh = refresh;
            let mut rotated = 0;
            for _ in 0..40 {
                let reply = crate::support::client::send(
                    a,
                    crate::support::client::request(http::Method::POST, "/refresh")
                        .header("content-type", "application/json")
                        .body(crate::support::client::json_body(
                            &json!({"refresh": refresh}),
                        ))
                        .unwrap(),
                )
                .await;
                assert_eq!(
                    reply.status, 200,
                    "a rotation while the slot moved: {:?}",
                    reply.body
                );
                refresh = reply.json()["refresh"].as_str().unwrap().to_owned();
                rotated += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            rotated
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let slot = redis.slot_of(&format!("u:{user}"));
    tokio::task::block_in_place(|| redis.migrate_slot(slot, masters[1]));
    assert_eq!(redis.master_of_slot(slot), masters[1]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let load = load.stop().await;
    assert_eq!(churn.await.unwrap(), 40);
    println!(
        "slot {slot} moved {} → {}: {}",
        masters[0],
        masters[1],
        load.summary()
    );
    // The first session rotated: its first access token is superseded.
    let live = &pairs[1..];
    for pair in live {
        assert!(c.a().accepts(&pair.access).await && c.b().accepts(&pair.access).await);
        assert!(redis.pttl(&session_key(&user, pair)) > 0);
    }
    assert_eq!(
        load.unavailable.load(Ordering::Relaxed),
        0,
        "a request failed while the slot moved"
    );
    assert_eq!(
        load.refused.load(Ordering::Relaxed),
        0,
        "a live session refused"
    );
    let listed = crate::support::client::send(
        c.b().addr,
        crate::support::client::request(http::Method::GET, "/sessions")
            .header("authorization", format!("Bearer {}", live[0].access))
            .body(http_body_util::Full::<bytes::Bytes>::default())
            .unwrap(),
    )
    .await;
    assert_eq!(listed.json()["sessions"].as_array().unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_cache_hears_every_master_and_forgets_on_a_failover() {
    let c = cluster(2, |s| {
        s.auth.local_cache.enabled = true;
    })
    .await;
    let redis = c.redis_cluster();
    let up = eventually(Duration::from_secs(10), || async {
        c.a().metric("tokengate_local_cache_up").await == 1.0
            && c.b().metric("tokengate_local_cache_up").await == 1.0
    })
    .await;
    assert!(up, "the local caches never came up");
    let masters = redis.masters();
    let mut pairs = Vec::new();
    for (i, &port) in masters.iter().enumerate() {
        let user = user_on(redis, port, &format!("cached{i}"));
        let pair = c.a().login(json!(user)).await;
        // Learned by A, then answered from its memory.
        assert!(c.a().accepts(&pair.access).await);
        assert!(c.a().accepts(&pair.access).await);
        pairs.push(pair);
    }
    let hits = c.a().metric("tokengate_local_cache_hits_total").await;
    assert!(hits >= 3.0, "{hits} hits");
    // A logout on B reaches A's cache from whichever master holds it.
    for pair in &pairs {
        assert_eq!(c.b().logout(&pair.access).await.status, 200);
        let forgotten = eventually(Duration::from_secs(2), || async {
            !c.a().accepts(&pair.access).await
        })
        .await;
        assert!(forgotten, "A still accepts a session B logged out");
    }
    // A failover changes the slot map: every cache forgets and rebuilds.
    let losses = c
        .a()
        .metric("tokengate_local_cache_channel_losses_total")
        .await;
    let fresh = c
        .a()
        .login(json!(user_on(redis, masters[0], "after")))
        .await;
    assert!(c.a().accepts(&fresh.access).await);
    tokio::task::block_in_place(|| redis.failover(masters[0]));
    let rebuilt = eventually(RECOVERS_WITHIN, || async {
        c.a()
            .metric("tokengate_local_cache_channel_losses_total")
            .await
            > losses
            && c.a().metric("tokengate_local_cache_up").await == 1.0
    })
    .await;
    assert!(
        rebuilt,
        "the cache did not forget and reconnect after the failover"
    );
    assert!(c.a().accepts(&fresh.access).await);
    assert_eq!(c.b().logout(&fresh.access).await.status, 200);
    let forgotten = eventually(Duration::from_secs(2), || async {
        !c.a().accepts(&fresh.access).await
    })
    .await;
    assert!(forgotten, "the promoted master's pushes reach the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_cli_reshard_while_traffic_flows_loses_no_session() {
    let c = cluster(2, |_| {}).await;
    let redis = c.redis_cluster();
    let masters = redis.masters();
    // redis-cli moves a master's lowest slots first: users in those.
    const MOVED: u32 = 24;
    let first = redis.slots_of(masters[0])[0].0;
    let moving: Vec<String> = (0..)
        .map(|i| format!("reshard-{i}"))
        .filter(|user| {
            let slot = crate::support::redis_cluster::key_slot(&format!("u:{user}"));
            (first..first + MOVED as u16).contains(&slot)
        })
        .take(4)
        .collect();
    let staying = user_on(redis, masters[2], "staying");
    let mut pairs = Vec::new();
    for (i, user) in moving.iter().chain([&staying]).enumerate() {
        pairs.push(c.replicas[i % 2].login(json!(user)).await);
    }
    let load = Load::start(&c, &pairs);
    // Logins of a moving user meanwhile: each one made, or failed closed
    // with nothing written (login.lua looks before it writes).
    let logins = {
        let (a, user, load) = (c.a().addr, moving[0].clone(), load.shared());
        tokio::spawn(async move {
            let mut made = Vec::new();
            let mut refused = 0;
            while !load.stop.load(Ordering::Relaxed) {
                let reply = crate::support::client::send(
                    a,
                    crate::support::client::request(http::Method::POST, "/login")
                        .header("content-type", "application/json")
                        .body(crate::support::client::json_body(&json!({"user_id": user})))
                        .unwrap(),
                )
                .await;
                match reply.status.as_u16() {
                    200 => made.push(Pair::from_reply(&reply)),
                    503 => refused += 1,
                    other => panic!("a login while slots moved: {other} {:?}", reply.body),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (made, refused)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let moved = tokio::task::block_in_place(|| redis.reshard(masters[0], masters[1], MOVED));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let load = load.stop().await;
    let (made, refused) = logins.await.unwrap();
    println!(
        "logins of a moving user meanwhile: {} made, {refused} failed closed",
        made.len()
    );
    assert!(!made.is_empty());
    for pair in &made {
        assert!(
            c.b().accepts(&pair.access).await,
            "a login made while slots moved is lost"
        );
    }
    println!(
        "redis-cli --cluster reshard of {} slots {} → {}: {}",
        moved.len(),
        masters[0],
        masters[1],
        load.summary()
    );
    for user in &moving {
        let slot = redis.slot_of(&format!("u:{user}"));
        assert!(
            moved.contains(&slot),
            "{user}'s slot {slot} did not move: {moved:?}"
        );
        assert_eq!(redis.master_of_slot(slot), masters[1]);
    }
    assert_eq!(
        load.refused.load(Ordering::Relaxed),
        0,
        "a live session refused"
    );
    assert_eq!(
        load.unavailable.load(Ordering::Relaxed),
        0,
        "a request failed while slots moved"
    );
    // Every session rotates and ends from either replica, wherever it is now.
    for pair in &pairs {
        let next = Pair::from_reply(&c.a().refresh(&pair.refresh).await);
        assert!(c.b().accepts(&next.access).await);
        assert_eq!(c.b().logout(&next.access).await.status, 200);
        assert!(!c.a().accepts(&next.access).await);
    }
}

/// Requests answered from a replica's memory still count as activity: its
/// touches reach each session's own master, so sessions used only through
/// the cache outlive the idle timeout on every master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_caches_touches_reach_each_sessions_master() {
    let idle = Duration::from_secs(2);
    let c = cluster(2, |s| {
        s.auth.local_cache.enabled = true;
        s.auth.auto_logout = idle;
        s.auth.touch_interval = Some(Duration::from_millis(300));
        s.cache.timeout = Duration::from_millis(300);
    })
    .await;
    let redis = c.redis_cluster();
    let up = eventually(Duration::from_secs(10), || async {
        c.a().metric("tokengate_local_cache_up").await == 1.0
    })
    .await;
    assert!(up, "the local cache never came up");
    let users: Vec<String> = redis
        .masters()
        .iter()
        .enumerate()
        .map(|(i, &port)| user_on(redis, port, &format!("touched{i}")))
        .collect();
    let mut pairs = Vec::new();
    for user in &users {
        pairs.push(c.a().login(json!(user)).await);
    }
    let hits = c.a().metric("tokengate_local_cache_hits_total").await;
    let started = Instant::now();
    while started.elapsed() < idle * 2 {
        for pair in &pairs {
            assert!(c.a().accepts(&pair.access).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c.a().metric("tokengate_local_cache_hits_total").await > hits + 10.0);
    // The touches landed on each session's master: its last activity is
    // at most about one touch interval old (a look-up's own touch comes
    // only near the session's end, a second and more apart).
    for (pair, user) in pairs.iter().zip(&users) {
        let last: u64 = redis
            .route(cmd("HGET").arg(session_key(user, pair)).arg("l"))
            .unwrap();
        let age = tokengate::time::now().saturating_sub(last);
        assert!(age < 1_000, "last activity {age} ms ago");
    }
    for pair in &pairs {
        assert!(
            c.b().accepts(&pair.access).await,
            "a session used through A's cache idled out on its master"
        );
    }
}
