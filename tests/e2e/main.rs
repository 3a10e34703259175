//! End to end through NGINX: real `nginx` with the shared `nginx/*.conf` files in
//! front of three real `tokengate` processes (the debug binary `cargo test`
//! builds) sharing one real `redis-server`, all on free loopback ports
//! (`tests/support/cluster.rs`, the code `scripts/cluster` runs too).
//!
//! `flows`: what a client and the protected app see. `faults`: replicas killed
//! or stopped and Redis restarted while a bounded load runs
//! (`tests/support/load.rs`); those run one at a time, since they count
//! failed requests. `tooling`: the detached cluster `scripts/cluster up` leaves.
//! `users`: accounts across replicas, on the cluster's SQLite file and on a
//! PostgreSQL of its own. `api_tokens`: services' API tokens at a scoped
//! location, made and revoked by the CLI and by the admin API on a replica,
//! which nginx does not expose. `gate`: `/authenticate` on the public port,
//! request ids across nginx, tokengate and the app, the opt-in identity
//! headers. `seedflow`: the original service's load test, shortened, with not
//! one failed request. `uds`: nginx reaching a replica over its Unix socket
//! (`server.unix_socket`) instead of TCP. `layer`: `tokengate-layer` in an
//! axum service, with the replica's published keys or its shared secret.
//! `events_webhooks`: events to webhook endpoints that check signatures with
//! the Standard Webhooks library (`webhook_receiver.py`), retries, and an
//! endpoint that never answers.
//! `events_kafka`: events to a real Kafka-protocol broker (tansu), read by
//! kafka-python, through a broker outage and a missing topic.
//! `browser`: browser sessions (cookie gate, sign-in page, TOTP, the sessions
//! page) in headless Chromium driven by Playwright, through nginx's browser
//! setup (`nginx/browser/`) in front of two replicas.

#[path = "../support/mod.rs"]
mod support;

mod api_tokens;
mod browser;
mod events_kafka;
mod events_webhooks;
mod faults;
mod flows;
mod gate;
mod layer;
mod revocation_feed;
mod seedflow;
mod tooling;
mod uds;
mod users;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use serde_json::json;
use tokio::sync::RwLock;

use support::client::{self, Reply, request};
use support::cluster::{Cluster, ClusterOptions};

/// The binary under test, built by `cargo test`.
pub const BIN: &str = env!("CARGO_BIN_EXE_tokengate");

/// Tests that count failed requests under load take this for writing, the
/// others for reading: a fault test never shares the 2 cores with another test.
pub static EXCLUSIVE: RwLock<()> = RwLock::const_new(());

/// Three replicas, like the SPEC's smallest interesting deployment, and two
/// nginx workers (each keeps its own view of which replica is down) on any
/// machine.
pub fn options() -> ClusterOptions {
    let mut options = ClusterOptions::new(BIN).replicas(3);
    options.nginx.workers = Some(2);
    options
}

/// Starts a cluster (blocking work, off the async workers' hands).
pub fn start(options: ClusterOptions) -> Cluster {
    tokio::task::block_in_place(|| Cluster::start(options)).expect("start the cluster")
}

/// A token pair as `/login` and `/refresh` return it.
#[derive(Debug, Clone)]
pub struct Pair {
    pub user: String,
    pub access: String,
    pub refresh: String,
    pub session_id: String,
}

impl Pair {
    pub fn from_reply(user: &str, reply: &Reply) -> Self {
        assert_eq!(reply.status, 200, "expected a token pair: {reply:?}");
        Self {
            user: user.to_owned(),
            access: reply.field("access"),
            refresh: reply.field("refresh"),
            session_id: reply.field("session_id"),
        }
    }
}

pub use crate::support::client::post_json;

/// `POST /login` through nginx (or at a replica); asserts success.
pub async fn login(addr: SocketAddr, user: &str) -> Pair {
    let reply = post_json(addr, "/login", &json!({ "user_id": user })).await;
    Pair::from_reply(user, &reply)
}

pub async fn refresh(addr: SocketAddr, refresh: &str) -> Reply {
    post_json(addr, "/refresh", &json!({ "refresh": refresh })).await
}

pub async fn logout(addr: SocketAddr, access: &str) -> Reply {
    client::with_bearer(addr, Method::POST, "/logout", access).await
}

/// A request to the protected echo app behind nginx.
pub async fn app(
    addr: SocketAddr,
    method: Method,
    access: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut builder = request(method.clone(), "/app/orders?id=7");
    if let Some(token) = access {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = if method == Method::GET {
        Full::default()
    } else {
        builder = builder.header("content-type", "application/json");
        Full::new(Bytes::from_static(b"{\"item\": 1}"))
    };
    client::send(addr, builder.body(body).unwrap()).await
}

/// `GET /authenticate` at one replica, bypassing nginx.
pub async fn authenticate_at(replica: SocketAddr, access: &str) -> Reply {
    client::with_bearer(replica, Method::GET, "/authenticate", access).await
}

/// The app answered, and saw exactly this identity and method.
pub fn assert_app_saw(reply: &Reply, method: &Method, pair: &Pair) {
    assert_eq!(reply.status, 200, "protected {method}: {reply:?}");
    let echo = reply.json();
    assert_eq!(
        echo,
        json!({
            "app": "echo",
            "method": method.as_str(),
            "user_id": pair.user,
            "session_id": pair.session_id,
            "token_id": "",
            "scope": "",
        }),
        "what the app saw"
    );
}

/// nginx's JSON 401 for a token tokengate refused, with tokengate's challenge.
pub fn assert_invalid_token(reply: &Reply) {
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="tokengate", error="invalid_token""#),
        "{reply:?}"
    );
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{reply:?}"
    );
    assert_eq!(reply.error(), "unauthorized");
}

/// How many auth checks (nginx → `/authenticate`) each replica port answered
/// in the access log lines from `since` on; only the try that answered counts.
pub fn auth_checks_by_port(cluster: &Cluster, since: usize) -> BTreeMap<u16, usize> {
    let mut by_port = BTreeMap::new();
    for line in cluster.nginx().access_log().iter().skip(since) {
        if line.is_auth_check()
            && let Some(port) = line.upstream_ports().last()
        {
            *by_port.entry(*port).or_default() += 1;
        }
    }
    by_port
}

/// Sends `n` requests through nginx with `access`; each must get `status`;
/// returns the replicas that answered the checks (from the access log).
pub async fn through_every_replica(
    cluster: &Cluster,
    access: &str,
    status: u16,
) -> BTreeMap<u16, usize> {
    let mark = cluster.nginx().access_log().len();
    let all: Vec<u16> = (0..cluster.replica_count())
        .map(|i| cluster.replica_port(i))
        .collect();
    for _ in 0..10 * all.len() {
        let reply = app(cluster.addr(), Method::GET, Some(access), &[]).await;
        assert_eq!(reply.status, status, "{reply:?}");
        if status == 401 {
            assert_invalid_token(&reply);
        }
        let seen = auth_checks_by_port(cluster, mark);
        if all.iter().all(|p| seen.contains_key(p)) {
            return seen;
        }
    }
    panic!(
        "nginx did not send checks to every replica {all:?}: {:?}",
        auth_checks_by_port(cluster, mark)
    );
}

/// Polls `check` until it holds or `within` has passed.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
