//! A load generator for `AuthApi/Refresh`, the gRPC counterpart of wrk with
//! `benches/wrk/refresh.lua` (ghz is not packaged; this uses tonic's generated
//! client, as an application would). See USAGE.
//!
//! `--streams` calls are in flight at once, spread over `--connections` HTTP/2
//! connections. Each stream starts from a refresh token of the pool and then
//! chains: the successor each call returns is the token of its next call, so
//! every token is presented exactly once (a second use would be a reuse, which
//! ends the session). A stream whose call fails takes a fresh token from the
//! pool. Prints one JSON object: requests, duration, latency percentiles and
//! the failed calls by gRPC code.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokengate::grpc::proto::RefreshRequest;
use tokengate::grpc::proto::auth_api_client::AuthApiClient;
use tonic::transport::{Channel, Endpoint};

const USAGE: &str = "\
usage: grpc_load --url http://HOST:PORT --pool FILE [OPTIONS]

  --url URL          the gRPC endpoint (a replica's grpc.port, or nginx's gRPC port)
  --pool FILE        \"<access> <refresh>\" lines (bench.py's session pools); only the
                     refresh tokens are used, each once. At least --streams lines
  --duration SECS    measured time (default 10)
  --warmup SECS      calls before measuring, same chains, not counted (default 0)
  --connections N    HTTP/2 connections (default 4)
  --streams N        calls in flight at once, over all connections (default 64)";

struct Options {
    url: String,
    pool: String,
    duration: f64,
    warmup: f64,
    connections: usize,
    streams: usize,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        url: String::new(),
        pool: String::new(),
        duration: 10.0,
        warmup: 0.0,
        connections: 4,
        streams: 64,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let number = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{arg} {v}: not a number"))
        };
        match arg.as_str() {
            "--url" => options.url = value,
            "--pool" => options.pool = value,
            "--duration" => options.duration = number(&value)?,
            "--warmup" => options.warmup = number(&value)?,
            "--connections" => options.connections = number(&value)? as usize,
            "--streams" => options.streams = number(&value)? as usize,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if options.url.is_empty() || options.pool.is_empty() {
        return Err("--url and --pool are required".into());
    }
    if options.connections == 0 || options.streams == 0 {
        return Err("--connections and --streams must be at least 1".into());
    }
    Ok(options)
}

/// What one stream measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    failures: BTreeMap<String, u64>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("grpc_load: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("grpc_load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(&options.pool)
        .map_err(|e| format!("read {}: {e}", options.pool))?;
    let mut pool: Vec<String> = text
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1).map(str::to_owned))
        .collect();
    if pool.len() < options.streams {
        return Err(format!(
            "{} has {} refresh tokens, fewer than --streams {}",
            options.pool,
            pool.len(),
            options.streams
        ));
    }
    pool.reverse();
    let pool = Arc::new(Mutex::new(pool));

    let endpoint = Endpoint::from_shared(options.url.clone())
        .map_err(|e| format!("--url {}: {e}", options.url))?
        .timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let mut channels = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        // `connect`, not a lazy channel: each one its own HTTP/2 connection.
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("connect to {}: {e}", options.url))?;
        channels.push(channel);
    }

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(options.warmup);
    let end = measure_from + Duration::from_secs_f64(options.duration);
    let mut tasks = Vec::with_capacity(options.streams);
    for i in 0..options.streams {
        let client = AuthApiClient::new(channels[i % channels.len()].clone());
        tasks.push(tokio::spawn(stream(
            client,
            pool.clone(),
            measure_from,
            end,
        )));
    }
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.map_err(|e| e.to_string())?;
        total.latencies_us.extend(tally.latencies_us);
        for (code, n) in tally.failures {
            *total.failures.entry(code).or_default() += n;
        }
    }
    let elapsed = Instant::now().saturating_duration_since(measure_from);
    let duration = elapsed
        .min(end - measure_from)
        .max(Duration::from_millis(1));
    total.latencies_us.sort_unstable();
    let pct = |p: f64| -> u32 {
        let v = &total.latencies_us;
        if v.is_empty() {
            return 0;
        }
        let at = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[at.clamp(1, v.len()) - 1]
    };
    let failed: u64 = total.failures.values().sum();
    let ok = total.latencies_us.len() as u64;
    Ok(serde_json::json!({
        "requests": ok + failed,
        "ok": ok,
        "duration_us": duration.as_micros() as u64,
        "latency_us": {
            "p50": pct(50.0), "p90": pct(90.0), "p99": pct(99.0), "p999": pct(99.9),
            "max": total.latencies_us.last().copied().unwrap_or(0),
        },
        "failures": total.failures,
        "connections": channels.len(),
        "streams": options.streams,
        "pool_left": pool.lock().map(|p| p.len()).unwrap_or(0),
    }))
}

/// One chain of refreshes until `end`; only calls that start at or after
/// `measure_from` are counted.
async fn stream(
    mut client: AuthApiClient<Channel>,
    pool: Arc<Mutex<Vec<String>>>,
    measure_from: Instant,
    end: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let next_from_pool = || pool.lock().ok().and_then(|mut p| p.pop());
    let mut token = next_from_pool();
    while let Some(refresh_token) = token.take() {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let result = client.refresh(RefreshRequest { refresh_token }).await;
        let counted = started >= measure_from;
        match result {
            Ok(reply) => {
                if counted {
                    let us = started.elapsed().as_micros();
                    tally
                        .latencies_us
                        .push(u32::try_from(us).unwrap_or(u32::MAX));
                }
                token = Some(reply.into_inner().refresh_token);
            }
            Err(status) => {
                if counted {
                    *tally
                        .failures
                        .entry(format!("{:?}", status.code()))
                        .or_default() += 1;
                }
                // That chain is gone (or in doubt): start another.
                token = next_from_pool();
            }
        }
    }
    tally
}
