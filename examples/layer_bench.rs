//! The benchmark of `tokengate-layer` (SPEC §13; `scripts/bench --layer`):
//!
//! 1. **Per-request cost** of the layer on a valid token (EdDSA, keys from
//!    the cluster's JWKS), against the same handler bare, in one process and
//!    one run: rounds alternate bare, layer with its verified-token cache
//!    (a client's token after its first request), layer + feed, and layer
//!    without the cache (a signature check every request), so noise hits
//!    all alike. Target: ≤ 5 µs over bare on a cached token.
//! 2. **Revocation delay**: on a native cluster (redis-server, two replicas,
//!    nginx), a session is ended on replica 1 and the time until the layer
//!    (its feed on replica 0) refuses the token is taken, over N trials.
//!    Measured from just before the logout is sent, so the logout's own round
//!    trip is in it. Target: p99 ≤ 10 ms on loopback.
//!
//! Prints a table and one JSON line (`layer_bench {...}`); exits 2 if the
//! benchmark itself breaks, never because a target is missed.
//!
//! usage: layer_bench [--binary PATH] [--trials N] [--calls N] [--smoke]
//! (`--smoke`: 100 trials, 20,000 calls)

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Method, Request, StatusCode, header};
use serde_json::json;
use support::client::{self, request};
use support::cluster::{Cluster, ClusterOptions};
use tokengate_layer::{AuthLayer, Feed, Verifier};
use tower::ServiceExt;

const ADMIN_TOKEN: &str = "layer-bench-admin-token-of-at-least-thirty-two-chars";

struct Options {
    binary: PathBuf,
    trials: usize,
    calls: usize,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        binary: std::env::current_exe()
            .map_err(|e| e.to_string())?
            .parent()
            .and_then(|examples| examples.parent())
            .map(|profile| profile.join("tokengate"))
            .ok_or("no target directory")?,
        trials: 1_000,
        calls: 200_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} wants a value"));
        match arg.as_str() {
            "--binary" => options.binary = PathBuf::from(value()?),
            "--trials" => {
                options.trials = value()?.parse().map_err(|e| format!("--trials: {e}"))?
            }
            "--calls" => options.calls = value()?.parse().map_err(|e| format!("--calls: {e}"))?,
            "--smoke" => (options.trials, options.calls) = (100, 20_000),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

async fn handler() -> &'static str {
    "ok"
}

async fn call(app: &Router, token: &str) -> StatusCode {
    let request = Request::get("/orders")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap_or_default();
    match app.clone().oneshot(request).await {
        Ok(response) => response.status(),
        Err(never) => match never {},
    }
}

/// Nanoseconds per call of `app`, over `calls` calls.
async fn per_call(app: &Router, token: &str, calls: usize) -> Result<f64, String> {
    let started = Instant::now();
    for _ in 0..calls {
        if call(app, token).await != StatusCode::OK {
            return Err("a valid token was refused".into());
        }
    }
    Ok(started.elapsed().as_nanos() as f64 / calls as f64)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

async fn run(options: Options) -> Result<(), String> {
    let hash =
        tokengate::clients::hash_secret(ADMIN_TOKEN.as_bytes()).map_err(|e| e.to_string())?;
    let key = std::process::Command::new(&options.binary)
        .args(["gen-key", "--algorithm", "EdDSA"])
        .output()
        .map_err(|e| format!("tokengate gen-key: {e}"))?;
    if !key.status.success() {
        return Err(format!("tokengate gen-key: {key:?}"));
    }
    let key_file = std::env::temp_dir().join(format!("layer-bench-{}.pem", std::process::id()));
    std::fs::write(&key_file, &key.stdout).map_err(|e| e.to_string())?;
    let cluster_options = ClusterOptions::new(&options.binary)
        .replicas(2)
        .config(&format!(
            "admin:\n  token_hash: '{hash}'\nauth:\n  algorithm: EdDSA\n  signing_keys:\n    - {{kid: bench, algorithm: EdDSA, private_key_file: \"{}\"}}\n",
            key_file.display()
        ));
    let cluster = tokio::task::block_in_place(|| Cluster::start(cluster_options));
    let _ = std::fs::remove_file(&key_file);
    let cluster = cluster?;

    let body = json!({ "name": "layer-bench", "scopes": ["sessions:watch"] });
    let create = request(Method::POST, "/admin/tokens")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(client::json_body(&body))
        .map_err(|e| e.to_string())?;
    let reply = client::send(cluster.replica_admin_addr(1), create).await;
    if reply.status != 201 {
        return Err(format!("POST /admin/tokens: {reply:?}"));
    }
    let feed = Feed::builder(
        format!("http://{}/events/sessions", cluster.replica_admin_addr(0)),
        reply.field("token"),
    )
    .start()
    .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(10), feed.wait_live())
        .await
        .map_err(|_| "the feed did not go live")?;
    let jwks = format!("http://{}/.well-known/jwks.json", cluster.replica_addr(0));
    let verifier = Verifier::jwks(&jwks).build().map_err(|e| e.to_string())?;
    let uncached = Verifier::jwks(&jwks)
        .cache(0)
        .build()
        .map_err(|e| e.to_string())?;
    for verifier in [&verifier, &uncached] {
        verifier.load_keys().await.map_err(|e| e.to_string())?;
    }
    let bare = Router::new().route("/orders", get(handler));
    let every_time = Router::new().route("/orders", get(handler).layer(AuthLayer::new(uncached)));
    let layer = Router::new().route(
        "/orders",
        get(handler).layer(AuthLayer::new(verifier.clone())),
    );
    let with_feed = Router::new().route(
        "/orders",
        get(handler).layer(AuthLayer::new(verifier).with_feed(feed.clone())),
    );
    let login = |user: &str| {
        let body = json!({ "user_id": user });
        let addr = cluster.replica_addr(0);
        async move { client::post_json(addr, "/login", &body).await }
    };
    let token = login("bench").await.field("access");

    // 1. Per-request cost, rounds interleaved.
    let rounds = 5;
    let (mut b, mut l, mut f, mut u) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        b.push(per_call(&bare, &token, options.calls / rounds).await?);
        l.push(per_call(&layer, &token, options.calls / rounds).await?);
        f.push(per_call(&with_feed, &token, options.calls / rounds).await?);
        // A signature check each time: a tenth of the calls is plenty.
        u.push(per_call(&every_time, &token, options.calls / rounds / 10).await?);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (bare_ns, layer_ns, feed_ns, uncached_ns) = (
        median(&mut b),
        median(&mut l),
        median(&mut f),
        median(&mut u),
    );

    // 2. Revocation delay: logout on replica 1, the layer listens to replica 0.
    let mut delays = Vec::with_capacity(options.trials);
    for i in 0..options.trials {
        let access = login(&format!("trial-{i}")).await.field("access");
        if call(&with_feed, &access).await != StatusCode::OK {
            return Err("a fresh token was refused".into());
        }
        let started = Instant::now();
        let logout = client::with_bearer(cluster.replica_addr(1), Method::POST, "/logout", &access);
        tokio::pin!(logout);
        let mut answered = false;
        loop {
            if !answered {
                // Poll the logout alongside, without waiting for it.
                if let Some(reply) = futures_poll(&mut logout).await {
                    if reply.status != 200 {
                        return Err(format!("logout: {reply:?}"));
                    }
                    answered = true;
                }
            }
            if call(&with_feed, &access).await == StatusCode::UNAUTHORIZED {
                delays.push(started.elapsed());
                break;
            }
            if started.elapsed() > Duration::from_secs(5) {
                return Err(format!("trial {i}: still accepted 5 s after the logout"));
            }
            tokio::task::yield_now().await;
        }
        if !answered {
            logout.await;
        }
    }
    delays.sort();
    let (p50, p99, max) = (
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or_default(),
    );

    let over = (layer_ns - bare_ns) / 1000.0;
    let over_feed = (feed_ns - bare_ns) / 1000.0;
    println!(
        "tokengate-layer ({} calls, {} trials)",
        options.calls, options.trials
    );
    println!(
        "  bare handler             {:>8.2} µs/request",
        bare_ns / 1000.0
    );
    println!(
        "  layer, cached token      {:>8.2} µs/request  (+{over:.2} µs; target ≤ 5)",
        layer_ns / 1000.0
    );
    println!(
        "  layer, EdDSA every time  {:>8.2} µs/request  (+{:.2} µs: what the cache saves)",
        uncached_ns / 1000.0,
        (uncached_ns - bare_ns) / 1000.0
    );
    println!(
        "  layer + revocation feed  {:>8.2} µs/request  (+{over_feed:.2} µs; target ≤ 5)",
        feed_ns / 1000.0
    );
    println!(
        "  revocation delay         p50 {:.2} ms, p99 {:.2} ms (target ≤ 10), max {:.2} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    println!(
        "layer_bench {}",
        json!({
            "calls": options.calls,
            "bare_us": bare_ns / 1000.0,
            "layer_us": layer_ns / 1000.0,
            "layer_feed_us": feed_ns / 1000.0,
            "layer_uncached_us": uncached_ns / 1000.0,
            "trials": options.trials,
            "revocation_p50_ms": p50.as_secs_f64() * 1e3,
            "revocation_p99_ms": p99.as_secs_f64() * 1e3,
            "revocation_max_ms": max.as_secs_f64() * 1e3,
        })
    );
    drop(feed);
    tokio::task::block_in_place(|| cluster.stop());
    Ok(())
}

/// Polls `future` once: its output if it is ready.
async fn futures_poll<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *future).poll(cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("layer_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("layer_bench: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("layer_bench: {e}");
            ExitCode::from(2)
        }
    }
}
