//! Start replicas in-process on port 0, over a real `redis-server` or a
//! shared in-memory store, and talk to them like a client would.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde_json::{Value, json};
use tokengate::config::{ClusterSettings, Secret, Settings};
use tokengate::server::Listeners;
use tokengate::store::memory::MemoryStore;
use tokengate::store::redis::RedisStore;
use tokengate::store::{Store, Timing};
use tokio::sync::oneshot;

use crate::support::client::{self, Reply};
use crate::support::postgres::PostgresServer;
use crate::support::redis::RedisServer;
use crate::support::redis_cluster::RedisCluster;

/// The shared HS256 key of test clusters (≥ 32 bytes).
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

/// The durable database of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// One SQLite file in the cluster's temp dir (the default of every cluster).
    Sqlite,
    /// A fresh database on the test process's PostgreSQL server.
    Postgres,
}

impl Db {
    pub fn configure(self, settings: &mut Settings) {
        match self {
            Self::Sqlite => {}
            Self::Postgres => {
                settings.database.url = Secret::new(PostgresServer::shared().create_database());
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redis,
    Memory,
    /// A 6-node Redis Cluster (3 masters, 3 replicas; SPEC §16).
    RedisCluster,
}

/// Replicas sharing one store, as in production.
pub struct Cluster {
    /// Holds the SQLite database; removed on drop.
    dir: std::path::PathBuf,
    pub redis: Option<RedisServer>,
    pub redis_cluster: Option<RedisCluster>,
    pub replicas: Vec<Replica>,
    pub settings: Settings,
    memory: MemoryStore,
    timing: Timing,
}

pub struct Replica {
    /// The public port: the API, behind nginx in production.
    pub addr: SocketAddr,
    /// The admin listener (`admin.listen`): `/admin/*` and `/metrics`.
    pub admin_addr: SocketAddr,
    /// Where its gRPC API listens.
    pub grpc_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    pub async fn start(backend: Backend, replicas: usize) -> Self {
        Self::start_with(backend, replicas, |_| {}).await
    }

    /// `configure` adjusts the settings every replica gets.
    pub async fn start_with(
        backend: Backend,
        replicas: usize,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        let redis = (backend == Backend::Redis).then(RedisServer::start);
        let redis_cluster = (backend == Backend::RedisCluster)
            .then(|| tokio::task::block_in_place(RedisCluster::start));
        let mut settings = Settings::default();
        settings.auth.secret = Secret::new(SECRET);
        // Replicas share one SQLite file unless a test gives a Postgres URL.
        let dir = std::env::temp_dir().join(format!("tokengate-api-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        settings.database.url = Secret::new(format!(
            "sqlite://{}?mode=rwc",
            dir.join("tokengate.db").display()
        ));
        if let Some(redis) = &redis {
            settings.cache.url = Secret::new(redis.url());
        }
        if let Some(cluster) = &redis_cluster {
            settings.cache.cluster = Some(ClusterSettings {
                nodes: cluster.nodes(),
                ..ClusterSettings::default()
            });
        }
        if backend != Backend::Memory {
            // Tests are the only callers; tests of login clients set them.
            settings.login.open = true;
        }
        // Every test registers from 127.0.0.1; tests of the limit set it.
        settings.users.registrations_per_address = 0;
        configure(&mut settings);
        let settings = settings.resolved().expect("valid test settings");

        let timing = Timing::from_auth(&settings.auth);
        let mut cluster = Self {
            dir,
            redis,
            redis_cluster,
            replicas: Vec::new(),
            memory: MemoryStore::new(timing),
            timing,
            settings,
        };
        for _ in 0..replicas {
            cluster.add_replica().await;
        }
        cluster
    }

    /// Starts one more replica on the cluster's store, with its settings
    /// changed by `configure` (a replica that got a new configuration).
    pub async fn add_replica_with(&mut self, configure: impl FnOnce(&mut Settings)) -> &Replica {
        let mut settings = self.settings.clone();
        configure(&mut settings);
        let settings = settings.resolved().expect("valid replica settings");
        let replica = Replica::spawn(&settings, self.new_store()).await;
        self.replicas.push(replica);
        &self.replicas[self.replicas.len() - 1]
    }

    /// Starts one more replica on the cluster's store.
    pub async fn add_replica(&mut self) -> &Replica {
        let replica = Replica::spawn(&self.settings, self.new_store()).await;
        self.replicas.push(replica);
        &self.replicas[self.replicas.len() - 1]
    }

    /// A store handle on the cluster's sessions (own pool for Redis).
    pub fn new_store(&self) -> Store {
        if self.redis.is_none() && self.redis_cluster.is_none() {
            return Store::Memory(self.memory.clone());
        }
        Store::Redis(RedisStore::new(&self.settings.cache, self.timing).expect("redis store"))
    }

    pub fn a(&self) -> &Replica {
        &self.replicas[0]
    }

    pub fn b(&self) -> &Replica {
        &self.replicas[1 % self.replicas.len()]
    }

    pub fn redis(&self) -> &RedisServer {
        self.redis.as_ref().expect("a Redis-backed cluster")
    }

    pub fn redis_mut(&mut self) -> &mut RedisServer {
        self.redis.as_mut().expect("a Redis-backed cluster")
    }

    pub fn redis_cluster(&self) -> &RedisCluster {
        self.redis_cluster
            .as_ref()
            .expect("a cluster on a Redis Cluster")
    }

    pub fn redis_cluster_mut(&mut self) -> &mut RedisCluster {
        self.redis_cluster
            .as_mut()
            .expect("a cluster on a Redis Cluster")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Replica {
    pub async fn spawn(settings: &Settings, store: Store) -> Self {
        let app = tokengate::app::with_store(settings, store).expect("build app");
        app.migrate().await.expect("migrations");
        app.load_clients().await.expect("stored clients");
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let (http, admin, grpc) = (
            bind().await.unwrap(),
            bind().await.unwrap(),
            bind().await.unwrap(),
        );
        let addr = http.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let grpc_addr = grpc.local_addr().unwrap();
        let listeners = Listeners {
            http,
            unix: None,
            admin: Some(admin),
            grpc: Some(grpc),
        };
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(tokengate::server::serve(
            listeners,
            Arc::new(app),
            async {
                let _ = rx.await;
            },
            Duration::from_secs(5),
        ));
        Self {
            addr,
            admin_addr,
            grpc_addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops accepting and drains, like SIGTERM does.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    pub async fn send(&self, request: Request<Full<Bytes>>) -> Reply {
        client::send(self.addr, request).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        client::get(self.addr, path).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        client::post_json(self.addr, path, body).await
    }

    /// [`Replica::send`] to the admin listener.
    pub async fn send_admin(&self, request: Request<Full<Bytes>>) -> Reply {
        client::send(self.admin_addr, request).await
    }

    /// `GET path` on the admin listener.
    pub async fn get_admin(&self, path: &str) -> Reply {
        client::get(self.admin_addr, path).await
    }

    /// Logs in as `user_id` and returns the pair; asserts success.
    pub async fn login(&self, user_id: Value) -> Pair {
        let reply = self
            .post_json("/login", &json!({ "user_id": user_id }))
            .await;
        assert_eq!(reply.status, 200, "login: {:?}", reply.body);
        Pair::from_reply(&reply)
    }

    pub async fn refresh(&self, refresh: &str) -> Reply {
        self.post_json("/refresh", &json!({ "refresh": refresh }))
            .await
    }

    pub async fn authenticate(&self, access: &str) -> Reply {
        self.authenticate_with(Method::GET, access).await
    }

    pub async fn authenticate_with(&self, method: Method, access: &str) -> Reply {
        client::with_bearer(self.addr, method, "/authenticate", access).await
    }

    pub async fn logout(&self, access: &str) -> Reply {
        client::with_bearer(self.addr, Method::POST, "/logout", access).await
    }

    /// `tokengate_secret_verifications_total`: argon2 runs so far.
    pub async fn verifications(&self) -> u64 {
        self.metric("tokengate_secret_verifications_total").await as u64
    }

    /// The value of the sample `name` (with its labels, if any, as
    /// exposed) in `/metrics`; panics if there is none.
    pub async fn metric(&self, name: &str) -> f64 {
        let metrics = self.get_admin("/metrics").await;
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    /// True when `access` passes `/authenticate`; panics on anything but 200/401.
    pub async fn accepts(&self, access: &str) -> bool {
        let reply = self.authenticate(access).await;
        match reply.status.as_u16() {
            200 => true,
            401 => false,
            other => panic!("authenticate answered {other}: {:?}", reply.body),
        }
    }
}

/// A token pair as `/login` and `/refresh` return it.
#[derive(Debug, Clone)]
pub struct Pair {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
    pub json: Value,
}

impl Pair {
    pub fn from_reply(reply: &Reply) -> Self {
        Self {
            access: reply.field("access"),
            refresh: reply.field("refresh"),
            session_id: reply.field("session_id"),
            json: reply.json(),
        }
    }

    /// The claims of the access token (signature checked with [`SECRET`]).
    pub fn claims(&self) -> Value {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&["tokengate"]);
        jsonwebtoken::decode::<Value>(
            &self.access,
            &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
            &validation,
        )
        .expect("our own access token")
        .claims
    }
}

/// Polls `check` until it holds or `within` has passed; returns whether it held.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs each listed scenario `async fn name(backend: Backend)` against both
/// stores, as `redis::name` and `memory::name`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Redis).await
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Memory).await
                }
            )*
        }
    };
}

/// Runs each listed scenario `async fn name(backend: Backend)` on a Redis
/// Cluster too, as `redis_cluster::name` (SPEC §16: the behaviour suite on
/// a real cluster); next to [`on_both_stores`] for the scenarios it lists.
#[macro_export]
macro_rules! on_redis_cluster {
    ($($name:ident),* $(,)?) => {
        mod redis_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::RedisCluster).await
                }
            )*
        }
    };
}

/// Runs each listed scenario `async fn name(db: Db)` against both
/// databases, as `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Db::Postgres).await
                }
            )*
        }
    };
}
