//! What nginx adds around tokengate for clients and apps, with three replicas:
//! `/authenticate` on the public port (the original service's clients call it
//! there) while `/metrics` and the admin API stay private, served on the
//! replicas' admin listeners only, and no encoded path reaches them through a
//! public location (SPEC §11); one request id per
//! client request, the same in nginx's access log, tokengate's log, the app's
//! request and the client's answer; the opt-in conventional identity
//! headers (`authenticate.identity_headers`), which a client can never set;
//! and the client's `Authorization`, which stops at the gate unless a
//! location opts in to pass it on.

use std::time::Duration;

use http::Method;
use http_body_util::Full;
use serde_json::json;

use crate::support::client::{self, Reply, request};
use crate::support::cluster::Cluster;
use crate::support::nginx::ECHO_HEADERS;
use crate::{EXCLUSIVE, eventually, login, logout, options, post_json, refresh, start};

/// What a client claims, hoping the app believes it.
const SPOOFED: [(&str, &str); 4] = [
    ("x-auth-request-user", "admin"),
    ("x-auth-request-email", "boss@example.com"),
    ("remote-user", "admin"),
    ("remote-email", "boss@example.com"),
];

const CLIENT_ID: &str = "chosen-by-the-client.1";

async fn call(
    cluster: &Cluster,
    method: Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut builder = request(method, path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    client::send(cluster.addr(), builder.body(Full::default()).unwrap()).await
}

/// nginx's `$request_id`: 32 lowercase hex digits.
fn nginx_id(reply: &Reply) -> String {
    let ids: Vec<_> = reply.headers.get_all("x-request-id").iter().collect();
    assert_eq!(ids.len(), 1, "X-Request-Id {ids:?}: {reply:?}");
    let id = ids[0].to_str().unwrap().to_owned();
    assert!(
        id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "not nginx's id: {id:?}"
    );
    id
}

/// The URIs nginx logged under `id` (client request and auth subrequest),
/// once at least `n` lines are there.
async fn logged_under(cluster: &Cluster, id: &str, n: usize) -> Vec<String> {
    let uris = || -> Vec<String> {
        cluster
            .nginx()
            .access_log()
            .into_iter()
            .filter(|l| l.request_id == id)
            .map(|l| l.uri)
            .collect()
    };
    eventually(Duration::from_secs(5), || async { uris().len() >= n }).await;
    uris()
}

fn replica_logs(cluster: &Cluster) -> String {
    (0..cluster.replica_count())
        .map(|i| cluster.replica_log(i))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_is_public_and_metrics_and_admin_are_not() {
    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options());
    let pair = login(cluster.addr(), "alice").await;

    // A GET answers the claims, and tokengate's headers, to the token's holder.
    let reply = call(
        &cluster,
        Method::GET,
        "/authenticate",
        Some(&pair.access),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let claims = reply.json();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["sid"], pair.session_id.as_str());
    for claim in ["jti", "iat", "exp", "iss", "aud"] {
        assert!(!claims[claim].is_null(), "no {claim} in {claims}");
    }
    assert_eq!(reply.header("x-user-id"), Some("alice"));
    assert_eq!(reply.header("x-session-id"), Some(pair.session_id.as_str()));
    // Any method, as at the gate.
    for method in [Method::HEAD, Method::POST, Method::PUT] {
        let reply = call(
            &cluster,
            method.clone(),
            "/authenticate",
            Some(&pair.access),
            &[],
        )
        .await;
        assert_eq!(reply.status, 200, "{method}: {reply:?}");
    }
    // Scopes at the gate work here too.
    let reply = call(
        &cluster,
        Method::GET,
        "/authenticate?scope=admin",
        Some(&pair.access),
        &[],
    )
    .await;
    assert_eq!(reply.status, 403, "{reply:?}");

    // No token, a bad one: tokengate's own 401 and challenge.
    let reply = call(&cluster, Method::GET, "/authenticate", None, &[]).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="tokengate""#)
    );
    let reply = call(
        &cluster,
        Method::GET,
        "/authenticate",
        Some("not.a.token"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="tokengate", error="invalid_token""#)
    );

    // After a refresh the superseded token is refused here, and still logs
    // the session out (the original's load test does exactly that).
    let next = crate::Pair::from_reply("alice", &refresh(cluster.addr(), &pair.refresh).await);
    let old = call(
        &cluster,
        Method::GET,
        "/authenticate",
        Some(&pair.access),
        &[],
    )
    .await;
    assert_eq!(old.status, 401, "{old:?}");
    assert_eq!(logout(cluster.addr(), &pair.access).await.status, 200);
    let new = call(
        &cluster,
        Method::GET,
        "/authenticate",
        Some(&next.access),
        &[],
    )
    .await;
    assert_eq!(new.status, 401, "logged out: {new:?}");

    // A user's own sessions: listed and ended through the public port.
    let other = login(cluster.addr(), "bob").await;
    let second = login(cluster.addr(), "bob").await;
    let listed = call(&cluster, Method::GET, "/sessions", Some(&other.access), &[]).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(listed.json()["sessions"].as_array().map(Vec::len), Some(2));
    let path = format!("/sessions/{}", second.session_id);
    let ended = call(&cluster, Method::DELETE, &path, Some(&other.access), &[]).await;
    assert_eq!(ended.status, 200, "{ended:?}");
    let gone = call(
        &cluster,
        Method::GET,
        "/authenticate",
        Some(&second.access),
        &[],
    )
    .await;
    assert_eq!(gone.status, 401, "{gone:?}");

    // Private: nginx's JSON 404, whatever the token.
    for (method, path) in [
        (Method::GET, "/metrics"),
        (Method::GET, "/authenticate/x"),
        (Method::GET, "/admin/users/bob/sessions"),
        (Method::POST, "/admin/users/bob/logout"),
        (Method::GET, "/admin/tokens"),
    ] {
        let reply = call(&cluster, method.clone(), path, Some(&other.access), &[]).await;
        assert_eq!(reply.status, 404, "{method} {path}: {reply:?}");
        assert_eq!(reply.error(), "not_found", "{method} {path}");
    }
    // Served where operators (and Prometheus) reach them: each replica's admin
    // listener, never its public port.
    for index in 0..cluster.replica_count() {
        let metrics = client::get(cluster.replica_admin_addr(index), "/metrics").await;
        assert_eq!(metrics.status, 200, "replica {index}");
        let public = client::get(cluster.replica_addr(index), "/metrics").await;
        assert_eq!(public.status, 404, "replica {index}: {public:?}");
    }
}

/// The admin token of [`encoded_paths_never_reach_the_admin_api_through_nginx`].
const ADMIN_TOKEN: &str = "e2e-gate-admin-token-of-at-least-thirty-two-characters";

/// SPEC §11 "One path, one route": nginx decodes `%2F` and `%2e` and resolves
/// dot segments before it picks a location, then passes the path on as the
/// client sent it. `/admin/users/..%2F..%2Fsessions/sessions` is the public
/// `/sessions/sessions` to nginx; tokengate refuses it (`400`) rather than
/// routing it to the admin API, so even the real admin token gets nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_paths_never_reach_the_admin_api_through_nginx() {
    let _shared = EXCLUSIVE.read().await;
    let hash = tokengate::clients::hash_secret(ADMIN_TOKEN.as_bytes()).expect("hash");
    let cluster = start(options().config(&format!("admin:\n  token_hash: '{hash}'\n")));
    let bob = login(cluster.addr(), "bob").await;

    // The client sends these paths byte for byte (hyper normalises nothing);
    // each resolves, for nginx, to a public location or to none.
    for (method, path) in [
        (Method::GET, "/admin/users/..%2F..%2Fsessions/sessions"),
        (Method::GET, "/admin/users/bob%2F..%2F..%2F..%2Fsessions"),
        (Method::POST, "/admin/users/..%2f..%2fsessions/logout"),
        (Method::GET, "/admin/tokens/..%2F..%2Fsessions/x"),
        (Method::GET, "/sessions/%2e%2e/admin/tokens"),
        (Method::GET, "/sessions/..%2Fmetrics"),
        (Method::GET, "/metrics"),
        (Method::GET, "/admin/tokens"),
    ] {
        for token in [ADMIN_TOKEN, bob.access.as_str()] {
            let reply = call(&cluster, method.clone(), path, Some(token), &[]).await;
            match reply.status.as_u16() {
                400 => assert_eq!(reply.error(), "invalid_request", "{method} {path}"),
                404 => assert_eq!(reply.error(), "not_found", "{method} {path}"),
                _ => panic!("{method} {path} reached an endpoint: {reply:?}"),
            }
        }
    }
    // tokengate itself refused the one nginx routed to a replica.
    let reply = call(
        &cluster,
        Method::GET,
        "/admin/users/..%2F..%2Fsessions/sessions",
        Some(ADMIN_TOKEN),
        &[],
    )
    .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply.json()["error_description"]
            .as_str()
            .is_some_and(|why| why.contains("encoded slash")),
        "{reply:?}"
    );
    // bob's session was neither listed to nor ended by anyone.
    let sessions = client::with_bearer(
        cluster.replica_admin_addr(1),
        Method::GET,
        "/admin/users/bob/sessions",
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(sessions.status, 200, "{sessions:?}");
    assert_eq!(
        sessions.json()["sessions"].as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_id_in_nginx_tokengate_the_app_and_the_answer() {
    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options());
    let pair = login(cluster.addr(), "carol").await;
    let mine = [("x-request-id", CLIENT_ID)];

    // The API: tokengate answers back the id it got, which is nginx's (the
    // client's own was replaced), and nginx logged the request under it.
    let reply = call(&cluster, Method::GET, "/ping", None, &mine).await;
    assert_eq!(reply.status, 200);
    let id = nginx_id(&reply);
    assert_eq!(logged_under(&cluster, &id, 1).await, ["/ping"]);
    let again = nginx_id(&call(&cluster, Method::GET, "/ping", None, &mine).await);
    assert_ne!(again, id, "one id per request");

    // A protected request: the check and the app got the same id (the echo
    // app answers it back, as an app should), and nginx logged both under it.
    let reply = call(&cluster, Method::GET, "/app/ids", Some(&pair.access), &mine).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let id = nginx_id(&reply);
    let mut uris = logged_under(&cluster, &id, 2).await;
    uris.sort();
    assert_eq!(uris, ["/_tokengate/authenticate", "/app/ids"]);

    // A refused check: nginx's JSON 401 carries the id, and the replica that
    // refused the token logged it under the same id.
    let reply = call(
        &cluster,
        Method::GET,
        "/app/ids",
        Some("not.a.token"),
        &mine,
    )
    .await;
    assert_eq!(reply.status, 401, "{reply:?}");
    let refused = nginx_id(&reply);
    let mut uris = logged_under(&cluster, &refused, 2).await;
    uris.sort();
    assert_eq!(uris, ["/_tokengate/authenticate", "/app/ids"]);
    // And the public /authenticate, refused by tokengate itself.
    let reply = call(
        &cluster,
        Method::GET,
        "/authenticate",
        Some("not.a.token"),
        &mine,
    )
    .await;
    assert_eq!(reply.status, 401, "{reply:?}");
    let public = nginx_id(&reply);
    assert_eq!(logged_under(&cluster, &public, 1).await, ["/authenticate"]);
    for id in [&refused, &public] {
        let found = eventually(Duration::from_secs(5), || async {
            replica_logs(&cluster).lines().any(|l| {
                l.contains(&format!("request{{id={id}}}")) && l.contains("access token refused")
            })
        })
        .await;
        assert!(
            found,
            "no replica logged the refusal under {id}:\n{}",
            replica_logs(&cluster)
        );
    }
    assert!(
        !replica_logs(&cluster).contains(CLIENT_ID),
        "the client's own id reached a replica"
    );

    // Without authenticate.identity_headers the app gets none of the
    // conventional names, not even the ones the client sent.
    let reply = call(
        &cluster,
        Method::GET,
        "/app/x",
        Some(&pair.access),
        &SPOOFED,
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    for (_, echoed) in ECHO_HEADERS {
        assert_eq!(reply.header(echoed), None, "{echoed}: {reply:?}");
    }
}

const WEB_SECRET: &str = "web-client-secret";

/// A JSON POST through nginx as the trusted login client `web`.
async fn as_web(addr: std::net::SocketAddr, path: &str, body: &serde_json::Value) -> Reply {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("web:{WEB_SECRET}"));
    let request = request(Method::POST, path)
        .header("content-type", "application/json")
        .header("authorization", format!("Basic {basic}"))
        .body(client::json_body(body))
        .unwrap();
    client::send(addr, request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_reach_the_app_when_configured_and_cannot_be_spoofed() {
    let _shared = EXCLUSIVE.read().await;
    let web_hash = tokengate::clients::hash_secret(WEB_SECRET.as_bytes()).expect("hash");
    let config = format!(
        "authenticate:\n  identity_headers: \
         [x-auth-request-user, x-auth-request-email, remote-user, remote-email]\n\
         login:\n  clients:\n    - id: web\n      secret_hash: '{web_hash}'\n"
    );
    let cluster = start(options().config(&config));
    let addr = cluster.addr();

    // A password login's session: the user and the account's email, which
    // the trusted backend (login client `web`) vouched for at registration.
    let email = format!("ada-{}@example.com", uuid::Uuid::new_v4().simple());
    let password = "correct horse battery staple";
    let body = json!({ "email": email, "password": password, "email_verified": true });
    let reply = as_web(addr, "/register", &body).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let user_id = reply.field("user_id");
    let reply = post_json(
        addr,
        "/login",
        &json!({ "email": email, "password": password }),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let access = reply.field("access");

    let reply = call(&cluster, Method::GET, "/app/x", Some(&access), &SPOOFED).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["user_id"], user_id.as_str());
    for (sent, echoed) in ECHO_HEADERS {
        let want = if sent.ends_with("email") {
            &email
        } else {
            &user_id
        };
        assert_eq!(
            reply.header(echoed),
            Some(want.as_str()),
            "{sent}: {reply:?}"
        );
    }

    // Anyone may register any email: a self-registered one is never
    // asserted to the app, and the client's own email headers are dropped.
    let claimed = format!("ceo-{}@example.com", uuid::Uuid::new_v4().simple());
    let body = json!({ "email": claimed, "password": password });
    let reply = post_json(addr, "/register", &body).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let claimant = reply.field("user_id");
    let reply = post_json(addr, "/login", &body).await;
    let access = reply.field("access");
    let reply = call(&cluster, Method::GET, "/app/x", Some(&access), &SPOOFED).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    for (sent, echoed) in ECHO_HEADERS {
        let want = (!sent.ends_with("email")).then_some(claimant.as_str());
        assert_eq!(reply.header(echoed), want, "{sent}: {reply:?}");
    }

    // A session without an email (a user_id login): the email headers are
    // absent, the client's own dropped; the user ones replaced.
    let reply = as_web(addr, "/login", &json!({ "user_id": "bob" })).await;
    let pair = crate::Pair::from_reply("bob", &reply);
    let reply = call(
        &cluster,
        Method::GET,
        "/app/x",
        Some(&pair.access),
        &SPOOFED,
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    for (sent, echoed) in ECHO_HEADERS {
        let want = (!sent.ends_with("email")).then_some("bob");
        assert_eq!(reply.header(echoed), want, "{sent}: {reply:?}");
    }
}

/// SPEC §11: a protected app learns who the caller is, never the caller's
/// credentials: neither a session's access token nor a service's long-lived
/// API token reaches it. A location that opts in
/// (`$tokengate_app_authorization`, here `/forwarding/`) passes the client's
/// own `Authorization` on, and is protected all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_apps_get_the_identity_and_not_the_credentials_unless_opted_in() {
    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options());
    let session = login(cluster.addr(), "alice").await.access;
    let made = crate::api_tokens::cli(
        &cluster,
        &["create", "reporting", "--scopes", "reports:read"],
    );
    let api_token = made["token"].as_str().expect("the token").to_owned();

    for (path, token, user) in [
        ("/app/orders", &session, "alice"),
        ("/reports/daily", &api_token, "token:reporting"),
    ] {
        let reply = call(&cluster, Method::GET, path, Some(token), &[]).await;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        assert_eq!(reply.json()["user_id"], user, "the identity arrives");
        assert_eq!(
            reply.header("x-echo-authorization"),
            None,
            "{path}: the app got the client's Authorization"
        );
    }

    for token in [&session, &api_token] {
        let reply = call(&cluster, Method::GET, "/forwarding/x", Some(token), &[]).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let bearer = format!("Bearer {token}");
        assert_eq!(reply.header("x-echo-authorization"), Some(bearer.as_str()));
        assert!(!reply.json()["user_id"].as_str().unwrap_or("").is_empty());
    }
    let refused = call(&cluster, Method::GET, "/forwarding/x", Some("forged"), &[]).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    let missing = call(&cluster, Method::GET, "/forwarding/x", None, &[]).await;
    assert_eq!(missing.status, 401, "{missing:?}");
}
