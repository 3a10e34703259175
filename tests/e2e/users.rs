//! Users across replicas (SPEC §7): every replica of a cluster uses the same
//! database, the cluster's SQLite file or its PostgreSQL, so an account made
//! through one is known to all.

use http::Method;
use serde_json::json;

use crate::support::cluster::Cluster;
use crate::{EXCLUSIVE, app, options, post_json, start};

const PASSWORD: &str = "correct horse battery staple";

/// Registers through nginx, then at each replica directly: the same email is
/// taken, and a password login starts a session of that user.
async fn a_registered_user_is_known_to_every_replica(cluster: &Cluster) {
    let addr = cluster.addr();
    let email = format!("ada-{}@example.com", uuid::Uuid::new_v4().simple());
    let reply = post_json(
        addr,
        "/register",
        &json!({ "email": email, "password": PASSWORD }),
    )
    .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let user_id = reply.field("user_id");

    for replica in cluster.replica_addrs() {
        let again = post_json(
            replica,
            "/register",
            &json!({ "email": email.to_uppercase(), "password": PASSWORD }),
        )
        .await;
        assert_eq!(again.status, 409, "at {replica}: {again:?}");
        assert_eq!(again.error(), "email_taken");

        let login = post_json(
            replica,
            "/login",
            &json!({ "email": email, "password": PASSWORD }),
        )
        .await;
        assert_eq!(login.status, 200, "at {replica}: {login:?}");
        // The protected app sees the user's id as X-User-Id.
        let seen = app(addr, Method::GET, Some(&login.field("access")), &[]).await;
        assert_eq!(seen.status, 200, "{seen:?}");
        assert_eq!(seen.json()["user_id"], json!(user_id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_clusters_sqlite_file() {
    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options());
    assert!(cluster.database_url().starts_with("sqlite://"));
    a_registered_user_is_known_to_every_replica(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_clusters_postgres() {
    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options().postgres());
    assert!(cluster.database_url().starts_with("postgres://"));
    a_registered_user_is_known_to_every_replica(&cluster).await;
}
