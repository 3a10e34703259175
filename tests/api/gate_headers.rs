//! What a valid `/authenticate` tells the proxy besides `X-User-Id`: the
//! opt-in identity headers other gates answer with (oauth2-proxy's
//! `X-Auth-Request-*`, Authelia's `Remote-*`), and on every answer the
//! request's id.

use http::Method;
use serde_json::json;
use tokengate::api_tokens::NewApiToken;
use tokengate::config::IdentityHeader;
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

async fn identity_headers_carry_the_user_and_the_accounts_email(backend: Backend) {
    let c = Cluster::start_with(backend, 2, |s| {
        s.authenticate.identity_headers = ALL.to_vec();
    })
    .await;
    let registered = c
        .a()
        .post_json("/register", &json!({"email": EMAIL, "password": PASSWORD}))
        .await;
    assert_eq!(registered.status, 201, "{:?}", registered.body);
    let user_id = registered.json()["user_id"].as_str().unwrap().to_owned();
    let login = c
        .b()
        .post_json(
            "/login",
            &json!({"email": "  Grace@Example.com", "password": PASSWORD}),
        )
        .await;
    let pair = Pair::from_reply(&login);
    assert_eq!(pair.claims()["email"], EMAIL, "normalized, signed in");

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

    // A trusted login by id has no email: the email headers are left out.
    let by_id = c.a().login(json!("42")).await;
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
    identity_headers_carry_the_user_and_the_accounts_email,
    identity_headers_are_off_by_default,
    every_answer_carries_the_request_id,
);
