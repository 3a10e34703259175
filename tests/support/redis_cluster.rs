//! A real Redis Cluster, private to one test (or to `scripts/cluster
//! --redis-cluster`): N masters with M replicas each, every node a Debian
//! `redis-server --cluster-enabled yes` on a free loopback port whose cluster
//! bus port (+10000) is free too, with a directory of its own (its
//! `nodes.conf` and log), joined by `redis-cli --cluster create`.
//!
//! ```ignore
//! let mut cluster = RedisCluster::start();     // 3 masters, 1 replica each, ~1-2 s
//! cluster.nodes();                             // ["127.0.0.1:P1", ...]: cache.cluster.nodes
//! let slot = cluster.slot_of("tg:{u:ada}:idx");
//! let master = cluster.master_of_slot(slot);
//! let promoted = cluster.failover(master);     // CLUSTER FAILOVER on its replica
//! cluster.kill(promoted);                      // a crash (SIGKILL)
//! let next = cluster.wait_for_failover_of(promoted);
//! cluster.restart(promoted);                   // back, now a replica of `next`
//! cluster.migrate_slot(slot, other_master);    // by hand, keys and all
//! cluster.reshard(from, to, 10);               // redis-cli --cluster reshard
//! ```
//!
//! Every node runs with `cluster-require-full-coverage no`, so while one
//! master is down the others keep serving their slots (SPEC §16: "others
//! unaffected"); a small `cluster-node-timeout` (1 s by default), so a dead
//! master's replica is promoted within about 2-3 s; `cluster-replica-validity-factor
//! 0`, so a replica is always allowed to take over; and
//! `cluster-allow-replica-migration no`, so a master left without slots keeps
//! its role and the topology stays what the test made it. No persistence
//! (`save ""`, `appendonly no`): a restarted node comes back empty, with its
//! identity (`nodes.conf`), and rejoins.
//!
//! Whatever waits polls (no fixed sleeps) with a bound, and panics saying what
//! it was still waiting for. The nodes are killed on drop; their directory is
//! removed, unless the thread is panicking (the nodes' logs are kept then, and
//! the path printed).
//!
//! The harness talks to single nodes with plain connections and `CLUSTER`
//! commands (no cluster client); [`RedisCluster::route`] follows `MOVED` and
//! `ASK` like a cluster client would, for tests that want to read or write a
//! key wherever it lives.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_redis::redis;

use super::ports::free_port;
use super::procs;

/// Redis Cluster's slots: 0..=16383.
pub const SLOTS: u16 = 16384;

/// How long forming the cluster, or settling after a change, may take.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Between two looks at the cluster.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long one node may take to answer the harness.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// What [`RedisCluster::start_options`] starts.
#[derive(Debug, Clone)]
pub struct RedisClusterOptions {
    /// Masters, each serving an equal share of the slots (≥ 1; `redis-cli
    /// --cluster create` takes ≥ 3, fewer are joined by hand).
    pub masters: usize,
    /// Replicas of each master.
    pub replicas_per_master: usize,
    /// `cluster-node-timeout`: how long a node may be silent before it is
    /// suspected; a dead master's replica takes over about 2-3 of these later.
    pub node_timeout: Duration,
    /// `requirepass` (and `masterauth`) of every node; `None`: no password.
    pub password: Option<String>,
    /// Where each node's directory goes (`<dir>/redis-<port>/`), kept
    /// afterwards; `None`: a fresh temporary directory, removed on drop.
    pub dir: Option<PathBuf>,
}

impl Default for RedisClusterOptions {
    fn default() -> Self {
        Self {
            masters: 3,
            replicas_per_master: 1,
            node_timeout: Duration::from_millis(1000),
            password: None,
            dir: None,
        }
    }
}

impl RedisClusterOptions {
    pub fn masters(mut self, masters: usize) -> Self {
        self.masters = masters;
        self
    }

    pub fn replicas_per_master(mut self, replicas: usize) -> Self {
        self.replicas_per_master = replicas;
        self
    }

    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    pub fn start(self) -> RedisCluster {
        RedisCluster::start_options(self)
    }
}

/// One `redis-server` of the cluster.
struct Node {
    port: u16,
    /// Its working directory: `nodes.conf` (its identity, kept across a
    /// restart) and `redis.log`.
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn running(&self) -> bool {
        self.pid().is_some_and(procs::alive)
    }
}

pub struct RedisCluster {
    options: RedisClusterOptions,
    dir: PathBuf,
    remove_dir: bool,
    nodes: Vec<Node>,
    /// The slots a master served when [`RedisCluster::kill`] killed it, for
    /// [`RedisCluster::wait_for_failover_of`].
    killed_slots: HashMap<u16, Vec<(u16, u16)>>,
    /// The harness's own connections, one per node, reopened after an error.
    connections: Mutex<HashMap<u16, redis::Connection>>,
}

/// A node's role as it says itself (`ROLE`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Master,
    Replica { master: u16, linked: bool },
}

/// One line of `CLUSTER NODES`: a node as the node asked sees it.
#[derive(Debug, Clone)]
struct NodeLine {
    id: String,
    port: u16,
    myself: bool,
    master: bool,
    /// `fail` or `fail?` (suspected).
    failing: bool,
    /// The master's id, for a replica.
    master_id: Option<String>,
    connected: bool,
    /// Slot ranges it serves, inclusive.
    slots: Vec<(u16, u16)>,
    /// A slot being migrated or imported (`[slot->-id]`, `[slot-<-id]`).
    open_slots: bool,
}

impl RedisCluster {
    /// Three masters with one replica each.
    pub fn start() -> Self {
        Self::start_options(RedisClusterOptions::default())
    }

    /// `masters` masters with `replicas_per_master` replicas each.
    pub fn start_with(masters: usize, replicas_per_master: usize) -> Self {
        Self::start_options(
            RedisClusterOptions::default()
                .masters(masters)
                .replicas_per_master(replicas_per_master),
        )
    }

    /// The options' cluster; returns once every node says `cluster_state:ok`,
    /// all 16384 slots are served, every node agrees on who serves which,
    /// and every replica is linked to its master.
    pub fn start_options(options: RedisClusterOptions) -> Self {
        assert!(options.masters >= 1, "a Redis Cluster needs a master");
        let (dir, remove_dir) = match &options.dir {
            Some(dir) => (std::path::absolute(dir).expect("an absolute path"), false),
            None => (
                std::env::temp_dir()
                    .join(format!("tokengate-redis-cluster-{}", uuid::Uuid::new_v4())),
                true,
            ),
        };
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut cluster = Self {
            options,
            dir,
            remove_dir,
            nodes: Vec::new(),
            killed_slots: HashMap::new(),
            connections: Mutex::new(HashMap::new()),
        };
        // From here on, Drop kills whatever was started if a step panics.
        let count = cluster.options.masters * (1 + cluster.options.replicas_per_master);
        for _ in 0..count {
            cluster.start_node();
        }
        if cluster.options.masters >= 3 {
            cluster.create_with_redis_cli();
        } else {
            cluster.create_by_hand();
        }
        cluster.wait_formed();
        cluster
    }

    // --- where the nodes are ---------------------------------------------------

    /// Every node, `127.0.0.1:PORT`, as `cache.cluster.nodes` takes them (any
    /// of them is a seed).
    pub fn nodes(&self) -> Vec<String> {
        self.ports()
            .into_iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect()
    }

    /// Every node as a URL, `redis://127.0.0.1:PORT` (with the password if
    /// any).
    pub fn seed_urls(&self) -> Vec<String> {
        self.ports()
            .into_iter()
            .map(|port| self.url(port))
            .collect()
    }

    /// Every node's port, running or not, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The nodes' password, if they have one.
    pub fn password(&self) -> Option<&str> {
        self.options.password.as_deref()
    }

    /// `redis://[:password@]127.0.0.1:PORT`.
    pub fn url(&self, port: u16) -> String {
        match &self.options.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{port}"),
            None => format!("redis://127.0.0.1:{port}"),
        }
    }

    /// The directory holding every node's directory (`redis-<port>/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pid of the node on `port`, `None` once it was killed.
    pub fn pid(&self, port: u16) -> Option<u32> {
        self.node(port).pid()
    }

    /// Whether the node on `port` runs (it was not killed, nor died).
    pub fn is_running(&self, port: u16) -> bool {
        self.node(port).running()
    }

    /// What the node on `port` logged, for a failing test to show.
    pub fn log(&self, port: u16) -> String {
        std::fs::read_to_string(self.node(port).dir.join("redis.log")).unwrap_or_default()
    }

    /// The node's cluster id (`CLUSTER MYID`).
    pub fn node_id(&self, port: u16) -> String {
        self.query(port, redis::cmd("CLUSTER").arg("MYID"))
            .unwrap_or_else(|e| panic!("CLUSTER MYID on {port}: {e}"))
    }

    // --- roles and slots, as the cluster says now -------------------------------

    /// The running nodes that say they are masters (`ROLE`), in start order.
    /// A killed master is not among them; its replica is once promoted.
    pub fn masters(&self) -> Vec<u16> {
        self.running_ports()
            .into_iter()
            .filter(|&port| self.role(port) == Some(Role::Master))
            .collect()
    }

    /// The running nodes that say they are replicas.
    pub fn replicas(&self) -> Vec<u16> {
        self.running_ports()
            .into_iter()
            .filter(|&port| matches!(self.role(port), Some(Role::Replica { .. })))
            .collect()
    }

    /// A running replica of the master on `master_port` (`ROLE`), if it has one.
    pub fn replica_of(&self, master_port: u16) -> Option<u16> {
        self.running_ports().into_iter().find(|&port| {
            matches!(self.role(port), Some(Role::Replica { master, .. }) if master == master_port)
        })
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`, asked of a running node).
    pub fn slot_of(&self, key: &str) -> u16 {
        let port = self.any_running();
        self.query(port, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key} on {port}: {e}"))
    }

    /// The master serving `slot`, as a running master sees the cluster now.
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        let view = self.view_of(self.any_master());
        owner(&view, slot).unwrap_or_else(|| panic!("no master serves slot {slot}: {view:?}"))
    }

    /// The slots the master on `port` serves, as ranges (inclusive).
    pub fn slots_of(&self, port: u16) -> Vec<(u16, u16)> {
        let view = self.view_of(self.any_master());
        view.iter()
            .find(|line| line.port == port && line.master)
            .map(|line| line.slots.clone())
            .unwrap_or_default()
    }

    /// The first of `<prefix>0`, `<prefix>1`, ... whose slot the master on
    /// `port` serves (computed here, [`key_slot`]): for a test that wants a
    /// key, or a hash tag, on a given master.
    pub fn key_on(&self, port: u16, prefix: &str) -> String {
        let slots = self.slots_of(port);
        assert!(!slots.is_empty(), "{port} serves no slot");
        (0..100_000)
            .map(|i| format!("{prefix}{i}"))
            .find(|key| {
                let slot = key_slot(key);
                slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
            })
            .expect("a key on every master among 100000")
    }

    // --- talking to the nodes ----------------------------------------------------

    /// A new synchronous connection to the node on `port` (its password
    /// given), with 5 s read and write timeouts. It is not redirected:
    /// `MOVED`/`ASK` come back as errors ([`Self::route`] follows them).
    pub fn connection(&self, port: u16) -> redis::Connection {
        self.try_connection(port, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to the Redis node on {port}: {e}"))
    }

    /// `cmd` on the node on `port`, on the harness's own connection to it.
    pub fn query<T: redis::FromRedisValue>(
        &self,
        port: u16,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        // A cached connection may be to a node since killed or restarted:
        // one more try on a fresh one.
        for attempt in 0..2 {
            let mut connection = match connections.remove(&port) {
                Some(c) => c,
                None => self.try_connection(port, QUERY_TIMEOUT)?,
            };
            match cmd.query(&mut connection) {
                Ok(value) => {
                    connections.insert(port, connection);
                    return Ok(value);
                }
                // A reply from the server (MOVED, WRONGTYPE, ...): the
                // connection is fine.
                Err(e) if e.code().is_some() => {
                    connections.insert(port, connection);
                    return Err(e);
                }
                Err(e) if attempt == 1 => return Err(e),
                Err(_) => {}
            }
        }
        unreachable!()
    }

    /// `cmd` for a key wherever it lives: sent to a running node and then
    /// where `MOVED` and `ASK` send it (`ASKING` first for `ASK`), as a
    /// cluster client does; at most 5 redirections.
    pub fn route<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let mut port = self.any_running();
        let mut asking = false;
        for _ in 0..5 {
            let result = if asking {
                let mut pipe = redis::pipe();
                pipe.cmd("ASKING").ignore().add_command(cmd.clone());
                self.query_pipe::<(T,)>(port, &pipe).map(|(v,)| v)
            } else {
                self.query(port, cmd)
            };
            let e = match result {
                Err(e) if e.redirect_node().is_some() => e,
                other => return other,
            };
            asking = e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::Ask);
            let (addr, _slot) = e.redirect_node().expect("a redirection");
            port = addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .unwrap_or_else(|| panic!("a redirection to {addr:?}"));
        }
        Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "more than 5 redirections",
        )))
    }

    /// The keys matching `pattern` on every running master (`SCAN`), sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys = BTreeSet::new();
        for port in self.masters() {
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = self
                    .query(
                        port,
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(1000),
                    )
                    .unwrap_or_else(|e| panic!("SCAN on {port}: {e}"));
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        keys.into_iter().collect()
    }

    /// `PTTL` of a key wherever it lives (-1: no TTL, -2: no key).
    pub fn pttl(&self, key: &str) -> i64 {
        self.route(redis::cmd("PTTL").arg(key))
            .unwrap_or_else(|e| panic!("PTTL {key}: {e}"))
    }

    /// `FLUSHALL` on every running master (their replicas follow).
    pub fn flushall(&self) {
        for port in self.masters() {
            let () = self
                .query(port, &redis::cmd("FLUSHALL"))
                .unwrap_or_else(|e| panic!("FLUSHALL on {port}: {e}"));
        }
    }

    // --- faults and changes -------------------------------------------------------

    /// A planned failover: `CLUSTER FAILOVER` on a replica of the master on
    /// `master_port`, which waits for the replica to have everything the
    /// master wrote, then swaps their roles. Returns once the replica says it
    /// is master, the old master says it is its replica (and is linked to
    /// it), and every running node agrees. Returns the new master's port.
    pub fn failover(&self, master_port: u16) -> u16 {
        let replica = self.replica_of(master_port).unwrap_or_else(|| {
            panic!("the master on {master_port} has no running replica to fail over to")
        });
        self.poll(
            format!("replica {replica} linked to {master_port}"),
            || match self.role(replica) {
                Some(Role::Replica { linked: true, .. }) => Ok(()),
                other => Err(format!("ROLE of {replica}: {other:?}")),
            },
        );
        let mut asked = Instant::now();
        let failover = || -> redis::RedisResult<()> {
            self.query(replica, redis::cmd("CLUSTER").arg("FAILOVER"))
        };
        failover().unwrap_or_else(|e| panic!("CLUSTER FAILOVER on {replica}: {e}"));
        self.poll(
            format!("{replica} to take over from {master_port} (CLUSTER FAILOVER)"),
            || {
                let role = self.role(replica);
                if role != Some(Role::Master) {
                    // A manual failover the master did not answer in time is
                    // given up (after 5 s): ask again.
                    if asked.elapsed() > Duration::from_secs(6) {
                        asked = Instant::now();
                        let _ = failover();
                    }
                    return Err(format!("ROLE of {replica}: {role:?}"));
                }
                match self.role(master_port) {
                    Some(Role::Replica {
                        master,
                        linked: true,
                    }) if master == replica => {}
                    other => return Err(format!("ROLE of {master_port}: {other:?}")),
                }
                self.settled().map(|_| ())
            },
        );
        replica
    }

    /// SIGKILL the node on `port` (a crash: no goodbye to clients or to the
    /// cluster). Its directory stays: [`Self::restart`] brings it back with
    /// the same identity. Nothing is waited for: the others notice after
    /// `cluster-node-timeout` ([`Self::wait_for_failover_of`]).
    pub fn kill(&mut self, port: u16) {
        // What it served, for wait_for_failover_of.
        let slots = self
            .running_ports()
            .into_iter()
            .find(|&p| p != port && self.role(p) == Some(Role::Master))
            .and_then(|p| self.try_view_of(p).ok())
            .and_then(|view| view.into_iter().find(|l| l.port == port && l.master))
            .map(|line| line.slots)
            .unwrap_or_default();
        if !slots.is_empty() {
            self.killed_slots.insert(port, slots);
        }
        let node = self.node_mut(port);
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.forget_connection(port);
    }

    /// Waits until the slots the killed master on `dead_master_port` served
    /// are served by another running node (its promoted replica) and every
    /// running node agrees, `cluster_state:ok` everywhere. Returns the
    /// promoted node's port.
    pub fn wait_for_failover_of(&self, dead_master_port: u16) -> u16 {
        let slots = match self.killed_slots.get(&dead_master_port) {
            Some(slots) => slots.clone(),
            None => {
                let view = self.view_of(self.any_master());
                view.into_iter()
                    .find(|l| l.port == dead_master_port)
                    .map(|l| l.slots)
                    .unwrap_or_default()
            }
        };
        assert!(
            !slots.is_empty(),
            "{dead_master_port} served no slots when it was killed: nothing to fail over"
        );
        let first = slots[0].0;
        let mut promoted = 0;
        self.poll(
            format!("the slots of {dead_master_port} to be served again"),
            || {
                let view = self.settled()?;
                let now = owner(&view, first).ok_or("no owner")?;
                if now == dead_master_port {
                    return Err(format!("{dead_master_port} still serves slot {first}"));
                }
                for &(a, b) in &slots {
                    for slot in [a, b] {
                        if owner(&view, slot) != Some(now) {
                            return Err(format!("slot {slot} not yet on {now}"));
                        }
                    }
                }
                promoted = now;
                Ok(())
            },
        );
        promoted
    }

    /// Starts the killed node on `port` again (empty, with its identity) and
    /// waits until it has rejoined: every running node agrees on the
    /// cluster again (a master that was failed over comes back as a replica
    /// of its successor, and is linked to it).
    pub fn restart(&mut self, port: u16) {
        if self.is_running(port) {
            self.kill(port);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = self.spawn_node(port) {
                self.node_mut(port).child = Some(child);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis node on {port} did not restart: {}",
                last_lines(&self.log(port))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.killed_slots.remove(&port);
        self.wait_settled();
    }

    /// Moves `slot`, with its keys, to the master on `to_master_port`, by
    /// hand as `redis-cli --cluster reshard` does for each slot: `SETSLOT
    /// IMPORTING` on the target, `MIGRATING` on the source, `GETKEYSINSLOT` +
    /// `MIGRATE ... KEYS` until none is left (clients meanwhile get `ASK` for
    /// keys already moved), then `SETSLOT NODE` on the target, the source and
    /// every other master. Traffic may run throughout. Returns once every
    /// running node agrees that `to_master_port` serves it.
    pub fn migrate_slot(&self, slot: u16, to_master_port: u16) {
        let from = self.master_of_slot(slot);
        if from == to_master_port {
            return;
        }
        let from_id = self.node_id(from);
        let to_id = self.node_id(to_master_port);
        let setslot = |port: u16, args: &[&str]| {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SETSLOT").arg(slot).arg(args);
            let () = self
                .query(port, &cmd)
                .unwrap_or_else(|e| panic!("CLUSTER SETSLOT {slot} {args:?} on {port}: {e}"));
        };
        setslot(to_master_port, &["IMPORTING", &from_id]);
        setslot(from, &["MIGRATING", &to_id]);
        loop {
            let keys: Vec<Vec<u8>> = self
                .query(
                    from,
                    redis::cmd("CLUSTER")
                        .arg("GETKEYSINSLOT")
                        .arg(slot)
                        .arg(100),
                )
                .unwrap_or_else(|e| panic!("CLUSTER GETKEYSINSLOT {slot} on {from}: {e}"));
            if keys.is_empty() {
                break;
            }
            let mut migrate = redis::cmd("MIGRATE");
            migrate
                .arg("127.0.0.1")
                .arg(to_master_port)
                .arg("")
                .arg(0)
                .arg(5000);
            if let Some(p) = &self.options.password {
                migrate.arg("AUTH").arg(p);
            }
            migrate.arg("KEYS").arg(keys);
            let _: redis::Value = self.query(from, &migrate).unwrap_or_else(|e| {
                panic!("MIGRATE of slot {slot} from {from} to {to_master_port}: {e}")
            });
        }
        setslot(to_master_port, &["NODE", &to_id]);
        setslot(from, &["NODE", &to_id]);
        for port in self.masters() {
            if port != from && port != to_master_port {
                setslot(port, &["NODE", &to_id]);
            }
        }
        self.poll(
            format!("slot {slot} to be served by {to_master_port}"),
            || {
                let view = self.settled()?;
                match owner(&view, slot) {
                    Some(p) if p == to_master_port => Ok(()),
                    other => Err(format!("slot {slot} on {other:?}")),
                }
            },
        );
    }

    /// `redis-cli --cluster reshard`: moves `slots` slots (which ones is
    /// redis-cli's choice) with their keys from the master on `from` to the
    /// master on `to`, then waits until every running node agrees. Returns
    /// the slots moved.
    pub fn reshard(&self, from: u16, to: u16, slots: u32) -> Vec<u16> {
        let before = expand(&self.slots_of(to));
        let from_id = self.node_id(from);
        let to_id = self.node_id(to);
        let mut command = self.redis_cli();
        command
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &from_id])
            .args(["--cluster-to", &to_id])
            .args(["--cluster-slots", &slots.to_string()])
            .arg("--cluster-yes");
        run(command, "redis-cli --cluster reshard");
        self.wait_settled();
        expand(&self.slots_of(to))
            .difference(&before)
            .copied()
            .collect()
    }

    /// Waits until every running node says `cluster_state:ok`, serves its
    /// slots (none failing), and all agree on who serves which slot and
    /// which node is whose replica; every running replica is linked to its
    /// master, and no slot is being migrated.
    pub fn wait_settled(&self) {
        self.poll("the cluster to settle".to_owned(), || {
            self.settled().map(|_| ())
        });
    }

    /// Leaves every node running, and the directory in place, when this
    /// handle is dropped (`scripts/cluster up`); returns each node's port
    /// and pid.
    pub fn detach(mut self) -> Vec<(u16, Option<u32>)> {
        self.remove_dir = false;
        self.nodes
            .iter_mut()
            .map(|node| (node.port, node.child.take().map(|c| c.id())))
            .collect()
    }

    // --- forming the cluster -------------------------------------------------------

    /// Starts one more node on free ports (its port and port + 10000).
    fn start_node(&mut self) {
        for _ in 0..10 {
            let port = free_port_pair();
            if let Some(child) = self.spawn_node(port) {
                let dir = self.node_dir(port);
                self.nodes.push(Node {
                    port,
                    dir,
                    child: Some(child),
                });
                return;
            }
        }
        panic!(
            "redis-server --cluster-enabled yes did not start; is it installed \
             (scripts/test installs it)?"
        );
    }

    fn node_dir(&self, port: u16) -> PathBuf {
        self.dir.join(format!("redis-{port}"))
    }

    /// Starts `redis-server` on `port` in its directory; the child once it
    /// answers as itself (not another test's server that won the port).
    fn spawn_node(&self, port: u16) -> Option<Child> {
        let dir = self.node_dir(port);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let timeout = self.options.node_timeout.as_millis().to_string();
        let mut command = Command::new("redis-server");
        command
            .current_dir(&dir)
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--dir", &dir.display().to_string()])
            .args(["--logfile", &dir.join("redis.log").display().to_string()])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", &timeout])
            .args(["--cluster-require-full-coverage", "no"])
            .args(["--cluster-replica-validity-factor", "0"])
            .args(["--cluster-allow-replica-migration", "no"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            // A replica gets its copy at once (the default waits 5 s for
            // more replicas to share it), loaded straight from the socket.
            .args(["--repl-diskless-sync-delay", "0"])
            .args(["--repl-diskless-load", "swapdb"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.options.password {
            command.args(["--requirepass", p]).args(["--masterauth", p]);
        }
        let mut child = command.spawn().ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return None; // lost a port race (its own or the bus's)
            }
            let ours = self
                .try_connection(port, QUERY_TIMEOUT)
                .ok()
                .and_then(|mut c| process_id(&mut c))
                == Some(child.id());
            if ours {
                return Some(child);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// `redis-cli --cluster create`: the first `masters` nodes take the
    /// slots, the others replicate them (redis-cli picks which whose).
    fn create_with_redis_cli(&self) {
        let mut command = self.redis_cli();
        command
            .args(["--cluster", "create"])
            .args(self.nodes())
            .args([
                "--cluster-replicas",
                &self.options.replicas_per_master.to_string(),
            ])
            .arg("--cluster-yes");
        run(command, "redis-cli --cluster create");
    }

    /// What `redis-cli --cluster create` does, for fewer than three masters
    /// (which it refuses): distinct config epochs, the slots in equal
    /// ranges, every node met, then the replicas assigned in turn.
    fn create_by_hand(&self) {
        let masters = self.options.masters;
        let ports = self.ports();
        for (i, &port) in ports[..masters].iter().enumerate() {
            let start = (usize::from(SLOTS) * i / masters) as u16;
            let end = (usize::from(SLOTS) * (i + 1) / masters - 1) as u16;
            let () = self
                .query(
                    port,
                    redis::cmd("CLUSTER")
                        .arg("ADDSLOTSRANGE")
                        .arg(start)
                        .arg(end),
                )
                .unwrap_or_else(|e| panic!("CLUSTER ADDSLOTSRANGE on {port}: {e}"));
            let () = self
                .query(
                    port,
                    redis::cmd("CLUSTER").arg("SET-CONFIG-EPOCH").arg(i + 1),
                )
                .unwrap_or_else(|e| panic!("CLUSTER SET-CONFIG-EPOCH on {port}: {e}"));
        }
        for &port in &ports[1..] {
            let () = self
                .query(
                    port,
                    redis::cmd("CLUSTER")
                        .arg("MEET")
                        .arg("127.0.0.1")
                        .arg(ports[0]),
                )
                .unwrap_or_else(|e| panic!("CLUSTER MEET on {port}: {e}"));
        }
        let ids: Vec<String> = ports[..masters].iter().map(|&p| self.node_id(p)).collect();
        for (i, &port) in ports[masters..].iter().enumerate() {
            let master = &ids[i % masters];
            // A replica can follow a master only once it knows it.
            self.poll(format!("{port} to know master {master}"), || {
                self.query::<()>(port, redis::cmd("CLUSTER").arg("REPLICATE").arg(master))
                    .map_err(|e| e.to_string())
            });
        }
    }

    /// Waits for the cluster just created: settled, with every node known
    /// to every node and each master with its replicas.
    fn wait_formed(&self) {
        let total = self.nodes.len();
        let masters = self.options.masters;
        let replicas = self.options.replicas_per_master;
        self.poll("the cluster to form".to_owned(), || {
            let view = self.settled()?;
            if view.len() != total {
                return Err(format!("{} of {total} nodes known", view.len()));
            }
            let serving: Vec<&NodeLine> = view.iter().filter(|l| !l.slots.is_empty()).collect();
            if serving.len() != masters {
                return Err(format!(
                    "{} of {masters} masters serve slots",
                    serving.len()
                ));
            }
            for master in serving {
                let n = view
                    .iter()
                    .filter(|l| l.master_id.as_deref() == Some(master.id.as_str()))
                    .count();
                if n != replicas {
                    return Err(format!("{} has {n} of {replicas} replica(s)", master.port));
                }
            }
            Ok(())
        });
    }

    // --- looking at the cluster ----------------------------------------------------

    /// The view of a running node if every running node is settled (see
    /// [`Self::wait_settled`]); else what is not, yet.
    fn settled(&self) -> Result<Vec<NodeLine>, String> {
        let running = self.running_ports();
        if running.is_empty() {
            return Err("no node runs".to_owned());
        }
        let mut first: Option<(u16, Vec<NodeLine>)> = None;
        for &port in &running {
            let info: String = self
                .query(port, redis::cmd("CLUSTER").arg("INFO"))
                .map_err(|e| format!("CLUSTER INFO on {port}: {e}"))?;
            for expected in [
                "cluster_state:ok".to_owned(),
                format!("cluster_slots_assigned:{SLOTS}"),
                format!("cluster_slots_ok:{SLOTS}"),
            ] {
                if !info.lines().any(|l| l.trim() == expected) {
                    return Err(format!("{port} says not {expected}"));
                }
            }
            let view = self.try_view_of(port)?;
            // Every running node known, reachable and not suspected.
            for &other in &running {
                let line = view
                    .iter()
                    .find(|l| l.port == other)
                    .ok_or_else(|| format!("{port} does not know {other}"))?;
                if line.failing || !line.connected {
                    return Err(format!("{port} sees {other} failing or disconnected"));
                }
            }
            let me = view
                .iter()
                .find(|l| l.myself)
                .ok_or_else(|| format!("{port} does not know itself"))?;
            if me.open_slots {
                return Err(format!("{port} has a slot migrating or importing"));
            }
            // Every serving master runs.
            for line in view.iter().filter(|l| !l.slots.is_empty()) {
                if !running.contains(&line.port) || !line.master {
                    return Err(format!(
                        "{port} sees slots on {}, which is down or no master",
                        line.port
                    ));
                }
            }
            // It says of itself what the view says.
            let role = self
                .role(port)
                .ok_or_else(|| format!("no ROLE from {port}"))?;
            match role {
                Role::Master if me.master => {}
                Role::Replica {
                    master,
                    linked: true,
                } if !me.master && me.master_id.as_deref() == view_id(&view, master).as_deref() => {
                }
                other => return Err(format!("{port} is {other:?} (not yet linked?)")),
            }
            match &first {
                None => first = Some((port, view)),
                Some((first_port, first_view)) => {
                    if let Some(why) = disagreement(first_view, &view, &running) {
                        return Err(format!("{first_port} and {port} disagree: {why}"));
                    }
                }
            }
        }
        Ok(first.map(|(_, view)| view).unwrap_or_default())
    }

    /// `CLUSTER NODES` of the node on `port`, parsed.
    fn try_view_of(&self, port: u16) -> Result<Vec<NodeLine>, String> {
        let text: String = self
            .query(port, redis::cmd("CLUSTER").arg("NODES"))
            .map_err(|e| format!("CLUSTER NODES on {port}: {e}"))?;
        Ok(parse_nodes(&text))
    }

    fn view_of(&self, port: u16) -> Vec<NodeLine> {
        self.try_view_of(port).unwrap_or_else(|e| panic!("{e}"))
    }

    fn role(&self, port: u16) -> Option<Role> {
        let reply: redis::Value = self.query(port, &redis::cmd("ROLE")).ok()?;
        let redis::Value::Array(items) = reply else {
            return None;
        };
        let text = |v: &redis::Value| -> Option<String> {
            match v {
                redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
                redis::Value::SimpleString(s) => Some(s.clone()),
                redis::Value::Int(n) => Some(n.to_string()),
                _ => None,
            }
        };
        match text(items.first()?)?.as_str() {
            "master" => Some(Role::Master),
            "slave" => Some(Role::Replica {
                master: text(items.get(2)?)?.parse().ok()?,
                linked: text(items.get(3)?)? == "connected",
            }),
            _ => None,
        }
    }

    fn running_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.running())
            .map(|n| n.port)
            .collect()
    }

    fn any_running(&self) -> u16 {
        *self.running_ports().first().expect("a running Redis node")
    }

    fn any_master(&self) -> u16 {
        *self.masters().first().expect("a running Redis master")
    }

    fn node(&self, port: u16) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no Redis node on {port} in this cluster"))
    }

    fn node_mut(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no Redis node on {port} in this cluster"))
    }

    fn try_connection(
        &self,
        port: u16,
        timeout: Duration,
    ) -> redis::RedisResult<redis::Connection> {
        let connection =
            redis::Client::open(self.url(port))?.get_connection_with_timeout(timeout)?;
        connection.set_read_timeout(Some(timeout))?;
        connection.set_write_timeout(Some(timeout))?;
        Ok(connection)
    }

    fn forget_connection(&self, port: u16) {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&port);
    }

    fn query_pipe<T: redis::FromRedisValue>(
        &self,
        port: u16,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        let mut connection = self.try_connection(port, QUERY_TIMEOUT)?;
        pipe.query(&mut connection)
    }

    /// `redis-cli` with the nodes' password (in the environment, not on the
    /// command line).
    fn redis_cli(&self) -> Command {
        let mut command = Command::new("redis-cli");
        if let Some(p) = &self.options.password {
            command.env("REDISCLI_AUTH", p);
        }
        command.stdin(Stdio::null());
        command
    }

    /// Polls `check` until it holds, or panics after [`SETTLE_TIMEOUT`] with
    /// what it last said and the tail of every node's log.
    fn poll(&self, what: String, mut check: impl FnMut() -> Result<(), String>) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut last;
        loop {
            match check() {
                Ok(()) => return,
                Err(why) => last = why,
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        let logs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.port, last_lines(&self.log(n.port))))
            .collect();
        panic!(
            "Redis Cluster: waited {SETTLE_TIMEOUT:?} for {what}; last: {last}\n{}",
            logs.join("\n")
        );
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if self.remove_dir {
            if std::thread::panicking() {
                eprintln!("Redis Cluster logs kept in {}", self.dir.display());
            } else {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }
}

/// A free loopback port whose cluster bus port (+10000) is free too.
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let port = free_port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port P with P + 10000 free too");
}

/// Runs a command to its end; panics with its output if it fails.
fn run(mut command: Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} (is redis-tools installed?): {e}"));
    assert!(
        output.status.success(),
        "{what}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `process_id` of `INFO server`.
fn process_id(connection: &mut redis::Connection) -> Option<u32> {
    let info: String = redis::cmd("INFO").arg("server").query(connection).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

fn last_lines(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// `CLUSTER NODES`: `<id> <ip:port@cport[,hostname]> <flags> <master> <ping>
/// <pong> <epoch> <link> <slot>...`.
fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let address = fields[1].split(['@', ',']).next()?;
            let port = address.rsplit_once(':')?.1.parse().ok()?;
            let flags: Vec<&str> = fields[2].split(',').collect();
            let mut slots = Vec::new();
            let mut open_slots = false;
            for slot in &fields[8..] {
                if slot.starts_with('[') {
                    open_slots = true;
                    continue;
                }
                let (a, b) = slot.split_once('-').unwrap_or((slot, slot));
                slots.push((a.parse().ok()?, b.parse().ok()?));
            }
            Some(NodeLine {
                id: fields[0].to_owned(),
                port,
                myself: flags.contains(&"myself"),
                master: flags.contains(&"master"),
                failing: flags.contains(&"fail") || flags.contains(&"fail?"),
                master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
                connected: fields[7] == "connected",
                slots,
                open_slots,
            })
        })
        .collect()
}

/// The port of the master serving `slot` in `view`.
fn owner(view: &[NodeLine], slot: u16) -> Option<u16> {
    view.iter()
        .find(|l| l.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
        .map(|l| l.port)
}

/// The id of the node on `port` in `view`.
fn view_id(view: &[NodeLine], port: u16) -> Option<String> {
    view.iter().find(|l| l.port == port).map(|l| l.id.clone())
}

/// A node's place in a view: master or not, whose replica, which slots.
type Placement = (bool, Option<u16>, Vec<(u16, u16)>);

/// Where two views differ about the running nodes: who serves which slots,
/// who is master, whose replica.
fn disagreement(a: &[NodeLine], b: &[NodeLine], running: &[u16]) -> Option<String> {
    let summary = |view: &[NodeLine]| -> BTreeMap<u16, Placement> {
        let port_of: HashMap<&str, u16> = view.iter().map(|l| (l.id.as_str(), l.port)).collect();
        view.iter()
            .filter(|l| running.contains(&l.port))
            .map(|l| {
                let master = l
                    .master_id
                    .as_deref()
                    .and_then(|id| port_of.get(id).copied());
                (l.port, (l.master, master, l.slots.clone()))
            })
            .collect()
    };
    let (a, b) = (summary(a), summary(b));
    (a != b).then(|| format!("{a:?} vs {b:?}"))
}

/// Every slot of some ranges.
fn expand(ranges: &[(u16, u16)]) -> BTreeSet<u16> {
    ranges.iter().flat_map(|&(a, b)| a..=b).collect()
}

/// A key's slot, computed here (CRC16/XMODEM of the key or of its hash tag,
/// mod 16384), as Redis does; [`RedisCluster::slot_of`] asks a node.
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|&b| b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16(hashed) % SLOTS
}

/// CRC16/XMODEM (polynomial 0x1021, initial 0), Redis Cluster's key hash.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}
