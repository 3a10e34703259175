//! Redis Sentinel (`cache.sentinel`): replicas find the master through a
//! sentinel and follow its failovers. One master, one replica and one
//! sentinel on loopback, two tokengate replicas under steady load.
//!
//! What a failover must and must not do: requests that cannot be served
//! fail closed (`503`, never a wrong `200` or `401`); both replicas serve
//! from the promoted node within 5 s of the promotion; a session
//! replicated before the failover still works; a logout after it holds on
//! both replicas (no replica answers from the old master); a logged-out or
//! never-issued token is refused throughout. Once as `SENTINEL FAILOVER`
//! (a planned switch, the old master still up and writable until Sentinel
//! demotes it), once as a crash.
//!
//! Also: without a sentinel to ask, requests fail closed in time; a
//! master demoted behind the replicas' back (`READONLY`) is never written
//! again through a connection opened before; and the local cache (SPEC
//! §10) follows a failover, trusting nothing it learned from the old master.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_redis::redis;
use http::Method;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use tokengate::config::{Secret, SentinelSettings, Settings};
use tokengate::store::redis::RedisStore;
use tokengate::store::{Store, Timing};

use crate::helpers::{Backend, Cluster, Pair, Replica, SECRET, eventually};
use crate::local_cache::{INVALIDATION_BOUND, cache_metric, refused_everywhere, tracking_clients};
use crate::support::client;
use crate::support::ports::free_port;
use crate::support::redis::{RedisServer, SentinelServer};

const NAME: &str = "mymaster";
const REDIS_PASSWORD: &str = "redis-password-for-sentinel-tests";
const SENTINEL_PASSWORD: &str = "sentinel-password-for-tests";
/// The bound on serving again after a promotion (the 5 s).
const RECOVERS_WITHIN: Duration = Duration::from_secs(5);

/// Files for the tests' settings, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("tokengate-sentinel-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).expect("write a test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Redis with a replica and a sentinel, and tokengate replicas that reach
/// it through the sentinel only.
struct Deployment {
    master: RedisServer,
    replica: RedisServer,
    sentinel: SentinelServer,
    cluster: Cluster,
    _files: TempDir,
}

impl Deployment {
    async fn start(replicas: usize) -> Self {
        Self::start_with(replicas, |_| {}).await
    }

    /// `configure` adjusts the settings every tokengate replica gets.
    async fn start_with(replicas: usize, configure: impl FnOnce(&mut Settings)) -> Self {
        let master = RedisServer::start_with_args(Some(REDIS_PASSWORD), &[]);
        let replica = RedisServer::start_replica_of(&master);
        let sentinel = SentinelServer::start(NAME, &master, Some(SENTINEL_PASSWORD));
        let files = TempDir::new();
        let redis_password = files.write("redis_password", REDIS_PASSWORD);
        let sentinel_password = files.write("sentinel_password", &format!("{SENTINEL_PASSWORD}\n"));
        let node = sentinel.node();
        let mut cluster = Cluster::start_with(Backend::Memory, 0, |s| {
            s.cache.sentinel = Some(SentinelSettings {
                master: NAME.into(),
                nodes: vec![node],
                password_file: Some(sentinel_password),
                ..SentinelSettings::default()
            });
            s.cache.password_file = Some(redis_password);
            s.login.open = true;
            configure(s);
        })
        .await;
        for _ in 0..replicas {
            let tokengate = spawn(&cluster.settings).await;
            cluster.replicas.push(tokengate);
        }
        let promotable = eventually(Duration::from_secs(10), || async {
            sentinel.can_promote(NAME, replica.port())
        })
        .await;
        assert!(promotable, "the sentinel never saw the replica in sync");
        Self {
            master,
            replica,
            sentinel,
            cluster,
            _files: files,
        }
    }

    /// Waits until the replica has everything the master wrote so far.
    async fn replicate(&self) {
        replicate(&self.master, &self.replica).await;
    }
}

/// Waits until `replica` has everything `master` wrote so far.
async fn replicate(master: &RedisServer, replica: &RedisServer) {
    let copied = eventually(Duration::from_secs(5), || async {
        master.has_replicated_to(replica)
    })
    .await;
    assert!(copied, "the replica did not catch up with its master");
}

/// A replica whose store is built from `settings`, as `App::build` does.
async fn spawn(settings: &Settings) -> Replica {
    let store =
        RedisStore::new(&settings.cache, Timing::from_auth(&settings.auth)).expect("a Redis store");
    Replica::spawn(settings, Store::Redis(store)).await
}

/// A well-signed access token of a session that never existed.
fn never_issued(like: &Pair) -> String {
    let mut claims = like.claims();
    claims["sid"] = json!(uuid::Uuid::new_v4().to_string());
    claims["jti"] = json!(uuid::Uuid::new_v4().to_string());
    let header: Header = serde_json::from_value(json!({"alg": "HS256", "typ": "at+jwt"})).unwrap();
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// What the load asks each replica, over and over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// `/authenticate` with the session that lives through the failover
    /// (until the test logs it out).
    Live,
    /// `/authenticate` with a session logged out before the failover.
    LoggedOut,
    /// `/authenticate` with a token of no session.
    NeverIssued,
    /// `/login`.
    Login,
}

#[derive(Debug)]
struct Seen {
    replica: usize,
    probe: Probe,
    sent: Instant,
    status: u16,
}

/// Steady traffic to every replica until stopped; what each request got.
struct Load {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(addrs: Vec<SocketAddr>, live: &str, logged_out: &str, never: &str) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = addrs
            .into_iter()
            .enumerate()
            .map(|(replica, addr)| {
                let (seen, stop) = (seen.clone(), stop.clone());
                let tokens = [
                    (Probe::Live, live.to_owned()),
                    (Probe::LoggedOut, logged_out.to_owned()),
                    (Probe::NeverIssued, never.to_owned()),
                ];
                tokio::spawn(async move {
                    let mut user = 0;
                    while !stop.load(Ordering::Relaxed) {
                        for (probe, token) in &tokens {
                            let sent = Instant::now();
                            let reply =
                                client::with_bearer(addr, Method::GET, "/authenticate", token)
                                    .await;
                            let status = reply.status.as_u16();
                            seen.lock().unwrap().push(Seen {
                                replica,
                                probe: *probe,
                                sent,
                                status,
                            });
                        }
                        user += 1;
                        let sent = Instant::now();
                        let reply =
                            client::post_json(addr, "/login", &json!({"user_id": user})).await;
                        let status = reply.status.as_u16();
                        seen.lock().unwrap().push(Seen {
                            replica,
                            probe: Probe::Login,
                            sent,
                            status,
                        });
                        // Bounded: a few hundred requests a second in all.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            })
            .collect();
        Self { seen, stop, tasks }
    }

    /// How many `probe` requests sent after `since` got an answer on `replica`.
    fn count(&self, replica: usize, probe: Probe, since: Instant) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.replica == replica && s.probe == probe && s.sent > since)
            .count()
    }

    async fn stop(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a load task panicked");
        }
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

/// How the master goes away.
#[derive(Clone, Copy, Debug)]
enum Failover {
    /// `SENTINEL FAILOVER`: a planned switch, the old master still up.
    Command,
    /// SIGKILL: the sentinel notices (after 1 s) and promotes the replica.
    Crash,
}

/// The scenario of the issue, ending in the master going away `how`.
async fn failover_under_load(how: Failover) {
    let mut d = Deployment::start(2).await;
    let c = &d.cluster;
    let live = c.a().login(json!("survivor")).await;
    assert!(c.b().accepts(&live.access).await);
    let gone = c.b().login(json!("left")).await;
    assert_eq!(c.a().logout(&gone.access).await.status, 200);
    let never = never_issued(&live);
    d.replicate().await;

    let addrs = c.replicas.iter().map(|r| r.addr).collect();
    let load = Load::start(addrs, &live.access, &gone.access, &never);
    let warm = Instant::now();
    let warmed = eventually(Duration::from_secs(5), || async {
        (0..2).all(|r| load.count(r, Probe::Live, warm) >= 3)
    })
    .await;
    assert!(warmed, "no steady load before the failover");

    let failed_over = Instant::now();
    match how {
        Failover::Command => {
            let accepted = eventually(Duration::from_secs(5), || async {
                d.sentinel.failover(NAME).is_ok()
            })
            .await;
            assert!(accepted, "SENTINEL FAILOVER refused:\n{}", d.sentinel.log());
        }
        Failover::Crash => d.master.kill(),
    }
    // When the replica took over, and when the sentinel said so.
    let mut promoted = None;
    let mut announced = None;
    let deadline = failed_over + Duration::from_secs(10);
    while promoted.is_none() || announced.is_none() {
        assert!(
            Instant::now() < deadline,
            "no promotion within 10 s:\n{}",
            d.sentinel.log()
        );
        if promoted.is_none() && is_master(&d.replica) {
            promoted = Some(Instant::now());
        }
        if announced.is_none() && d.sentinel.master_port(NAME) == Some(d.replica.port()) {
            announced = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (promoted, announced) = (promoted.unwrap(), announced.unwrap());

    // Each replica writes to the promoted node within the bound: a login
    // through it is found there.
    let c = &d.cluster;
    let mut moved = Vec::new();
    for replica in &c.replicas {
        let on_new_master = writes_to(replica, &d.replica).await;
        assert!(
            on_new_master && promoted.elapsed() < RECOVERS_WITHIN,
            "replica {} still not on the promoted node {:?} after the promotion",
            replica.addr,
            promoted.elapsed()
        );
        moved.push(promoted.elapsed());
    }
    // The session replicated before the failover lives on.
    for replica in &c.replicas {
        assert!(
            replica.accepts(&live.access).await,
            "lost a replicated session"
        );
    }
    if let Failover::Command = how {
        // Nothing of ours is left on the old master, which (until Sentinel
        // demotes it) would still answer.
        let left = eventually(Duration::from_secs(1), || async {
            clients_of_ours(&d.master) == 0
        })
        .await;
        assert!(left, "a replica still talks to the old master");
    }

    // A logout after the failover holds everywhere, at once.
    let logging_out = Instant::now();
    assert_eq!(c.b().logout(&live.access).await.status, 200);
    let logged_out = Instant::now();
    for replica in &c.replicas {
        assert!(
            !replica.accepts(&live.access).await,
            "a logout did not hold"
        );
    }
    let observed = eventually(Duration::from_secs(5), || async {
        (0..2).all(|r| load.count(r, Probe::Live, logged_out) >= 5)
    })
    .await;
    assert!(observed, "too little load after the logout");
    let seen = load.stop().await;

    for s in &seen {
        let allowed: &[u16] = match s.probe {
            Probe::Live if s.sent < logging_out => &[200, 503],
            Probe::Live if s.sent > logged_out => &[401, 503],
            Probe::Live => &[200, 401, 503],
            Probe::LoggedOut | Probe::NeverIssued => &[401, 503],
            Probe::Login => &[200, 503],
        };
        assert!(
            allowed.contains(&s.status),
            "replica {} answered {} to {:?} {:?} after the failover began",
            s.replica,
            s.status,
            s.probe,
            s.sent.saturating_duration_since(failed_over),
        );
    }
    for (r, moved) in moved.iter().enumerate() {
        let failures: Vec<_> = seen
            .iter()
            .filter(|s| s.replica == r && s.status == 503)
            .collect();
        if let Some(last) = failures.last() {
            assert!(
                last.sent < promoted + RECOVERS_WITHIN,
                "replica {r} still failing {:?} after the promotion",
                last.sent - promoted
            );
        }
        eprintln!(
            "{how:?}: replica {r}: {} of {} requests 503; on the new master {:?} after the \
             promotion ({:?} after the failover began, announced {:?} after it)",
            failures.len(),
            seen.iter().filter(|s| s.replica == r).count(),
            moved,
            promoted - failed_over,
            announced - failed_over,
        );
    }
    for replica in &c.replicas {
        assert_eq!(replica.get("/health").await.status, 200);
    }
}

/// `cmd` on `server`; `None` when the connection was closed on us (Sentinel
/// closes every client's connection to a node it reconfigures).
fn query<T: redis::FromRedisValue>(server: &RedisServer, cmd: &redis::Cmd) -> Option<T> {
    let mut connection = server.try_connection().ok()?;
    cmd.query(&mut connection).ok()
}

fn is_master(server: &RedisServer) -> bool {
    let role: Option<Vec<redis::Value>> = query(server, &redis::cmd("ROLE"));
    matches!(role.as_deref(), Some([redis::Value::BulkString(b), ..]) if b == b"master")
}

/// Whether `replica` comes to write to `node` within [`RECOVERS_WITHIN`]:
/// a login through it is found there.
async fn writes_to(replica: &Replica, node: &RedisServer) -> bool {
    eventually(RECOVERS_WITHIN, || async {
        let reply = replica
            .post_json("/login", &json!({"user_id": "probe"}))
            .await;
        reply.status == 200 && has_session(node, &Pair::from_reply(&reply))
    })
    .await
}

fn has_session(server: &RedisServer, pair: &Pair) -> bool {
    let mut exists = redis::cmd("EXISTS");
    exists.arg(server.session_key(&pair.session_id));
    query::<i64>(server, &exists) == Some(1)
}

/// Clients of `server` other than the sentinel's and this one.
fn clients_of_ours(server: &RedisServer) -> usize {
    let mut connection = server.connection();
    let me: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(&mut connection)
        .unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("normal")
        .query(&mut connection)
        .unwrap();
    list.lines()
        .filter(|line| !line.starts_with(&format!("id={me} ")))
        .filter(|line| !line.contains(" name=sentinel-"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_load_fails_closed_and_recovers_within_5s() {
    failover_under_load(Failover::Command).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_master_is_replaced_and_requests_recover_within_5s() {
    failover_under_load(Failover::Crash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_sentinel_to_ask_requests_fail_closed_in_time() {
    let mut c = Cluster::start_with(Backend::Memory, 0, |s| {
        s.cache.sentinel = Some(SentinelSettings {
            master: NAME.into(),
            nodes: vec![format!("127.0.0.1:{}", free_port())],
            ..SentinelSettings::default()
        });
        s.login.open = true;
    })
    .await;
    let replica = spawn(&c.settings).await;
    c.replicas.push(replica);
    let started = Instant::now();
    let login = c.a().post_json("/login", &json!({"user_id": 1})).await;
    assert_eq!(login.status, 503, "{:?}", login.body);
    assert_eq!(c.a().get("/health").await.status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(c.a().get("/ping").await.status, 200);
}

/// A master demoted behind our back (`REPLICAOF`, clients kept) refuses
/// writes with `READONLY`: every request fails closed — a live session is
/// neither accepted nor called logged out — and the replica lets go of its
/// connections instead of writing there again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_master_fails_closed_and_its_connections_are_replaced() {
    let master = RedisServer::start_with_args(None, &[]);
    let other = RedisServer::start_replica_of(&master);
    let url = master.url();
    let mut c = Cluster::start_with(Backend::Memory, 0, |s| {
        s.cache.url = Secret::new(url);
        s.login.open = true;
    })
    .await;
    let replica = spawn(&c.settings).await;
    c.replicas.push(replica);
    let pair = c.a().login(json!(1)).await;
    replicate(&master, &other).await;
    let before = client_ids(&master);
    assert!(!before.is_empty());

    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut other.connection())
        .unwrap();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(other.port())
        .query(&mut master.connection())
        .unwrap();
    let demoted = eventually(Duration::from_secs(5), || async {
        !is_master(&master) && has_session(&master, &pair)
    })
    .await;
    assert!(demoted, "the demoted master did not copy its new master");

    let authenticate = c.a().authenticate(&pair.access).await;
    assert_eq!(authenticate.status, 503, "{:?}", authenticate.body);
    let logout = c.a().logout(&pair.access).await;
    assert_eq!(logout.status, 503, "{:?}", logout.body);
    let login = c.a().post_json("/login", &json!({"user_id": 2})).await;
    assert_eq!(login.status, 503, "{:?}", login.body);
    let after = client_ids(&master);
    assert!(
        before.iter().all(|id| !after.contains(id)),
        "the connections to the demoted master were kept: {before:?} → {after:?}"
    );
    // Promoted back, it serves again: nothing was written meanwhile.
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut master.connection())
        .unwrap();
    assert!(c.a().accepts(&pair.access).await);
}

/// Ids of the clients of `server`, but for this one.
fn client_ids(server: &RedisServer) -> Vec<i64> {
    let mut connection = server.connection();
    let me: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(&mut connection)
        .unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("normal")
        .query(&mut connection)
        .unwrap();
    list.lines()
        .filter_map(|line| line.strip_prefix("id=")?.split(' ').next()?.parse().ok())
        .filter(|&id| id != me)
        .collect()
}

/// Whether every replica's local cache is up, with its tracking
/// connection on `node` (and `n` of them there).
async fn caches_up_on(c: &Cluster, node: &RedisServer) -> bool {
    for replica in &c.replicas {
        if cache_metric(replica, "up").await != 1.0 {
            return false;
        }
    }
    query_tracking_clients(node) == Some(c.replicas.len())
}

/// How many tracking connections `node` has; `None` while it cannot be asked.
fn query_tracking_clients(node: &RedisServer) -> Option<usize> {
    node.try_connection().ok()?;
    Some(tracking_clients(node).len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_cache_follows_a_failover_and_trusts_nothing_of_the_old_master() {
    let d = Deployment::start_with(2, |s| {
        s.auth.local_cache.enabled = true;
        // Touches are writes, which invalidate: keep them out of the way.
        s.auth.touch_interval = Some(Duration::from_secs(10));
    })
    .await;
    let c = &d.cluster;
    let up = eventually(Duration::from_secs(5), || caches_up_on(c, &d.master)).await;
    assert!(
        up,
        "the caches did not come up on the master through the sentinel"
    );

    // Learned from the old master, then answered from memory.
    let kept = c.a().login(json!("kept")).await;
    let untouched = c.a().login(json!("untouched")).await;
    for replica in &c.replicas {
        for pair in [&kept, &untouched] {
            assert!(replica.accepts(&pair.access).await);
        }
        let hits = cache_metric(replica, "hits_total").await;
        assert!(replica.accepts(&kept.access).await);
        assert_eq!(
            cache_metric(replica, "hits_total").await,
            hits + 1.0,
            "answered from memory"
        );
    }
    d.replicate().await;

    let accepted = eventually(Duration::from_secs(5), || async {
        d.sentinel.failover(NAME).is_ok()
    })
    .await;
    assert!(accepted, "SENTINEL FAILOVER refused:\n{}", d.sentinel.log());
    let promoted = eventually(Duration::from_secs(10), || async {
        is_master(&d.replica) && d.sentinel.master_port(NAME) == Some(d.replica.port())
    })
    .await;
    assert!(promoted, "no promotion:\n{}", d.sentinel.log());

    // Once a replica writes to the promoted node, its cache trusts nothing
    // it learned from the old master: `untouched`, logged out there from
    // the other replica, is refused at once.
    for replica in &c.replicas {
        let on_new_master = writes_to(replica, &d.replica).await;
        assert!(
            on_new_master,
            "replica {} not on the promoted node",
            replica.addr
        );
    }
    let reply = c.b().logout(&untouched.access).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let all: Vec<&Replica> = c.replicas.iter().collect();
    refused_everywhere(&all, &untouched.access, INVALIDATION_BOUND).await;

    // Each cache went down, and is up again on the promoted node; none is
    // left on the old master, which (until Sentinel demotes it) still
    // answers, but hears none of the new master's writes.
    let moved = eventually(RECOVERS_WITHIN, || caches_up_on(c, &d.replica)).await;
    assert!(
        moved,
        "the caches did not come back up on the promoted node"
    );
    for replica in &c.replicas {
        assert!(cache_metric(replica, "channel_losses_total").await >= 1.0);
    }
    assert_eq!(
        query_tracking_clients(&d.master),
        Some(0),
        "a tracking connection left on the old master"
    );

    // `kept` is learned anew, from the new master, and answered from memory.
    for replica in &c.replicas {
        let serving = eventually(RECOVERS_WITHIN, || async {
            replica.authenticate(&kept.access).await.status == 200
        })
        .await;
        assert!(serving, "a replicated session lost in the failover");
        let hits = cache_metric(replica, "hits_total").await;
        assert!(replica.accepts(&kept.access).await);
        assert_eq!(cache_metric(replica, "hits_total").await, hits + 1.0);
    }

    // A logout on the new master reaches the other replica's cache, which
    // learned `kept` there, within the bound.
    let reply = c.b().logout(&kept.access).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let took = refused_everywhere(&all, &kept.access, INVALIDATION_BOUND).await;
    eprintln!("a logout after the failover held everywhere within {took:?}");
}
