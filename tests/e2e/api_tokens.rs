//! API tokens for services (SPEC §9) through nginx, with three replicas on one
//! Redis and one database. The operator makes and revokes tokens where the
//! replicas run — the CLI on the cluster's database and Redis, or the admin API
//! on a replica's admin listener (SPEC §11) — never through nginx, which serves
//! /auth/validate but answers /admin/* itself with a 404. Services then reach `/reports/`,
//! which requires "reports:read" (as in nginx/nginx.conf), and the app is told
//! `token:<name>` and the token's id.

use std::net::SocketAddr;
use std::process::Command;

use http::Method;
use http_body_util::Full;
use serde_json::{Value, json};

use crate::support::client::{self, Reply, request};
use crate::support::cluster::Cluster;
use crate::{BIN, EXCLUSIVE, login, options, post_json, start, through_every_replica};

/// The cluster's admin token (admin.token_hash holds its argon2id hash).
pub(crate) const ADMIN_TOKEN: &str = "e2e-admin-token-of-at-least-thirty-two-characters";

/// `tokengate token ARGS --json` as an operator runs it on a replica's host: the
/// same configuration (the cluster's config.yml, in its directory) and the same
/// environment as the replicas, so the same database and Redis.
pub(crate) fn cli(cluster: &Cluster, args: &[&str]) -> Value {
    let database = cluster
        .state()
        .database
        .expect("the cluster has a database");
    let mut command = Command::new(BIN);
    command
        .current_dir(cluster.dir())
        .arg("token")
        .args(args)
        .arg("--json")
        .env("TOKENGATE__DATABASE__URL", &database.url)
        .env("TOKENGATE__CACHE__URL", cluster.redis().url())
        .env("TOKENGATE__AUTH__SECRET", cluster.secret())
        .env("TOKENGATE__LOGIN__OPEN", "true");
    if let Some(path) = &database.password_file {
        command.env("TOKENGATE__DATABASE__PASSWORD_FILE", path);
    }
    let out = command.output().expect("run tokengate token");
    assert!(
        out.status.success(),
        "tokengate token {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "tokengate token {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `method path` at `addr` with the admin token, and a JSON body if given.
pub(crate) async fn admin(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Reply {
    let builder = request(method, path).header("authorization", format!("Bearer {ADMIN_TOKEN}"));
    let request = match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(client::json_body(body)),
        None => builder.body(Full::default()),
    };
    client::send(addr, request.unwrap()).await
}

/// `GET /reports/daily` through nginx with `token` and the extra `headers`.
async fn reports(addr: SocketAddr, token: &str, headers: &[(&str, &str)]) -> Reply {
    let mut builder =
        request(Method::GET, "/reports/daily").header("authorization", format!("Bearer {token}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    client::send(addr, builder.body(Full::default()).unwrap()).await
}

/// `POST /auth/validate` through nginx; its answer (always `200`).
async fn validate(addr: SocketAddr, token: &str, scopes: Value) -> Value {
    let body = json!({ "token": token, "required_scopes": scopes });
    let reply = post_json(addr, "/auth/validate", &body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()
}

/// A client claiming another identity than its token's.
const SPOOFED: [(&str, &str); 4] = [
    ("x-user-id", "admin"),
    ("x-session-id", "forged"),
    ("x-token-id", "00000000-0000-0000-0000-000000000000"),
    ("x-scope", "admin"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_reach_their_scope_through_nginx_and_a_revocation_holds_everywhere() {
    let _shared = EXCLUSIVE.read().await;
    let hash = tokengate::clients::hash_secret(ADMIN_TOKEN.as_bytes()).expect("hash");
    let cluster = start(options().config(&format!("admin:\n  token_hash: '{hash}'\n")));
    let addr = cluster.addr();

    // The operator's two ways: the CLI on the cluster's database...
    let reporting = cli(
        &cluster,
        &["create", "reporting", "--scopes", "reports:read"],
    );
    let token = reporting["token"].as_str().expect("token").to_owned();
    let id = reporting["id"].as_str().expect("id").to_owned();
    // ...and the admin API on a replica's admin listener.
    let reply = admin(
        cluster.replica_admin_addr(1),
        Method::POST,
        "/admin/tokens",
        Some(&json!({ "name": "billing", "scopes": ["billing:write"] })),
    )
    .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let billing = reply.field("token");
    let billing_id = reply.field("id");

    // The admin API is not reachable through nginx, nor on a replica's public
    // port, even with the admin token its admin listener accepts: a JSON 404,
    // whatever the method.
    let direct = admin(
        cluster.replica_admin_addr(0),
        Method::GET,
        "/admin/tokens",
        None,
    )
    .await;
    assert_eq!(
        direct.status, 200,
        "at a replica's admin listener: {direct:?}"
    );
    let public = admin(cluster.replica_addr(0), Method::GET, "/admin/tokens", None).await;
    assert_eq!(public.status, 404, "at a replica's public port: {public:?}");
    for (method, path) in [
        (Method::GET, "/admin/tokens".to_owned()),
        (Method::GET, format!("/admin/tokens/{id}")),
        (Method::POST, format!("/admin/tokens/{id}/revoke")),
    ] {
        let body = (method == Method::POST).then(|| json!({}));
        let reply = admin(addr, method.clone(), &path, body.as_ref()).await;
        assert_eq!(
            reply.status, 404,
            "{method} {path} through nginx: {reply:?}"
        );
        assert_eq!(reply.error(), "not_found");
    }
    let reply = admin(
        addr,
        Method::POST,
        "/admin/tokens",
        Some(&json!({ "name": "sneaky", "scopes": ["reports:read"] })),
    )
    .await;
    assert_eq!(
        reply.status, 404,
        "POST /admin/tokens through nginx: {reply:?}"
    );

    // The token with the scope reaches /reports/: the app is told who it is by
    // tokengate alone, and no session.
    let reply = reports(addr, &token, &SPOOFED).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.json(),
        json!({
            "app": "echo",
            "method": "GET",
            "user_id": "token:reporting",
            "session_id": "",
            "token_id": id,
            "scope": "reports:read",
        }),
        "what the app saw"
    );
    // Every replica answers checks for it (one cache in Redis, one database).
    let seen = through_every_replica(&cluster, &token, 200).await;
    assert_eq!(seen.len(), 3, "{seen:?}");

    // Without the scope: nginx's JSON 403 with tokengate's challenge.
    let reply = reports(addr, &billing, &[]).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="tokengate", error="insufficient_scope", scope="reports:read""#)
    );
    assert_eq!(reply.error(), "forbidden");

    // A user's session is told apart the same way: no token id reaches the app,
    // not even one the client sent.
    let user = login(addr, "alice").await;
    let reply = client::send(
        addr,
        request(Method::GET, "/app/orders")
            .header("authorization", format!("Bearer {}", user.access))
            .header("x-token-id", id.as_str())
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let echo = reply.json();
    assert_eq!(echo["user_id"], "alice");
    assert_eq!(echo["session_id"], user.session_id.as_str());
    assert_eq!(
        echo["token_id"], "",
        "a client-sent X-Token-Id reached the app"
    );

    // /auth/validate is public: a service checks the token it was given.
    assert_eq!(
        validate(addr, &token, json!(["reports:read"])).await,
        json!({ "valid": true, "scopes": ["reports:read"], "token_id": id, "name": "reporting" })
    );
    assert_eq!(
        validate(addr, &token, json!(["billing:write"])).await["valid"],
        false
    );
    assert_eq!(
        validate(addr, "tg_live_not-a-token", json!([])).await,
        json!({ "valid": false })
    );

    // Revoked with the CLI: refused through nginx at once, whichever replica
    // nginx asks (401, error="invalid_token"), and no longer valid.
    let revoked = cli(&cluster, &["revoke", &id]);
    assert_eq!(revoked["status"], "revoked", "{revoked}");
    through_every_replica(&cluster, &token, 401).await;
    let reply = reports(addr, &token, &[]).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(
        validate(addr, &token, json!([])).await,
        json!({ "valid": false })
    );

    // Revoked with the admin API on one replica: refused by the others too.
    let reply = admin(
        cluster.replica_admin_addr(2),
        Method::POST,
        &format!("/admin/tokens/{billing_id}/revoke"),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    through_every_replica(&cluster, &billing, 401).await;
}
