//! The real binary as a process: start-up with the checked-in config,
//! configuration errors, `hash-secret`, `healthcheck`, `migrate`, `client`
//! and `token`, login clients, logging (never a token or secret, API tokens
//! and the admin token included), and the SIGTERM drain.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use http::Method;
use http_body_util::Full;
use serde_json::{Value, json};

use crate::helpers::{Pair, SECRET, eventually};
use crate::support::client::{self, Reply, json_body, request};
use crate::support::ports::free_port;
use crate::support::redis::RedisServer;

const BIN: &str = env!("CARGO_BIN_EXE_tokengate");

/// A `tokengate` process started from the repository root (so it reads the
/// checked-in `config.yml`), its output captured in a file.
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    /// Its admin listener (`admin.listen`).
    admin_addr: SocketAddr,
    log: PathBuf,
}

impl Process {
    fn start(env: &[(&str, &str)]) -> Self {
        Self::start_with(&[], env)
    }

    fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_in(env!("CARGO_MANIFEST_DIR").as_ref(), args, env)
    }

    /// Starts the binary in `dir` (where it looks for `config.yml`).
    fn start_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(dir, args, env, |_| {})
    }

    /// [`Process::start_in`], with `prepare` adjusting the command first.
    pub(crate) fn spawn(
        dir: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
        prepare: impl FnOnce(&mut Command),
    ) -> Self {
        let (port, admin_port) = (free_port(), free_port());
        let log = std::env::temp_dir().join(format!("tokengate-{}.log", uuid::Uuid::new_v4()));
        let out = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(BIN);
        command
            .args(args)
            .current_dir(dir)
            .env("TOKENGATE__SERVER__HOST", "127.0.0.1")
            .env("TOKENGATE__SERVER__PORT", port.to_string())
            // Processes run side by side: none takes the fixed gRPC or admin port.
            .env("TOKENGATE__GRPC__PORT", "0")
            .env(
                "TOKENGATE__ADMIN__LISTEN",
                format!("127.0.0.1:{admin_port}"),
            )
            .env(
                "TOKENGATE__DATABASE__URL",
                format!("sqlite://{}.db?mode=rwc", log.display()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        prepare(&mut command);
        let child = command.spawn().expect("start tokengate");
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            log,
        }
    }

    pub(crate) async fn ready(&mut self) {
        let addr = self.addr;
        let up = eventually(Duration::from_secs(10), || async move {
            client::try_send(
                addr,
                request(Method::GET, "/ping").body(Full::default()).unwrap(),
            )
            .await
            .is_ok_and(|r| r.status == 200)
        })
        .await;
        assert!(up, "tokengate did not come up: {}", self.output());
    }

    async fn send(&self, request: http::Request<Full<bytes::Bytes>>) -> Reply {
        client::send(self.addr, request).await
    }

    async fn send_admin(&self, request: http::Request<Full<bytes::Bytes>>) -> Reply {
        client::send(self.admin_addr, request).await
    }

    async fn post(&self, path: &str, body: &Value) -> Reply {
        client::post_json(self.addr, path, body).await
    }

    async fn bearer(&self, method: Method, path: &str, token: &str) -> Reply {
        client::with_bearer(self.addr, method, path, token).await
    }

    pub(crate) fn terminate(&mut self) -> ExitStatus {
        signal("-TERM", self.child.id());
        wait_for_exit(&mut self.child, Duration::from_secs(10))
    }

    pub(crate) fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn signal(which: &str, pid: u32) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub(crate) fn wait_for_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the binary to completion with `env` and optional stdin (and no admin
/// listener unless `env` gives one: processes run side by side).
fn run(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> (ExitStatus, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TOKENGATE__ADMIN__LISTEN", "")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checked_in_config_runs_with_no_redis_and_no_secret() {
    let mut p = Process::start(&[]);
    p.ready().await;

    let login = p.post("/login", &json!({"user_id": 1})).await;
    assert_eq!(login.status, 200);
    let pair = Pair::from_reply(&login);
    let auth = p.bearer(Method::GET, "/authenticate", &pair.access).await;
    assert_eq!(auth.status, 200);
    assert_eq!(auth.header("x-user-id"), Some("1"));
    let refreshed = p.post("/refresh", &json!({"refresh": pair.refresh})).await;
    assert_eq!(refreshed.status, 200);
    let next = Pair::from_reply(&refreshed);
    let logout = p.bearer(Method::POST, "/logout", &next.access).await;
    assert_eq!(logout.status, 200);

    assert!(p.terminate().success());
    let log = p.output();
    assert!(log.contains("cache.url is empty"), "store warning: {log}");
    assert!(log.contains("auth.secret is empty"), "key warning: {log}");
    assert!(
        log.contains("login.clients is empty"),
        "open login warning: {log}"
    );
}

/// `admin.listen` (SPEC §11): the operators' endpoints on a port of their
/// own, logged at start-up; an address another process holds stops start-up
/// naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_is_logged_and_a_taken_address_named() {
    let mut p = Process::start(&[]);
    p.ready().await;
    assert_eq!(client::get(p.admin_addr, "/metrics").await.status, 200);
    assert_eq!(client::get(p.addr, "/metrics").await.status, 404);
    assert!(p.terminate().success());
    let log = p.output();
    let started = log.lines().find(|l| l.contains("tokengate listening"));
    assert!(
        started.is_some_and(|line| line.contains(&p.admin_addr.to_string())),
        "the admin address beside the others: {log}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let port = free_port().to_string();
    let db = format!("sqlite://{}.db?mode=rwc", p.log.display());
    let env = [
        ("TOKENGATE__SERVER__HOST", "127.0.0.1"),
        ("TOKENGATE__SERVER__PORT", port.as_str()),
        ("TOKENGATE__GRPC__PORT", "0"),
        ("TOKENGATE__ADMIN__LISTEN", taken.as_str()),
        ("TOKENGATE__DATABASE__URL", db.as_str()),
    ];
    let (status, _, stderr) = run(&[], &env, None);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains(&format!("admin.listen: cannot listen on {taken}")),
        "{stderr}"
    );
}

#[test]
fn invalid_configuration_stops_start_up_with_one_line() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("TOKENGATE__LOGGING__MODE", "xml")], "logging.mode"),
        (&[("TOKENGATE__AUTH__SECRET", "too-short")], "auth.secret"),
        (
            &[("TOKENGATE__AUTH__ACCESS_LIFETIME", "fortnight")],
            "auth.access_lifetime",
        ),
        (
            &[("TOKENGATE__AUTH__REFRESH_GRACE", "-1s")],
            "auth.refresh_grace",
        ),
        (&[("TOKENGATE__SERVER__PORT", "http")], "server.port"),
        (
            &[("TOKENGATE__ADMIN__LISTEN", "localhost:8081")],
            "admin.listen",
        ),
        (
            &[
                ("TOKENGATE__CACHE__URL", "postgres://x"),
                ("TOKENGATE__AUTH__SECRET", SECRET),
            ],
            "cache.url",
        ),
        (
            &[("TOKENGATE__CACHE__URL", "redis://127.0.0.1:1/0")],
            "auth.secret",
        ),
        (
            &[("TOKENGATE__AUTH__SECRET_FILE", "/nonexistent/secret")],
            "auth.secret_file",
        ),
    ];
    for (env, key) in cases {
        let (status, stdout, stderr) = run(&[], env, None);
        assert!(!status.success(), "{key}: started anyway");
        assert_eq!(status.code(), Some(1), "{key}");
        assert_eq!(stderr.lines().count(), 1, "{key}: {stderr}");
        assert!(stderr.contains(key), "{key} not named: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
    }
    let (status, _, stderr) = run(&["--config", "missing.yml"], &[], None);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("missing.yml"), "{stderr}");
    let (status, _, stderr) = run(&["--frobnicate"], &[], None);
    assert_eq!(status.code(), Some(2));
    // clap's wording: "Usage: tokengate [OPTIONS] [COMMAND]".
    assert!(stderr.contains("Usage: tokengate"), "{stderr}");
}

/// The command line: `--version`, a command's own `--help` on standard
/// output, and a bad value a usage error (exit 2) with that command's usage.
#[test]
fn version_help_and_usage_errors() {
    let (status, stdout, _) = run(&["--version"], &[], None);
    assert!(status.success());
    assert_eq!(stdout, format!("tokengate {}\n", env!("CARGO_PKG_VERSION")));
    let (status, stdout, _) = run(&["token", "create", "--help"], &[], None);
    assert!(status.success());
    assert!(
        stdout.contains("Usage: tokengate token create") && stdout.contains("--ttl <DAYS>"),
        "{stdout}"
    );
    let (status, stdout, stderr) = run(&["client", "add", "b", "--kind", "robot"], &[], None);
    assert_eq!(status.code(), Some(2));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("'robot'") && stderr.contains("Usage: tokengate client add"),
        "{stderr}"
    );
}

/// A command checks only the configuration it uses: `migrate`,
/// `client` and `token` run on the database where the service refuses to
/// start over another key, and the service still names that key in one line.
#[test]
fn a_command_checks_only_the_configuration_it_uses() {
    let dir = std::env::temp_dir().join(format!("tokengate-uses-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        "login:\n  clients:\n    - id: web\n      secret_hash: not-a-hash\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("x.db").display());
    let database = ("TOKENGATE__DATABASE__URL", url.as_str());
    let closed = format!("redis://127.0.0.1:{}/0", free_port());
    /// Arguments, environment, and the key the service names.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        (&["--config", config], &[], "login.clients[0].secret_hash"),
        (
            &[],
            &[("TOKENGATE__AUTH__ALGORITHM", "EdDSA")],
            "auth.signing_keys",
        ),
        (
            &[],
            &[("TOKENGATE__AUTH__SECRET_FILE", "/nonexistent/secret")],
            "auth.secret_file",
        ),
        // Redis without the signing secret every replica shares: the tools
        // sign nothing.
        (
            &[],
            &[("TOKENGATE__CACHE__URL", closed.as_str())],
            "auth.secret",
        ),
    ];
    let mut created = None;
    for (config, env, key) in cases {
        let env: Vec<(&str, &str)> = env.iter().copied().chain([database]).collect();
        let (status, stdout, stderr) = run(config, &env, None);
        assert_eq!(status.code(), Some(1), "{key}: the service started");
        assert_eq!(stderr.lines().count(), 1, "{key}: {stderr}");
        assert!(stderr.contains(key), "{key} not named: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");

        let command = |args: &[&str]| {
            let args: Vec<&str> = args.iter().chain(config).copied().collect();
            let (status, stdout, stderr) = run(&args, &env, None);
            assert!(status.success(), "{key}: {args:?}: {stderr}");
            stdout
        };
        command(&["migrate"]);
        command(&["client", "list"]);
        let id = created.get_or_insert_with(|| {
            let out = command(&["token", "create", "ci", "--json"]);
            let token: Value = serde_json::from_str(&out).unwrap();
            token["id"].as_str().unwrap().to_owned()
        });
        assert!(command(&["token", "list"]).contains(id.as_str()), "{key}");
    }
    let id = created.unwrap();
    let revoke = |env: &[(&str, &str)]| {
        let env: Vec<(&str, &str)> = env.iter().copied().chain([database]).collect();
        run(&["token", "revoke", &id], &env, None)
    };
    // `token revoke` uses the cache too: a bad cache key stops it, naming
    // the key, before anything is revoked.
    let (status, _, stderr) = revoke(&[("TOKENGATE__CACHE__URL", "postgres://x")]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("cache.url"), "{stderr}");
    let (status, list, _) = run(&["token", "list"], &[database], None);
    assert!(
        status.success() && list.contains(&id),
        "still active: {list}"
    );
    let (status, out, stderr) = revoke(&[("TOKENGATE__CACHE__URL", closed.as_str())]);
    assert!(status.success(), "{stderr}");
    assert_eq!(token_fields(&out)["status"], "revoked", "{out}");
    assert!(stderr.contains("the cache clear is pending"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn redis_requires_a_shared_secret() {
    let (status, _, stderr) = run(
        &[],
        &[("TOKENGATE__CACHE__URL", "redis://127.0.0.1:6379/0")],
        None,
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("auth.secret") && stderr.contains("every replica"),
        "{stderr}"
    );
}

#[test]
fn redis_without_login_clients_is_refused_unless_open() {
    let redis = [
        ("TOKENGATE__CACHE__URL", "redis://127.0.0.1:6379/0"),
        ("TOKENGATE__AUTH__SECRET", SECRET),
    ];
    let (status, _, stderr) = run(&[], &redis, None);
    assert_eq!(status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "one readable line: {stderr}");
    assert!(
        stderr.contains("login.clients") && stderr.contains("login.open"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut p = Process::start(&[
        ("TOKENGATE__CACHE__URL", &url),
        ("TOKENGATE__AUTH__SECRET", SECRET),
        ("TOKENGATE__LOGIN__OPEN", "true"),
    ]);
    p.ready().await;

    // A request in flight: headers and half the body sent.
    let body = br#"{"user_id": "in-flight"}"#;
    let mut stream = TcpStream::connect(p.addr).unwrap();
    write!(
        stream,
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..10]).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(100)); // let the server read the headers

    signal("-TERM", p.child.id());
    let addr = p.addr;
    let closed = eventually(Duration::from_secs(5), || async move {
        TcpStream::connect(addr).is_err()
    })
    .await;
    assert!(closed, "still accepting after SIGTERM");
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );

    stream.write_all(&body[10..]).unwrap();
    let mut reply = String::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.contains("\"access\""), "{reply}");

    let status = wait_for_exit(&mut p.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        redis.keys("tg:{u:*}:s:*").len(),
        1,
        "the in-flight login completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_refuses_connections_for_shutdown_linger_before_exiting() {
    let linger = Duration::from_millis(1500);
    let mut p = Process::start(&[("TOKENGATE__SERVER__SHUTDOWN_LINGER", "1500ms")]);
    p.ready().await;

    let signalled = Instant::now();
    signal("-TERM", p.child.id());
    let addr = p.addr;
    let refused = eventually(Duration::from_secs(5), || async move {
        TcpStream::connect(addr).is_err()
    })
    .await;
    assert!(refused, "still accepting after SIGTERM");
    // Nothing in flight: without a linger it would be gone by now or soon.
    assert!(
        p.child.try_wait().unwrap().is_none() || signalled.elapsed() >= linger,
        "exited before server.shutdown_linger had passed"
    );
    let status = wait_for_exit(&mut p.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() >= linger,
        "exited {:?} after SIGTERM, before the {linger:?} linger",
        signalled.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_clients_authenticate_with_basic_and_hashed_secrets() {
    let (status, hash, stderr) = run(&["hash-secret"], &[], Some("s3cret-value\n"));
    assert!(status.success(), "{stderr}");
    let hash = hash.trim();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("s3cret-value"));

    let dir = std::env::temp_dir().join(format!("tokengate-clients-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!("login:\n  clients:\n    - id: web\n      secret_hash: '{hash}'\n"),
    )
    .unwrap();
    let mut p = Process::start_with(&["--config", config.to_str().unwrap()], &[]);
    p.ready().await;

    let basic = |id: &str, secret: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
    };
    let attempt = |authorization: Option<String>| {
        let mut builder =
            request(Method::POST, "/login").header("content-type", "application/json");
        if let Some(value) = authorization {
            builder = builder.header("authorization", value);
        }
        builder.body(json_body(&json!({"user_id": 9}))).unwrap()
    };
    for authorization in [
        None,
        Some(basic("web", "wrong")),
        Some(basic("ghost", "s3cret-value")),
    ] {
        let reply = p.send(attempt(authorization.clone())).await;
        assert_eq!(reply.status, 401, "{authorization:?}");
        assert_eq!(reply.error(), "invalid_client");
        assert!(
            reply
                .header("www-authenticate")
                .unwrap()
                .starts_with("Basic")
        );
    }
    for _ in 0..2 {
        let ok = p.send(attempt(Some(basic("web", "s3cret-value")))).await;
        assert_eq!(ok.status, 200);
    }
    assert!(!p.output().contains("login.clients is empty"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Behind a proxy that is not in `server.trusted_proxies`, every client
/// counts as the proxy: the first `X-Forwarded-For` from such a peer says
/// so in the log, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_an_untrusted_peer_is_warned_about_once() {
    let mut p = Process::start(&[]);
    p.ready().await;
    for n in 0..3 {
        let login = request(Method::POST, "/login")
            .header("content-type", "application/json")
            .header("x-forwarded-for", format!("203.0.113.{n}"))
            .body(json_body(
                &json!({"email": "x@example.com", "password": "wrong password"}),
            ))
            .unwrap();
        assert_eq!(p.send(login).await.status, 401);
    }
    assert!(p.terminate().success());
    let log = p.output();
    let warnings = log
        .lines()
        .filter(|l| l.contains("X-Forwarded-For") && l.contains("server.trusted_proxies"))
        .count();
    assert_eq!(warnings, 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_never_contain_tokens_or_secrets() {
    let mut p = Process::start(&[
        ("TOKENGATE__LOGGING__MODE", "json"),
        ("TOKENGATE__LOGGING__LEVEL", "debug"),
        ("TOKENGATE__AUTH__SECRET", SECRET),
    ]);
    p.ready().await;
    let pair = Pair::from_reply(&p.post("/login", &json!({"user_id": "dave"})).await);
    let next = Pair::from_reply(&p.post("/refresh", &json!({"refresh": pair.refresh})).await);
    let stale = p.bearer(Method::GET, "/authenticate", &pair.access).await;
    assert_eq!(stale.status, 401);
    let reuse = p
        .post("/refresh", &json!({"refresh": "garbage-token"}))
        .await;
    assert_eq!(reuse.status, 401);
    assert!(p.terminate().success());

    let log = p.output();
    let secrets = [
        &pair.access,
        &pair.refresh,
        &next.access,
        &next.refresh,
        SECRET,
        "garbage-token",
    ];
    for secret in secrets {
        assert!(!log.contains(secret), "log leaks {secret}");
    }
    let mut warned = false;
    for line in log.lines() {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if entry["level"] == "WARN" && entry["message"] == "access token refused" {
            assert_eq!(entry["reason"], "revoked");
            warned = true;
        }
    }
    assert!(warned, "an auth failure is a warning: {log}");
    assert!(
        log.contains("\"status\":200"),
        "requests are logged at debug"
    );
}

/// `server.unix_socket`: the same service over a socket file (mode 0660),
/// beside TCP; a socket left by a killed run is replaced, and a clean stop
/// removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_unix_socket_beside_tcp() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = std::env::temp_dir().join(format!("tokengate-uds-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokengate.sock");
    let env = [
        ("TOKENGATE__AUTH__SECRET", SECRET),
        ("TOKENGATE__SERVER__UNIX_SOCKET", path.to_str().unwrap()),
    ];
    // A stale socket from a run that was killed.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let mut p = Process::start(&env);
    p.ready().await;
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let login = request(Method::POST, "/login")
        .header("content-type", "application/json")
        .body(json_body(&json!({"user_id": "over-uds"})))
        .unwrap();
    let pair = Pair::from_reply(&client::send_unix(&path, login).await);
    // A session made over the socket is the same session over TCP.
    let check = request(Method::HEAD, "/authenticate")
        .header("authorization", format!("Bearer {}", pair.access))
        .body(Full::default())
        .unwrap();
    let reply = client::send_unix(&path, check).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-user-id"), Some("over-uds"));
    assert_eq!(
        p.bearer(Method::GET, "/authenticate", &pair.access)
            .await
            .status,
        200
    );

    // A second replica given the same path does not take it over.
    let port = free_port().to_string();
    let db = format!("sqlite://{}?mode=rwc", dir.join("second.db").display());
    let second = [
        env[0],
        env[1],
        ("TOKENGATE__SERVER__HOST", "127.0.0.1"),
        ("TOKENGATE__SERVER__PORT", port.as_str()),
        ("TOKENGATE__GRPC__PORT", "0"),
        ("TOKENGATE__DATABASE__URL", db.as_str()),
    ];
    let (status, _, stderr) = run(&[], &second, None);
    assert!(!status.success());
    assert!(stderr.contains("another process listens on it"), "{stderr}");
    let still = request(Method::GET, "/ping").body(Full::default()).unwrap();
    assert_eq!(client::send_unix(&path, still).await.status, 200);

    assert!(p.terminate().success(), "{}", p.output());
    assert!(!path.exists(), "a clean stop removes the socket");

    // Something that is not a socket is never deleted: start-up fails, naming the key.
    std::fs::write(&path, "keep me").unwrap();
    let (status, _, stderr) = run(&[], &second, None);
    assert!(!status.success());
    assert!(stderr.contains("server.unix_socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every log line of a request names its id: the proxy's, or a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_carry_the_request_id() {
    let mut p = Process::start(&[
        ("TOKENGATE__LOGGING__MODE", "json"),
        ("TOKENGATE__LOGGING__LEVEL", "debug"),
        ("TOKENGATE__AUTH__SECRET", SECRET),
    ]);
    p.ready().await;
    let refused = client::request(Method::GET, "/authenticate")
        .header("authorization", "Bearer not-a-token")
        .header("x-request-id", "trace-me-7f3a")
        .body(Full::default())
        .unwrap();
    let reply = p.send(refused).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("x-request-id"), Some("trace-me-7f3a"));
    let generated = p
        .bearer(Method::GET, "/authenticate", "still-not-a-token")
        .await;
    let generated = generated.header("x-request-id").unwrap().to_owned();
    assert!(p.terminate().success());

    let log = p.output();
    let entries: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    for id in ["trace-me-7f3a", generated.as_str()] {
        let lines: Vec<&Value> = entries.iter().filter(|e| e["span"]["id"] == id).collect();
        let messages: Vec<&str> = lines.iter().filter_map(|e| e["message"].as_str()).collect();
        assert!(
            messages.contains(&"access token refused") && messages.contains(&"request"),
            "the warning and the request line carry {id}: {messages:?}\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_subcommand_reports_the_replica() {
    let mut p = Process::start(&[]);
    p.ready().await;
    let port = p.addr.port().to_string();
    let env = [("TOKENGATE__SERVER__PORT", port.as_str())];
    let (status, _, stderr) = run(&["healthcheck"], &env, None);
    assert!(status.success(), "{stderr}");
    assert!(p.terminate().success());
    let (status, _, stderr) = run(&["healthcheck"], &env, None);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_config_file_means_built_in_defaults() {
    let empty = std::env::temp_dir().join(format!("tokengate-empty-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&empty).unwrap();
    let mut p = Process::start_in(&empty, &[], &[]);
    p.ready().await;
    let login = p.post("/login", &json!({"user_id": 3})).await;
    assert_eq!(login.status, 200);
    assert_eq!(
        login.json()["expires_in"],
        900,
        "the default access lifetime"
    );
    assert!(p.terminate().success());
    std::fs::remove_dir_all(&empty).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_subcommands_manage_the_clients_the_service_reads() {
    let dir = std::env::temp_dir().join(format!("tokengate-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("x.db").display());
    let env = [
        ("TOKENGATE__DATABASE__URL", url.as_str()),
        ("TOKENGATE__DATABASE__CLIENTS_REFRESH", "200ms"),
    ];
    let (status, _, stderr) = run(&["migrate"], &env, None);
    assert!(status.success(), "{stderr}");

    let add = [
        "client", "add", "robot", "--kind", "oauth", "--scopes", "jobs", "read",
    ];
    let (status, stdout, stderr) = run(&add, &env, None);
    assert!(status.success(), "{stderr}");
    let secret = stdout.trim().to_owned();
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the secret on stdout: {stdout}"
    );
    assert_eq!(secret.len(), 43, "{secret}");
    assert!(stderr.contains("not stored"), "{stderr}");
    let (status, _, stderr) = run(&add, &env, None);
    assert_eq!(status.code(), Some(1), "a second robot");
    assert!(
        stderr.contains("already has a client \"robot\""),
        "{stderr}"
    );

    let (status, list, stderr) = run(&["client", "list"], &env, None);
    assert!(status.success(), "{stderr}");
    let row = list.lines().find(|l| l.starts_with("robot")).expect(&list);
    assert!(row.contains("oauth") && row.contains("jobs read"), "{list}");
    assert!(list.starts_with("ID "), "{list}");
    assert!(
        !list.contains(&secret) && !list.contains("argon2"),
        "{list}"
    );

    // The service, on the same database, accepts the printed secret.
    let mut p = Process::start(&env);
    p.ready().await;
    let token = || {
        let credentials = format!("robot:{secret}");
        request(Method::POST, "/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(credentials)
                ),
            )
            .body("grant_type=client_credentials".into())
            .unwrap()
    };
    let granted = p.send(token()).await;
    assert_eq!(granted.status, 200, "{:?}", granted.body);
    assert_eq!(granted.json()["scope"], "jobs read");

    let (status, _, stderr) = run(&["client", "remove", "robot"], &env, None);
    assert!(status.success(), "{stderr}");
    let p = &p;
    let refused = eventually(Duration::from_secs(10), || {
        let request = token();
        async move { p.send(request).await.status == 401 }
    })
    .await;
    assert!(refused, "the removed client still gets tokens");
    let (status, _, stderr) = run(&["client", "remove", "robot"], &env, None);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("no client \"robot\""), "{stderr}");
    let (status, list, _) = run(&["client", "list"], &env, None);
    assert!(status.success());
    assert!(!list.contains("robot"), "{list}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The admin token of the API-token process tests.
const ADMIN_TOKEN: &str = "process-admin-token-0123456789abcdefghijkl";

/// The `field: value` lines of `token create|info|revoke`'s table mode.
fn token_fields(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// `POST /auth/validate {"token"}`: the `valid` verdict.
async fn api_token_valid(p: &Process, token: &str) -> bool {
    let reply = p.post("/auth/validate", &json!({ "token": token })).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.json()["valid"]
        .as_bool()
        .unwrap_or_else(|| panic!("no verdict: {:?}", reply.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_never_contain_api_tokens_or_the_admin_token() {
    let (status, admin_hash, stderr) =
        run(&["hash-secret"], &[], Some(&format!("{ADMIN_TOKEN}\n")));
    assert!(status.success(), "{stderr}");
    let admin_hash = admin_hash.trim().to_owned();
    let client_secret = "reporter-secret-for-introspection";
    let client_hash = tokengate::clients::hash_secret(client_secret.as_bytes()).unwrap();
    let dir = std::env::temp_dir().join(format!("tokengate-logs-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "oauth:\n  clients:\n    - id: reporter\n      secret_hash: '{client_hash}'\n      scopes: [read]\n"
        ),
    )
    .unwrap();
    let redis = RedisServer::start();
    let url = redis.url();
    let mut p = Process::start_with(
        &["--config", config.to_str().unwrap()],
        &[
            ("TOKENGATE__CACHE__URL", &url),
            ("TOKENGATE__AUTH__SECRET", SECRET),
            ("TOKENGATE__LOGIN__OPEN", "true"),
            ("TOKENGATE__LOGGING__MODE", "json"),
            ("TOKENGATE__LOGGING__LEVEL", "debug"),
            // The environment form of admin.token_hash.
            ("TOKENGATE__ADMIN__TOKEN_HASH", &admin_hash),
        ],
    );
    p.ready().await;
    let admin = |method: Method, path: &str, token: &str, body: Option<&Value>| {
        let mut builder = request(method, path).header("authorization", format!("Bearer {token}"));
        let body = match body {
            Some(body) => {
                builder = builder.header("content-type", "application/json");
                json_body(body)
            }
            None => Full::default(),
        };
        builder.body(body).unwrap()
    };
    let new = json!({"name": "logged", "scopes": ["read"]});
    let wrong = format!("{ADMIN_TOKEN}-wrong");
    let refused = p
        .send_admin(admin(Method::POST, "/admin/tokens", &wrong, Some(&new)))
        .await;
    assert_eq!(refused.status, 401);
    let created = p
        .send_admin(admin(
            Method::POST,
            "/admin/tokens",
            ADMIN_TOKEN,
            Some(&new),
        ))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let token = created.field("token");
    let id = created.field("id");
    let introspect = |token: &str| {
        let credentials = format!("reporter:{client_secret}");
        request(Method::POST, "/oauth/introspect")
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(credentials)
                ),
            )
            .body(format!("token={token}").into())
            .unwrap()
    };

    assert!(api_token_valid(&p, &token).await);
    let lacking = p
        .post(
            "/auth/validate",
            &json!({"token": token, "required_scopes": ["admin"]}),
        )
        .await;
    assert_eq!(lacking.json()["error"], "insufficient_scope");
    let gate = p.bearer(Method::GET, "/authenticate", &token).await;
    assert_eq!(gate.status, 200);
    let scoped = p
        .bearer(Method::GET, "/authenticate?scope=admin", &token)
        .await;
    assert_eq!(scoped.status, 403);
    let active = p.send(introspect(&token)).await;
    assert_eq!(active.json()["active"], true, "{:?}", active.body);
    let listed = p
        .send_admin(admin(Method::GET, "/admin/tokens", ADMIN_TOKEN, None))
        .await;
    assert_eq!(listed.status, 200);
    let revoke_path = format!("/admin/tokens/{id}/revoke");
    let revoked = p
        .send_admin(admin(Method::POST, &revoke_path, ADMIN_TOKEN, None))
        .await;
    assert_eq!(revoked.status, 200);
    assert!(!api_token_valid(&p, &token).await);
    let after = p.bearer(Method::GET, "/authenticate", &token).await;
    assert_eq!(after.status, 401);
    assert_eq!(p.send(introspect(&token)).await.json()["active"], false);
    let (unknown, unknown_hash) = tokengate::tokens::api::generate();
    assert!(!api_token_valid(&p, &unknown).await);
    let near_miss = format!("tg_test_{}", &unknown[8..]);
    let refused_gate = p.bearer(Method::GET, "/authenticate", &near_miss).await;
    assert_eq!(refused_gate.status, 401);
    assert!(p.terminate().success());

    let log = p.output();
    let hash = tokengate::tokens::api::parse(&token).unwrap().hex();
    for secret in [
        token.as_str(),
        &token[8..],
        ADMIN_TOKEN,
        &wrong,
        &unknown,
        &unknown[8..],
        &hash,
        &unknown_hash.hex(),
        client_secret,
    ] {
        assert!(!log.contains(secret), "the log leaks {secret}");
    }
    let mut seen = std::collections::HashSet::new();
    for line in log.lines() {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let message = entry["message"].as_str().unwrap_or_default();
        if message.contains("API token created") || message.contains("API token revoked") {
            assert_eq!(entry["id"], id.as_str(), "{line}");
            seen.insert(message.to_owned());
        }
        if entry["level"] == "WARN" && message == "validate: API token refused" {
            seen.insert(format!(
                "refused: {}",
                entry["reason"].as_str().unwrap_or("")
            ));
        }
    }
    for expected in [
        "admin: API token created",
        "admin: API token revoked",
        "refused: revoked",
        "refused: unknown",
    ] {
        assert!(
            seen.contains(expected),
            "no {expected:?} in the log:\n{log}"
        );
    }
    assert!(log.contains(&id), "the log names the token by its id");
    assert!(
        log.contains("\"level\":\"DEBUG\""),
        "debug lines are captured too"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_subcommands_manage_the_tokens_the_service_validates() {
    let dir = std::env::temp_dir().join(format!("tokengate-tokens-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("x.db").display());
    let env = [("TOKENGATE__DATABASE__URL", url.as_str())];

    let (status, out, err) = run(
        &[
            "token", "create", "ci", "--scopes", "deploy", "read", "--ttl", "7", "--json",
        ],
        &env,
        None,
    );
    assert!(status.success(), "{err}");
    assert_eq!(out.lines().count(), 1, "one JSON object: {out}");
    let ci: Value = serde_json::from_str(&out).unwrap();
    let ci_token = ci["token"].as_str().expect("the token").to_owned();
    let ci_id = ci["id"].as_str().unwrap().to_owned();
    assert!(tokengate::tokens::api::parse(&ci_token).is_some(), "{out}");
    assert_eq!(ci["scopes"], json!(["deploy", "read"]));
    assert_eq!(ci["status"], "active");
    assert!(err.contains(&ci_id) && !err.contains(&ci_token), "{err}");

    let (status, out, err) = run(&["token", "create", "billing"], &env, None);
    assert!(status.success(), "{err}");
    let billing_token = out.lines().next().unwrap().to_owned();
    assert!(
        tokengate::tokens::api::parse(&billing_token).is_some(),
        "the token on the first line: {out}"
    );
    let billing = token_fields(&out);
    let billing_id = billing["id"].clone();
    assert_eq!(billing["name"], "billing");
    assert_eq!(billing["scopes"], "-");
    assert_eq!(billing["expires"], "never");

    let random = uuid::Uuid::now_v7().to_string();
    let failures: [(&[&str], &str); 7] = [
        (&["token", "create", ""], "name"),
        (&["token", "create", "x", "--ttl", "0"], "ttl_days"),
        (&["token", "create", "x", "--scopes", "a\"b"], "not a scope"),
        (&["token", "info", &random], "no API token"),
        (&["token", "info", "not-a-uuid"], "no API token"),
        (&["token", "revoke", &random], "no API token"),
        (&["token", "revoke", "not-a-uuid", "--json"], "no API token"),
    ];
    for (args, expected) in failures {
        let (status, out, err) = run(args, &env, None);
        assert_eq!(status.code(), Some(1), "{args:?}: {out}{err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
    let (status, _, err) = run(&["token", "create"], &env, None);
    assert_eq!(status.code(), Some(2), "a usage error: {err}");

    let hashes =
        [&ci_token, &billing_token].map(|t| tokengate::tokens::api::parse(t).unwrap().hex());
    let never_shown = |output: &str| {
        for secret in [&ci_token, &billing_token, &hashes[0], &hashes[1]] {
            assert!(!output.contains(secret.as_str()), "{output}");
        }
    };
    let (status, table, _) = run(&["token", "list"], &env, None);
    assert!(status.success());
    assert!(table.starts_with("ID "), "{table}");
    assert_eq!(table.lines().count(), 3, "the two tokens made: {table}");
    let row = table.lines().find(|l| l.starts_with(&ci_id)).expect(&table);
    assert!(
        row.contains("deploy read") && row.contains("active"),
        "{row}"
    );
    never_shown(&table);
    let (status, listed, _) = run(&["token", "list", "--json"], &env, None);
    assert!(status.success());
    never_shown(&listed);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        listed["tokens"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    let (status, info, _) = run(&["token", "info", &ci_id, "--json"], &env, None);
    assert!(status.success());
    never_shown(&info);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info, listed["tokens"][0]);
    assert!(info.get("token").is_none());
    let (status, info, _) = run(&["token", "info", &billing_id], &env, None);
    assert!(status.success());
    never_shown(&info);
    assert_eq!(token_fields(&info)["status"], "active", "{info}");

    // The service, on the same database, validates them (the embedded
    // store caches nothing: every check reads the database).
    let mut p = Process::start(&env);
    p.ready().await;
    assert!(api_token_valid(&p, &ci_token).await);
    let gate = p
        .bearer(Method::GET, "/authenticate?scope=deploy", &ci_token)
        .await;
    assert_eq!(gate.status, 200, "{:?}", gate.body);
    assert_eq!(gate.header("x-token-id"), Some(ci_id.as_str()));
    assert_eq!(gate.header("x-user-id"), Some("token:ci"));

    let (status, out, err) = run(&["token", "revoke", &ci_id], &env, None);
    assert!(status.success(), "{err}");
    assert_eq!(token_fields(&out)["status"], "revoked", "{out}");
    assert!(err.contains("revoked"), "{err}");
    let p = &p;
    let refused = eventually(Duration::from_secs(1), || {
        let token = ci_token.clone();
        async move { !api_token_valid(p, &token).await }
    })
    .await;
    assert!(refused, "the service still accepts the revoked token");
    assert_eq!(
        p.bearer(Method::GET, "/authenticate", &ci_token)
            .await
            .status,
        401
    );
    assert!(api_token_valid(p, &billing_token).await);
    let (_, active, _) = run(&["token", "list"], &env, None);
    assert!(
        !active.contains(&ci_id) && active.contains(&billing_id),
        "{active}"
    );
    let (_, all, _) = run(&["token", "list", "--all"], &env, None);
    let row = all.lines().find(|l| l.starts_with(&ci_id)).expect(&all);
    assert!(row.contains("revoked"), "{all}");

    // Redis unreachable: the database says revoked, and the command succeeds
    // saying that the cache clear is pending (SPEC §11).
    let closed = format!("redis://127.0.0.1:{}/0", free_port());
    let unreachable = [
        ("TOKENGATE__DATABASE__URL", url.as_str()),
        ("TOKENGATE__CACHE__URL", closed.as_str()),
        ("TOKENGATE__AUTH__SECRET", SECRET),
        ("TOKENGATE__LOGIN__OPEN", "true"),
    ];
    let (status, out, err) = run(&["token", "revoke", &billing_id], &unreachable, None);
    assert!(status.success(), "{err}");
    assert_eq!(token_fields(&out)["status"], "revoked", "{out}");
    assert!(
        err.contains("revoked in the database") && err.contains("the cache clear is pending"),
        "{err}"
    );
    let (status, info, _) = run(&["token", "info", &billing_id, "--json"], &env, None);
    assert!(status.success());
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["status"], "revoked");
    assert!(!api_token_valid(p, &billing_token).await);
    std::fs::remove_dir_all(&dir).unwrap();
}
