//! A native tokengate cluster on loopback: redis-server (or a Redis Cluster) +
//! a database + N replicas + nginx.
//! The same code the e2e tests use (`tests/support/cluster.rs`); `scripts/cluster`
//! builds this in release mode and runs it. See USAGE.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use support::cluster::{Cluster, ClusterOptions, ClusterState, Database};
use support::procs;

const USAGE: &str = "\
usage:
  cluster [run] [OPTIONS]           start; print where everything is; run until
                                    Ctrl-C or SIGTERM; then stop everything
  cluster up --dir DIR [OPTIONS]    start; write DIR/cluster.json and DIR/cluster.env;
                                    exit 0 once everything answers (it keeps running)
  cluster down --dir DIR            stop the cluster DIR/cluster.json describes
                                    (nginx, replicas with SIGTERM, redis or every
                                    Redis Cluster node, postgres);
                                    exit 0 if there is none
  cluster status --dir DIR          which of its processes run; exit 1 if any does not

options (run, up):
  --replicas N       tokengate replicas (default 3)
  --postgres         the replicas share a PostgreSQL started for the cluster
                     (initdb in DIR/postgres, role and database tokengate, a free
                     loopback port, the password in DIR/postgres/password), stopped
                     with it; needs PostgreSQL's server tools on PATH or in
                     /usr/lib/postgresql/*/bin (Debian: postgresql). Default: one
                     SQLite file, DIR/tokengate.db, that every replica opens
  --redis-cluster    a Redis Cluster instead of one redis-server: 6 nodes (3
                     masters, 3 replicas; redis-server --cluster-enabled yes,
                     redis-cli --cluster create), each on a free loopback port
                     with its directory in DIR/redis-cluster/redis-PORT. The
                     replicas get every node as cache.cluster.nodes in
                     DIR/config.yml (merged into --config's) and no cache.url.
                     Listed in cluster.json (redis_cluster.nodes) and cluster.env
                     (TG_REDIS_CLUSTER_NODES, comma-separated;
                     TG_REDIS_CLUSTER_PORTS, TG_REDIS_CLUSTER_PIDS)
  --binary PATH      tokengate binary (default: `tokengate` in this program's
                     target directory, e.g. target/release/tokengate)
  --nginx PATH       nginx (default: $TOKENGATE_NGINX, /usr/sbin/nginx, PATH)
  --nginx-workers N  nginx worker_processes (default: auto, one per core)
  --port P           nginx's public port on 127.0.0.1 (default: a free port)
  --grpc-port P      nginx's gRPC port on 127.0.0.1 (HTTP/2 cleartext, in front of
                     every replica's own gRPC port; default: a free port). Each
                     replica serves gRPC on a free port of its own (grpc.port),
                     listed in cluster.json (replicas[].grpc_port, grpc_url) and
                     cluster.env (TG_GRPC_URL, TG_REPLICA_GRPC_PORTS). Each
                     replica's admin listener (admin.listen: /admin/*, /metrics;
                     never behind nginx) is on a free port too: replicas[].admin_url,
                     TG_REPLICA_ADMIN_PORTS
  --no-access-log    no nginx access log (benchmarks)
  --log-level L      the replicas' logging.level (default: info)
  --env KEY=VALUE    extra environment for every replica, repeatable, e.g.
                     --env TOKENGATE__AUTH__AUTO_LOGOUT=2s
  --config PATH      a config.yml for every replica (what the environment cannot
                     express: oauth.clients, login.clients, trusted_proxies); the
                     replicas read a copy in the cluster directory. Its database
                     section does not apply: the cluster sets database.url (and,
                     with --postgres, database.password_file) in the environment
  --dir DIR          (run) logs and state files in DIR, kept at exit
                     (default: a temporary directory, removed at exit)";

struct Args {
    command: String,
    dir: Option<PathBuf>,
    options: ClusterOptions,
}

fn parse(args: Vec<String>) -> Result<Args, String> {
    let mut args = args.into_iter().peekable();
    let command = match args.peek().map(String::as_str) {
        Some("run" | "up" | "down" | "status") => args.next().unwrap_or_default(),
        _ => "run".to_owned(),
    };
    let mut options = ClusterOptions::new(default_binary());
    let mut dir = None;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--replicas" => {
                options.replicas = number(&value("--replicas")?, "--replicas")?;
            }
            "--postgres" => options.database = Database::Postgres,
            "--redis-cluster" => options.redis_cluster = true,
            "--binary" => options.binary = PathBuf::from(value("--binary")?),
            "--nginx" => options.nginx_binary = Some(PathBuf::from(value("--nginx")?)),
            "--nginx-workers" => {
                options.nginx.workers =
                    Some(number(&value("--nginx-workers")?, "--nginx-workers")?);
            }
            "--port" => {
                options.nginx.front_port = Some(number(&value("--port")?, "--port")?);
            }
            "--grpc-port" => {
                options.nginx.grpc_port = Some(number(&value("--grpc-port")?, "--grpc-port")?);
            }
            "--no-access-log" => options.nginx.access_log = false,
            "--log-level" => options.log_level = value("--log-level")?,
            "--env" => {
                let pair = value("--env")?;
                let (key, val) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("--env {pair}: expected KEY=VALUE"))?;
                options.env.push((key.to_owned(), val.to_owned()));
            }
            "--config" => {
                let path = value("--config")?;
                let yaml =
                    std::fs::read_to_string(&path).map_err(|e| format!("--config {path}: {e}"))?;
                options.config = Some(yaml);
            }
            "--dir" => dir = Some(PathBuf::from(value("--dir")?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if matches!(command.as_str(), "up" | "down" | "status") && dir.is_none() {
        return Err(format!("{command} needs --dir DIR"));
    }
    options.dir.clone_from(&dir);
    Ok(Args {
        command,
        dir,
        options,
    })
}

fn number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{name} {text}: not a number"))
}

/// `tokengate` in the target directory this program was built into
/// (target/release/examples/cluster → target/release/tokengate).
fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("tokengate")))
        .unwrap_or_else(|| PathBuf::from("tokengate"))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1).collect()) {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("cluster: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match args.command.as_str() {
        "up" => up(args.options),
        "down" => down(args.dir.unwrap_or_default()),
        "status" => status(args.dir.unwrap_or_default()),
        _ => run(args.options),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

fn describe(state: &ClusterState) -> String {
    let database = state.database.as_ref();
    let mut out = format!(
        "tokengate cluster: {} replica(s) behind nginx, {}, one {} database\n\
         \x20 URL       {}   (nginx: /login /register /refresh /logout /ping /health; protected app under {})\n\
         \x20 gRPC      {}   (nginx, HTTP/2 cleartext: realchat.auth.v1.AuthApi, health, reflection)\n",
        state.replicas.len(),
        match &state.redis_cluster {
            Some(c) => format!("a Redis Cluster of {} nodes", c.nodes.len()),
            None => "one Redis".to_owned(),
        },
        database.map_or("?", |d| match d.kind.as_str() {
            "postgres" => "PostgreSQL",
            _ => "SQLite",
        }),
        state.url,
        state.paths.protected,
        state.grpc_url
    );
    for r in &state.replicas {
        out.push_str(&format!(
            "  replica {} {}   gRPC {}   admin {}   pid {}\n",
            r.index,
            r.url,
            r.grpc_url,
            r.admin_url,
            r.pid.map_or_else(|| "-".to_owned(), |p| p.to_string())
        ));
    }
    match &state.redis_cluster {
        Some(c) => {
            for node in &c.nodes {
                out.push_str(&format!(
                    "  redis     {} (cluster node)   pid {}\n",
                    node.node,
                    node.pid.map_or_else(|| "-".to_owned(), |p| p.to_string())
                ));
            }
        }
        None => out.push_str(&format!(
            "  redis     {}   pid {}\n",
            state.redis.url,
            state
                .redis
                .pid
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
        )),
    }
    out.push_str(&format!(
        "  nginx     pid {}, config {}\n  logs      {}\n",
        state
            .nginx
            .pid
            .map_or_else(|| "-".to_owned(), |p| p.to_string()),
        state.nginx.conf.display(),
        state.dir.display()
    ));
    if let Some(db) = database {
        let pid = db.pid.map_or_else(String::new, |p| format!("   pid {p}"));
        let password = db
            .password_file
            .as_ref()
            .map_or_else(String::new, |p| format!("   password in {}", p.display()));
        out.push_str(&format!("  database  {}{pid}{password}\n", db.url));
    }
    out
}

fn try_it(url: &str, grpc_url: &str) -> String {
    let grpc = grpc_url.trim_start_matches("http://");
    format!(
        "try:\n\
         \x20 ACCESS=$(curl -s {url}/login -H 'Content-Type: application/json' -d '{{\"user_id\": 42}}' | jq -r .access)\n\
         \x20 curl -s {url}/app/hello -H \"Authorization: Bearer $ACCESS\"   # the app sees X-User-Id: 42\n\
         \x20 curl -si {url}/app/hello                                    # 401\n\
         \x20 curl -s {url}/register -H 'Content-Type: application/json' -d '{{\"email\": \"ada@example.com\", \"password\": \"correct horse battery\"}}'\n\
         \x20 curl -s {url}/login -H 'Content-Type: application/json' -d '{{\"email\": \"ada@example.com\", \"password\": \"correct horse battery\"}}'\n\
         \x20 grpcurl -plaintext -d '{{\"email\": \"ada@example.com\", \"password\": \"correct horse battery\"}}' {grpc} realchat.auth.v1.AuthApi/Login\n"
    )
}

fn run(options: ClusterOptions) -> Result<ExitCode, String> {
    let keep = options.dir.is_some();
    let cluster = Cluster::start(options)?;
    let state = cluster.state();
    if keep {
        state.write()?;
    }
    println!("{}", describe(&state));
    println!("{}", try_it(&state.url, &state.grpc_url));
    println!("Ctrl-C (or SIGTERM) stops everything.");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let mut cluster = cluster;
    let reason = runtime.block_on(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| format!("cannot listen for SIGTERM: {e}"))?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut reported = vec![false; cluster.replica_count()];
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok::<_, String>("Ctrl-C"),
                _ = term.recv() => return Ok("SIGTERM"),
                _ = tick.tick() => {
                    for (index, reported) in reported.iter_mut().enumerate() {
                        if !*reported && !cluster.replica_running(index) {
                            *reported = true;
                            eprintln!("cluster: replica {index} exited; see {}", cluster.dir().join(format!("replica-{index}.log")).display());
                        }
                    }
                }
            }
        }
    })?;
    println!("\n{reason}: stopping nginx, the replicas (SIGTERM), Redis and the database");
    let dir = cluster.dir().to_path_buf();
    let statuses = cluster.stop();
    for (index, status) in statuses.iter().enumerate() {
        match status {
            Some(status) => println!("  replica {index}: {status}"),
            None => println!("  replica {index}: was not running"),
        }
    }
    if keep {
        let _ = std::fs::remove_file(dir.join(ClusterState::FILE));
        let _ = std::fs::remove_file(dir.join(ClusterState::ENV_FILE));
        println!("logs kept in {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn up(options: ClusterOptions) -> Result<ExitCode, String> {
    let dir = options.dir.clone().unwrap_or_default();
    if let Some(old) = ClusterState::load(&dir)? {
        let running = running(&old);
        if running.iter().any(|(_, alive)| *alive) {
            return Err(format!(
                "a cluster already runs in {} (stop it with `down --dir`)",
                dir.display()
            ));
        }
    }
    let state = Cluster::start(options)?.detach()?;
    print!("{}", describe(&state));
    println!(
        "  state     {} (and {})",
        state.dir.join(ClusterState::FILE).display(),
        state.dir.join(ClusterState::ENV_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}

fn down(dir: PathBuf) -> Result<ExitCode, String> {
    match ClusterState::load(&dir)? {
        Some(state) => {
            for line in state.stop() {
                println!("{line}");
            }
        }
        None => println!("no cluster in {}", dir.display()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Each process of a state file and whether it still runs.
fn running(state: &ClusterState) -> Vec<(String, bool)> {
    let alive = |pid: Option<u32>, start: Option<u64>| {
        pid.is_some_and(|pid| procs::alive(pid) && procs::start_time(pid) == start)
    };
    let mut out = vec![(
        format!("nginx {}", state.url),
        alive(state.nginx.pid, state.nginx.start_time),
    )];
    for r in &state.replicas {
        out.push((
            format!("replica {} {}", r.index, r.url),
            alive(r.pid, r.start_time),
        ));
    }
    match &state.redis_cluster {
        Some(c) => {
            for node in &c.nodes {
                out.push((
                    format!("redis cluster node {}", node.node),
                    alive(node.pid, node.start_time),
                ));
            }
        }
        None => out.push((
            format!("redis {}", state.redis.url),
            alive(state.redis.pid, state.redis.start_time),
        )),
    }
    if let Some(db) = state.database.as_ref().filter(|d| d.pid.is_some()) {
        out.push((format!("postgres {}", db.url), alive(db.pid, db.start_time)));
    }
    out
}

fn status(dir: PathBuf) -> Result<ExitCode, String> {
    let Some(state) = ClusterState::load(&dir)? else {
        println!("no cluster in {}", dir.display());
        return Ok(ExitCode::FAILURE);
    };
    let mut all = true;
    for (name, alive) in running(&state) {
        all &= alive;
        println!("{:8} {name}", if alive { "running" } else { "gone" });
    }
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
