//! SPEC §10: `/authenticate` from each replica's memory (`auth.local_cache`)
//! never accepts what Redis would refuse. Three replicas with the cache on
//! over a real Redis: logout, rotation and theft on one replica reach the
//! others within 100 ms; a Redis restart or a killed tracking connection
//! flushes the cache; idle sessions still die on time while active ones are
//! kept alive by the write-behind touches; an unanswered heartbeat holds
//! up no invalidation. A last test runs replicas that ignore invalidations
//! and shows the stale accept the others would catch.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deadpool_redis::redis;
use serde_json::json;
use tokengate::config::{Secret, Settings};
use tokengate::store::redis::{RedisStore, TRACKING_NAME};
use tokengate::store::{Store, Timing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{Backend, Cluster, Pair, Replica, eventually};
use crate::support::redis::RedisServer;

/// How long another replica may keep accepting a token that was ended.
pub(crate) const INVALIDATION_BOUND: Duration = Duration::from_millis(100);

fn cached(s: &mut Settings) {
    s.auth.local_cache.enabled = true;
    // Touches are writes, which invalidate: keep them out of the way.
    s.auth.touch_interval = Some(Duration::from_secs(10));
}

/// Ids of the replicas' tracking connections.
pub(crate) fn tracking_clients(redis: &RedisServer) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut redis.connection())
        .unwrap();
    list.lines()
        .filter(|line| line.contains(&format!(" name={TRACKING_NAME} ")))
        .filter_map(|line| line.split(' ').find_map(|kv| kv.strip_prefix("id=")))
        .map(str::to_owned)
        .collect()
}

/// A cluster of `n` replicas whose tracking connections are all up.
async fn cluster(n: usize, configure: impl FnOnce(&mut Settings)) -> Cluster {
    let c = Cluster::start_with(Backend::Redis, n, |s| {
        cached(s);
        configure(s);
    })
    .await;
    wait_for_tracking(&c, n).await;
    c
}

async fn wait_for_tracking(c: &Cluster, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while tracking_clients(c.redis()).len() < n {
        assert!(
            Instant::now() < deadline,
            "tracking connections did not come up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Tracking is switched on right after the name is set.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn evalsha_calls(redis: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.connection())
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:"))
        .and_then(|stats| stats.split(',').find_map(|kv| kv.strip_prefix("calls=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Every replica accepts `access`, twice (the second from memory).
async fn warm(c: &Cluster, access: &str) {
    for replica in &c.replicas {
        assert!(replica.accepts(access).await);
        assert!(replica.accepts(access).await);
    }
}

/// Polls every replica until none accepts `access`; panics if one still
/// does after `within`. Returns how long it took.
pub(crate) async fn refused_everywhere(
    replicas: &[&Replica],
    access: &str,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let mut accepted = false;
        for replica in replicas {
            accepted |= replica.accepts(access).await;
        }
        if !accepted {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "a replica still accepts a dead token after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_authenticate_sends_nothing_to_redis() {
    let c = cluster(3, |_| {}).await;
    let pair = c.a().login(json!(1)).await;
    warm(&c, &pair.access).await;
    let before = evalsha_calls(c.redis());
    for _ in 0..100 {
        for replica in &c.replicas {
            assert!(replica.accepts(&pair.access).await);
        }
    }
    let sent = evalsha_calls(c.redis()) - before;
    eprintln!("300 cached authenticates on 3 replicas: {sent} EVALSHA");
    assert_eq!(sent, 0, "cached answers need no round trip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_a_is_refused_by_b_and_c_within_the_bound() {
    let c = cluster(3, |_| {}).await;
    let pair = c.a().login(json!(1)).await;
    let other = c.a().login(json!(2)).await;
    warm(&c, &pair.access).await;
    warm(&c, &other.access).await;

    assert_eq!(c.a().logout(&pair.access).await.status, 200);
    let took = refused_everywhere(
        &[&c.replicas[1], &c.replicas[2]],
        &pair.access,
        INVALIDATION_BOUND,
    )
    .await;
    eprintln!("logout reached B and C within {took:?}");
    assert!(!c.a().accepts(&pair.access).await);
    for replica in &c.replicas {
        assert!(replica.accepts(&other.access).await, "others live on");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_retires_the_old_access_token_everywhere() {
    let c = cluster(3, |_| {}).await;
    let old = c.a().login(json!(1)).await;
    warm(&c, &old.access).await;

    let reply = c.b().refresh(&old.refresh).await;
    assert_eq!(reply.status, 200);
    let new = Pair::from_reply(&reply);
    let all: Vec<&Replica> = c.replicas.iter().collect();
    refused_everywhere(&all, &old.access, INVALIDATION_BOUND).await;
    for replica in &c.replicas {
        assert!(
            replica.accepts(&new.access).await,
            "its successor is current"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn theft_kills_the_session_on_every_replica() {
    let grace = Duration::from_millis(200);
    let c = cluster(3, |s| s.auth.refresh_grace = grace).await;
    let old = c.a().login(json!(1)).await;
    let new = Pair::from_reply(&c.a().refresh(&old.refresh).await);
    warm(&c, &new.access).await;

    // Waiting out the grace window is the point; nothing to poll for.
    tokio::time::sleep(grace + Duration::from_millis(100)).await;
    assert_eq!(
        c.replicas[2].refresh(&old.refresh).await.status,
        401,
        "reuse"
    );
    let all: Vec<&Replica> = c.replicas.iter().collect();
    refused_everywhere(&all, &new.access, INVALIDATION_BOUND).await;
    assert_eq!(c.b().refresh(&new.refresh).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_flushes_every_cache() {
    let mut c = cluster(3, |_| {}).await;
    let pair = c.a().login(json!(1)).await;
    warm(&c, &pair.access).await;

    // The restarted Redis is empty: every session is gone, so a replica
    // that accepted the token from memory would be answering stale.
    c.redis_mut().restart();
    for replica in &c.replicas {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let reply = replica.authenticate(&pair.access).await;
            match reply.status.as_u16() {
                401 => break,
                503 => assert!(Instant::now() < deadline, "Redis did not come back"),
                other => panic!("after the restart a replica answered {other}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // And the caches work again once tracking is back.
    wait_for_tracking(&c, 3).await;
    let fresh = c.b().login(json!(2)).await;
    warm(&c, &fresh.access).await;
    let before = evalsha_calls(c.redis());
    assert!(c.a().accepts(&fresh.access).await);
    assert_eq!(
        evalsha_calls(c.redis()),
        before,
        "answered from memory again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_lost_with_the_tracking_connection_is_never_trusted() {
    let c = cluster(3, |_| {}).await;
    let pair = c.a().login(json!(1)).await;
    warm(&c, &pair.access).await;
    let session = c.redis().session_key(&pair.session_id);

    // Kill the tracking connections and end the session in one atomic
    // step: the invalidation is never delivered, so only flushing the cache
    // on the lost connection keeps the token from being accepted.
    let mut pipe = redis::pipe();
    pipe.atomic();
    for id in tracking_clients(c.redis()) {
        pipe.cmd("CLIENT").arg("KILL").arg("ID").arg(id).ignore();
    }
    pipe.cmd("DEL").arg(&session).ignore();
    let () = pipe.query(&mut c.redis().connection()).unwrap();

    for replica in &c.replicas {
        assert!(!replica.accepts(&pair.access).await, "stale accept");
    }
    wait_for_tracking(&c, 3).await;
    let all: Vec<&Replica> = c.replicas.iter().collect();
    refused_everywhere(&all, &pair.access, Duration::ZERO).await;
    let fresh = c.a().login(json!(2)).await;
    warm(&c, &fresh.access).await;
    let before = evalsha_calls(c.redis());
    assert!(c.replicas[2].accepts(&fresh.access).await);
    assert_eq!(
        evalsha_calls(c.redis()),
        before,
        "answered from memory again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touches_keep_active_sessions_alive_and_idle_ones_die_on_time() {
    let idle = Duration::from_secs(3);
    let c = cluster(3, |s| {
        s.auth.auto_logout = idle;
        s.auth.touch_interval = Some(Duration::from_millis(500));
        s.cache.timeout = Duration::from_millis(500);
    })
    .await;
    let active = c.a().login(json!(1)).await;
    let quiet = c.a().login(json!(2)).await;
    warm(&c, &active.access).await;
    warm(&c, &quiet.access).await;
    let last_quiet_use = Instant::now();

    // Twice the idle time of requests, each on one replica in turn.
    let before = evalsha_calls(c.redis());
    let start = Instant::now();
    let mut requests = 0u64;
    while start.elapsed() < idle * 2 {
        let replica = &c.replicas[requests as usize % 3];
        assert!(
            replica.accepts(&active.access).await,
            "an active session died after {:?}",
            start.elapsed()
        );
        requests += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = evalsha_calls(c.redis()) - before;
    eprintln!(
        "{requests} authenticates over {:?} on 3 replicas, touch every 500ms: {sent} EVALSHA \
         ({:.3} per authenticate)",
        start.elapsed(),
        sent as f64 / requests as f64
    );
    // Per touch interval at most: each replica's touch (3), and after each
    // touch — a write, which invalidates the other replicas — their
    // look-ups (3 × 2); whatever the request rate. Besides, each replica
    // sweeps expired sessions once a second (SessionEnded events).
    let intervals = start.elapsed().as_millis() as u64 / 500 + 1;
    let sweeps = 3 * (start.elapsed().as_secs() + 2);
    assert!(
        sent <= intervals * 9 + sweeps,
        "{sent} EVALSHA in {intervals} touch intervals"
    );

    // The quiet one was last used long ago (its touch landed within 500 ms
    // after): dead on every replica, in Redis too.
    assert!(last_quiet_use.elapsed() > idle + Duration::from_millis(600));
    for replica in &c.replicas {
        assert!(
            !replica.accepts(&quiet.access).await,
            "idle session lives on"
        );
    }
    assert_eq!(
        c.redis().pttl(&c.redis().session_key(&quiet.session_id)),
        -2
    );
    assert!(c.redis().pttl(&c.redis().session_key(&active.session_id)) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_ignores_invalidations_accepts_stale_tokens() {
    // The mutation check: the same cluster with invalidations ignored makes
    // exactly the stale accept the tests above rule out.
    let c = cluster(3, |s| s.auth.local_cache.ignore_invalidations = true).await;
    let pair = c.a().login(json!(1)).await;
    warm(&c, &pair.access).await;
    assert_eq!(c.a().logout(&pair.access).await.status, 200);
    tokio::time::sleep(INVALIDATION_BOUND * 3).await;
    let mut stale = HashMap::new();
    for (i, replica) in c.replicas.iter().enumerate() {
        stale.insert(i, replica.accepts(&pair.access).await);
    }
    assert!(
        stale.values().all(|accepted| *accepted),
        "without invalidations every replica answers stale: {stale:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_memory_store_the_setting_is_ignored() {
    let c = Cluster::start_with(Backend::Memory, 1, cached).await;
    let pair = c.a().login(json!(1)).await;
    assert!(c.a().accepts(&pair.access).await);
    assert_eq!(c.a().logout(&pair.access).await.status, 200);
    assert!(!c.a().accepts(&pair.access).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_close_to_its_idle_end_is_touched_by_the_request_itself() {
    let idle = Duration::from_secs(3);
    let c = cluster(2, |s| {
        s.auth.auto_logout = idle;
        s.auth.touch_interval = Some(Duration::from_millis(500));
        s.cache.timeout = Duration::from_millis(500);
    })
    .await;
    let pair = c.a().login(json!(1)).await;
    let key = c.redis().session_key(&pair.session_id);
    // Idle until less than the margin (500 ms + 500 ms) is left.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert!(c.redis().pttl(&key) < 1_000);
    assert!(c.b().accepts(&pair.access).await);
    assert!(
        c.redis().pttl(&key) > 2_000,
        "the request restarted the idle clock at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_everywhere_reaches_every_cache() {
    let c = cluster(3, |_| {}).await;
    let phone = c.a().login(json!("bob")).await;
    let laptop = c.b().login(json!("bob")).await;
    let alice = c.a().login(json!("alice")).await;
    for pair in [&phone, &laptop, &alice] {
        warm(&c, &pair.access).await;
    }
    let reply = c.replicas[2]
        .post_json("/logout", &json!({"refresh": phone.refresh, "all": true}))
        .await;
    assert_eq!(reply.json(), json!({"ended": 2}));
    let all: Vec<&Replica> = c.replicas.iter().collect();
    refused_everywhere(&all, &phone.access, INVALIDATION_BOUND).await;
    refused_everywhere(&all, &laptop.access, INVALIDATION_BOUND).await;
    for replica in &c.replicas {
        assert!(
            replica.accepts(&alice.access).await,
            "another user lives on"
        );
    }
}

/// A TCP proxy in front of Redis that, while holding, keeps what a tracking
/// connection sends from reaching Redis — its heartbeat `PING` goes
/// unanswered — while Redis's pushes on that connection still come back,
/// and other connections pass untouched: a heartbeat that is slow to be
/// answered, for one connection only.
struct PingStall {
    addr: SocketAddr,
    hold: Arc<watch::Sender<bool>>,
    /// A `PING` of a tracking connection is being held back.
    ping_held: Arc<AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

impl PingStall {
    async fn start(redis: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = Arc::new(watch::Sender::new(false));
        let ping_held = Arc::new(AtomicBool::new(false));
        let (h, p) = (hold.clone(), ping_held.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", redis)).await else {
                    continue;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                let (hold, ping_held) = (h.clone(), p.clone());
                tokio::spawn(async move {
                    let mut tracking = false;
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        tracking |= contains(chunk, TRACKING_NAME.as_bytes());
                        let mut held = hold.subscribe();
                        if tracking && *held.borrow_and_update() {
                            if contains(chunk, b"PING") {
                                ping_held.store(true, Ordering::SeqCst);
                            }
                            let _ = held.wait_for(|hold| !*hold).await;
                        }
                        if server_write.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            hold,
            ping_held,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    fn hold(&self) {
        self.hold.send_replace(true);
    }

    fn release(&self) {
        self.hold.send_replace(false);
    }

    fn holds_a_ping(&self) -> bool {
        self.ping_held.load(Ordering::SeqCst)
    }
}

impl Drop for PingStall {
    fn drop(&mut self) {
        self.release();
        self.accept.abort();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_heartbeat_holds_up_no_invalidation() {
    // Long enough that a replica waiting for its PONG before reading
    // pushes would be caught answering stale well before it gives up.
    let timeout = Duration::from_secs(3);
    let c = cluster(1, |s| s.cache.timeout = timeout).await;
    let stall = PingStall::start(c.redis().port()).await;
    let mut settings = c.settings.clone();
    settings.cache.url = Secret::new(stall.url());
    let store = RedisStore::new(&settings.cache, Timing::from_auth(&settings.auth)).unwrap();
    let b = Replica::spawn(&settings, Store::Redis(store)).await;
    wait_for_tracking(&c, 2).await;
    let pair = c.a().login(json!(1)).await;
    assert!(b.accepts(&pair.access).await);
    assert!(b.accepts(&pair.access).await, "from memory");

    stall.hold();
    let ping_held = eventually(Duration::from_secs(3), || async { stall.holds_a_ping() }).await;
    assert!(ping_held, "no heartbeat was sent");
    let held_since = Instant::now();
    assert_eq!(c.a().logout(&pair.access).await.status, 200);
    let took = refused_everywhere(&[&b], &pair.access, INVALIDATION_BOUND).await;
    assert!(
        held_since.elapsed() < timeout,
        "refused only once the heartbeat was given up"
    );
    eprintln!("logout reached B within {took:?}, its PING unanswered");

    // Unanswered for cache.timeout, the heartbeat is given up: the channel
    // is down (cleared, bypassed) until a new connection is up.
    let down = eventually(timeout * 2, || async {
        b.metric("tokengate_local_cache_up").await == 0.0
    })
    .await;
    assert!(down, "a missed heartbeat left the channel up");
    assert_eq!(
        b.metric("tokengate_local_cache_channel_losses_total").await,
        1.0
    );
    assert_eq!(b.metric("tokengate_local_cache_entries").await, 0.0);
    stall.release();
    let up = eventually(Duration::from_secs(10), || async {
        b.metric("tokengate_local_cache_up").await == 1.0
    })
    .await;
    assert!(up, "the channel did not come back");
}

/// `tokengate_local_cache_<name>` on `replica`.
pub(crate) async fn cache_metric(replica: &Replica, name: &str) -> f64 {
    replica
        .metric(&format!("tokengate_local_cache_{name}"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_hits_look_ups_bypasses_invalidations_and_losses() {
    let c = cluster(2, |s| s.auth.local_cache.max_entries = 1).await;
    let b = c.b();
    assert_eq!(cache_metric(b, "up").await, 1.0);
    let pair = c.a().login(json!(1)).await;
    for _ in 0..3 {
        assert!(b.accepts(&pair.access).await);
    }
    assert_eq!(cache_metric(b, "lookups_total").await, 1.0, "learned once");
    assert_eq!(cache_metric(b, "hits_total").await, 2.0, "then from memory");
    assert_eq!(cache_metric(b, "entries").await, 1.0);
    assert_eq!(cache_metric(b, "bypasses_total").await, 0.0);

    // max_entries is 1: another session takes the SPEC §3 path.
    let other = c.a().login(json!(2)).await;
    assert!(b.accepts(&other.access).await);
    assert_eq!(cache_metric(b, "bypasses_total").await, 1.0);
    assert_eq!(cache_metric(b, "lookups_total").await, 1.0);

    // A logout on A empties B's map by itself: an invalidation applied.
    let invalidations = cache_metric(b, "invalidations_total").await;
    assert_eq!(c.a().logout(&pair.access).await.status, 200);
    let forgotten = eventually(INVALIDATION_BOUND, || async {
        cache_metric(b, "entries").await == 0.0
    })
    .await;
    assert!(forgotten, "the logout's invalidation was not applied");
    assert!(cache_metric(b, "invalidations_total").await > invalidations);
    assert_eq!(cache_metric(b, "hits_total").await, 2.0);

    // A killed tracking connection is a channel lost, then back.
    assert_eq!(cache_metric(b, "channel_losses_total").await, 0.0);
    for id in tracking_clients(c.redis()) {
        let _: () = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query(&mut c.redis().connection())
            .unwrap();
    }
    let lost = eventually(Duration::from_secs(2), || async {
        cache_metric(b, "channel_losses_total").await == 1.0
    })
    .await;
    assert!(lost, "the lost channel was not counted");
    let back = eventually(Duration::from_secs(5), || async {
        cache_metric(b, "up").await == 1.0
    })
    .await;
    assert!(back, "the channel did not come back");
    assert_eq!(cache_metric(c.a(), "channel_losses_total").await, 1.0);
}
