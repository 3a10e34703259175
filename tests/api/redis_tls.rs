//! TLS to Redis (`rediss://`): sessions work across replicas over TLS, with
//! a password file and with client certificates; anything that does not
//! prove Redis's identity — an unknown CA, a plain `redis://` URL to a
//! TLS port, a missing client certificate — fails closed (`503`, never
//! `200`), in time.

use std::time::{Duration, Instant};

use serde_json::json;
use tokengate::config::{Secret, Settings};
use tokengate::store::redis::RedisStore;
use tokengate::store::{Store, Timing};

use crate::helpers::{Backend, Cluster, Replica, eventually};
use crate::support::redis::RedisServer;

const FAIL_CLOSED_WITHIN: Duration = Duration::from_secs(2);

/// Replicas over `server` (a TLS redis-server), each configured by `configure`
/// on top of the cluster defaults.
async fn tls_cluster(
    server: RedisServer,
    replicas: usize,
    configure: impl FnOnce(&mut Settings),
) -> Cluster {
    let url = server.url();
    let mut cluster = Cluster::start_with(Backend::Redis, 0, |s| {
        s.cache.url = Secret::new(url);
        configure(s);
    })
    .await;
    // The harness starts a plain server for a Redis cluster; this one's is ours.
    cluster.redis = Some(server);
    for _ in 0..replicas {
        cluster.add_replica().await;
    }
    cluster
}

/// One more replica on the cluster's Redis whose store is built from its
/// own settings, as `App::build` does (`Cluster::add_replica_with` keeps the
/// cluster's store settings).
async fn replica_with(cluster: &Cluster, configure: impl FnOnce(&mut Settings)) -> Replica {
    let mut settings = cluster.settings.clone();
    configure(&mut settings);
    let settings = settings.resolved().expect("valid replica settings");
    let timing = Timing::from_auth(&settings.auth);
    let store = RedisStore::new(&settings.cache, timing).expect("redis store");
    Replica::spawn(&settings, Store::Redis(store)).await
}

fn trust_test_ca(server: &RedisServer) -> impl FnOnce(&mut Settings) + use<> {
    let ca = server.pki().ca();
    move |s| s.cache.tls_ca_file = Some(ca)
}

/// The store-backed endpoints answer 503 in time, `/ping` still 200.
async fn assert_fails_closed(replica: &Replica, access: &str, refresh: &str) {
    let started = Instant::now();
    let health = replica.get("/health").await;
    assert_eq!(health.status, 503, "health: {:?}", health.body);
    assert_eq!(health.json()["store"], "unavailable");
    let authenticate = replica.authenticate(access).await;
    assert_eq!(
        authenticate.status, 503,
        "authenticate: {:?}",
        authenticate.body
    );
    let login = replica.post_json("/login", &json!({"user_id": 7})).await;
    assert_eq!(login.status, 503, "login: {:?}", login.body);
    let refresh = replica.refresh(refresh).await;
    assert_eq!(refresh.status, 503, "refresh: {:?}", refresh.body);
    let elapsed = started.elapsed();
    assert!(
        elapsed < FAIL_CLOSED_WITHIN * 4,
        "four requests took {elapsed:?}"
    );
    assert_eq!(replica.get("/ping").await.status, 200);
}

/// `/health` answers 200 soon (the first connection is made lazily).
async fn healthy(replica: &Replica) -> bool {
    eventually(Duration::from_secs(5), || async {
        replica.get("/health").await.status == 200
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_authenticate_refresh_logout_over_tls_across_replicas() {
    let server = RedisServer::start_tls(None, false);
    let trust = trust_test_ca(&server);
    let c = tls_cluster(server, 2, trust).await;
    assert!(c.settings.cache.url.expose().starts_with("rediss://"));

    let pair = c.a().login(json!("alice")).await;
    assert!(c.b().accepts(&pair.access).await);
    let key = format!("tg:{{u:alice}}:s:{}", pair.session_id);
    assert_eq!(
        c.redis().keys("tg:{u:*}:s:*"),
        [key],
        "stored in the TLS Redis"
    );

    let rotated = c.b().refresh(&pair.refresh).await;
    assert_eq!(rotated.status, 200, "refresh: {:?}", rotated.body);
    let next = rotated.field("access");
    assert!(!c.a().accepts(&pair.access).await, "rotated away");
    assert!(c.a().accepts(&next).await);

    assert_eq!(c.a().logout(&next).await.status, 200);
    assert!(!c.b().accepts(&next).await, "logged out everywhere");
    assert!(c.redis().keys("tg:{u:*}:s:*").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_file_works_with_tls() {
    let password = "tls-and-a-password-0123";
    let server = RedisServer::start_tls(Some(password), false);
    let file = server.pki().path("redis_password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let ca = server.pki().ca();
    let port = server.port();
    let c = tls_cluster(server, 1, |s| {
        s.cache.url = Secret::new(format!("rediss://127.0.0.1:{port}/0"));
        s.cache.password_file = Some(file);
        s.cache.tls_ca_file = Some(ca);
    })
    .await;
    assert!(
        c.settings.cache.url.expose().starts_with("rediss://:"),
        "the password went into the TLS URL"
    );
    let pair = c.a().login(json!(1)).await;
    assert!(c.a().accepts(&pair.access).await);

    // The password is what let it in: without it Redis refuses the replica.
    let without = replica_with(&c, |s| {
        s.cache.password_file = None;
        s.cache.url = Secret::new(format!("rediss://127.0.0.1:{port}/0"));
    })
    .await;
    assert_fails_closed(&without, &pair.access, &pair.refresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_demanding_client_certificates_admits_only_replicas_with_one() {
    let server = RedisServer::start_tls(None, true);
    let (cert, key) = (server.pki().client_cert(), server.pki().client_key());
    let trust = trust_test_ca(&server);
    let c = tls_cluster(server, 1, |s| {
        trust(s);
        s.cache.tls_cert_file = Some(cert);
        s.cache.tls_key_file = Some(key);
    })
    .await;
    assert!(healthy(c.a()).await, "with a client certificate");
    let pair = c.a().login(json!(1)).await;
    assert!(c.a().accepts(&pair.access).await);

    let without = replica_with(&c, |s| {
        s.cache.tls_cert_file = None;
        s.cache.tls_key_file = None;
    })
    .await;
    assert_fails_closed(&without, &pair.access, &pair.refresh).await;
    // Still the only session: the refused replica wrote nothing.
    assert_eq!(c.redis().keys("tg:{u:*}:s:*").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_did_not_sign_redis_fails_closed() {
    let server = RedisServer::start_tls(None, false);
    let other = server.pki().other_ca();
    let trust = trust_test_ca(&server);
    let c = tls_cluster(server, 1, trust).await;
    let pair = c.a().login(json!(1)).await;

    let untrusting = replica_with(&c, |s| s.cache.tls_ca_file = Some(other)).await;
    assert_fails_closed(&untrusting, &pair.access, &pair.refresh).await;
    assert!(c.a().accepts(&pair.access).await, "the session is intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_ca_file_a_private_ca_is_not_trusted() {
    // No cache.tls_ca_file = the system's trust store, which knows nothing
    // of the test CA.
    let server = RedisServer::start_tls(None, false);
    let trust = trust_test_ca(&server);
    let c = tls_cluster(server, 1, trust).await;
    let pair = c.a().login(json!(1)).await;

    let system = replica_with(&c, |s| s.cache.tls_ca_file = None).await;
    assert_fails_closed(&system, &pair.access, &pair.refresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_redis_url_to_a_tls_port_fails_closed() {
    let server = RedisServer::start_tls(None, false);
    let port = server.port();
    let trust = trust_test_ca(&server);
    let c = tls_cluster(server, 1, trust).await;
    let pair = c.a().login(json!(1)).await;

    let plain = replica_with(&c, |s| {
        s.cache.url = Secret::new(format!("redis://127.0.0.1:{port}/0"));
        s.cache.tls_ca_file = None;
    })
    .await;
    assert_fails_closed(&plain, &pair.access, &pair.refresh).await;
    assert!(c.a().accepts(&pair.access).await, "TLS replicas unaffected");
}
