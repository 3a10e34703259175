//! The benchmark of events (SPEC §14; `scripts/bench --events`):
//!
//! 1. **`/login` with the sinks on vs off**: two native clusters side by
//!    side (redis-server + one replica each), one delivering every event to
//!    Kafka (a `tansu` broker on loopback) and to a webhook endpoint (an
//!    in-process receiver answering 204), the other with no sink but the
//!    stream. Rounds alternate between them so noise hits both alike; each
//!    prints logins per second and the replica's CPU per login (user +
//!    system, from `/proc`), the figure to judge the hot path by.
//! 2. **Events per second through the log to each sink**: N events appended
//!    to the stream at once (as a burst of logins would), timed until each
//!    sink's `tokengate_events_delivered_total` has them all.
//!
//! Prints a table and one JSON line (`events_bench {...}`); exits 2 if the
//! benchmark itself breaks, never because a figure is poor.
//!
//! usage: events_bench [--binary PATH] [--events N] [--rounds N]
//!                     [--duration SECS] [--smoke]
//! (`--smoke`: 2,000 events, 2 rounds of 1 s)

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_redis::redis;
use http::StatusCode;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use support::client;
use support::cluster::{Cluster, ClusterOptions};
use support::ports::free_port;

const TOPIC: &str = "tokengate.events";
/// Clients logging in at once.
const CONCURRENCY: usize = 8;

struct Options {
    binary: PathBuf,
    events: u64,
    rounds: usize,
    duration: Duration,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        binary: std::env::current_exe()
            .map_err(|e| e.to_string())?
            .parent()
            .and_then(|examples| examples.parent())
            .map(|profile| profile.join("tokengate"))
            .ok_or("no target directory")?,
        events: 20_000,
        rounds: 3,
        duration: Duration::from_secs(5),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} wants a value"));
        match arg.as_str() {
            "--binary" => options.binary = value()?.into(),
            "--events" => options.events = value()?.parse().map_err(|e| format!("{e}"))?,
            "--rounds" => options.rounds = value()?.parse().map_err(|e| format!("{e}"))?,
            "--duration" => {
                options.duration =
                    Duration::from_secs(value()?.parse().map_err(|e| format!("{e}"))?);
            }
            "--smoke" => {
                options.events = 2_000;
                options.rounds = 2;
                options.duration = Duration::from_secs(1);
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(options()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("events_bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// A `tansu` broker on a free loopback port, killed on drop.
struct Broker {
    child: Child,
    url: String,
}

impl Broker {
    fn start() -> Result<Self, String> {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start tansu ({}): {e}", tansu().display()))?;
        let broker = Self { child, url };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("tansu did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let created = Command::new(tansu())
            .args([
                "topic",
                "create",
                TOPIC,
                "--partitions",
                "1",
                "--broker",
                &broker.url,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if !created.status.success() {
            return Err(format!(
                "tansu topic create: {}",
                String::from_utf8_lossy(&created.stderr)
            ));
        }
        Ok(broker)
    }

    fn address(&self) -> &str {
        self.url.trim_start_matches("tcp://")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tansu() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cargo_bin = home.join(".cargo/bin/tansu");
    if cargo_bin.exists() {
        cargo_bin
    } else {
        "tansu".into()
    }
}

/// A webhook endpoint that answers 204 to everything and counts.
async fn receiver() -> Result<(SocketAddr, Arc<AtomicU64>), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = counted.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_request| {
                    count.fetch_add(1, Ordering::Relaxed);
                    async {
                        hyper::Response::builder()
                            .status(StatusCode::NO_CONTENT)
                            .body(Empty::<Bytes>::new())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, count))
}

/// Logins per second and CPU µs per login of the replica, over `duration`.
async fn logins(cluster: &Cluster, tag: &str, duration: Duration) -> Result<(f64, f64), String> {
    let addr = cluster.replica_addr(0);
    let pid = cluster.replica_pid(0).ok_or("replica not running")?;
    let cpu_before = cpu_ticks(pid)?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while started.elapsed() < duration {
                let body = json!({ "user_id": format!("{tag}-{worker}-{done}") });
                let reply = client::post_json(addr, "/login", &body).await;
                if reply.status != StatusCode::OK {
                    return Err(format!("login answered {}", reply.status));
                }
                done += 1;
            }
            Ok(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.map_err(|e| e.to_string())??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid)? - cpu_before) as f64 / ticks_per_second();
    Ok((total as f64 / seconds, cpu * 1e6 / total as f64))
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    let rest = &stat[stat.rfind(')').ok_or("bad stat")? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Ok(field(14).unwrap_or(0) + field(15).unwrap_or(0))
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// `tokengate_events_delivered_total{sink=…}` of replica 0.
async fn delivered(cluster: &Cluster, sink: &str) -> u64 {
    let reply = client::get(cluster.replica_admin_addr(0), "/metrics").await;
    let text = String::from_utf8_lossy(&reply.body);
    let prefix = format!("tokengate_events_delivered_total{{sink=\"{sink}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until `sink` has delivered `target` events in all; the seconds it took.
async fn until_delivered(
    cluster: &Cluster,
    sink: &str,
    target: u64,
    since: Instant,
) -> Result<f64, String> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if delivered(cluster, sink).await >= target {
            return Ok(since.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            return Err(format!("{sink}: not all events delivered within 5 min"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run(options: Result<Options, String>) -> Result<(), String> {
    let options = options?;
    let broker = Broker::start()?;
    let (hook, received) = receiver().await?;
    let dir = std::env::temp_dir().join(format!("tg-events-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let secret = dir.join("webhook_secret");
    std::fs::write(&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").map_err(|e| e.to_string())?;
    let webhooks = json!([{
        "url": format!("http://{hook}/events"),
        "events": ["*"],
        "secret_file": secret,
    }])
    .to_string();
    let base = |binary: &PathBuf| {
        ClusterOptions::new(binary)
            .replicas(1)
            .env("TOKENGATE__LOGGING__LEVEL", "warn")
            .env("TOKENGATE__EVENTS__MAX_LEN", "0")
    };
    let on = Cluster::start(
        base(&options.binary)
            .env("TOKENGATE__EVENTS__KAFKA__BROKERS", broker.address())
            .env("TOKENGATE__EVENTS__KAFKA__TOPIC", TOPIC)
            .env("TOKENGATE__EVENTS__WEBHOOKS", &webhooks),
    )?;
    let off = Cluster::start(base(&options.binary))?;

    // 1. /login, sinks off and on, rounds interleaved.
    let (mut off_rate, mut on_rate, mut off_cpu, mut on_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..options.rounds {
        let (rate, cpu) = logins(&off, &format!("off{round}"), options.duration).await?;
        off_rate.push(rate);
        off_cpu.push(cpu);
        let (rate, cpu) = logins(&on, &format!("on{round}"), options.duration).await?;
        on_rate.push(rate);
        on_cpu.push(cpu);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (off_rate, on_rate) = (median(&mut off_rate), median(&mut on_rate));
    let (off_cpu, on_cpu) = (median(&mut off_cpu), median(&mut on_cpu));

    // 2. A burst of events through the log, each sink timed. The logins'
    // events are delivered first, so the burst is all that is left.
    let kafka_before = until_settled(&on, "kafka").await?;
    let hooks_before = until_settled(&on, &webhook_sink(hook)).await?;
    let mut redis = on.redis().connection();
    let started = Instant::now();
    let mut pipe = redis::pipe();
    for i in 0..options.events {
        pipe.cmd("XADD")
            .arg("tg:events")
            .arg("*")
            .arg("id")
            .arg(uuid::Uuid::now_v7().to_string())
            .arg("type")
            .arg("UserLoggedIn")
            .arg("version")
            .arg("1")
            .arg("subject")
            .arg(format!("burst-{}", i % 1000))
            .arg("occurred_at")
            .arg(i.to_string())
            .arg("data")
            .arg(r#"{"sid":"00000000-0000-7000-8000-000000000000","client_id":null,"scope":null}"#)
            .ignore();
    }
    pipe.query::<()>(&mut redis).map_err(|e| e.to_string())?;
    let appended = started.elapsed().as_secs_f64();
    let kafka_secs = until_delivered(&on, "kafka", kafka_before + options.events, started).await?;
    let hook_secs = until_delivered(
        &on,
        &webhook_sink(hook),
        hooks_before + options.events,
        started,
    )
    .await?;
    let n = options.events as f64;
    let got = received.load(Ordering::Relaxed);

    println!("events benchmark (release build unless --smoke; 2 cores, loopback)");
    println!(
        "  /login, {CONCURRENCY} clients, median of {} rounds of {:?}:",
        options.rounds, options.duration
    );
    println!(
        "    sinks off (stream only)   {off_rate:>9.0} logins/s   {off_cpu:>7.1} µs CPU per login"
    );
    println!(
        "    sinks on (Kafka + 1 hook) {on_rate:>9.0} logins/s   {on_cpu:>7.1} µs CPU per login"
    );
    println!(
        "    on / off                  {:>9.2}            {:>7.2}",
        on_rate / off_rate,
        on_cpu / off_cpu
    );
    println!(
        "  a burst of {} events appended in {appended:.3} s:",
        options.events
    );
    println!(
        "    Kafka (tansu, 1 partition) {:>9.0} events/s",
        n / kafka_secs
    );
    println!(
        "    webhook (1 endpoint, 204)  {:>9.0} events/s   ({got} requests received in all)",
        n / hook_secs
    );
    println!(
        "events_bench {}",
        json!({
            "login_per_s_off": off_rate, "login_per_s_on": on_rate,
            "login_cpu_us_off": off_cpu, "login_cpu_us_on": on_cpu,
            "events": options.events,
            "kafka_events_per_s": n / kafka_secs,
            "webhook_events_per_s": n / hook_secs,
        })
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// The webhook sink's name for the receiver (`webhook:<host><path>`).
fn webhook_sink(hook: SocketAddr) -> String {
    format!("webhook:{hook}/events")
}

/// Waits until `sink`'s count stops moving (the logins' events are out);
/// the count then.
async fn until_settled(cluster: &Cluster, sink: &str) -> Result<u64, String> {
    let mut last = delivered(cluster, sink).await;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = delivered(cluster, sink).await;
        if now == last {
            return Ok(now);
        }
        if Instant::now() > deadline {
            return Err(format!("{sink}: still delivering after 5 min"));
        }
        last = now;
    }
}
