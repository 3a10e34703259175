//! A real `redis-server`, private to one test, on a free loopback port;
//! plain, or TLS-only with a throw-away PKI made by `openssl` ([`TestPki`]).

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

    fn start_server(password: Option<&str>, mut tls: Option<TlsServer>) -> Self {
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                password: password.map(str::to_owned),
                tls: tls.take(),
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
        self.client()
            .and_then(|c| c.get_connection())
            .expect("connect to redis-server")
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

    /// The keys matching `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut self.connection())
            .expect("KEYS")
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
        let Ok(mut child) = command.spawn() else {
            return false;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // lost the port race, or it could not start
            }
            if self.answers_ping() {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    fn answers_ping(&self) -> bool {
        if self.tls.is_some() {
            return self.answers_tls_ping();
        }
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).unwrap_or(0);
        // NOAUTH also proves the server is up.
        buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH")
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
