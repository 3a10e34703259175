//! What a valid `/authenticate` tells the proxy besides `X-User-Id`: the
//! opt-in identity headers other gates answer with (oauth2-proxy's
//! `X-Auth-Request-*`, Authelia's `Remote-*`), and on every answer the
//! request's id.

use http::Method;
use serde_json::json;
use tokengate::api_tokens::NewApiToken;
use tokengate::config::{IdentityHeader, LoginClient};
use tokengate::db::Database;

use crate::helpers::{Backend, Cluster, Pair};
use crate::on_both_stores;
use crate::support::client;

const EMAIL: &str = "grace@example.com";
const PASSWORD: &str = "a long enough password";

const ALL: [IdentityHeader; 4] = [
    IdentityHeader::XAuthRequestUser,
    IdentityHeader::XAuthRequestEmail,
    IdentityHeader::RemoteUser,
    IdentityHeader::RemoteEmail,
];

/// `/register` (with the login client `web` when `trusted`) and a password
/// login on another replica; returns the user id and the pair.
async fn registered_and_logged_in(c: &Cluster, email: &str, trusted: bool) -> (String, Pair) {
    let mut builder =
        client::request(Method::POST, "/register").header("content-type", "application/json");
    if trusted {
        builder = builder.header("authorization", basic(WEB, WEB_SECRET));
    }
    let body = json!({"email": email, "password": PASSWORD, "email_verified": trusted});
    let registered = c
        .a()
        .send(builder.body(client::json_body(&body)).unwrap())
        .await;
    assert_eq!(registered.status, 201, "{:?}", registered.body);
    let user_id = registered.json()["user_id"].as_str().unwrap().to_owned();
    let login = c
        .b()
        .post_json(
            "/login",
            &json!({"email": format!("  {}", email.to_uppercase()), "password": PASSWORD}),
        )
        .await;
    (user_id, Pair::from_reply(&login))
}

const WEB: &str = "web";
const WEB_SECRET: &str = "web-client-secret";

fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    format!("Basic {encoded}")
}

async fn identity_headers_carry_the_user_and_a_verified_email(backend: Backend) {
    let c = Cluster::start_with(backend, 2, |s| {
        s.authenticate.identity_headers = ALL.to_vec();
        s.login.open = false;
        s.login.clients = vec![LoginClient {
            id: WEB.into(),
            secret_hash: tokengate::clients::hash_secret(WEB_SECRET.as_bytes()).unwrap(),
            ..LoginClient::default()
        }];
    })
    .await;
    // A trusted client vouched for this one's email.
    let (user_id, pair) = registered_and_logged_in(&c, EMAIL, true).await;
    assert_eq!(pair.claims()["email"], EMAIL, "normalized, signed in");
    assert_eq!(pair.claims()["email_verified"], true);

    // The email survives rotation: every access token of the session has it.
    let next = Pair::from_reply(&c.a().refresh(&pair.refresh).await);
    let reply = c.b().authenticate(&next.access).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-user-id"), Some(user_id.as_str()));
    assert_eq!(reply.header("x-auth-request-user"), Some(user_id.as_str()));
    assert_eq!(reply.header("remote-user"), Some(user_id.as_str()));
    assert_eq!(reply.header("x-auth-request-email"), Some(EMAIL));
    assert_eq!(reply.header("remote-email"), Some(EMAIL));
    assert_eq!(reply.json()["email"], EMAIL);
    assert_eq!(reply.json()["email_verified"], true);

    // Anyone may register any address: a self-registered email is signed
    // in as unverified, and never asserted to the apps.
    let (user_id, pair) = registered_and_logged_in(&c, "ceo@victim-corp.example", false).await;
    assert_eq!(pair.claims()["email_verified"], false);
    let next = Pair::from_reply(&c.b().refresh(&pair.refresh).await);
    let reply = c.a().authenticate(&next.access).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("remote-user"), Some(user_id.as_str()));
    assert_eq!(reply.header("x-auth-request-email"), None);
    assert_eq!(reply.header("remote-email"), None);

    // A trusted login by id has no email: the email headers are left out.
    let by_id = client::request(Method::POST, "/login")
        .header("content-type", "application/json")
        .header("authorization", basic(WEB, WEB_SECRET))
        .body(client::json_body(&json!({"user_id": "42"})))
        .unwrap();
    let by_id = Pair::from_reply(&c.a().send(by_id).await);
    let reply = c.b().authenticate(&by_id.access).await;
    assert_eq!(reply.header("remote-user"), Some("42"));
    assert_eq!(reply.header("x-auth-request-email"), None);
    assert_eq!(reply.header("remote-email"), None);
    assert!(reply.json().get("email").is_none());

    // An API token is `token:<name>` in the user headers too.
    let db = Database::open(&c.settings.database).unwrap();
    let new = NewApiToken {
        name: "reporting".into(),
        scopes: vec![],
        ttl_days: None,
    };
    let (token, _) = tokengate::api_tokens::create(&db, new, 1_700_000_000_000)
        .await
        .unwrap();
    let reply = c.a().authenticate(&token).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("remote-user"), Some("token:reporting"));
    assert_eq!(reply.header("x-auth-request-user"), Some("token:reporting"));
    assert_eq!(reply.header("remote-email"), None);
}

async fn identity_headers_are_off_by_default(backend: Backend) {
    let c = Cluster::start(backend, 1).await;
    let pair = c.a().login(json!("42")).await;
    let reply = c.a().authenticate(&pair.access).await;
    assert_eq!(reply.status, 200);
    for header in ALL {
        assert_eq!(reply.header(header.name()), None, "{}", header.name());
    }
}

async fn every_answer_carries_the_request_id(backend: Backend) {
    let c = Cluster::start(backend, 1).await;
    let pair = c.a().login(json!("42")).await;
    let with_id = |id: &str, path: &str| {
        client::request(Method::GET, path)
            .header("x-request-id", id)
            .header("authorization", format!("Bearer {}", pair.access))
            .body(http_body_util::Full::default())
            .unwrap()
    };
    // The proxy's id is kept, on success and on errors alike.
    for path in ["/authenticate", "/no/such/path", "/ping"] {
        let reply = c.a().send(with_id("nginx-3f2a.1:7_x", path)).await;
        assert_eq!(
            reply.header("x-request-id"),
            Some("nginx-3f2a.1:7_x"),
            "{path}"
        );
    }
    // Without one, or with one that could confuse a log line, a new one.
    let fresh = c.a().get("/ping").await;
    let fresh = fresh.header("x-request-id").unwrap().to_owned();
    assert_eq!(fresh.len(), 32);
    assert!(fresh.bytes().all(|b| b.is_ascii_hexdigit()));
    for bad in ["a b", &"x".repeat(129)] {
        let reply = c.a().send(with_id(bad, "/ping")).await;
        let id = reply.header("x-request-id").unwrap();
        assert_ne!(id, bad);
        assert_ne!(id, fresh, "each request its own");
        assert_eq!(id.len(), 32);
    }
}

on_both_stores!(
    identity_headers_carry_the_user_and_a_verified_email,
    identity_headers_are_off_by_default,
    every_answer_carries_the_request_id,
);
