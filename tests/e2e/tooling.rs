//! The detached cluster `scripts/cluster up` leaves behind, and `down`.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::cluster::ClusterState;
use crate::support::procs;
use crate::{EXCLUSIVE, options, start};

/// Stops a detached cluster even if the test fails half-way.
struct Detached(ClusterState);

impl Drop for Detached {
    fn drop(&mut self) {
        if ClusterState::load(&self.0.dir).ok().flatten().is_some() {
            self.0.stop();
        }
        let _ = std::fs::remove_dir_all(&self.0.dir);
    }
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_cluster_runs_on_and_its_state_file_stops_it() {
    let _shared = EXCLUSIVE.read().await;
    let dir = std::env::temp_dir().join(format!("tokengate-e2e-{}", uuid::Uuid::new_v4()));
    let mut opts = options().replicas(2);
    opts.dir = Some(dir.clone());
    let cluster = start(opts);
    let state = cluster.detach().expect("detach");
    let guard = Detached(state.clone());

    // The state files describe it.
    let loaded = ClusterState::load(&dir)
        .expect("read cluster.json")
        .expect("cluster.json written");
    assert_eq!(loaded.url, state.url);
    assert_eq!(loaded.replicas.len(), 2);
    let env = std::fs::read_to_string(dir.join(ClusterState::ENV_FILE)).expect("cluster.env");
    assert!(env.contains(&format!("TG_URL='{}'", state.url)), "{env}");
    // The replicas share one SQLite file in the cluster directory.
    let database = loaded
        .database
        .as_ref()
        .expect("a database in cluster.json");
    let file = dir.join("tokengate.db");
    assert_eq!(database.kind, "sqlite");
    assert_eq!(
        database.url,
        format!("sqlite://{}?mode=rwc", file.display())
    );
    assert!(
        env.contains(&format!("TG_DATABASE_URL='{}'", database.url)),
        "{env}"
    );

    // Everything still serves without the handle that started it.
    let front = addr_of(&loaded.url);
    assert_eq!(
        procs::http_status(front, "/health", Duration::from_secs(2)),
        Some(200)
    );
    for replica in &loaded.replicas {
        assert_eq!(
            procs::http_status(addr_of(&replica.url), "/ping", Duration::from_secs(2)),
            Some(200)
        );
    }
    let mut pids: Vec<u32> = loaded.replicas.iter().filter_map(|r| r.pid).collect();
    pids.extend(loaded.nginx.pid);
    pids.extend(loaded.redis.pid);
    assert_eq!(pids.len(), 4);
    let nginx_workers = procs::children(loaded.nginx.pid.unwrap_or_default());
    assert!(!nginx_workers.is_empty(), "no nginx workers");
    pids.extend(nginx_workers);
    assert!(pids.iter().all(|&pid| procs::alive(pid)));

    // `down`: every process gone, ports closed, state files removed.
    let lines = loaded.stop();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines.iter().all(|l| l.ends_with(": stopped")), "{lines:?}");
    for pid in &pids {
        assert!(
            procs::wait_gone(*pid, Duration::from_secs(5)),
            "pid {pid} still runs"
        );
    }
    assert!(TcpStream::connect(front).is_err(), "nginx still listens");
    assert!(ClusterState::load(&dir).expect("read").is_none());
    // A second `down` finds nothing to do and signals nothing.
    let again = loaded.stop();
    assert!(
        again.iter().all(|l| l.ends_with("already gone")),
        "{again:?}"
    );
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_postgres_cluster_stops_its_server_too() {
    let _shared = EXCLUSIVE.read().await;
    let dir = std::env::temp_dir().join(format!("tokengate-e2e-{}", uuid::Uuid::new_v4()));
    let mut opts = options().replicas(1).postgres();
    opts.dir = Some(dir.clone());
    let state = start(opts).detach().expect("detach");
    let guard = Detached(state.clone());

    let database = state.database.clone().expect("a database in cluster.json");
    assert_eq!(database.kind, "postgres");
    let port = database.port.expect("a port");
    assert_eq!(
        database.url,
        format!("postgres://tokengate@127.0.0.1:{port}/tokengate")
    );
    let password = std::fs::read_to_string(database.password_file.expect("a password file"))
        .expect("read the password file");
    assert!(password.len() >= 32, "a throw-away random password");
    let pid = database.pid.expect("the postmaster's pid");
    assert!(procs::alive(pid));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert_eq!(
        procs::http_status(addr_of(&state.url), "/health", Duration::from_secs(2)),
        Some(200)
    );

    let lines = state.stop();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines.iter().all(|l| l.ends_with(": stopped")), "{lines:?}");
    assert!(
        procs::wait_gone(pid, Duration::from_secs(5)),
        "postgres still runs"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "postgres still listens"
    );
    drop(guard);
}
