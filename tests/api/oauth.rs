//! SPEC §6: the OAuth 2.0 token endpoint (both grants, every RFC 6749 §5.2
//! error, rate limits), introspection, revocation, verify, discovery, JWKS,
//! scopes at the gate and metrics — on two replicas, over both stores.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use serde_json::{Value, json};
use tokengate::config::{OAuthClient, Settings};

use crate::helpers::{Backend, Cluster, Replica};
use crate::support::client::{Reply, json_body, request};
use crate::{on_both_stores, on_redis_cluster};

on_both_stores!(
    client_credentials_with_basic_form_and_json,
    scope_is_down_scoped_against_the_client,
    refresh_token_grant_rotates_like_refresh,
    refresh_tokens_stay_with_their_client,
    a_refused_scope_request_rotates_nothing,
    a_grace_retry_never_widens_the_scope,
    every_token_endpoint_error,
    rate_limit_is_shared_by_replicas,
    introspection_tells_the_truth_on_every_replica,
    revocation_ends_sessions_everywhere,
    verify_answers_valid_or_not,
    scopes_are_checked_at_the_gate,
    discovery_and_jwks,
    metrics_count_requests_and_failures,
);

on_redis_cluster!(
    refresh_tokens_stay_with_their_client,
    rate_limit_is_shared_by_replicas,
    introspection_tells_the_truth_on_every_replica,
    revocation_ends_sessions_everywhere,
);

const BILLING: (&str, &str) = ("billing", "billing secret:+/ü");
pub const WORKER: (&str, &str) = ("worker", "worker-secret");
const LIMITED: (&str, &str) = ("limited", "limited-secret");

/// Argon2 hashes are slow on purpose: make them once per test binary.
pub fn clients() -> &'static [OAuthClient] {
    static CLIENTS: OnceLock<Vec<OAuthClient>> = OnceLock::new();
    CLIENTS.get_or_init(|| {
        let client =
            |(id, secret): (&str, &str), scopes: &[&str], refresh, rate_limit| OAuthClient {
                id: id.into(),
                secret_hash: tokengate::clients::hash_secret(secret.as_bytes()).unwrap(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                refresh_tokens: refresh,
                rate_limit,
            };
        vec![
            client(BILLING, &["read", "write"], false, 0),
            client(WORKER, &["jobs", "read"], true, 0),
            client(LIMITED, &[], false, 3),
        ]
    })
}

pub fn with_clients(settings: &mut Settings) {
    settings.oauth.clients = clients().to_vec();
}

async fn cluster(backend: Backend) -> Cluster {
    Cluster::start_with(backend, 2, with_clients).await
}

/// How a request authenticates its client.
#[derive(Clone, Copy)]
enum Auth {
    None,
    Basic((&'static str, &'static str)),
    Body((&'static str, &'static str)),
}

fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// POSTs form parameters to `path`, authenticating as `auth`.
async fn form(replica: &Replica, path: &str, auth: Auth, params: &[(&str, &str)]) -> Reply {
    let mut pairs: Vec<(&str, &str)> = params.to_vec();
    let mut builder =
        request(Method::POST, path).header("content-type", "application/x-www-form-urlencoded");
    match auth {
        Auth::None => {}
        Auth::Basic((id, secret)) => {
            // RFC 6749 §2.3.1: form-encode, then Basic.
            let credentials = format!("{}:{}", form_encode(id), form_encode(secret));
            builder = builder.header(
                "authorization",
                format!("Basic {}", STANDARD.encode(credentials)),
            );
        }
        Auth::Body((id, secret)) => {
            pairs.push(("client_id", id));
            pairs.push(("client_secret", secret));
        }
    }
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    replica.send(builder.body(body.into()).unwrap()).await
}

async fn token(replica: &Replica, auth: Auth, params: &[(&str, &str)]) -> Reply {
    form(replica, "/oauth/token", auth, params).await
}

async fn client_token(replica: &Replica, client: (&'static str, &'static str)) -> Value {
    let reply = token(
        replica,
        Auth::Basic(client),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.json()
}

fn claims(access: &str) -> Value {
    let payload = access.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn oauth_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.error(), code, "{:?}", reply.body);
}

async fn client_credentials_with_basic_form_and_json(backend: Backend) {
    let c = cluster(backend).await;
    let reply = token(
        c.a(),
        Auth::Basic(BILLING),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("pragma"), Some("no-cache"));
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "read write");
    assert!(
        body.get("refresh_token").is_none(),
        "billing gets no refresh token"
    );
    let access = body["access_token"].as_str().unwrap();
    let claims = claims(access);
    assert_eq!(claims["sub"], "billing");
    assert_eq!(claims["client_id"], "billing");
    assert_eq!(claims["scope"], "read write");

    let auth = c.b().authenticate(access).await;
    assert_eq!(auth.status, 200);
    // A client's session is never taken for a user named like it (SPEC §11).
    assert_eq!(auth.header("x-user-id"), Some("client:billing"));
    assert_eq!(
        auth.json()["sub"],
        "billing",
        "the JWT's sub stays the client id"
    );
    assert_eq!(auth.header("x-scope"), Some("read write"));

    let posted = token(
        c.b(),
        Auth::Body(BILLING),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(posted.status, 200);

    // JSON with the same names; no grant_type means client_credentials.
    let json = c
        .a()
        .send(
            request(Method::POST, "/token")
                .header("content-type", "application/json")
                .body(json_body(
                    &json!({"client_id": "worker", "client_secret": "worker-secret"}),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(json.status, 200, "{:?}", json.body);
    assert!(
        json.json()["refresh_token"].is_string(),
        "worker gets a refresh token"
    );
}

async fn scope_is_down_scoped_against_the_client(backend: Backend) {
    let c = cluster(backend).await;
    let read = token(
        c.a(),
        Auth::Basic(BILLING),
        &[("grant_type", "client_credentials"), ("scope", "read")],
    )
    .await;
    assert_eq!(read.json()["scope"], "read");
    assert_eq!(
        claims(read.json()["access_token"].as_str().unwrap())["scope"],
        "read"
    );
    let too_much = token(
        c.a(),
        Auth::Basic(BILLING),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "read admin"),
        ],
    )
    .await;
    oauth_error(&too_much, 400, "invalid_scope");
    let none = client_token(c.a(), LIMITED).await;
    assert!(
        none.get("scope").is_none(),
        "a client without scopes gets none"
    );
}

async fn refresh_token_grant_rotates_like_refresh(backend: Backend) {
    let c = cluster(backend).await;
    let first = client_token(c.a(), WORKER).await;
    let r0 = first["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |replica, presented: String| async move {
        token(
            replica,
            Auth::Basic(WORKER),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &presented),
            ],
        )
        .await
    };

    let second = refresh(c.b(), r0.clone()).await;
    assert_eq!(second.status, 200, "{:?}", second.body);
    let second = second.json();
    let r1 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r0);
    assert_eq!(second["scope"], "jobs read");
    let a1 = second["access_token"].as_str().unwrap().to_owned();
    assert!(c.a().accepts(&a1).await);
    assert!(!c.a().accepts(first["access_token"].as_str().unwrap()).await);

    // A retry within grace gets the same successor...
    let retry = refresh(c.a(), r0.clone()).await.json();
    assert_eq!(retry["refresh_token"], r1.as_str());
    assert_eq!(
        claims(retry["access_token"].as_str().unwrap())["jti"],
        claims(&a1)["jti"]
    );

    // ...until the successor is used: then reuse ends the session.
    let third = refresh(c.b(), r1.clone()).await;
    assert_eq!(third.status, 200);
    let a2 = third.json()["access_token"].as_str().unwrap().to_owned();
    oauth_error(&refresh(c.a(), r0).await, 400, "invalid_grant");
    assert!(!c.b().accepts(&a2).await, "the session ended");

    // Narrowing on refresh.
    let fresh = client_token(c.a(), WORKER).await;
    let narrowed = token(
        c.b(),
        Auth::Basic(WORKER),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", fresh["refresh_token"].as_str().unwrap()),
            ("scope", "jobs"),
        ],
    )
    .await;
    assert_eq!(narrowed.json()["scope"], "jobs");
}

async fn refresh_tokens_stay_with_their_client(backend: Backend) {
    let c = cluster(backend).await;
    let worker = client_token(c.a(), WORKER).await;
    let r0 = worker["refresh_token"].as_str().unwrap();
    // Another client may not use it, and trying changes nothing.
    let stolen = token(
        c.b(),
        Auth::Basic(BILLING),
        &[("grant_type", "refresh_token"), ("refresh_token", r0)],
    )
    .await;
    oauth_error(&stolen, 400, "unauthorized_client");
    let limited = token(
        c.b(),
        Auth::Basic(LIMITED),
        &[("grant_type", "refresh_token"), ("refresh_token", r0)],
    )
    .await;
    oauth_error(&limited, 400, "unauthorized_client");
    // /refresh is for /login sessions only; a client's session does not rotate there.
    assert_eq!(c.a().refresh(r0).await.status, 401);
    assert!(
        c.a()
            .accepts(worker["access_token"].as_str().unwrap())
            .await
    );
    // And a /login refresh token is no client's.
    let user = c.a().login(json!(1)).await;
    let foreign = token(
        c.b(),
        Auth::Basic(WORKER),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &user.refresh),
        ],
    )
    .await;
    oauth_error(&foreign, 400, "invalid_grant");
    assert!(c.a().accepts(&user.access).await);
    let own = token(
        c.b(),
        Auth::Basic(WORKER),
        &[("grant_type", "refresh_token"), ("refresh_token", r0)],
    )
    .await;
    assert_eq!(own.status, 200, "still the worker's to rotate");
}

async fn every_token_endpoint_error(backend: Backend) {
    let c = cluster(backend).await;
    let cc = [("grant_type", "client_credentials")];

    oauth_error(
        &token(c.a(), Auth::Basic(BILLING), &[]).await,
        400,
        "invalid_request",
    );
    oauth_error(
        &token(
            c.a(),
            Auth::Basic(WORKER),
            &[("grant_type", "refresh_token")],
        )
        .await,
        400,
        "invalid_request",
    );
    oauth_error(
        &token(
            c.a(),
            Auth::Basic(BILLING),
            &[
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
            ],
        )
        .await,
        400,
        "invalid_request",
    );
    let both = token(
        c.a(),
        Auth::Basic(BILLING),
        &[("grant_type", "client_credentials"), ("client_secret", "x")],
    )
    .await;
    oauth_error(&both, 400, "invalid_request");

    let wrong = token(c.a(), Auth::Basic(("billing", "wrong")), &cc).await;
    oauth_error(&wrong, 401, "invalid_client");
    assert!(
        wrong
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic")
    );
    oauth_error(
        &token(c.a(), Auth::Basic(("ghost", "x")), &cc).await,
        401,
        "invalid_client",
    );
    oauth_error(
        &token(c.a(), Auth::Body(("billing", "wrong")), &cc).await,
        401,
        "invalid_client",
    );
    oauth_error(&token(c.a(), Auth::None, &cc).await, 401, "invalid_client");

    let garbage = token(
        c.a(),
        Auth::Basic(WORKER),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "garbage"),
        ],
    )
    .await;
    oauth_error(&garbage, 400, "invalid_grant");
    for grant in [
        "password",
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ] {
        let reply = token(c.a(), Auth::Basic(BILLING), &[("grant_type", grant)]).await;
        oauth_error(&reply, 400, "unsupported_grant_type");
    }
    let bad_scope = token(
        c.a(),
        Auth::Basic(BILLING),
        &[("grant_type", "client_credentials"), ("scope", "delete")],
    )
    .await;
    oauth_error(&bad_scope, 400, "invalid_scope");

    let text = c
        .a()
        .send(
            request(Method::POST, "/oauth/token")
                .header("content-type", "text/plain")
                .body("grant_type=client_credentials".into())
                .unwrap(),
        )
        .await;
    assert_eq!(text.status, 415);
    let get = c.a().get("/oauth/token").await;
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
}

async fn rate_limit_is_shared_by_replicas(backend: Backend) {
    let c = cluster(backend).await;
    for i in 0..3 {
        client_token(&c.replicas[i % 2], LIMITED).await;
    }
    let limited = token(
        c.b(),
        Auth::Basic(LIMITED),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(limited.status, 429, "{:?}", limited.body);
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    limited.error();
    // Other clients are not affected, and a bad secret is not counted.
    client_token(c.a(), BILLING).await;
}

async fn introspect(replica: &Replica, auth: Auth, token: &str) -> Reply {
    form(replica, "/oauth/introspect", auth, &[("token", token)]).await
}

async fn introspection_tells_the_truth_on_every_replica(backend: Backend) {
    let c = cluster(backend).await;
    let issued = client_token(c.a(), WORKER).await;
    let access = issued["access_token"].as_str().unwrap();
    let refresh = issued["refresh_token"].as_str().unwrap();

    let live = introspect(c.b(), Auth::Basic(BILLING), access).await;
    assert_eq!(live.status, 200);
    let live = live.json();
    assert_eq!(live["active"], true);
    assert_eq!(live["token_type"], "Bearer");
    assert_eq!(live["sub"], "worker");
    assert_eq!(live["client_id"], "worker");
    assert_eq!(live["scope"], "jobs read");
    for field in ["exp", "iat", "iss", "aud", "jti", "sid"] {
        assert!(!live[field].is_null(), "{field} in {live}");
    }
    let live_refresh = introspect(c.a(), Auth::Body(BILLING), refresh).await.json();
    assert_eq!(live_refresh["active"], true);
    assert_eq!(live_refresh["token_type"], "refresh_token");
    assert_eq!(live_refresh["client_id"], "worker");
    assert_eq!(live_refresh["sid"], live["sid"]);

    let user = c.a().login(json!("eve")).await;
    let user_live = introspect(c.b(), Auth::Basic(BILLING), &user.access)
        .await
        .json();
    assert_eq!(user_live["active"], true);
    assert_eq!(user_live["sub"], "eve");
    assert!(user_live.get("client_id").is_none());

    assert_eq!(c.a().logout(access).await.status, 200);
    for token in [access, refresh, "garbage", &user.refresh[..10]] {
        let dead = introspect(c.b(), Auth::Basic(BILLING), token).await;
        assert_eq!(dead.status, 200);
        assert_eq!(dead.json(), json!({"active": false}), "{token}");
    }
    oauth_error(
        &introspect(c.a(), Auth::None, &user.access).await,
        401,
        "invalid_client",
    );
    oauth_error(
        &form(c.a(), "/oauth/introspect", Auth::Basic(BILLING), &[]).await,
        400,
        "invalid_request",
    );
}

async fn revocation_ends_sessions_everywhere(backend: Backend) {
    let c = cluster(backend).await;
    let revoke = |replica, auth, token: String| async move {
        form(
            replica,
            "/oauth/revoke",
            auth,
            &[("token", &token), ("token_type_hint", "access_token")],
        )
        .await
    };
    let issued = client_token(c.a(), WORKER).await;
    let access = issued["access_token"].as_str().unwrap().to_owned();
    let refresh = issued["refresh_token"].as_str().unwrap().to_owned();

    let foreign = revoke(c.b(), Auth::Basic(BILLING), access.clone()).await;
    oauth_error(&foreign, 400, "unauthorized_client");
    assert!(
        c.a().accepts(&access).await,
        "another client cannot revoke it"
    );

    let done = revoke(c.b(), Auth::Basic(WORKER), access.clone()).await;
    assert_eq!(done.status, 200);
    assert!(!c.a().accepts(&access).await);
    let again = revoke(c.a(), Auth::Basic(WORKER), refresh.clone()).await;
    assert_eq!(again.status, 200, "revoking a dead token is fine");
    assert_eq!(
        revoke(c.a(), Auth::Basic(WORKER), "garbage".into())
            .await
            .status,
        200
    );

    let second = client_token(c.a(), WORKER).await;
    let by_refresh = revoke(
        c.b(),
        Auth::Body(WORKER),
        second["refresh_token"].as_str().unwrap().into(),
    )
    .await;
    assert_eq!(by_refresh.status, 200);
    assert!(
        !c.a()
            .accepts(second["access_token"].as_str().unwrap())
            .await
    );
    oauth_error(
        &revoke(c.a(), Auth::None, access).await,
        401,
        "invalid_client",
    );
}

async fn verify_answers_valid_or_not(backend: Backend) {
    let c = cluster(backend).await;
    let pair = c.a().login(json!(5)).await;
    let valid = c
        .b()
        .post_json("/oauth/verify", &json!({"token": pair.access}))
        .await;
    assert_eq!(valid.status, 200);
    let valid = valid.json();
    assert_eq!(valid["valid"], true);
    assert_eq!(valid["claims"]["sub"], "5");
    assert_eq!(valid["claims"]["sid"], pair.session_id.as_str());
    for token in ["garbage", pair.refresh.as_str()] {
        let reply = c
            .a()
            .post_json("/oauth/verify", &json!({"token": token}))
            .await;
        assert_eq!(reply.json(), json!({"valid": false}));
    }
    assert_eq!(c.a().logout(&pair.access).await.status, 200);
    let revoked = c
        .b()
        .post_json("/oauth/verify", &json!({"token": pair.access}))
        .await;
    assert_eq!(revoked.json(), json!({"valid": false}));
    assert_eq!(
        c.a().post_json("/oauth/verify", &json!({})).await.status,
        400
    );
}

async fn scopes_are_checked_at_the_gate(backend: Backend) {
    let c = cluster(backend).await;
    let access = client_token(c.a(), BILLING).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = c.b();
    let gate = |query: &'static str, token: String| async move {
        b.send(
            request(Method::GET, &format!("/authenticate{query}"))
                .header("authorization", format!("Bearer {token}"))
                .body(Default::default())
                .unwrap(),
        )
        .await
    };
    for query in [
        "?scope=read",
        "?scope=read+write",
        "?scope=write%20read",
        "?scope=read&scope=write",
    ] {
        let ok = gate(query, access.clone()).await;
        assert_eq!(ok.status, 200, "{query}");
        assert_eq!(ok.header("x-scope"), Some("read write"));
    }
    let denied = gate("?scope=read+admin", access.clone()).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.error(), "insufficient_scope");
    assert_eq!(
        denied.header("www-authenticate"),
        Some(r#"Bearer realm="tokengate", error="insufficient_scope", scope="read admin""#)
    );
    let user = c.a().login(json!(1)).await;
    assert_eq!(gate("?scope=read", user.access.clone()).await.status, 403);
    let plain = gate("", user.access).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("x-scope"), Some(""));
    assert_eq!(
        gate("?scope=read", "garbage".into()).await.status,
        401,
        "401 before 403"
    );
}

async fn discovery_and_jwks(backend: Backend) {
    let c = cluster(backend).await;
    let reply = c
        .a()
        .send(
            request(Method::GET, "/.well-known/oauth-authorization-server")
                .header("host", "auth.example.com:4000")
                .header("x-forwarded-proto", "https")
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200);
    let meta = reply.json();
    assert_eq!(meta["issuer"], "tokengate");
    assert_eq!(
        meta["token_endpoint"],
        "https://auth.example.com:4000/oauth/token"
    );
    assert_eq!(
        meta["jwks_uri"],
        "https://auth.example.com:4000/.well-known/jwks.json"
    );
    assert_eq!(
        meta["introspection_endpoint"],
        "https://auth.example.com:4000/oauth/introspect"
    );
    assert_eq!(
        meta["revocation_endpoint"],
        "https://auth.example.com:4000/oauth/revoke"
    );
    assert_eq!(
        meta["grant_types_supported"],
        json!(["client_credentials", "refresh_token"])
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(meta["scopes_supported"], json!(["jobs", "read", "write"]));

    let configured = Cluster::start_with(backend, 1, |s| {
        s.oauth.public_url = "https://auth.example.com/".into();
    })
    .await;
    let meta = configured
        .a()
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert_eq!(
        meta["token_endpoint"],
        "https://auth.example.com/oauth/token"
    );

    let jwks = c.b().get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status, 200);
    assert_eq!(jwks.json(), json!({"keys": []}), "HS256 publishes no key");
}

async fn metrics_count_requests_and_failures(backend: Backend) {
    let c = cluster(backend).await;
    let pair = c.a().login(json!(1)).await;
    for _ in 0..3 {
        assert!(c.a().accepts(&pair.access).await);
    }
    assert!(!c.a().accepts("garbage").await);
    let text = String::from_utf8(c.a().get_admin("/metrics").await.body.to_vec()).unwrap();
    let value = |line_start: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        value(r#"tokengate_http_requests_total{route="/authenticate",status="200"}"#),
        3.0
    );
    assert_eq!(
        value(r#"tokengate_http_requests_total{route="/login",status="200"}"#),
        1.0
    );
    assert_eq!(
        value(r#"tokengate_auth_failures_total{reason="malformed"}"#),
        1.0
    );
    assert!(
        value(r#"tokengate_http_request_duration_seconds_count{route="/authenticate"}"#) >= 4.0
    );
    if backend == Backend::Redis {
        assert!(value("tokengate_redis_pool_max ") >= 1.0);
        assert!(value("tokengate_redis_pool_connections ") >= 1.0);
    }
    assert!(text.contains("tokengate_store_errors_total 0"), "{text}");
}

async fn a_refused_scope_request_rotates_nothing(backend: Backend) {
    // Strict rotation: had the refused request rotated, the retry would be theft.
    let c = Cluster::start_with(backend, 2, |s| {
        with_clients(s);
        s.auth.refresh_grace = std::time::Duration::ZERO;
    })
    .await;
    let issued = client_token(c.a(), WORKER).await;
    let r0 = issued["refresh_token"].as_str().unwrap();
    let wider = token(
        c.b(),
        Auth::Basic(WORKER),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", r0),
            ("scope", "jobs admin"),
        ],
    )
    .await;
    oauth_error(&wider, 400, "invalid_scope");
    // Allowed for the client, but more than this session was granted.
    let narrow_session = token(
        c.a(),
        Auth::Basic(WORKER),
        &[("grant_type", "client_credentials"), ("scope", "jobs")],
    )
    .await
    .json();
    let granted = narrow_session["refresh_token"].as_str().unwrap();
    let more = token(
        c.b(),
        Auth::Basic(WORKER),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", granted),
            ("scope", "jobs read"),
        ],
    )
    .await;
    oauth_error(&more, 400, "invalid_scope");
    let kept = token(
        c.a(),
        Auth::Basic(WORKER),
        &[("grant_type", "refresh_token"), ("refresh_token", granted)],
    )
    .await;
    assert_eq!(kept.status, 200, "{:?}", kept.body);
    assert_eq!(kept.json()["scope"], "jobs");
    let again = token(
        c.a(),
        Auth::Basic(WORKER),
        &[("grant_type", "refresh_token"), ("refresh_token", r0)],
    )
    .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
}

async fn a_grace_retry_never_widens_the_scope(backend: Backend) {
    let c = cluster(backend).await;
    let first = client_token(c.a(), WORKER).await;
    assert_eq!(first["scope"], "jobs read");
    let r0 = first["refresh_token"].as_str().unwrap().to_owned();
    let rotate = |replica, scope: Option<&'static str>| {
        let r0 = r0.clone();
        async move {
            let mut params = vec![("grant_type", "refresh_token"), ("refresh_token", &*r0)];
            if let Some(scope) = scope {
                params.push(("scope", scope));
            }
            token(replica, Auth::Basic(WORKER), &params).await
        }
    };
    let narrowed = rotate(c.a(), Some("read")).await;
    assert_eq!(narrowed.status, 200, "{:?}", narrowed.body);
    let narrowed = narrowed.json();
    assert_eq!(narrowed["scope"], "read");

    // A retry asking for more than the successor holds is refused...
    let wider = rotate(c.b(), Some("jobs read")).await;
    oauth_error(&wider, 400, "invalid_scope");
    // ...and changed nothing: retries get exactly the narrowed successor,
    // whether they name its scope or nothing at all.
    for scope in [Some("read"), None] {
        let retry = rotate(c.b(), scope).await;
        assert_eq!(retry.status, 200, "{scope:?}: {:?}", retry.body);
        let retry = retry.json();
        assert_eq!(retry["scope"], "read", "{scope:?}");
        assert_eq!(retry["refresh_token"], narrowed["refresh_token"]);
        assert_eq!(retry["access_token"], narrowed["access_token"]);
        assert_eq!(
            claims(retry["access_token"].as_str().unwrap())["scope"],
            "read"
        );
    }
    let access = narrowed["access_token"].as_str().unwrap();
    let at_gate = c
        .a()
        .send(
            request(Method::GET, "/authenticate?scope=jobs")
                .header("authorization", format!("Bearer {access}"))
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert_eq!(at_gate.status, 403, "the successor never gained jobs");
    // The narrowed successor rotates on, still within the session's grant.
    let next = token(
        c.a(),
        Auth::Basic(WORKER),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", narrowed["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(next.status, 200, "{:?}", next.body);
    assert_eq!(
        next.json()["scope"],
        "jobs read",
        "no scope named = the grant"
    );
}
