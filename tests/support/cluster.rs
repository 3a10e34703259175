//! A native tokengate cluster on loopback: one `redis-server`, one database, N
//! `tokengate` replicas (the real binary, as processes) and nginx in front of
//! them with the shared `nginx/*.conf` files (see [`super::nginx`]). The
//! database is a SQLite file in the cluster directory that every replica opens,
//! or a PostgreSQL server of the cluster's own ([`Database`], see [`database`]).
//! With [`ClusterOptions::redis_cluster`], a Redis Cluster of 3 masters and 3
//! replicas ([`RedisCluster`]) instead of the one `redis-server`: the replicas
//! get its nodes as `cache.cluster.nodes` in their `config.yml`.
//! Every port is a free loopback port; every process is stopped when the
//! [`Cluster`] is dropped (also when a test panics), unless it was
//! [`Cluster::detach`]ed.
//!
//! One implementation for the e2e tests (`tests/e2e`), for humans and scripts
//! (`examples/cluster.rs`, wrapped by `scripts/cluster`) and for the benchmark:
//!
//! ```ignore
//! let mut cluster = Cluster::start(ClusterOptions::new(env!("CARGO_BIN_EXE_tokengate")).replicas(3))?;
//! // or ClusterOptions::new(..).postgres(): a PostgreSQL instead of the SQLite file
//! cluster.url();                 // "http://127.0.0.1:<nginx port>"
//! cluster.grpc_url();            // nginx's gRPC port, in front of every replica's
//! cluster.replica_admin_addr(0); // a replica's admin listener: /admin/*, /metrics
//! cluster.kill_replica(1);       // SIGKILL; terminate_replica = SIGTERM + wait
//! cluster.restart_replica(1)?;   // same port, so nginx finds it again
//! cluster.kill_redis(); cluster.restart_redis();   // same port, empty
//! // ClusterOptions::new(..).redis_cluster(): a Redis Cluster instead
//! cluster.redis_cluster_mut().failover(master);
//! ```
//!
//! A detached cluster is described by `<dir>/cluster.json` ([`ClusterState`])
//! and `<dir>/cluster.env` (the same as shell variables), and stopped with
//! [`ClusterState::stop`] (`scripts/cluster down --dir DIR`).

use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod database;

use database::ClusterDatabase;
pub use database::{Database, DatabaseState};

use super::nginx::{Nginx, NginxOptions, find_nginx};
use super::ports::free_port;
use super::procs;
use super::redis::RedisServer;
use super::redis_cluster::{RedisCluster, RedisClusterOptions};

/// The protected echo app and the trivial-auth ceiling, behind nginx.
pub const PROTECTED_PATH: &str = "/app/";
pub const TRIVIAL_PATH: &str = "/trivial/";

/// How long a replica may take to answer `/ping` after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of tokengate replicas (≥ 1).
    pub replicas: usize,
    /// The tokengate binary (tests: `env!("CARGO_BIN_EXE_tokengate")`).
    pub binary: PathBuf,
    /// nginx to run; `None` = [`find_nginx`].
    pub nginx_binary: Option<PathBuf>,
    pub nginx: NginxOptions,
    /// Extra environment for every replica, e.g.
    /// `("TOKENGATE__AUTH__AUTO_LOGOUT", "1s")`. Applied last, so it can override
    /// anything the cluster sets.
    pub env: Vec<(String, String)>,
    /// `TOKENGATE__LOGGING__LEVEL` of the replicas.
    pub log_level: String,
    /// Where the logs, the nginx prefix and the state files go. `None` = a fresh
    /// directory under the system temp dir, removed on drop (kept, and its path
    /// printed, if the thread is panicking).
    pub dir: Option<PathBuf>,
    /// The shared HS256 key; `None` = a random one for this cluster.
    pub secret: Option<String>,
    /// A `config.yml` for every replica (they run in the cluster directory);
    /// `None` = built-in defaults and the environment only. Its `database`
    /// section is overridden by the cluster's (environment variables).
    pub config: Option<String>,
    /// What the replicas share as `database.url`: a SQLite file in the
    /// cluster directory (default) or a PostgreSQL started for the cluster.
    pub database: Database,
    /// Every replica also listens on a Unix socket, `<dir>/replica-<i>.sock`
    /// (`server.unix_socket`), and nginx reaches their HTTP over those instead
    /// of TCP (nginx/README.md, "One host: a Unix socket"). gRPC stays on TCP.
    pub unix_sockets: bool,
    /// A Redis Cluster (3 masters, 3 replicas; [`RedisCluster`]) instead of
    /// one `redis-server`: the replicas get `cache.cluster.nodes` (every
    /// node) in the `config.yml` of the cluster directory, merged into
    /// [`Self::config`]'s, and no `cache.url`.
    pub redis_cluster: bool,
}

impl ClusterOptions {
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            replicas: 3,
            binary: binary.into(),
            nginx_binary: None,
            nginx: NginxOptions::default(),
            env: Vec::new(),
            log_level: "info".to_owned(),
            dir: None,
            secret: None,
            config: None,
            database: Database::Sqlite,
            unix_sockets: false,
            redis_cluster: false,
        }
    }

    /// A Redis Cluster instead of one `redis-server` (see `redis_cluster`).
    pub fn redis_cluster(mut self) -> Self {
        self.redis_cluster = true;
        self
    }

    /// nginx → replicas over Unix sockets instead of TCP (see `unix_sockets`).
    pub fn unix_sockets(mut self) -> Self {
        self.unix_sockets = true;
        self
    }

    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// A PostgreSQL of the cluster's own instead of the SQLite file.
    pub fn postgres(mut self) -> Self {
        self.database = Database::Postgres;
        self
    }

    /// Settings the environment cannot express (lists such as `oauth.clients`).
    pub fn config(mut self, yaml: &str) -> Self {
        self.config = Some(yaml.to_owned());
        self
    }
}

/// One tokengate process.
struct Replica {
    index: usize,
    port: u16,
    /// Its gRPC API (`grpc.port`), behind nginx's gRPC server.
    grpc_port: u16,
    /// Its admin listener (`admin.listen`): `/admin/*` and `/metrics`, which
    /// nginx never reaches.
    admin_port: u16,
    /// Its Unix socket, when the cluster has them (`ClusterOptions::unix_sockets`).
    socket: Option<PathBuf>,
    log: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    options: ClusterOptions,
    dir: PathBuf,
    remove_dir: bool,
    secret: String,
    nginx: Option<Nginx>,
    replicas: Vec<Replica>,
    /// The one Redis, unless the cluster has a Redis Cluster.
    redis: Option<RedisServer>,
    redis_cluster: Option<RedisCluster>,
    database: Option<ClusterDatabase>,
}

impl Cluster {
    /// Starts Redis, the database, the replicas and nginx; returns once each
    /// replica answers `/ping` and nginx answers `/health` (through a replica,
    /// from Redis).
    pub fn start(mut options: ClusterOptions) -> Result<Self, String> {
        // The replicas run in the cluster's directory: no relative paths.
        options.binary = absolute(&options.binary)?;
        if options.replicas == 0 {
            return Err("a cluster needs at least one replica".to_owned());
        }
        if !options.binary.is_file() {
            return Err(format!(
                "tokengate binary {} not found (build it first)",
                options.binary.display()
            ));
        }
        let nginx_binary = match options.nginx_binary.clone().or_else(find_nginx) {
            Some(path) => absolute(&path)?,
            None => {
                return Err(
                    "nginx not found (looked at $TOKENGATE_NGINX, /usr/sbin/nginx, PATH); \
                            `apt-get install nginx` (scripts/test does)"
                        .to_owned(),
                );
            }
        };
        let (dir, remove_dir) = match &options.dir {
            Some(dir) => (absolute(dir)?, false),
            None => (
                std::env::temp_dir().join(format!("tokengate-cluster-{}", uuid::Uuid::new_v4())),
                true,
            ),
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        if let Some(yaml) = &options.config {
            let path = dir.join("config.yml");
            std::fs::write(&path, yaml).map_err(|e| format!("write {}: {e}", path.display()))?;
        }
        // Checked before anything starts: a config that names its own Redis.
        if options.redis_cluster {
            with_cluster_nodes(options.config.as_deref(), &[])?;
        }
        let secret = options.secret.clone().unwrap_or_else(|| {
            format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )
        });

        let mut cluster = Self {
            options,
            dir,
            remove_dir,
            secret,
            nginx: None,
            replicas: Vec::new(),
            redis: None,
            redis_cluster: None,
            database: None,
        };
        // From here on, Drop cleans up whatever was started if a step fails.
        if cluster.options.redis_cluster {
            let redis_cluster = RedisClusterOptions::default()
                .dir(cluster.dir.join("redis-cluster"))
                .start();
            let config =
                with_cluster_nodes(cluster.options.config.as_deref(), &redis_cluster.nodes())?;
            let path = cluster.dir.join("config.yml");
            std::fs::write(&path, config).map_err(|e| format!("write {}: {e}", path.display()))?;
            cluster.redis_cluster = Some(redis_cluster);
        } else {
            cluster.redis = Some(RedisServer::start());
        }
        cluster.database = Some(ClusterDatabase::start(
            cluster.options.database,
            &cluster.dir,
        )?);
        for index in 0..cluster.options.replicas {
            let log = cluster.dir.join(format!("replica-{index}.log"));
            let socket = cluster
                .options
                .unix_sockets
                .then(|| cluster.dir.join(format!("replica-{index}.sock")));
            cluster.replicas.push(Replica {
                index,
                port: 0,
                grpc_port: 0,
                admin_port: 0,
                socket,
                log,
                child: None,
            });
        }
        for index in 0..cluster.replicas.len() {
            cluster.spawn_replica(index, None)?;
        }
        let ports: Vec<u16> = cluster.replicas.iter().map(|r| r.port).collect();
        let grpc_ports: Vec<u16> = cluster.replicas.iter().map(|r| r.grpc_port).collect();
        let mut nginx_options = cluster.options.nginx.clone();
        nginx_options
            .upstream_sockets
            .extend(cluster.replicas.iter().filter_map(|r| r.socket.clone()));
        let nginx = Nginx::start(
            &nginx_binary,
            &cluster.dir.join("nginx"),
            &ports,
            &grpc_ports,
            &nginx_options,
        )?;
        let front = nginx.front_addr();
        cluster.nginx = Some(nginx);
        let through = procs::poll_until(READY_TIMEOUT, || {
            // /health: nginx → a replica → Redis, the whole chain.
            procs::http_status(front, "/health", Duration::from_secs(2)) == Some(200)
        });
        if !through {
            return Err(format!(
                "nginx does not reach the replicas: {}",
                cluster.nginx().error_log().trim()
            ));
        }
        Ok(cluster)
    }

    /// Starts replica `index` (on `ports`, HTTP, gRPC and admin, or on free
    /// ones) and waits until it answers `/ping`.
    fn spawn_replica(
        &mut self,
        index: usize,
        ports: Option<(u16, u16, u16)>,
    ) -> Result<(), String> {
        // With a Redis Cluster, its nodes are in config.yml, and cache.url
        // stays empty.
        let redis_url = self.redis.as_ref().map(RedisServer::url);
        let database_env = self.database().env();
        let fixed = ports.is_some();
        let tries = if fixed { 50 } else { 5 };
        let mut last_error = String::new();
        for _ in 0..tries {
            let (port, grpc_port, admin_port) =
                ports.unwrap_or_else(|| (free_port(), free_port(), free_port()));
            let log_path = self.replicas[index].log.clone();
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| format!("open {}: {e}", log_path.display()))?;
            let err = log
                .try_clone()
                .map_err(|e| format!("open {}: {e}", log_path.display()))?;
            let socket = self.replicas[index].socket.clone();
            let mut command = Command::new(&self.options.binary);
            if let Some(socket) = &socket {
                command.env("TOKENGATE__SERVER__UNIX_SOCKET", socket);
            }
            if let Some(url) = &redis_url {
                command.env("TOKENGATE__CACHE__URL", url);
            }
            command
                // config.yml there only from ClusterOptions::config (and
                // redis_cluster); else built-in defaults + the environment below.
                .current_dir(&self.dir)
                .env("TOKENGATE__SERVER__HOST", "127.0.0.1")
                .env("TOKENGATE__SERVER__PORT", port.to_string())
                // gRPC on a port of its own, behind nginx's gRPC server.
                .env("TOKENGATE__GRPC__PORT", grpc_port.to_string())
                // Operators' endpoints on a port of its own, beside nginx's view.
                .env(
                    "TOKENGATE__ADMIN__LISTEN",
                    format!("127.0.0.1:{admin_port}"),
                )
                .env("TOKENGATE__AUTH__SECRET", &self.secret)
                // A loopback-only cluster: its own tests are the only callers.
                .env("TOKENGATE__LOGIN__OPEN", "true")
                .env("TOKENGATE__LOGGING__LEVEL", &self.options.log_level)
                // One database for all: the same file, or the same server.
                .envs(database_env.iter().map(|(k, v)| (k, v)))
                .envs(self.options.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err);
            let mut child = command
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", self.options.binary.display()))?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut exited = None;
            let ready = procs::poll_until(READY_TIMEOUT, || {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    return true;
                }
                procs::http_status(addr, "/ping", Duration::from_secs(1)) == Some(200)
                    && socket.as_ref().is_none_or(|s| s.exists())
            });
            let replica = &mut self.replicas[index];
            if ready && exited.is_none() {
                replica.port = port;
                replica.grpc_port = grpc_port;
                replica.admin_port = admin_port;
                replica.child = Some(child);
                return Ok(());
            }
            if exited.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let output = std::fs::read_to_string(&log_path).unwrap_or_default();
            last_error = format!(
                "replica {index} on ports {port} (gRPC {grpc_port}, admin {admin_port}) did not start ({}): {}",
                exited.map_or_else(|| "no answer to /ping".to_owned(), |s| s.to_string()),
                output.lines().last().unwrap_or_default()
            );
            if !output.contains("cannot listen") {
                break;
            }
            if fixed {
                // Its own port: wait for whoever holds it to let go.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Err(last_error)
    }

    // --- where things are ----------------------------------------------------

    /// The public URL: nginx, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// nginx's public address.
    pub fn addr(&self) -> SocketAddr {
        self.nginx().front_addr()
    }

    /// nginx's gRPC server (HTTP/2 cleartext), `http://127.0.0.1:<port>`: what
    /// `AuthApiClient::connect` takes.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.nginx().grpc_addr())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    pub fn nginx(&self) -> &Nginx {
        self.nginx.as_ref().expect("nginx is running")
    }

    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    pub fn replica_port(&self, index: usize) -> u16 {
        self.replicas[index].port
    }

    pub fn replica_addr(&self, index: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.replicas[index].port))
    }

    /// Replica `index`'s Unix socket, if the cluster has them.
    pub fn replica_socket(&self, index: usize) -> Option<&Path> {
        self.replicas[index].socket.as_deref()
    }

    /// Replica `index`'s admin listener (`/admin/*`, `/metrics`), which nginx
    /// never routes to.
    pub fn replica_admin_addr(&self, index: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.replicas[index].admin_port))
    }

    /// Replica `index`'s own gRPC address, bypassing nginx.
    pub fn replica_grpc_addr(&self, index: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.replicas[index].grpc_port))
    }

    pub fn replica_addrs(&self) -> Vec<SocketAddr> {
        (0..self.replicas.len())
            .map(|i| self.replica_addr(i))
            .collect()
    }

    /// The pid of replica `index`, `None` once it was stopped or killed.
    pub fn replica_pid(&self, index: usize) -> Option<u32> {
        self.replicas[index].child.as_ref().map(Child::id)
    }

    /// Whether replica `index` is still running (not exited by itself).
    pub fn replica_running(&mut self, index: usize) -> bool {
        match self.replicas[index].child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// What replica `index` logged so far (all its runs).
    pub fn replica_log(&self, index: usize) -> String {
        std::fs::read_to_string(&self.replicas[index].log).unwrap_or_default()
    }

    /// The one Redis. Panics in a cluster with a Redis Cluster.
    pub fn redis(&self) -> &RedisServer {
        self.redis
            .as_ref()
            .expect("redis is running (this cluster has a Redis Cluster: redis_cluster())")
    }

    /// The Redis Cluster ([`ClusterOptions::redis_cluster`]). Panics in a
    /// cluster with one Redis.
    pub fn redis_cluster(&self) -> &RedisCluster {
        self.redis_cluster
            .as_ref()
            .expect("a cluster with a Redis Cluster (ClusterOptions::redis_cluster)")
    }

    /// The Redis Cluster, to kill, restart or fail over its nodes.
    pub fn redis_cluster_mut(&mut self) -> &mut RedisCluster {
        self.redis_cluster
            .as_mut()
            .expect("a cluster with a Redis Cluster (ClusterOptions::redis_cluster)")
    }

    fn database(&self) -> &ClusterDatabase {
        self.database.as_ref().expect("the database is set up")
    }

    /// What the replicas have as `database.url` (no password in it).
    pub fn database_url(&self) -> &str {
        self.database().url()
    }

    pub fn database_kind(&self) -> Database {
        self.database().kind()
    }

    // --- faults --------------------------------------------------------------

    /// SIGKILL replica `index` (a crash: no drain) and reap it.
    pub fn kill_replica(&mut self, index: usize) {
        if let Some(mut child) = self.replicas[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (e.g. `"TERM"`) to replica `index` without waiting.
    pub fn signal_replica(&self, index: usize, signal: &str) -> Result<(), String> {
        let pid = self
            .replica_pid(index)
            .ok_or_else(|| format!("replica {index} is not running"))?;
        procs::signal(i64::from(pid), signal)
    }

    /// Waits up to `within` for replica `index` to exit; its exit status, or
    /// `None` if it is still running (it then stays in the cluster).
    pub fn wait_replica(&mut self, index: usize, within: Duration) -> Option<ExitStatus> {
        let replica = &mut self.replicas[index];
        let status = procs::wait_child(replica.child.as_mut()?, within)?;
        replica.child = None;
        Some(status)
    }

    /// SIGTERM replica `index` (it stops accepting, drains, exits) and waits for
    /// it to exit (up to 20 s).
    pub fn terminate_replica(&mut self, index: usize) -> Result<ExitStatus, String> {
        self.signal_replica(index, "TERM")?;
        self.wait_replica(index, Duration::from_secs(20))
            .ok_or_else(|| format!("replica {index} did not exit within 20 s of SIGTERM"))
    }

    /// Starts replica `index` again on its ports (killing it first if it still
    /// runs), so nginx's upstreams find it without a reload.
    pub fn restart_replica(&mut self, index: usize) -> Result<(), String> {
        self.kill_replica(index);
        let replica = &self.replicas[index];
        let ports = (replica.port, replica.grpc_port, replica.admin_port);
        self.spawn_replica(index, Some(ports))
    }

    /// SIGKILL Redis (a crash). Requests fail closed until [`Self::restart_redis`].
    /// Nothing with a Redis Cluster: kill its nodes ([`Self::redis_cluster_mut`]).
    pub fn kill_redis(&mut self) {
        if let Some(redis) = self.redis.as_mut() {
            redis.kill();
        }
    }

    /// Starts Redis again on the same port, empty (no persistence: every
    /// session is gone). Panics if it cannot.
    pub fn restart_redis(&mut self) {
        if let Some(redis) = self.redis.as_mut() {
            redis.restart();
        }
    }

    // --- state, stop, detach -------------------------------------------------

    /// The cluster as `cluster.json` describes it.
    pub fn state(&self) -> ClusterState {
        let nginx = self.nginx();
        let prefix = nginx.prefix();
        let redis = self
            .redis
            .as_ref()
            .map_or_else(RedisState::default, |redis| RedisState {
                port: redis.port(),
                url: redis.url(),
                pid: redis.pid(),
                start_time: redis.pid().and_then(procs::start_time),
            });
        let redis_cluster = self.redis_cluster.as_ref().map(|c| RedisClusterState {
            nodes: c
                .ports()
                .into_iter()
                .map(|port| {
                    let pid = c.pid(port);
                    RedisNodeState {
                        port,
                        node: format!("127.0.0.1:{port}"),
                        pid,
                        start_time: pid.and_then(procs::start_time),
                    }
                })
                .collect(),
            dir: c.dir().to_path_buf(),
        });
        ClusterState {
            version: 1,
            dir: self.dir.clone(),
            url: self.url(),
            grpc_url: self.grpc_url(),
            nginx: NginxState {
                port: nginx.front_port(),
                grpc_port: nginx.grpc_port(),
                app_port: nginx.app_port(),
                pid: nginx.pid(),
                start_time: nginx.pid().and_then(procs::start_time),
                binary: nginx.binary().to_path_buf(),
                prefix: prefix.to_path_buf(),
                conf: prefix.join("nginx.conf"),
                access_log: self
                    .options
                    .nginx
                    .access_log
                    .then(|| prefix.join("access.log")),
                error_log: prefix.join("error.log"),
            },
            redis,
            redis_cluster,
            replicas: self
                .replicas
                .iter()
                .map(|r| {
                    let pid = r.child.as_ref().map(Child::id);
                    ReplicaState {
                        index: r.index,
                        port: r.port,
                        url: format!("http://127.0.0.1:{}", r.port),
                        grpc_port: r.grpc_port,
                        grpc_url: format!("http://127.0.0.1:{}", r.grpc_port),
                        admin_port: r.admin_port,
                        admin_url: format!("http://127.0.0.1:{}", r.admin_port),
                        unix_socket: r.socket.clone(),
                        pid,
                        start_time: pid.and_then(procs::start_time),
                        log: r.log.clone(),
                    }
                })
                .collect(),
            database: Some(self.database().state()),
            binary: self.options.binary.clone(),
            secret: self.secret.clone(),
            paths: Paths {
                protected: PROTECTED_PATH.to_owned(),
                trivial: TRIVIAL_PATH.to_owned(),
            },
        }
    }

    /// Stops everything in order: nginx (no new requests), then each replica
    /// with SIGTERM (drain), then Redis and the database. Returns the
    /// replicas' exit statuses.
    pub fn stop(mut self) -> Vec<Option<ExitStatus>> {
        if let Some(mut nginx) = self.nginx.take() {
            nginx.stop();
        }
        for index in 0..self.replicas.len() {
            let _ = self.signal_replica(index, "TERM");
        }
        let statuses = (0..self.replicas.len())
            .map(|index| {
                let status = self.wait_replica(index, Duration::from_secs(20));
                self.kill_replica(index);
                status
            })
            .collect();
        self.redis = None;
        self.redis_cluster = None;
        if let Some(mut database) = self.database.take() {
            database.stop();
        }
        statuses
    }

    /// Leaves every process running and returns their description, also written
    /// to `<dir>/cluster.json` and `<dir>/cluster.env`. The directory is kept.
    pub fn detach(mut self) -> Result<ClusterState, String> {
        let state = self.state();
        state.write()?;
        self.remove_dir = false;
        for replica in &mut self.replicas {
            // Dropping a Child neither kills nor waits for it.
            drop(replica.child.take());
        }
        if let Some(nginx) = self.nginx.take() {
            nginx.detach();
        }
        if let Some(redis) = self.redis.take() {
            redis.detach();
        }
        if let Some(redis_cluster) = self.redis_cluster.take() {
            redis_cluster.detach();
        }
        if let Some(database) = self.database.take() {
            database.detach();
        }
        Ok(state)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // nginx first (it stops its workers), then the replicas, then Redis
        // and the database.
        self.nginx = None;
        for index in 0..self.replicas.len() {
            self.kill_replica(index);
        }
        self.redis = None;
        self.redis_cluster = None;
        self.database = None;
        if self.remove_dir {
            if std::thread::panicking() {
                eprintln!("cluster logs kept in {}", self.dir.display());
            } else {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }
}

/// The replicas' `config.yml` with a Redis Cluster: the `--config` file
/// (`user`), if any, with `cache.cluster.nodes` set to `nodes`. Without one,
/// a YAML of that key alone; with one, the file as JSON (which is YAML) with
/// the key added. An error if the file picks a Redis of its own
/// (`cache.url`, `cache.sentinel` or `cache.cluster`).
fn with_cluster_nodes(user: Option<&str>, nodes: &[String]) -> Result<String, String> {
    use serde_json::Value;
    let Some(yaml) = user else {
        let quoted: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
        return Ok(format!(
            "# Written by the native cluster (--redis-cluster): its Redis Cluster's nodes.\n\
             cache:\n  cluster:\n    nodes: [{}]\n",
            quoted.join(", ")
        ));
    };
    let mut value: Value = ::config::Config::builder()
        .add_source(::config::File::from_str(yaml, ::config::FileFormat::Yaml))
        .build()
        .and_then(::config::Config::try_deserialize)
        .map_err(|e| format!("--config: {e}"))?;
    let root = value.as_object_mut().ok_or("--config: not a map")?;
    let cache = root
        .entry("cache")
        .or_insert_with(|| Value::Object(Default::default()))
        .as_object_mut()
        .ok_or("--config: cache is not a map")?;
    for key in ["url", "sentinel", "cluster"] {
        let set = match cache.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::String(text)) => !text.is_empty(),
            Some(_) => true,
        };
        if set {
            return Err(format!(
                "--redis-cluster: the --config file sets cache.{key}; leave it out, the \
                 cluster sets cache.cluster.nodes itself"
            ));
        }
    }
    cache.insert("cluster".to_owned(), serde_json::json!({ "nodes": nodes }));
    let json = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
    Ok(format!(
        "# The --config file, with cache.cluster.nodes added by the native cluster\n\
         # (--redis-cluster); in JSON, which is YAML.\n{json}\n"
    ))
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))
}

// --- the state file ------------------------------------------------------------

/// `<dir>/cluster.json`: everything another program needs to use or stop a
/// detached cluster. Stable interface (version 1); fields may be added.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    pub version: u32,
    pub dir: PathBuf,
    /// nginx's public URL, `http://127.0.0.1:<nginx.port>`.
    pub url: String,
    /// nginx's gRPC server (HTTP/2 cleartext), `http://127.0.0.1:<nginx.grpc_port>`.
    /// Empty in a file written before clusters served gRPC.
    #[serde(default)]
    pub grpc_url: String,
    pub nginx: NginxState,
    /// The one Redis; all empty (port 0, no pid) when the cluster has a
    /// Redis Cluster instead (`redis_cluster`).
    pub redis: RedisState,
    /// The Redis Cluster, if the cluster has one (`--redis-cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_cluster: Option<RedisClusterState>,
    pub replicas: Vec<ReplicaState>,
    /// The database the replicas share. `None` in a file written before
    /// clusters had one.
    #[serde(default)]
    pub database: Option<DatabaseState>,
    /// The tokengate binary the replicas run.
    pub binary: PathBuf,
    /// The replicas' shared HS256 key (a throwaway made for this cluster).
    pub secret: String,
    pub paths: Paths,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NginxState {
    pub port: u16,
    /// The gRPC server, in front of the replicas' gRPC ports (0: an older file).
    #[serde(default)]
    pub grpc_port: u16,
    /// The echo app (an nginx server block; also reachable directly).
    pub app_port: u16,
    /// The master process.
    pub pid: Option<u32>,
    /// `/proc/<pid>/stat` start time: guards against signalling a reused pid.
    pub start_time: Option<u64>,
    pub binary: PathBuf,
    pub prefix: PathBuf,
    pub conf: PathBuf,
    pub access_log: Option<PathBuf>,
    pub error_log: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RedisState {
    pub port: u16,
    pub url: String,
    pub pid: Option<u32>,
    pub start_time: Option<u64>,
}

/// A Redis Cluster's nodes (masters and replicas: their roles change with
/// failovers, so ask a node, e.g. `redis-cli -p PORT cluster nodes`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedisClusterState {
    pub nodes: Vec<RedisNodeState>,
    /// Each node's directory (`redis-<port>/`: nodes.conf, redis.log).
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedisNodeState {
    pub port: u16,
    /// `127.0.0.1:<port>`, as `cache.cluster.nodes` lists it.
    pub node: String,
    pub pid: Option<u32>,
    pub start_time: Option<u64>,
}

impl RedisClusterState {
    /// `cache.cluster.nodes`: every node, `host:port`.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.node.clone()).collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaState {
    pub index: usize,
    pub port: u16,
    /// The replica itself, bypassing nginx.
    pub url: String,
    /// Its gRPC API (`grpc.port`), bypassing nginx (0: an older file).
    #[serde(default)]
    pub grpc_port: u16,
    #[serde(default)]
    pub grpc_url: String,
    /// Its admin listener (`admin.listen`: `/admin/*`, `/metrics`), which
    /// nginx never routes to (0: an older file).
    #[serde(default)]
    pub admin_port: u16,
    #[serde(default)]
    pub admin_url: String,
    /// Its Unix socket, nginx's way to it in a cluster with sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_socket: Option<PathBuf>,
    pub pid: Option<u32>,
    pub start_time: Option<u64>,
    pub log: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Paths {
    /// Behind tokengate's auth_request: `GET {url}{protected}anything`.
    pub protected: String,
    /// Behind an auth_request that always says yes (the ceiling).
    pub trivial: String,
}

impl ClusterState {
    pub const FILE: &str = "cluster.json";
    pub const ENV_FILE: &str = "cluster.env";

    /// Reads `<dir>/cluster.json`; `Ok(None)` if there is none.
    pub fn load(dir: &Path) -> Result<Option<Self>, String> {
        let path = dir.join(Self::FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("read {}: {e}", path.display())),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes `<dir>/cluster.json` and `<dir>/cluster.env`.
    pub fn write(&self) -> Result<(), String> {
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        write_file(&self.dir.join(Self::FILE), &(json + "\n"))?;
        write_file(&self.dir.join(Self::ENV_FILE), &self.env_file())
    }

    /// The state as shell variables (`. DIR/cluster.env`).
    pub fn env_file(&self) -> String {
        let join = |items: Vec<String>| items.join(" ");
        let pid = |p: Option<u32>| p.map(|p| p.to_string()).unwrap_or_default();
        let path = |p: Option<&PathBuf>| p.map(|p| p.display().to_string()).unwrap_or_default();
        let vars = [
            ("TG_DIR", self.dir.display().to_string()),
            ("TG_URL", self.url.clone()),
            ("TG_GRPC_URL", self.grpc_url.clone()),
            ("TG_NGINX_PORT", self.nginx.port.to_string()),
            ("TG_NGINX_GRPC_PORT", self.nginx.grpc_port.to_string()),
            ("TG_NGINX_PID", pid(self.nginx.pid)),
            ("TG_APP_PORT", self.nginx.app_port.to_string()),
            ("TG_REDIS_PORT", self.redis.port.to_string()),
            ("TG_REDIS_URL", self.redis.url.clone()),
            ("TG_REDIS_PID", pid(self.redis.pid)),
            // Comma-separated, as TOKENGATE__CACHE__CLUSTER__NODES takes them.
            (
                "TG_REDIS_CLUSTER_NODES",
                self.redis_cluster
                    .as_ref()
                    .map(|c| c.nodes().join(","))
                    .unwrap_or_default(),
            ),
            (
                "TG_REDIS_CLUSTER_PORTS",
                join(
                    self.redis_cluster
                        .iter()
                        .flat_map(|c| c.nodes.iter().map(|n| n.port.to_string()))
                        .collect(),
                ),
            ),
            (
                "TG_REDIS_CLUSTER_PIDS",
                join(
                    self.redis_cluster
                        .iter()
                        .flat_map(|c| c.nodes.iter().map(|n| pid(n.pid)))
                        .collect(),
                ),
            ),
            ("TG_REPLICAS", self.replicas.len().to_string()),
            (
                "TG_REPLICA_PORTS",
                join(self.replicas.iter().map(|r| r.port.to_string()).collect()),
            ),
            (
                "TG_REPLICA_GRPC_PORTS",
                join(
                    self.replicas
                        .iter()
                        .map(|r| r.grpc_port.to_string())
                        .collect(),
                ),
            ),
            (
                "TG_REPLICA_ADMIN_PORTS",
                join(
                    self.replicas
                        .iter()
                        .map(|r| r.admin_port.to_string())
                        .collect(),
                ),
            ),
            (
                "TG_REPLICA_PIDS",
                join(self.replicas.iter().map(|r| pid(r.pid)).collect()),
            ),
            (
                "TG_DATABASE",
                self.database
                    .as_ref()
                    .map(|d| d.kind.clone())
                    .unwrap_or_default(),
            ),
            (
                "TG_DATABASE_URL",
                self.database
                    .as_ref()
                    .map(|d| d.url.clone())
                    .unwrap_or_default(),
            ),
            (
                "TG_DATABASE_PASSWORD_FILE",
                path(
                    self.database
                        .as_ref()
                        .and_then(|d| d.password_file.as_ref()),
                ),
            ),
            (
                "TG_DATABASE_PID",
                pid(self.database.as_ref().and_then(|d| d.pid)),
            ),
            ("TG_BINARY", self.binary.display().to_string()),
            ("TG_SECRET", self.secret.clone()),
            ("TG_PROTECTED_PATH", self.paths.protected.clone()),
            ("TG_TRIVIAL_PATH", self.paths.trivial.clone()),
        ];
        let mut out = String::from("# tokengate native cluster; written by `scripts/cluster up`\n");
        for (name, value) in vars {
            out.push_str(&format!("{name}='{}'\n", value.replace('\'', r"'\''")));
        }
        out
    }

    /// Stops every process listed (nginx, then the replicas with SIGTERM, then
    /// Redis or every Redis Cluster node, then PostgreSQL with SIGINT, its fast shutdown), each only if its
    /// pid still names the process that was started (same start time).
    /// Bounded: SIGKILL after a grace period. Removes the state files; keeps
    /// the logs and the database. Returns what it did, a line per process.
    pub fn stop(&self) -> Vec<String> {
        let mut report = Vec::new();
        let mut stop_with =
            |signal: &str, name: String, pid: Option<u32>, start: Option<u64>, grace: Duration| {
                let Some(pid) = pid else {
                    report.push(format!("{name}: not running"));
                    return;
                };
                if start.is_none() || procs::start_time(pid) != start || !procs::alive(pid) {
                    report.push(format!("{name} (pid {pid}): already gone"));
                    return;
                }
                let children = procs::children(pid);
                let _ = procs::signal(i64::from(pid), signal);
                if procs::wait_gone(pid, grace) {
                    report.push(format!("{name} (pid {pid}): stopped"));
                } else {
                    let _ = procs::signal(i64::from(pid), "KILL");
                    for child in children {
                        let _ = procs::signal(i64::from(child), "KILL");
                    }
                    procs::wait_gone(pid, Duration::from_secs(2));
                    report.push(format!(
                        "{name} (pid {pid}): killed (no exit within {grace:?})"
                    ));
                }
            };
        stop_with(
            "TERM",
            "nginx".to_owned(),
            self.nginx.pid,
            self.nginx.start_time,
            Duration::from_secs(5),
        );
        for r in &self.replicas {
            stop_with(
                "TERM",
                format!("replica {} (port {})", r.index, r.port),
                r.pid,
                r.start_time,
                Duration::from_secs(20),
            );
        }
        if self.redis_cluster.is_none() || self.redis.pid.is_some() {
            stop_with(
                "TERM",
                "redis".to_owned(),
                self.redis.pid,
                self.redis.start_time,
                Duration::from_secs(5),
            );
        }
        for node in self.redis_cluster.iter().flat_map(|c| &c.nodes) {
            stop_with(
                "TERM",
                format!("redis cluster node {}", node.node),
                node.pid,
                node.start_time,
                Duration::from_secs(5),
            );
        }
        // SQLite has no process; PostgreSQL's SIGTERM would wait for every
        // client to leave (smart shutdown).
        if let Some(db) = self.database.as_ref().filter(|d| d.pid.is_some()) {
            stop_with(
                "INT",
                format!("postgres (port {})", db.port.unwrap_or_default()),
                db.pid,
                db.start_time,
                Duration::from_secs(15),
            );
        }
        let _ = std::fs::remove_file(self.dir.join(Self::FILE));
        let _ = std::fs::remove_file(self.dir.join(Self::ENV_FILE));
        report
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("write {}: {e}", path.display()))
}
