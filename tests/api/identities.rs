//! Identities don't collide, and scopes shrink with their client (SPEC §11):
//! an OAuth client's session answers the gate as `client:<id>`, so a user
//! named like the client is never taken for it, and each keeps its own
//! session index; a refresh grants at most what the client may have now.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use serde_json::json;
use tokengate::db::{ClientKind, Database, DurableStore, StoredClient};

use crate::helpers::{Backend, Cluster, Replica, eventually};
use crate::on_both_stores;
use crate::support::client::{self, Reply, json_body, request};

on_both_stores!(
    a_user_named_like_a_client_is_never_taken_for_it,
    a_refresh_grants_at_most_the_clients_scopes_now,
);

const SECRET: &str = "billing-client-secret";

fn billing(scopes: &[&str]) -> StoredClient {
    StoredClient {
        id: "billing".into(),
        kind: ClientKind::OAuth,
        secret_hash: tokengate::clients::hash_secret(SECRET.as_bytes()).unwrap(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        refresh_tokens: true,
        rate_limit: 0,
        created_at: 1_800_000_000_000,
    }
}

/// Two replicas following the database's clients every 100 ms, with the
/// OAuth client `billing` (scopes `read write`) in it.
async fn cluster(backend: Backend) -> (Cluster, Database) {
    let c = Cluster::start_with(backend, 0, |s| {
        s.database.clients_refresh = Duration::from_millis(100);
        s.admin.token_hash = crate::api_tokens::admin_hash().to_owned();
    })
    .await;
    let db = Database::open(&c.settings.database).unwrap();
    db.migrate().await.unwrap();
    db.add_client(&billing(&["read", "write"])).await.unwrap();
    let mut c = c;
    c.add_replica().await;
    c.add_replica().await;
    (c, db)
}

/// The OAuth token endpoint as `billing`.
async fn token(replica: &Replica, form: &str) -> Reply {
    let credentials = STANDARD.encode(format!("billing:{SECRET}"));
    let request = request(Method::POST, "/oauth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {credentials}"))
        .body(form.to_owned().into())
        .unwrap();
    replica.send(request).await
}

async fn a_user_named_like_a_client_is_never_taken_for_it(backend: Backend) {
    let (c, _) = cluster(backend).await;
    let service = token(c.a(), "grant_type=client_credentials").await;
    assert_eq!(service.status, 200, "{:?}", service.body);
    let service = service.field("access_token");
    let user = c.b().login(json!("billing")).await;

    let as_service = c.a().authenticate(&service).await;
    let as_user = c.a().authenticate(&user.access).await;
    assert_eq!(as_service.header("x-user-id"), Some("client:billing"));
    assert_eq!(as_user.header("x-user-id"), Some("billing"));

    // Each has its own sessions: the user's listing and logout everywhere
    // never reach the client's session.
    let listed = client::with_bearer(c.b().addr, Method::GET, "/sessions", &user.access).await;
    let sessions = listed.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(sessions[0]["client_id"].is_null());
    let all = request(Method::POST, "/logout")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", user.access))
        .body(json_body(&json!({"all": true})))
        .unwrap();
    assert_eq!(c.b().send(all).await.status, 200);
    assert!(!c.a().accepts(&user.access).await);
    assert!(
        c.a().accepts(&service).await,
        "the client's session lives on"
    );

    // Nobody logs in as a client or an API token by name.
    for taken in ["client:billing", "token:reporting"] {
        let reply = c
            .a()
            .post_json("/login", &json!({ "user_id": taken }))
            .await;
        assert_eq!(reply.status, 400, "{taken}: {:?}", reply.body);
        assert_eq!(reply.error(), "invalid_request");
    }
}

async fn a_refresh_grants_at_most_the_clients_scopes_now(backend: Backend) {
    let (c, db) = cluster(backend).await;
    let first = token(c.a(), "grant_type=client_credentials").await;
    assert_eq!(first.json()["scope"], "read write");
    let refresh = first.field("refresh_token");

    // The operator narrows the client to `read`.
    assert!(db.remove_client("billing").await.unwrap());
    db.add_client(&billing(&["read"])).await.unwrap();
    for replica in [c.a(), c.b()] {
        let narrowed = eventually(Duration::from_secs(10), || async move {
            let reply = token(replica, "grant_type=client_credentials").await;
            reply.status == 200 && reply.json()["scope"] == "read"
        })
        .await;
        assert!(narrowed, "{} read the new scopes", replica.addr);
    }

    let next = token(
        c.b(),
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    )
    .await;
    assert_eq!(next.status, 200, "{:?}", next.body);
    assert_eq!(next.json()["scope"], "read", "narrowed at its refresh");
    let access = next.field("access_token");
    let gate = |scope: &'static str| {
        let access = access.clone();
        let replica = c.a();
        async move {
            client::with_bearer(
                replica.addr,
                Method::GET,
                &format!("/authenticate?scope={scope}"),
                &access,
            )
            .await
            .status
        }
    };
    assert_eq!(gate("read").await, 200);
    assert_eq!(gate("write").await, 403);

    // Narrowed for good: giving the client `write` back does not widen a
    // session it had already narrowed.
    assert!(db.remove_client("billing").await.unwrap());
    db.add_client(&billing(&["read", "write"])).await.unwrap();
    for replica in [c.a(), c.b()] {
        let widened = eventually(Duration::from_secs(10), || async move {
            let reply = token(replica, "grant_type=client_credentials").await;
            reply.status == 200 && reply.json()["scope"] == "read write"
        })
        .await;
        assert!(widened, "{} read the new scopes", replica.addr);
    }
    let refresh = next.field("refresh_token");
    let again = token(
        c.a(),
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    )
    .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.json()["scope"], "read");
}
