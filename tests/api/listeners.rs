//! SPEC §11 "Operators' endpoints on their own listener" and "One path, one
//! route": `/admin/*` and `/metrics` answer on `admin.listen` only (the
//! public port says `404`, the admin listener serves no public API), and a
//! path that nginx would decode or resolve into another one is `400` on
//! every listener, never routed.

use std::net::SocketAddr;

use http::Method;
use http_body_util::Full;
use serde_json::json;

use crate::api_tokens::{ADMIN_TOKEN, admin_hash};
use crate::helpers::{Backend, Cluster, Replica};
use crate::support::client::{self, Reply, request};

/// `method path` at `addr` with the admin token as Bearer.
async fn as_admin(addr: SocketAddr, method: Method, path: &str) -> Reply {
    let mut builder =
        request(method.clone(), path).header("authorization", format!("Bearer {ADMIN_TOKEN}"));
    let mut body = Full::default();
    if method == Method::POST {
        builder = builder.header("content-type", "application/json");
        body = client::json_body(&json!({"name": "from-the-public-port"}));
    }
    client::send(addr, builder.body(body).unwrap()).await
}

fn assert_not_found(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 404, "{what}: {reply:?}");
    assert_eq!(reply.error(), "not_found", "{what}");
}

const OPERATORS: [(Method, &str); 6] = [
    (Method::GET, "/metrics"),
    (Method::GET, "/admin/tokens"),
    (Method::POST, "/admin/tokens"),
    (Method::GET, "/admin/users/ada/sessions"),
    (Method::POST, "/admin/users/ada/logout"),
    (
        Method::GET,
        "/admin/tokens/0192d4c4-6a8e-7c31-9a4b-5f0e1d2c3b4a",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_endpoints_answer_on_the_admin_listener_only() {
    let c = Cluster::start_with(Backend::Redis, 2, |s| {
        s.admin.token_hash = admin_hash().to_owned();
    })
    .await;
    let session = c.a().login(json!("ada")).await;
    for replica in &c.replicas {
        for (method, path) in &OPERATORS {
            let public = as_admin(replica.addr, method.clone(), path).await;
            assert_not_found(&public, &format!("{method} {path} on the public port"));
        }
        let metrics = replica.get_admin("/metrics").await;
        assert_eq!(metrics.status, 200);
        let text = String::from_utf8_lossy(&metrics.body);
        assert!(
            text.contains("tokengate_http_requests_total{route=\"other\",status=\"404\"}"),
            "{text}"
        );
        let tokens = as_admin(replica.admin_addr, Method::GET, "/admin/tokens").await;
        assert_eq!(tokens.status, 200, "{tokens:?}");
        for probe in ["/ping", "/health"] {
            assert_eq!(replica.get(probe).await.status, 200, "{probe}");
            assert_eq!(replica.get_admin(probe).await.status, 200, "{probe}");
        }
    }
    // Nothing was created from the public port.
    let listed = as_admin(c.a().admin_addr, Method::GET, "/admin/tokens?all=true").await;
    assert_eq!(listed.json(), json!({"tokens": []}));
    let sessions = as_admin(c.b().admin_addr, Method::GET, "/admin/users/ada/sessions").await;
    assert_eq!(
        sessions.json()["sessions"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(
        c.b().accepts(&session.access).await,
        "no logout went through"
    );

    // The admin listener serves no public API.
    let login = client::post_json(c.a().admin_addr, "/login", &json!({"user_id": "ada"})).await;
    assert_not_found(&login, "POST /login on the admin listener");
    let gate = client::with_bearer(
        c.a().admin_addr,
        Method::GET,
        "/authenticate",
        &session.access,
    )
    .await;
    assert_not_found(&gate, "/authenticate on the admin listener");
}

/// Paths nginx reads as another path (it decodes `%2F` and `%2e`, resolves
/// dot segments) while tokengate would get them raw.
const AMBIGUOUS: [&str; 9] = [
    "/admin/users/..%2F..%2Fsessions/sessions",
    "/admin/users/..%2f..%2fsessions/logout",
    "/sessions/%2e%2e/admin/tokens",
    "/sessions/%2E%2e/admin/tokens",
    "/admin%5Ctokens",
    "/admin\\tokens",
    "/./ping",
    "/a/../ping",
    "/sessions/..",
];

async fn assert_refused(replica: &Replica, addr: SocketAddr, path: &str) {
    for method in [Method::GET, Method::POST] {
        let reply = as_admin(addr, method.clone(), path).await;
        assert_eq!(reply.status, 400, "{method} {path} at {addr}: {reply:?}");
        assert_eq!(reply.error(), "invalid_request", "{path}");
        let why = reply.json()["error_description"].to_string();
        assert!(why.contains("request path"), "{path}: {why}");
    }
    assert_eq!(replica.get("/ping").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_slashes_backslashes_and_dot_segments_are_never_routed() {
    let c = Cluster::start_with(Backend::Redis, 1, |s| {
        s.admin.token_hash = admin_hash().to_owned();
        // One wrong admin token would lock the address out: none reaches it.
        s.throttle.max_failures = 1;
    })
    .await;
    let replica = c.a();
    for path in AMBIGUOUS {
        assert_refused(replica, replica.addr, path).await;
        assert_refused(replica, replica.admin_addr, path).await;
    }
    let wrong = client::with_bearer(
        replica.admin_addr,
        Method::GET,
        "/admin/users/..%2F..%2Fsessions/sessions",
        "not-the-admin-token",
    )
    .await;
    assert_eq!(
        wrong.status, 400,
        "refused before the admin token is looked at"
    );
    let good = as_admin(replica.admin_addr, Method::GET, "/admin/tokens").await;
    assert_eq!(good.status, 200, "no failure was counted: {good:?}");

    // A dot inside a segment is no dot segment, and an id stays percent-decoded.
    let user = "first.last@example.com";
    replica.login(json!(user)).await;
    for path in [
        "/admin/users/first.last@example.com/sessions",
        "/admin/users/first.last%40example.com/sessions",
    ] {
        let reply = as_admin(replica.admin_addr, Method::GET, path).await;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        assert_eq!(reply.json()["sessions"].as_array().map(Vec::len), Some(1));
    }
}

/// Operators reach the admin listener directly: an `X-Forwarded-For` there
/// is the caller's own claim, even from a trusted proxy's address, so
/// admin-token guesses count for the peer that sends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_believes_no_forwarded_address() {
    let c = Cluster::start_with(Backend::Redis, 1, |s| {
        s.admin.token_hash = admin_hash().to_owned();
        s.server.trusted_proxies = vec!["127.0.0.0/8".into()];
        s.throttle.max_failures = 2;
    })
    .await;
    let guess = |n: u8| {
        let request = request(Method::GET, "/admin/tokens")
            .header("authorization", format!("Bearer guess-{n}"))
            .header("x-forwarded-for", format!("203.0.113.{n}"))
            .body(Full::default())
            .unwrap();
        c.a().send_admin(request)
    };
    for n in 0..2 {
        assert_eq!(guess(n).await.status, 401, "guess {n}");
    }
    let third = guess(2).await;
    assert_eq!(third.status, 429, "{third:?}");
    assert_eq!(third.error(), "too_many_attempts");
    // Counted for the peer, never for an address it claimed.
    assert!(c.redis().keys("*203.0.113.*").is_empty());
    assert!(!c.redis().keys("*127.0.0.1*").is_empty());
}
