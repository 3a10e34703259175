//! Faults under load: a replica killed (SIGKILL) or stopped (SIGTERM), Redis
//! restarted, while clients keep working through nginx. Each test runs alone
//! ([`EXCLUSIVE`]) and counts every answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::Method;
use http_body_util::Full;

use serde_json::json;
use tokio::task::JoinHandle;

use crate::support::client::{self, Reply, request};
use crate::support::cluster::Cluster;
use crate::support::load::{Load, LoadOptions, LoadReport, Mode, Op};
use crate::{
    EXCLUSIVE, app, assert_app_saw, auth_checks_by_port, eventually, login, logout, options, start,
};

/// The replica the fault tests break.
const VICTIM: usize = 1;

/// nginx takes a failed replica out for `fail_timeout` (2 s in the generated
/// config) and then tries it again: load must run past that after a fault.
const PAST_FAIL_TIMEOUT: Duration = Duration::from_millis(2500);

/// How long a frozen replica collects requests before it is killed or stopped:
/// with round robin, every client soon has one waiting on it.
const PILE_UP: Duration = Duration::from_millis(300);

/// Load until every replica has answered checks, so the victim is known to
/// carry traffic when it is hit. Returns the access-log mark of the fault.
async fn warm_up(cluster: &Cluster, load: &Load) -> usize {
    assert!(
        load.until(Duration::from_secs(15), |p| p.completed >= 300)
            .await,
        "the load did not get going: {:?}",
        load.progress()
    );
    let seen = auth_checks_by_port(cluster, 0);
    for index in 0..cluster.replica_count() {
        let port = cluster.replica_port(index);
        assert!(
            seen.get(&port).copied().unwrap_or(0) > 0,
            "replica {index} got no traffic before the fault: {seen:?}"
        );
    }
    cluster.nginx().access_log().len()
}

/// Two logins per replica, sent at once through nginx: round robin puts at
/// least one on every replica, so a POST is in flight on the victim (besides
/// whatever the load has there).
fn logins_in_flight(cluster: &Cluster) -> Vec<JoinHandle<Reply>> {
    (0..2 * cluster.replica_count())
        .map(|i| {
            let addr = cluster.addr();
            tokio::spawn(async move {
                crate::post_json(
                    addr,
                    "/login",
                    &json!({ "user_id": format!("in-flight-{i}") }),
                )
                .await
            })
        })
        .collect()
}

async fn assert_all_logged_in(logins: Vec<JoinHandle<Reply>>) {
    for login in logins {
        let reply = login.await.expect("login task");
        assert_eq!(reply.status, 200, "a login in flight failed: {reply:?}");
    }
}

/// Keeps the load running for `n` more answers and past nginx's fail_timeout.
async fn keep_going(load: &Load, since: Instant, n: u64) {
    let target = load.progress().completed + n;
    let ok = load
        .until(Duration::from_secs(30), |p| {
            p.completed >= target && since.elapsed() >= PAST_FAIL_TIMEOUT
        })
        .await;
    assert!(
        ok,
        "the load stalled after the fault: {:?}",
        load.progress()
    );
}

/// Requests after `mark` that nginx retried on another replica because the
/// victim failed them.
fn retried_away_from(cluster: &Cluster, mark: usize, port: u16) -> usize {
    cluster
        .nginx()
        .access_log()
        .iter()
        .skip(mark)
        .filter(|line| {
            let ports = line.upstream_ports();
            ports.len() > 1 && ports[..ports.len() - 1].contains(&port)
        })
        .count()
}

fn assert_clean(report: &LoadReport) {
    assert_eq!(report.failures, 0, "{report}");
    assert_eq!(report.unavailable, 0, "{report}");
    // The load did what it claims: logins, refreshes, logouts and a refused
    // logged-out token, besides the protected requests.
    for op in [Op::Login, Op::Protected, Op::Refresh, Op::Logout] {
        assert!(report.count(op, 200) > 0, "no successful {op:?}: {report}");
    }
    assert!(report.count(Op::Revoked, 401) > 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_a_replica_under_load_fails_no_request() {
    let _alone = EXCLUSIVE.write().await;
    let mut cluster = start(options());
    let victim_port = cluster.replica_port(VICTIM);

    let load = Load::start(cluster.addr(), LoadOptions::default());
    let mark = warm_up(&cluster, &load).await;

    // A crash with requests in flight: freeze the replica so that nginx's
    // requests (POSTs included) pile up on it, unanswered, then kill it. nginx
    // must move every one of them to another replica.
    cluster.signal_replica(VICTIM, "STOP").expect("SIGSTOP");
    let logins = logins_in_flight(&cluster);
    tokio::time::sleep(PILE_UP).await;
    let killed = Instant::now();
    tokio::task::block_in_place(|| cluster.kill_replica(VICTIM));
    assert_all_logged_in(logins).await;
    keep_going(&load, killed, 500).await;
    let report = load.stop().await;
    println!("SIGKILL replica {VICTIM}: {report}");
    assert_clean(&report);
    // nginx met the dead replica and moved those requests on.
    let retried = retried_away_from(&cluster, mark, victim_port);
    assert!(retried > 0, "nginx never tried the killed replica");
    println!("nginx retried {retried} request(s) away from the killed replica");

    // Restartable on its port: nginx sends it checks again, no reload.
    tokio::task::block_in_place(|| cluster.restart_replica(VICTIM)).expect("restart");
    let mark = cluster.nginx().access_log().len();
    let pair = login(cluster.addr(), "after-restart").await;
    let back = eventually(Duration::from_secs(10), || async {
        assert_app_saw(
            &app(cluster.addr(), Method::GET, Some(&pair.access), &[]).await,
            &Method::GET,
            &pair,
        );
        auth_checks_by_port(&cluster, mark).contains_key(&victim_port)
    })
    .await;
    assert!(back, "nginx never sent the restarted replica a check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_a_replica_under_load_fails_no_request() {
    let _alone = EXCLUSIVE.write().await;
    let mut cluster = start(options());

    let load = Load::start(cluster.addr(), LoadOptions::default());
    warm_up(&cluster, &load).await;

    // Requests in flight when SIGTERM arrives: freeze the replica so that
    // nginx's requests pile up on it (some read, some still in the accept
    // queue), then SIGTERM and let it run. It answers what it has started and
    // closes the rest; nginx moves those to another replica.
    cluster.signal_replica(VICTIM, "STOP").expect("SIGSTOP");
    let logins = logins_in_flight(&cluster);
    tokio::time::sleep(PILE_UP).await;
    let signalled = Instant::now();
    cluster.signal_replica(VICTIM, "TERM").expect("SIGTERM");
    cluster.signal_replica(VICTIM, "CONT").expect("SIGCONT");
    assert_all_logged_in(logins).await;
    let status =
        tokio::task::block_in_place(|| cluster.wait_replica(VICTIM, Duration::from_secs(15)))
            .expect("the replica did not exit within 15 s of SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let drained = signalled.elapsed();
    keep_going(&load, signalled, 500).await;
    let report = load.stop().await;
    println!("SIGTERM replica {VICTIM} (exited after {drained:?}): {report}");
    assert_clean(&report);
}

/// What a probe saw: when the request was sent, with which token, the status.
struct Probe {
    sent: Instant,
    revoked: bool,
    status: u16,
}

/// Sends protected requests with a logged-out token and with a token from
/// before the outage, alternately, until `stop`.
async fn probe(
    addr: std::net::SocketAddr,
    revoked: String,
    live: String,
    stop: Arc<AtomicBool>,
) -> Vec<Probe> {
    let mut seen = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let is_revoked = n.is_multiple_of(2);
        let token = if is_revoked { &revoked } else { &live };
        let sent = Instant::now();
        let reply = client::try_send(
            addr,
            request(Method::GET, "/app/probe")
                .header("authorization", format!("Bearer {token}"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
        let status = reply.map_or(0, |r| r.status.as_u16());
        seen.push(Probe {
            sent,
            revoked: is_revoked,
            status,
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_under_load_fails_closed_then_recovers() {
    let _alone = EXCLUSIVE.write().await;
    let mut cluster = start(options());
    let addr = cluster.addr();
    let pids: Vec<_> = (0..3).map(|i| cluster.replica_pid(i)).collect();

    let revoked = login(addr, "revoked").await;
    assert_eq!(logout(addr, &revoked.access).await.status, 200);
    let live = login(addr, "live").await;
    assert_app_saw(
        &app(addr, Method::GET, Some(&live.access), &[]).await,
        &Method::GET,
        &live,
    );

    let load = Load::start(
        addr,
        LoadOptions {
            tasks: 4,
            mode: Mode::FailClosed,
            ..LoadOptions::default()
        },
    );
    let stop_probe = Arc::new(AtomicBool::new(false));
    let prober = tokio::spawn(probe(
        addr,
        revoked.access.clone(),
        live.access.clone(),
        stop_probe.clone(),
    ));
    assert!(
        load.until(Duration::from_secs(15), |p| p.ok >= 300).await,
        "the load did not get going: {:?}",
        load.progress()
    );

    // Redis dies.
    let killed = Instant::now();
    tokio::task::block_in_place(|| cluster.kill_redis());
    // Down for a second at least, with the clients getting 503s.
    assert!(
        load.until(Duration::from_secs(10), |p| p.unavailable >= 50
            && killed.elapsed() >= Duration::from_secs(1))
            .await,
        "no 503s while Redis is down: {:?}",
        load.progress()
    );
    let health = client::send(
        addr,
        request(Method::GET, "/health")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(health.status, 503, "{health:?}");
    assert_eq!(health.json()["status"], "unavailable");

    // Redis is back, empty, on the same port. Nothing else is restarted.
    tokio::task::block_in_place(|| cluster.restart_redis());
    let restarted = Instant::now();
    let outage = restarted - killed;
    let recovered = eventually(Duration::from_secs(10), || async {
        let reply =
            crate::post_json(addr, "/login", &serde_json::json!({"user_id": "after"})).await;
        if reply.status != 200 {
            return false;
        }
        let pair = crate::Pair::from_reply("after", &reply);
        app(addr, Method::GET, Some(&pair.access), &[]).await.status == 200
    })
    .await;
    assert!(
        recovered,
        "no successful login + request within 10 s of Redis coming back"
    );
    let recovery = restarted.elapsed();
    // ... and so do the clients under load.
    let ok = load.progress().ok;
    assert!(
        load.until(Duration::from_secs(10), |p| p.ok >= ok + 1000)
            .await,
        "the load did not recover: {:?}",
        load.progress()
    );

    stop_probe.store(true, Ordering::Relaxed);
    let probes = prober.await.expect("probe task");
    let report = load.stop().await;
    println!("Redis down for {outage:?}, service back {recovery:?} after its restart: {report}");

    // Failed closed: no transport error, only 200/401/503, never a logged-out
    // token accepted, no request hanging (SPEC: none past 2 s).
    assert_eq!(report.failures, 0, "{report}");
    assert!(report.unavailable >= 50, "{report}");
    assert!(report.max_latency < Duration::from_millis(2500), "{report}");
    assert!(
        report.count(Op::Login, 200) > 0 && report.count(Op::Refresh, 200) > 0,
        "{report}"
    );

    let transport = probes.iter().filter(|p| p.status == 0).count();
    assert_eq!(transport, 0, "probe requests without an answer");
    let revoked_ok = probes
        .iter()
        .filter(|p| p.revoked && p.status == 200)
        .count();
    assert_eq!(revoked_ok, 0, "a logged-out token was let through");
    // A session from before the outage is never accepted once Redis is gone:
    // 503 while it is down, 401 once it is back (and empty).
    let after_kill: Vec<&Probe> = probes
        .iter()
        .filter(|p| !p.revoked && p.sent >= killed)
        .collect();
    let bad: Vec<u16> = after_kill
        .iter()
        .map(|p| p.status)
        .filter(|s| ![401, 503].contains(s))
        .collect();
    assert!(bad.is_empty(), "pre-outage token after the kill: {bad:?}");
    assert!(
        after_kill.iter().any(|p| p.status == 503),
        "the probe never saw the outage"
    );
    assert_eq!(
        after_kill.last().map(|p| p.status),
        Some(401),
        "the pre-outage session should be unknown once Redis is back"
    );
    assert!(
        probes
            .iter()
            .any(|p| !p.revoked && p.sent < killed && p.status == 200),
        "the live token never passed before the outage"
    );

    // No replica was restarted or lost.
    for (index, pid) in pids.iter().enumerate() {
        assert!(cluster.replica_running(index), "replica {index} died");
        assert_eq!(cluster.replica_pid(index), *pid);
    }
}
