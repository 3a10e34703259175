//! The cluster's database (SPEC §7), shared by every replica as in a real
//! deployment: by default one SQLite file in the cluster directory, or, with
//! [`Database::Postgres`], a PostgreSQL server of the cluster's own.
//!
//! The PostgreSQL is started the way an operator would start one by hand, and
//! is independent of the in-process tests' helpers: `initdb` into
//! `<cluster>/postgres/data` (role `tokengate` with a random password, database
//! `tokengate`), `pg_ctl start` on a free loopback port (`listen_addresses =
//! 127.0.0.1`, its Unix socket in `<cluster>/postgres`). The replicas connect
//! over TCP with the password in a file (`database.password_file`), as the
//! compose deployment does. `pg_ctl` daemonizes the server, so it outlives a
//! detached cluster's starter; it is stopped by its pid (`SIGINT`: fast
//! shutdown), like every other process of the cluster.
//!
//! PostgreSQL refuses to run as root: as root, its directory is given to the
//! `postgres` user (Debian's package creates it) and every tool runs through
//! `runuser -u postgres --`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::super::ports::free_port;
use super::super::postgres::{bin_dir, postgres_user, tool_command};
use super::super::procs;

/// The role and the database the replicas use (as compose.yaml's `db`).
pub const POSTGRES_USER: &str = "tokengate";
pub const POSTGRES_DB: &str = "tokengate";

/// What the replicas share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Database {
    /// `sqlite://<dir>/tokengate.db?mode=rwc`: one file, every replica opens it.
    #[default]
    Sqlite,
    /// A PostgreSQL server in `<dir>/postgres`, on a free loopback port.
    Postgres,
}

impl Database {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The database of a running cluster.
pub struct ClusterDatabase {
    kind: Database,
    /// `database.url` of every replica (never with a password in it).
    url: String,
    /// `database.password_file` of every replica (PostgreSQL).
    password_file: Option<PathBuf>,
    /// The SQLite file.
    file: Option<PathBuf>,
    postgres: Option<Postgres>,
}

impl ClusterDatabase {
    /// Prepares the database in `dir` (the cluster directory): nothing to do
    /// for SQLite (the first replica creates the file); PostgreSQL is
    /// initialised, started and has its database created before this returns.
    pub fn start(kind: Database, dir: &Path) -> Result<Self, String> {
        match kind {
            Database::Sqlite => {
                let file = dir.join("tokengate.db");
                Ok(Self {
                    kind,
                    url: format!("sqlite://{}?mode=rwc", file.display()),
                    password_file: None,
                    file: Some(file),
                    postgres: None,
                })
            }
            Database::Postgres => {
                let postgres = Postgres::start(&dir.join("postgres"))?;
                Ok(Self {
                    kind,
                    url: format!(
                        "postgres://{POSTGRES_USER}@127.0.0.1:{}/{POSTGRES_DB}",
                        postgres.port
                    ),
                    password_file: Some(postgres.password_file()),
                    file: None,
                    postgres: Some(postgres),
                })
            }
        }
    }

    pub fn kind(&self) -> Database {
        self.kind
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `TOKENGATE__DATABASE__*` variables every replica gets.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("TOKENGATE__DATABASE__URL", self.url.clone())];
        if let Some(path) = &self.password_file {
            env.push((
                "TOKENGATE__DATABASE__PASSWORD_FILE",
                path.display().to_string(),
            ));
        }
        env
    }

    /// The postmaster's pid, `None` for SQLite or once stopped.
    pub fn pid(&self) -> Option<u32> {
        self.postgres.as_ref().and_then(|p| p.pid)
    }

    pub fn state(&self) -> DatabaseState {
        let postgres = self.postgres.as_ref();
        let pid = self.pid();
        DatabaseState {
            kind: self.kind.name().to_owned(),
            url: self.url.clone(),
            password_file: self.password_file.clone(),
            file: self.file.clone(),
            port: postgres.map(|p| p.port),
            pid,
            start_time: pid.and_then(procs::start_time),
            data_dir: postgres.map(Postgres::data),
            log: postgres.map(Postgres::log),
        }
    }

    /// Fast shutdown of PostgreSQL (no-op for SQLite); its data stays.
    pub fn stop(&mut self) {
        if let Some(postgres) = self.postgres.as_mut() {
            postgres.stop();
        }
    }

    /// Leaves PostgreSQL running when this handle is dropped.
    pub fn detach(mut self) {
        if let Some(postgres) = self.postgres.as_mut() {
            postgres.pid = None;
        }
    }
}

/// `cluster.json`'s `database`: what the replicas use and, for PostgreSQL,
/// the server to stop.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DatabaseState {
    /// `sqlite` or `postgres`.
    pub kind: String,
    /// `database.url` of the replicas (`postgres://tokengate@127.0.0.1:PORT/tokengate`
    /// or `sqlite://<dir>/tokengate.db?mode=rwc`); no password in it.
    pub url: String,
    /// `database.password_file` of the replicas (PostgreSQL).
    pub password_file: Option<PathBuf>,
    /// The SQLite file.
    pub file: Option<PathBuf>,
    /// PostgreSQL: its port, postmaster pid (+ start time, as for the other
    /// processes), data directory and log.
    pub port: Option<u16>,
    pub pid: Option<u32>,
    pub start_time: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub log: Option<PathBuf>,
}

/// A PostgreSQL server started with `pg_ctl`.
struct Postgres {
    /// Where initdb, pg_ctl, postgres and createdb are.
    bin: PathBuf,
    /// `<cluster>/postgres`: data/, the socket, the log, the password file.
    dir: PathBuf,
    port: u16,
    /// We are root: run the tools as the `postgres` user.
    as_postgres: bool,
    /// The postmaster, while it runs and is ours to stop.
    pid: Option<u32>,
}

/// How long `pg_ctl start` may wait for the server to accept connections.
const START_TIMEOUT_S: u32 = 30;

impl Postgres {
    fn start(dir: &Path) -> Result<Self, String> {
        let bin = bin_dir()?;
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let mut server = Self {
            bin,
            dir: dir.to_path_buf(),
            port: 0,
            as_postgres,
            pid: None,
        };
        // The role's password: random, in a file only its owner reads. initdb
        // sets it; the replicas read it (they run as us: root, or the same user).
        let password = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let password_file = server.password_file();
        std::fs::write(&password_file, &password)
            .map_err(|e| format!("write {}: {e}", password_file.display()))?;
        set_mode(&password_file, 0o600)?;
        if as_postgres {
            let (uid, gid) = postgres_user()?;
            for path in [dir, password_file.as_path()] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .map_err(|e| format!("give {} to the postgres user: {e}", path.display()))?;
            }
        }
        set_mode(dir, 0o700)?;
        let mut initdb = server.tool("initdb");
        initdb
            .arg("-D")
            .arg(server.data())
            .args(["-U", POSTGRES_USER])
            .arg(format!("--pwfile={}", password_file.display()))
            // Over TCP (the replicas) with the password; on the socket in the
            // private directory (createdb below) without.
            .args(["--auth-host=scram-sha-256", "--auth-local=trust"])
            .args(["--encoding=UTF8", "--locale=C"]);
        server.run("initdb", initdb)?;
        let mut last_error = String::new();
        for _ in 0..5 {
            server.port = free_port();
            let started = server.pg_ctl_start();
            server.pid = server.postmaster_pid().filter(|&pid| procs::alive(pid));
            match started {
                Ok(()) => {
                    let mut createdb = server.tool("createdb");
                    createdb
                        .arg("-h")
                        .arg(&server.dir)
                        .args(["-p", &server.port.to_string()])
                        .args(["-U", POSTGRES_USER, POSTGRES_DB]);
                    server.run("createdb", createdb)?;
                    return Ok(server);
                }
                // Lost the race for the port: another one.
                Err(e) if server.pid.is_none() && server.log_text().contains("could not bind") => {
                    last_error = e;
                }
                // Drop stops a server that did come up, too late.
                Err(e) => return Err(e),
            }
        }
        Err(last_error)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn password_file(&self) -> PathBuf {
        self.dir.join("password")
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut pg_ctl = self.tool("pg_ctl");
        pg_ctl
            .arg("start")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log())
            .args(["-w", "-t", &START_TIMEOUT_S.to_string()])
            // Passed to postgres through a shell: the path is quoted.
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}'",
                self.port,
                self.dir.display()
            ));
        self.run("pg_ctl start", pg_ctl)
    }

    /// The first line of `postmaster.pid`.
    fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGINT (fast shutdown: sessions ended, a checkpoint written), SIGKILL
    /// after 15 s.
    fn stop(&mut self) {
        let Some(pid) = self.pid.take() else {
            return;
        };
        let _ = procs::signal(i64::from(pid), "INT");
        if !procs::wait_gone(pid, Duration::from_secs(15)) {
            procs::kill_with_children(pid);
            procs::wait_gone(pid, Duration::from_secs(2));
        }
    }

    /// One of PostgreSQL's tools (see [`tool_command`]), without stdin.
    fn tool(&self, name: &str) -> Command {
        let mut command = tool_command(&self.bin, name, self.as_postgres, &self.dir);
        command.stdin(Stdio::null());
        command
    }

    /// Runs `command`; on failure, its output and the end of the server log.
    fn run(&self, what: &str, mut command: Command) -> Result<(), String> {
        let output = command
            .output()
            .map_err(|e| format!("cannot run {what} ({}): {e}", self.bin.display()))?;
        if output.status.success() {
            return Ok(());
        }
        let mut message = format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let log = self.log_text();
        if !log.is_empty() {
            let lines: Vec<&str> = log.lines().collect();
            message.push_str(&format!(
                "\n{}:\n{}",
                self.log().display(),
                lines[lines.len().saturating_sub(10)..].join("\n")
            ));
        }
        Err(message.trim_end().to_owned())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {:o} {}: {e}", mode, path.display()))
}
