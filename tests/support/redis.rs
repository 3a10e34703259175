//! A real `redis-server`, private to one test, on a free loopback port;
//! plain, or TLS-only with a throw-away PKI made by `openssl` ([`TestPki`]);
//! and a `redis-sentinel` watching one ([`SentinelServer`]).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deadpool_redis::redis;

use super::ports::free_port;

pub struct RedisServer {
    /// The TLS port when `tls` is set (the plain port is then off).
    port: u16,
    password: Option<String>,
    tls: Option<TlsServer>,
    /// More `redis-server` arguments (e.g. `--replicaof`).
    args: Vec<String>,
    child: Option<Child>,
}

/// How a TLS server is set up: its certificates, and whether it demands a
/// client certificate (`--tls-auth-clients yes`).
struct TlsServer {
    pki: TestPki,
    auth_clients: bool,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server that requires `password` (`requirepass`).
    pub fn start_with(password: Option<&str>) -> Self {
        Self::start_server(password, None)
    }

    /// A TLS-only server (`--port 0 --tls-port P`) with a certificate for
    /// 127.0.0.1 and localhost signed by [`TestPki::ca`]. With
    /// `auth_clients`, it refuses clients without a certificate signed by
    /// that CA ([`TestPki::client_cert`]).
    pub fn start_tls(password: Option<&str>, auth_clients: bool) -> Self {
        let tls = TlsServer {
            pki: TestPki::new(),
            auth_clients,
        };
        Self::start_server(password, Some(tls))
    }

    /// A plain server for replication, started with more arguments (e.g.
    /// `["--replicaof", "127.0.0.1", port]`): with `password` it also uses
    /// it as `--masterauth`; it sends replicas their full copy at once (the
    /// default waits 5 s for more replicas to share it), and loads its own
    /// straight from the socket (no dump.rdb in the working directory).
    pub fn start_with_args(password: Option<&str>, args: &[&str]) -> Self {
        let mut args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        for (name, value) in [
            ("--repl-diskless-sync-delay", "0"),
            ("--repl-diskless-load", "swapdb"),
        ] {
            args.extend([name.to_owned(), value.to_owned()]);
        }
        if let Some(p) = password {
            args.extend(["--masterauth".to_owned(), p.to_owned()]);
        }
        Self::start_inner(password, None, args)
    }

    /// A replica of `master`, with its password.
    pub fn start_replica_of(master: &RedisServer) -> Self {
        let port = master.port.to_string();
        let args = ["--replicaof", "127.0.0.1", &port];
        Self::start_with_args(master.password.as_deref(), &args)
    }

    fn start_server(password: Option<&str>, tls: Option<TlsServer>) -> Self {
        Self::start_inner(password, tls, Vec::new())
    }

    fn start_inner(password: Option<&str>, mut tls: Option<TlsServer>, args: Vec<String>) -> Self {
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                password: password.map(str::to_owned),
                tls: tls.take(),
                args: args.clone(),
                child: None,
            };
            if server.spawn() {
                return server;
            }
            tls = server.tls.take();
        }
        panic!("redis-server did not start; is it installed (scripts/test installs it)?");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://`, or `rediss://` for a TLS server; with the password if any.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.password {
            Some(p) => format!("{scheme}://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("{scheme}://127.0.0.1:{}/0", self.port),
        }
    }

    /// The certificates of a TLS server.
    pub fn pki(&self) -> &TestPki {
        &self.tls.as_ref().expect("a TLS redis-server").pki
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL: no goodbye to clients, like a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Leaves the server running when this handle is dropped (for a cluster
    /// that outlives its starter, `scripts/cluster up`); returns its pid.
    pub fn detach(mut self) -> Option<u32> {
        self.child.take().map(|child| child.id())
    }

    /// Starts it again on the same port, empty (no persistence).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(Instant::now() < deadline, "redis-server did not restart");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A synchronous connection for inspecting what the service stored.
    pub fn connection(&self) -> redis::Connection {
        self.try_connection().expect("connect to redis-server")
    }

    /// [`Self::connection`], for a server that may be closing its
    /// connections (one Sentinel is reconfiguring).
    pub fn try_connection(&self) -> redis::RedisResult<redis::Connection> {
        self.client().and_then(|c| c.get_connection())
    }

    /// A client that trusts the test CA and presents the client certificate.
    fn client(&self) -> redis::RedisResult<redis::Client> {
        let Some(tls) = &self.tls else {
            return redis::Client::open(self.url());
        };
        // Whoever comes first installs it: this or the store under test.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let read = |path: PathBuf| std::fs::read(path).expect("read a test certificate");
        let certificates = redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: read(tls.pki.client_cert()),
                client_key: read(tls.pki.client_key()),
            }),
            root_cert: Some(read(tls.pki.ca())),
        };
        redis::Client::build_with_tls(self.url(), certificates)
    }

    /// Whether `replica` is linked to this server and has everything it
    /// wrote so far. (`WAIT` would not do: it waits only for the writes of
    /// the connection that sends it.)
    pub fn has_replicated_to(&self, replica: &RedisServer) -> bool {
        let offset = |server: &RedisServer, field: &str| -> Option<i64> {
            let mut connection = server.try_connection().ok()?;
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut connection)
                .ok()?;
            if field == "slave_repl_offset" && !info.contains("master_link_status:up") {
                return None;
            }
            info.lines()
                .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|n| n.trim().parse().ok())
        };
        let Some(written) = offset(self, "master_repl_offset") else {
            return false;
        };
        offset(replica, "slave_repl_offset").is_some_and(|copied| copied >= written)
    }

    /// The keys matching `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut self.connection())
            .expect("KEYS")
    }

    /// The key of session `sid`, whoever owns it (`tg:{u:<owner>}:s:<sid>`);
    /// one that names no key when there is none.
    pub fn session_key(&self, sid: &str) -> String {
        let pattern = format!("tg:{{u:*}}:s:{sid}");
        let found: Option<Vec<String>> = self
            .try_connection()
            .and_then(|mut c| redis::cmd("KEYS").arg(&pattern).query(&mut c))
            .ok();
        found
            .and_then(|mut keys| keys.pop())
            .unwrap_or_else(|| format!("tg:{{u:?}}:s:{sid}"))
    }

    /// `PTTL` of a key in milliseconds (-1: no TTL, -2: no key).
    pub fn pttl(&self, key: &str) -> i64 {
        redis::cmd("PTTL")
            .arg(key)
            .query(&mut self.connection())
            .expect("PTTL")
    }

    fn spawn(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some(tls) => command
                .args(["--port", "0"])
                .args(["--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(tls.pki.server_cert())
                .arg("--tls-key-file")
                .arg(tls.pki.server_key())
                .arg("--tls-ca-cert-file")
                .arg(tls.pki.ca())
                .args([
                    "--tls-auth-clients",
                    if tls.auth_clients { "yes" } else { "no" },
                ]),
        };
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            command.args(["--requirepass", p]);
        }
        command.args(&self.args);
        let Ok(mut child) = command.spawn() else {
            return false;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // lost the port race, or it could not start
            }
            // Another test's server may answer on a port both picked.
            if self.answers_ping() && self.runs_as(child.id()) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Whether the server on our port is process `pid`.
    fn runs_as(&self, pid: u32) -> bool {
        self.try_connection()
            .map(|mut connection| process_id(&mut connection) == Some(pid))
            .unwrap_or(false)
    }

    fn answers_ping(&self) -> bool {
        if self.tls.is_some() {
            return self.answers_tls_ping();
        }
        answers_plain_ping(self.port)
    }

    /// PING over TLS: proves the server is ours and its TLS is set up.
    fn answers_tls_ping(&self) -> bool {
        let Ok(client) = self.client() else {
            return false;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
            return false;
        };
        redis::cmd("PING").query::<String>(&mut conn).is_ok()
    }
}

/// A throw-away PKI in a temporary directory, made with the `openssl` CLI:
/// a CA; a server certificate it signed for `IP:127.0.0.1` and
/// `DNS:localhost`; a client certificate it signed; and another CA that
/// signed neither. EC P-256 keys: quick to make, and both OpenSSL (Redis)
/// and rustls speak them. Removed on drop.
pub struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("tokengate-pki-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the PKI directory");
        let pki = Self { dir };
        pki.make_ca("ca");
        pki.make_ca("other-ca");
        pki.make_leaf(
            "server",
            "serverAuth",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        );
        pki.make_leaf("client", "clientAuth", "subjectAltName=DNS:tokengate");
        pki
    }

    /// The CA that signed the server and client certificates.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// A CA that signed nothing Redis presents.
    pub fn other_ca(&self) -> PathBuf {
        self.path("other-ca.crt")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.path("server.crt")
    }

    pub fn server_key(&self) -> PathBuf {
        self.path("server.key")
    }

    pub fn client_cert(&self) -> PathBuf {
        self.path("client.crt")
    }

    pub fn client_key(&self) -> PathBuf {
        self.path("client.key")
    }

    /// A file in the PKI's directory (for tests that write their own).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn make_ca(&self, name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=tokengate test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ]);
    }

    fn make_leaf(&self, name: &str, usage: &str, san: &str) {
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN=tokengate test {name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        let extensions = format!(
            "{san}\nextendedKeyUsage={usage}\nkeyUsage=critical,digitalSignature\n\
             basicConstraints=critical,CA:FALSE\n"
        );
        std::fs::write(self.path(&format!("{name}.ext")), extensions).expect("write extensions");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("run openssl (is it installed?)");
        assert!(
            output.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `process_id` of `INFO server`.
fn process_id(connection: &mut redis::Connection) -> Option<u32> {
    let info: String = redis::cmd("INFO").arg("server").query(connection).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

/// PING in plain TCP on a loopback port; NOAUTH also proves the server up.
fn answers_plain_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap_or(0);
    buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH")
}

/// A `redis-sentinel` (Debian package redis-sentinel) on a free loopback
/// port, the only sentinel of one master: a quorum of 1, the master called
/// down after 1 s of silence, 5 s for a failover. Its configuration file,
/// which it rewrites as it learns, lives in a temporary directory removed
/// on drop.
pub struct SentinelServer {
    port: u16,
    password: Option<String>,
    dir: PathBuf,
    child: Option<Child>,
}

impl SentinelServer {
    /// Watches `master` as `name`, authenticating with the master's
    /// password; `password` is the sentinel's own (`requirepass`).
    pub fn start(name: &str, master: &RedisServer, password: Option<&str>) -> Self {
        let dir = std::env::temp_dir().join(format!("tokengate-sentinel-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the sentinel's directory");
        let mut sentinel = Self {
            port: 0,
            password: password.map(str::to_owned),
            dir,
            child: None,
        };
        for _ in 0..5 {
            sentinel.port = free_port();
            if sentinel.spawn(name, master) {
                return sentinel;
            }
        }
        panic!("redis-sentinel did not start; is it installed (scripts/test installs it)?");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, as `cache.sentinel.nodes` takes it.
    pub fn node(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn connection(&self) -> redis::Connection {
        self.try_connection().expect("connect to redis-sentinel")
    }

    fn try_connection(&self) -> redis::RedisResult<redis::Connection> {
        let mut info = redis::RedisConnectionInfo::default();
        if let Some(p) = &self.password {
            info = info.set_password(p);
        }
        let addr = redis::ConnectionAddr::Tcp("127.0.0.1".into(), self.port);
        redis::IntoConnectionInfo::into_connection_info(addr)
            .map(|c| c.set_redis_settings(info))
            .and_then(redis::Client::open)
            .and_then(|c| c.get_connection())
    }

    /// The master's port as this sentinel names it now.
    pub fn master_port(&self, name: &str) -> Option<u16> {
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(name)
            .query(&mut self.connection())
            .expect("SENTINEL GET-MASTER-ADDR-BY-NAME");
        addr.map(|(_, port)| port)
    }

    /// Whether the sentinel knows the replica on `port` as one it could
    /// promote: linked to its master, and not down.
    pub fn can_promote(&self, name: &str, port: u16) -> bool {
        let replicas: Vec<std::collections::HashMap<String, String>> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(name)
            .query(&mut self.connection())
            .expect("SENTINEL REPLICAS");
        replicas.iter().any(|r| {
            r.get("port") == Some(&port.to_string())
                && r.get("flags").map(String::as_str) == Some("slave")
                && r.get("master-link-status").map(String::as_str) == Some("ok")
        })
    }

    /// `SENTINEL FAILOVER name`: promote a replica now, as if the master
    /// had failed.
    pub fn failover(&self, name: &str) -> redis::RedisResult<()> {
        redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(name)
            .query(&mut self.connection())
    }

    /// What the sentinel logged (its view of a failover), for a failing
    /// test to show.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("sentinel.log")
    }

    fn spawn(&mut self, name: &str, master: &RedisServer) -> bool {
        let mut config = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\nsentinel resolve-hostnames no\n\
             sentinel monitor {name} 127.0.0.1 {master} 1\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 5000\n",
            port = self.port,
            dir = self.dir.display(),
            master = master.port,
        );
        if let Some(p) = &master.password {
            config.push_str(&format!("sentinel auth-pass {name} {p}\n"));
        }
        if let Some(p) = &self.password {
            config.push_str(&format!("requirepass {p}\n"));
        }
        config.push_str(&format!("logfile {}\n", self.log_file().display()));
        let file = self.dir.join("sentinel.conf");
        std::fs::write(&file, config).expect("write sentinel.conf");
        let Ok(mut child) = Command::new("redis-sentinel")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // lost the port race, or it could not start
            }
            let ours = || {
                let pid = self
                    .try_connection()
                    .ok()
                    .and_then(|mut c| process_id(&mut c));
                pid == Some(child.id())
            };
            if answers_plain_ping(self.port) && ours() {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for SentinelServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
