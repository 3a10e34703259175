//! The revocation feed (SPEC §13) end to end: two replicas on one real
//! Redis, nginx in front, and an axum service with `tokengate-layer`
//! listening to `GET /events/sessions` on replica 0's admin listener. An end
//! on replica 1 — logout, refresh-token reuse, logout everywhere, idle
//! expiry — is refused by the layer within 50 ms, while the layer asks
//! tokengate nothing per request (counted in both replicas' `/metrics`). A
//! cut feed fails closed and recovers; a Redis that lost its data makes the
//! layer refuse every token issued before.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;
use serde_json::json;
use tokengate_layer::{ApiTokenClaims, ApiTokens, AuthLayer, Claims, Feed, Verifier};
use tower::ServiceExt;

use crate::api_tokens::{ADMIN_TOKEN, admin};
use crate::support::client::{self, request};
use crate::support::cluster::Cluster;
use crate::{EXCLUSIVE, login, logout, options, refresh, start};

/// How soon an end on any replica must reach the layer.
const WITHIN: Duration = Duration::from_millis(50);

fn config(extra: &str) -> String {
    let hash = tokengate::clients::hash_secret(ADMIN_TOKEN.as_bytes()).expect("hash");
    format!("admin:\n  token_hash: '{hash}'\n{extra}")
}

/// An API token with `scopes`, made on replica 1's admin listener.
async fn api_token(cluster: &Cluster, name: &str, scopes: &[&str]) -> (String, String) {
    let body = json!({ "name": name, "scopes": scopes });
    let addr = cluster.replica_admin_addr(1);
    let reply = admin(addr, Method::POST, "/admin/tokens", Some(&body)).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    (reply.field("token"), reply.field("id"))
}

/// The feed from replica 0, live.
async fn feed(cluster: &Cluster, token: &str, max_outage: Duration) -> Feed {
    let url = format!("http://{}/events/sessions", cluster.replica_admin_addr(0));
    let feed = Feed::builder(url, token)
        .max_outage(max_outage)
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .start()
        .expect("a feed");
    tokio::time::timeout(Duration::from_secs(10), feed.wait_live())
        .await
        .expect("the feed goes live");
    feed
}

async fn whoami(claims: Option<Claims>, token: Option<ApiTokenClaims>) -> String {
    match (claims, token) {
        (Some(claims), _) => claims.sid.to_string(),
        (_, Some(token)) => format!("token {}", token.name),
        _ => String::new(),
    }
}

fn app(cluster: &Cluster, feed: &Feed, api_tokens: Option<ApiTokens>) -> Router {
    let verifier = Verifier::hs256(cluster.secret().as_bytes())
        .build()
        .expect("a verifier");
    let mut layer = AuthLayer::new(verifier).with_feed(feed.clone());
    if let Some(api_tokens) = api_tokens {
        layer = layer.with_api_tokens(api_tokens);
    }
    Router::new().route("/orders", get(whoami).layer(layer))
}

async fn status(app: &Router, token: &str) -> StatusCode {
    let request = Request::get("/orders")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("a request");
    app.clone()
        .oneshot(request)
        .await
        .expect("infallible")
        .status()
}

/// How long after `since` the layer first refuses `token` (polled every
/// millisecond, for at most 5 s).
async fn refused_after(app: &Router, token: &str, since: Instant) -> Duration {
    let deadline = since + Duration::from_secs(5);
    while Instant::now() < deadline {
        if status(app, token).await == StatusCode::UNAUTHORIZED {
            return since.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the layer still accepts the token 5 s on");
}

/// Requests both replicas answered, but for `/metrics` itself.
async fn requests_answered(cluster: &Cluster) -> u64 {
    let mut total = 0.0;
    for i in 0..cluster.replica_count() {
        let reply = client::get(cluster.replica_admin_addr(i), "/metrics").await;
        total += String::from_utf8_lossy(&reply.body)
            .lines()
            .filter(|l| l.starts_with("tokengate_http_requests_total{") && !l.contains("/metrics"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    total as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_on_either_replica_is_refused_by_the_layer_within_50_ms() {
    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options().replicas(2).config(&config("")));
    let (watcher, _) = api_token(&cluster, "orders-service", &["sessions:watch"]).await;
    let feed = feed(&cluster, &watcher, Duration::from_secs(5)).await;
    let app = app(&cluster, &feed, None);
    let replica_1 = cluster.replica_addr(1);

    // Accepted, and without a request to tokengate per call.
    let alice = login(cluster.addr(), "alice").await;
    let before = requests_answered(&cluster).await;
    for _ in 0..500 {
        assert_eq!(status(&app, &alice.access).await, StatusCode::OK);
    }
    assert_eq!(
        requests_answered(&cluster).await,
        before,
        "500 layer calls asked tokengate nothing"
    );

    // Logout on replica 1.
    let started = Instant::now();
    assert_eq!(logout(replica_1, &alice.access).await.status, 200);
    let delay = refused_after(&app, &alice.access, started).await;
    assert!(delay < WITHIN, "logout reached the layer after {delay:?}");

    // A rotation keeps the session (both access tokens pass); the old
    // refresh token coming back (theft) ends it, and both are refused.
    let bob = login(cluster.addr(), "bob").await;
    let rotated = refresh(replica_1, &bob.refresh).await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let successor = rotated.field("access");
    assert_eq!(status(&app, &successor).await, StatusCode::OK);
    assert_eq!(status(&app, &bob.access).await, StatusCode::OK);
    let started = Instant::now();
    // Within the grace window the last token back is a retry; one two
    // rotations old is reuse.
    let next = refresh(replica_1, &rotated.field("refresh")).await;
    assert_eq!(next.status, 200, "{next:?}");
    let reused = refresh(replica_1, &bob.refresh).await;
    assert_ne!(
        reused.status, 200,
        "a token two rotations old is reuse: {reused:?}"
    );
    let delay = refused_after(&app, &successor, started).await;
    assert!(delay < WITHIN, "reuse reached the layer after {delay:?}");
    assert_eq!(status(&app, &bob.access).await, StatusCode::UNAUTHORIZED);

    // Logout everywhere, on replica 1, ends both of carol's sessions.
    let (one, two) = (
        login(cluster.addr(), "carol").await,
        login(cluster.addr(), "carol").await,
    );
    let started = Instant::now();
    let request = request(Method::POST, "/logout")
        .header("authorization", format!("Bearer {}", one.access))
        .header("content-type", "application/json")
        .body(client::json_body(&json!({ "all": true })))
        .expect("a request");
    let reply = client::send(replica_1, request).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    for pair in [&one, &two] {
        let delay = refused_after(&app, &pair.access, started).await;
        assert!(delay < WITHIN, "logout everywhere after {delay:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_expiry_reaches_the_layer_within_50_ms() {
    let _shared = EXCLUSIVE.read().await;
    let cluster = start(
        options()
            .replicas(2)
            .config(&config("auth:\n  auto_logout: 2s\n")),
    );
    let (watcher, _) = api_token(&cluster, "orders-service", &["sessions:watch"]).await;
    let feed = feed(&cluster, &watcher, Duration::from_secs(5)).await;
    let app = app(&cluster, &feed, None);
    let sent = Instant::now();
    let dave = login(cluster.addr(), "dave").await;
    assert_eq!(status(&app, &dave.access).await, StatusCode::OK);
    // No activity: the session ends 2 s after the login at the latest.
    let expired = sent + Duration::from_secs(2);
    let delay = refused_after(&app, &dave.access, sent).await;
    let late = delay.saturating_sub(Duration::from_secs(2));
    assert!(
        Instant::now() >= expired && late < WITHIN,
        "refused {delay:?} after the login, {late:?} after the idle expiry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_feed_fails_closed_and_recovers_and_a_redis_that_lost_its_data_ends_every_session() {
    let _shared = EXCLUSIVE.read().await;
    let mut cluster = start(options().replicas(2).config(&config("")));
    let (watcher, _) = api_token(&cluster, "orders-service", &["sessions:watch"]).await;
    let feed = feed(&cluster, &watcher, Duration::from_millis(300)).await;
    let app = app(&cluster, &feed, None);
    let erin = login(cluster.addr(), "erin").await;
    assert_eq!(status(&app, &erin.access).await, StatusCode::OK);

    // The replica it listens to dies: past the bound, fail closed.
    cluster.kill_replica(0);
    let closed = crate::eventually(Duration::from_secs(5), || async {
        status(&app, &erin.access).await == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(closed, "the layer kept trusting a feed down past its bound");
    cluster.restart_replica(0).expect("replica 0 back");
    tokio::time::timeout(Duration::from_secs(10), feed.wait_live())
        .await
        .expect("the feed is live again");
    assert_eq!(status(&app, &erin.access).await, StatusCode::OK);

    // Redis restarts empty: the feed drops, and what it says once back
    // refuses every token issued before (their sessions are gone).
    cluster.restart_redis();
    tokio::time::timeout(Duration::from_secs(10), async {
        while feed.is_live() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the feed drops with Redis");
    tokio::time::timeout(Duration::from_secs(15), feed.wait_live())
        .await
        .expect("the feed is live again");
    assert_eq!(status(&app, &erin.access).await, StatusCode::UNAUTHORIZED);
    let fresh = login(cluster.addr(), "erin").await;
    assert_eq!(status(&app, &fresh.access).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_wants_an_api_token_with_sessions_watch_and_api_tokens_pass_until_revoked() {
    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options().replicas(2).config(&config("")));
    let events = |token: Option<&str>| {
        let mut builder = request(Method::GET, "/events/sessions");
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        client::send(
            cluster.replica_admin_addr(0),
            builder.body(Full::default()).expect("a request"),
        )
    };
    assert_eq!(events(None).await.status, 401);
    assert_eq!(events(Some("tg_live_nonsense")).await.status, 401);
    let (reader, reader_id) = api_token(&cluster, "reports", &["reports:read"]).await;
    let reply = events(Some(&reader)).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|c| c.contains("insufficient_scope")),
        "{reply:?}"
    );
    // Not on the public listener.
    let public = client::with_bearer(
        cluster.replica_addr(0),
        Method::GET,
        "/events/sessions",
        &reader,
    )
    .await;
    assert_eq!(public.status, 404, "{public:?}");

    // An API token through the layer, checked at /auth/validate (nginx).
    let (watcher, _) = api_token(&cluster, "orders-service", &["sessions:watch"]).await;
    let feed = feed(&cluster, &watcher, Duration::from_secs(5)).await;
    let validate = format!("http://{}/auth/validate", cluster.addr());
    let api_tokens = ApiTokens::builder(validate)
        .ttl(Duration::from_millis(200))
        .build()
        .expect("api tokens");
    let app = app(&cluster, &feed, Some(api_tokens));
    assert_eq!(status(&app, &reader).await, StatusCode::OK);
    let revoke = format!("/admin/tokens/{reader_id}/revoke");
    let addr = cluster.replica_admin_addr(1);
    let reply = admin(addr, Method::POST, &revoke, Some(&json!({}))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let started = Instant::now();
    let delay = refused_after(&app, &reader, started).await;
    assert!(
        delay < Duration::from_millis(1300),
        "a revoked API token passed the layer for {delay:?} (tokengate's 1 s + the layer's 200 ms cache)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_fallback_a_down_feed_asks_authenticate_per_request() {
    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options().replicas(2).config(&config("")));
    // A feed that never goes live: nothing listens on its replica's port.
    let nowhere = crate::support::ports::free_port();
    let feed = Feed::builder(
        format!("http://127.0.0.1:{nowhere}/events/sessions"),
        "tg_live_x",
    )
    .max_outage(Duration::from_millis(100))
    .fallback_authenticate(format!("http://{}/authenticate", cluster.replica_addr(0)))
    .start()
    .expect("a feed");
    let app = app(&cluster, &feed, None);
    let grace = login(cluster.addr(), "grace").await;
    assert_eq!(
        status(&app, &grace.access).await,
        StatusCode::OK,
        "asked /authenticate"
    );
    assert_eq!(
        logout(cluster.replica_addr(1), &grace.access).await.status,
        200
    );
    // tokengate's own answer, at once: no feed to wait for.
    assert_eq!(status(&app, &grace.access).await, StatusCode::UNAUTHORIZED);
    assert!(!feed.is_live());
}
