//! API tokens (`tg_live_…`) through a counting `/auth/validate`.

use std::time::Duration;

use super::*;
use crate::ApiTokens;
use crate::testing::VerdictServer;

const API_TOKEN: &str = "tg_live_0123456789abcdef0123456789abcdef0123456";

fn valid(scopes: &[&str]) -> String {
    json!({
        "valid": true, "scopes": scopes, "token_id": Uuid::nil(), "name": "billing",
    })
    .to_string()
}

fn layer_for(server: &VerdictServer, ttl: Duration) -> AuthLayer {
    secret_layer().with_api_tokens(
        ApiTokens::builder(server.url("/auth/validate"))
            .ttl(ttl)
            .build()
            .unwrap(),
    )
}

#[tokio::test]
async fn a_valid_api_token_passes_and_its_verdict_is_reused() {
    let server = VerdictServer::start(200, &valid(&["orders:read"])).await;
    let layer = layer_for(&server, Duration::from_secs(60))
        .require_scopes(["orders:read"])
        .unwrap();
    for _ in 0..3 {
        let reply = call(layer.clone(), Some(&bearer(API_TOKEN))).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["token_name"], "billing");
        assert_eq!(reply.body["sub"], Value::Null, "no access-token claims");
    }
    assert_eq!(server.calls(), 1);
    let (head, body) = server.last();
    assert!(head.starts_with("POST /auth/validate "), "{head}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"token": API_TOKEN, "required_scopes": ["orders:read"]})
    );
}

#[tokio::test]
async fn an_invalid_api_token_is_401_and_that_too_is_reused() {
    let server = VerdictServer::start(200, r#"{"valid": false}"#).await;
    let layer = layer_for(&server, Duration::from_secs(60));
    for _ in 0..2 {
        let reply = call(layer.clone(), Some(&bearer(API_TOKEN))).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.body["error"], "invalid_token");
        assert_eq!(
            reply.challenge.as_deref(),
            Some(r#"Bearer realm="tokengate", error="invalid_token""#)
        );
    }
    assert_eq!(server.calls(), 1);
    // Another token is another question.
    let other = format!("{API_TOKEN}x");
    call(layer, Some(&bearer(&other))).await;
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn a_verdict_expires_after_its_ttl() {
    let server = VerdictServer::start(200, &valid(&[])).await;
    let layer = layer_for(&server, Duration::from_secs(1));
    assert_eq!(
        call(layer.clone(), Some(&bearer(API_TOKEN))).await.status,
        StatusCode::OK
    );
    server.reply(200, r#"{"valid": false}"#);
    assert_eq!(
        call(layer.clone(), Some(&bearer(API_TOKEN))).await.status,
        StatusCode::OK
    );
    // Revoked meanwhile: a TTL later, tokengate is asked again.
    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(1001)).await;
    tokio::time::resume();
    let reply = call(layer, Some(&bearer(API_TOKEN))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn missing_scopes_are_403_like_an_access_token() {
    let server =
        VerdictServer::start(200, r#"{"valid": false, "error": "insufficient_scope"}"#).await;
    let layer = layer_for(&server, Duration::from_secs(60))
        .require_scopes(["orders:write"])
        .unwrap();
    let reply = call(layer.clone(), Some(&bearer(API_TOKEN))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body["error"], "insufficient_scope");
    assert_eq!(
        reply.challenge.as_deref(),
        Some(r#"Bearer realm="tokengate", error="insufficient_scope", scope="orders:write""#)
    );
    // A "valid" verdict without the scope is refused all the same.
    let server = VerdictServer::start(200, &valid(&["orders:read"])).await;
    let layer = layer_for(&server, Duration::from_secs(60))
        .require_scopes(["orders:write"])
        .unwrap();
    assert_eq!(
        call(layer, Some(&bearer(API_TOKEN))).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn no_verdict_is_503_and_never_cached() {
    let server = VerdictServer::start(503, r#"{"error":"temporarily_unavailable"}"#).await;
    let layer = layer_for(&server, Duration::from_secs(60));
    for _ in 0..2 {
        let reply = call(layer.clone(), Some(&bearer(API_TOKEN))).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.body["error"], "temporarily_unavailable");
    }
    assert_eq!(server.calls(), 2);
    for garbage in ["not json", r#"{"valid": true}"#, ""] {
        server.reply(200, garbage);
        let reply = call(layer.clone(), Some(&bearer(API_TOKEN))).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{garbage:?}");
    }
    let nobody = crate::testing::closed_port().await;
    let layer = secret_layer()
        .api_tokens(format!("http://{nobody}/auth/validate"))
        .unwrap();
    let reply = call(layer, Some(&bearer(API_TOKEN))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn without_api_tokens_configured_they_are_refused_unasked() {
    let reply = call(secret_layer(), Some(&bearer(API_TOKEN))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["error"], "invalid_token");
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let server = VerdictServer::start(200, r#"{"valid": false}"#).await;
    let api_tokens = ApiTokens::builder(server.url("/auth/validate"))
        .ttl(Duration::from_secs(60))
        .max_entries(3)
        .build()
        .unwrap();
    let layer = secret_layer().with_api_tokens(api_tokens.clone());
    for i in 0..10 {
        call(layer.clone(), Some(&bearer(&format!("{API_TOKEN}{i}")))).await;
    }
    assert_eq!(server.calls(), 10);
    assert_eq!(api_tokens.cache_len(), 3);
    assert!(!format!("{api_tokens:?}").contains(API_TOKEN));
}
