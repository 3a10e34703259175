//! A real PostgreSQL (Debian's server binaries) on a free loopback port, with
//! its data, socket and log in a temporary directory: one shared by the whole
//! test process ([`PostgresServer::shared`], a database per test), or a
//! test's own for tests that stop and restart it ([`PostgresServer::start`]).
//!
//! `postgres` runs as our child rather than daemonized by `pg_ctl start`, so
//! it stays in our process group: a Ctrl-C of `cargo test` reaches it too.
//! Postgres refuses to run as root; as root, every tool runs as the `postgres`
//! user (`runuser`), whom Debian's `postgresql` package creates.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::ports::free_port;
use super::procs::wait_child;

/// The superuser role, trusted without a password on loopback.
const USER: &str = "tokengate";

/// How long a start may take on a loaded machine before we give up.
const START_WITHIN: Duration = Duration::from_secs(30);

pub struct PostgresServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Run the tools as the `postgres` user (we are root).
    as_postgres: bool,
    /// The server (or `runuser` above it) while it runs.
    child: Mutex<Option<Child>>,
    databases: AtomicU32,
}

static SHARED: OnceLock<PostgresServer> = OnceLock::new();

impl PostgresServer {
    /// A server of the caller's own, already accepting connections. Drop
    /// stops it and removes its directory.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("tokengate-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the Postgres directory");
        // Built before anything can fail, so that Drop cleans up after a panic.
        let mut server = Self {
            bin: bin_dir().unwrap_or_else(|e| panic!("{e}")),
            dir,
            port: 0,
            // SAFETY: geteuid has no preconditions and cannot fail.
            as_postgres: unsafe { libc::geteuid() } == 0,
            child: Mutex::new(None),
            databases: AtomicU32::new(0),
        };
        if server.as_postgres {
            let (uid, gid) = postgres_user().unwrap_or_else(|e| panic!("{e}"));
            std::os::unix::fs::chown(&server.dir, Some(uid), Some(gid))
                .expect("give the Postgres directory to the postgres user");
        }
        server.initdb();
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("postgres did not start:\n{}", server.log_tail());
    }

    /// The server of this test process, started on first use and stopped
    /// when the process exits. Tests share it through
    /// [`create_database`](Self::create_database); never stop it.
    pub fn shared() -> &'static PostgresServer {
        SHARED.get_or_init(|| {
            let server = Self::start();
            // Statics are never dropped: stop it on the way out instead.
            // SAFETY: registers a plain function that takes nothing.
            unsafe { libc::atexit(stop_shared) };
            server
        })
    }

    /// A new, empty database; its URL, `postgres://USER@127.0.0.1:PORT/NAME`.
    pub fn create_database(&self) -> String {
        let name = format!(
            "tokengate_{}",
            self.databases.fetch_add(1, Ordering::Relaxed)
        );
        let output = self
            .command("createdb")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .arg(&name)
            .stdin(Stdio::null())
            .output()
            .expect("run createdb");
        assert!(
            output.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Fast shutdown (clients are disconnected); the data is kept.
    pub fn stop(&self) {
        self.shut_down("fast");
    }

    /// Starts it again, on the same port with the same data; returns once
    /// it accepts connections.
    pub fn restart(&self) {
        self.stop();
        let deadline = Instant::now() + START_WITHIN;
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "postgres did not restart on port {}:\n{}",
                self.port,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn initdb(&self) {
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-U", USER, "-A", "trust", "-E", "UTF8", "--locale=C"])
            // Throw-away data: skip the fsyncs.
            .arg("--no-sync")
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            output.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts `postgres` on `self.port` and waits until it accepts
    /// connections; false if it exited (e.g. lost the race for the port) or
    /// never got ready.
    fn spawn(&self) -> bool {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))
            .expect("open the Postgres log");
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            // Throw-away data: durability buys nothing here.
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        let Ok(mut child) = command.spawn() else {
            return false;
        };
        let deadline = Instant::now() + START_WITHIN;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if self.accepts_connections() {
                *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Through `runuser`, killing the child would not reach postgres.
        self.pg_ctl_stop("immediate");
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Ours is up: its `postmaster.pid` says `ready` (as `pg_ctl -w`
    /// checks; a server that could not bind the port never says so), and it
    /// answers on the TCP port.
    fn accepts_connections(&self) -> bool {
        let ready = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .is_ok_and(|pid_file| pid_file.lines().nth(7).map(str::trim) == Some("ready"));
        ready
            && self
                .command("pg_isready")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", USER, "-d", "postgres", "-q", "-t", "1"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
    }

    /// `pg_ctl stop -m MODE` (a no-op if it is not running), then reaps it.
    fn shut_down(&self, mode: &str) {
        self.pg_ctl_stop(mode);
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child
            && wait_child(&mut child, Duration::from_secs(10)).is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn pg_ctl_stop(&self, mode: &str) {
        let _ = self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data())
            .args(["-m", mode, "-w", "-t", "30"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// One of the PostgreSQL tools (see [`tool_command`]).
    fn command(&self, tool: &str) -> Command {
        tool_command(&self.bin, tool, self.as_postgres, &self.dir)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.shut_down("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

extern "C" fn stop_shared() {
    if let Some(server) = SHARED.get() {
        server.shut_down("immediate");
        let _ = std::fs::remove_dir_all(&server.dir);
    }
}

/// The directory holding `initdb`, `pg_ctl`, `postgres`, `createdb` and
/// `pg_isready`: where an `initdb` on PATH really lives (Debian keeps them
/// off PATH, so that is usually a symlink someone made), else the newest
/// `/usr/lib/postgresql/VERSION/bin`. Shared with the native cluster.
pub fn bin_dir() -> Result<PathBuf, String> {
    const TOOLS: [&str; 5] = ["initdb", "pg_ctl", "postgres", "createdb", "pg_isready"];
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|dir| std::fs::canonicalize(dir.join("initdb")).ok())
        .filter_map(|initdb| initdb.parent().map(Path::to_path_buf));
    let mut installed: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    installed.sort_by(|a, b| b.0.cmp(&a.0));
    on_path
        .chain(installed.into_iter().map(|(_, dir)| dir))
        .find(|dir| TOOLS.iter().all(|tool| dir.join(tool).is_file()))
        .ok_or_else(|| {
            format!(
                "PostgreSQL's server binaries ({}) are neither on PATH nor in \
                 /usr/lib/postgresql/*/bin; scripts/test installs Debian's postgresql",
                TOOLS.join(", ")
            )
        })
}

/// The uid and gid of the `postgres` user (who runs PostgreSQL for root).
pub fn postgres_user() -> Result<(u32, u32), String> {
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: getpwnam_r (not getpwnam: tests start servers on several
    // threads) writes only into `entry` and `buf`, both alive and sized here.
    let rc = unsafe {
        libc::getpwnam_r(
            c"postgres".as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return Err(
            "running as root, but there is no postgres user to run PostgreSQL as; \
             Debian's postgresql package creates it (scripts/test installs it)"
                .into(),
        );
    }
    Ok((entry.pw_uid, entry.pw_gid))
}

/// One of PostgreSQL's tools in `bin`, as the `postgres` user when we are
/// root, deaf to the caller's `PG*` environment (`PGHOST`, `PGSSLMODE`, ...),
/// run in `dir` (a directory the postgres user may enter). Shared with the
/// native cluster.
pub fn tool_command(bin: &Path, tool: &str, as_postgres: bool, dir: &Path) -> Command {
    let program = bin.join(tool);
    let mut command = if as_postgres {
        let mut runuser = Command::new(runuser());
        runuser.args(["-u", "postgres", "--"]).arg(program);
        runuser
    } else {
        Command::new(program)
    };
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            command.env_remove(key);
        }
    }
    command.current_dir(dir);
    command
}

fn runuser() -> &'static str {
    ["/usr/sbin/runuser", "/sbin/runuser"]
        .into_iter()
        .find(|path| Path::new(path).is_file())
        .unwrap_or("runuser")
}
