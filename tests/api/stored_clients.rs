//! SPEC §7: OAuth and login clients kept in the database (`tokengate
//! client`), beside those in the configuration. Two replicas share the
//! cluster's SQLite database; the test writes to it as the CLI does, and
//! every replica follows within `database.clients_refresh`. A client the
//! configuration also has keeps the configuration's secret and policy.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use serde_json::{Value, json};
use tokengate::config::{OAuthClient, Settings};
use tokengate::db::{ClientKind, Database, DurableStore, StoredClient};

use crate::helpers::{Backend, Cluster, Replica, eventually};
use crate::on_both_stores;
use crate::support::client::{Reply, json_body, request};

on_both_stores!(
    a_stored_oauth_client_comes_and_goes_on_every_replica,
    a_stored_login_client_vouches_for_login,
    the_configuration_wins_over_a_stored_client_with_its_id,
);

const REFRESH: Duration = Duration::from_millis(200);
/// A deadline, not a wait: each check returns as soon as it holds. Generous
/// because argon2 on a busy test machine is slow.
const WITHIN: Duration = Duration::from_secs(10);

/// Two replicas re-reading the database every [`REFRESH`], and a handle on
/// that database.
async fn cluster(backend: Backend, configure: impl FnOnce(&mut Settings)) -> (Cluster, Database) {
    let cluster = Cluster::start_with(backend, 2, |s| {
        s.database.clients_refresh = REFRESH;
        // Polling for a client not there yet fails on purpose; no lock-out.
        s.throttle.max_failures = 0;
        configure(s);
    })
    .await;
    let db = Database::open(&cluster.settings.database).expect("the cluster's database");
    (cluster, db)
}

fn stored(id: &str, kind: ClientKind, secret: &str, scopes: &[&str]) -> StoredClient {
    StoredClient {
        id: id.into(),
        kind,
        secret_hash: tokengate::clients::hash_secret(secret.as_bytes()).unwrap(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        refresh_tokens: false,
        rate_limit: 0,
        created_at: 1_800_000_000_000,
    }
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// `client_credentials` at `/oauth/token`, authenticated with Basic.
async fn token(replica: &Replica, id: &str, secret: &str) -> Reply {
    let request = request(Method::POST, "/oauth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", basic(id, secret))
        .body("grant_type=client_credentials".into())
        .unwrap();
    replica.send(request).await
}

/// `/login {"user_id"}`, with Basic credentials when given.
async fn login(replica: &Replica, credentials: Option<(&str, &str)>) -> Reply {
    let mut builder = request(Method::POST, "/login").header("content-type", "application/json");
    if let Some((id, secret)) = credentials {
        builder = builder.header("authorization", basic(id, secret));
    }
    let body = json_body(&json!({"user_id": "alice"}));
    replica.send(builder.body(body).unwrap()).await
}

async fn scopes_supported(replica: &Replica) -> Value {
    let reply = replica.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(reply.status, 200);
    reply.json()["scopes_supported"].clone()
}

/// Whether `replica` answers `/oauth/token` for this client with `status`
/// (`401` must be `invalid_client`).
async fn answers(replica: &Replica, id: &str, secret: &str, status: u16) -> bool {
    let reply = token(replica, id, secret).await;
    reply.status == status && (status != 401 || reply.error() == "invalid_client")
}

async fn a_stored_oauth_client_comes_and_goes_on_every_replica(backend: Backend) {
    let (cluster, db) = cluster(backend, |_| {}).await;
    const ROBOT: (&str, &str) = ("robot", "robot-secret");
    assert!(answers(cluster.a(), ROBOT.0, ROBOT.1, 401).await);

    db.add_client(&stored(
        ROBOT.0,
        ClientKind::OAuth,
        ROBOT.1,
        &["jobs", "read"],
    ))
    .await
    .unwrap();
    for replica in [cluster.a(), cluster.b()] {
        let works = eventually(WITHIN, || async move {
            answers(replica, ROBOT.0, ROBOT.1, 200).await
        })
        .await;
        assert!(works, "the added client works on {}", replica.addr);
        let granted = token(replica, ROBOT.0, ROBOT.1).await;
        assert_eq!(granted.json()["scope"], "jobs read", "its stored policy");
        assert!(granted.json().get("refresh_token").is_none());
        assert_eq!(scopes_supported(replica).await, json!(["jobs", "read"]));
        assert!(answers(replica, ROBOT.0, "wrong", 401).await);
    }

    assert!(db.remove_client(ROBOT.0).await.unwrap());
    for replica in [cluster.a(), cluster.b()] {
        // Its secret is remembered by now; removal forgets it too.
        let refused = eventually(WITHIN, || async move {
            answers(replica, ROBOT.0, ROBOT.1, 401).await
        })
        .await;
        assert!(refused, "the removed client is refused on {}", replica.addr);
        assert_eq!(scopes_supported(replica).await, json!([]));
    }
}

async fn a_stored_login_client_vouches_for_login(backend: Backend) {
    let (cluster, db) = cluster(backend, |_| {}).await;
    const WEB: (&str, &str) = ("web", "web-secret");
    // No login client anywhere: /login is open (a test cluster's choice).
    assert_eq!(login(cluster.a(), None).await.status, 200);

    db.add_client(&stored(WEB.0, ClientKind::Login, WEB.1, &[]))
        .await
        .unwrap();
    for replica in [cluster.a(), cluster.b()] {
        // With a trusted client known, /login is no longer open (an open
        // /login ignores credentials, so wait for the refusal).
        let closed = eventually(WITHIN, || async move {
            let anonymous = login(replica, None).await;
            anonymous.status == 401 && anonymous.error() == "invalid_client"
        })
        .await;
        assert!(closed, "{} knows the stored login client", replica.addr);
        let pair = login(replica, Some(WEB)).await;
        assert_eq!(pair.status, 200, "{:?}", pair.body);
        assert!(replica.accepts(&pair.field("access")).await);
        assert_eq!(login(replica, Some((WEB.0, "wrong"))).await.status, 401);
        // A login client is no OAuth client.
        assert!(answers(replica, WEB.0, WEB.1, 401).await);
    }
    // Closed for good: removing the client does not open /login again.
    assert!(db.remove_client(WEB.0).await.unwrap());
    for replica in [cluster.a(), cluster.b()] {
        let forgotten = eventually(WITHIN, || async move {
            login(replica, Some(WEB)).await.status == 401
        })
        .await;
        assert!(forgotten, "{} read the removal", replica.addr);
        assert_eq!(login(replica, None).await.status, 401);
    }
}

async fn the_configuration_wins_over_a_stored_client_with_its_id(backend: Backend) {
    const CONFIGURED: (&str, &str) = ("billing", "configured-secret");
    const STORED: (&str, &str) = ("billing", "stored-secret");
    const MARKER: (&str, &str) = ("marker", "marker-secret");
    let (cluster, db) = cluster(backend, |s| {
        s.oauth.clients = vec![OAuthClient {
            id: CONFIGURED.0.into(),
            secret_hash: tokengate::clients::hash_secret(CONFIGURED.1.as_bytes()).unwrap(),
            scopes: vec!["read".into()],
            refresh_tokens: false,
            rate_limit: 0,
        }];
    })
    .await;

    db.add_client(&stored(STORED.0, ClientKind::OAuth, STORED.1, &["admin"]))
        .await
        .unwrap();
    // Written after the shadowed row: once it works, a refresh read both.
    db.add_client(&stored(MARKER.0, ClientKind::OAuth, MARKER.1, &["jobs"]))
        .await
        .unwrap();
    for replica in [cluster.a(), cluster.b()] {
        let refreshed = eventually(WITHIN, || async move {
            answers(replica, MARKER.0, MARKER.1, 200).await
        })
        .await;
        assert!(refreshed, "{} read the database", replica.addr);
        let reply = token(replica, CONFIGURED.0, CONFIGURED.1).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.json()["scope"], "read", "the configured policy");
        assert!(answers(replica, STORED.0, STORED.1, 401).await);
        assert_eq!(
            scopes_supported(replica).await,
            json!(["jobs", "read"]),
            "the ignored client's scopes are not offered"
        );
    }
}

/// SPEC §11: whether `/login {"user_id"}` is open is decided at start-up.
/// A Redis deployment whose only login client lives in the database starts
/// without `login.open`; removing that client closes `/login`, never opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_last_stored_login_client_never_opens_login() {
    const WEB: (&str, &str) = ("web", "web-secret");
    let mut c = Cluster::start_with(Backend::Redis, 0, |s| {
        s.login.open = false;
        s.database.clients_refresh = REFRESH;
    })
    .await;
    let db = Database::open(&c.settings.database).expect("the cluster's database");
    db.migrate().await.unwrap();
    db.add_client(&stored(WEB.0, ClientKind::Login, WEB.1, &[]))
        .await
        .unwrap();
    c.add_replica().await;
    c.add_replica().await;
    for replica in [c.a(), c.b()] {
        assert_eq!(login(replica, Some(WEB)).await.status, 200);
        assert_eq!(login(replica, None).await.status, 401);
    }

    assert!(db.remove_client(WEB.0).await.unwrap());
    for replica in [c.a(), c.b()] {
        let forgotten = eventually(WITHIN, || async move {
            login(replica, Some(WEB)).await.status == 401
        })
        .await;
        assert!(forgotten, "{} read the removal", replica.addr);
        let anonymous = login(replica, None).await;
        assert_eq!(anonymous.status, 401, "{:?}", anonymous.body);
        assert_eq!(anonymous.error(), "invalid_client");
    }
}

/// With Redis, no login client in `config.yml` or the database and no
/// `login.open`, a replica does not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_no_login_client_anywhere_does_not_start() {
    let c = Cluster::start_with(Backend::Redis, 0, |s| s.login.open = false).await;
    let app = tokengate::app::with_store(&c.settings, c.new_store()).unwrap();
    app.migrate().await.unwrap();
    let error = app.load_clients().await.expect_err("refused").to_string();
    assert!(error.starts_with("login.clients: "), "{error}");
    assert!(
        error.contains("login.open") && !error.contains('\n'),
        "{error}"
    );
}
