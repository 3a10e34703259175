//! The layer around a service that echoes what reached it: what passes,
//! what is refused and how, in tokengate's words. With a feed, API tokens
//! and gRPC callers in their own files.

mod api_tokens;
mod feed;
mod grpc;

use std::convert::Infallible;

use http::StatusCode;
use http::header::WWW_AUTHENTICATE;
use http_body_util::BodyExt;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use uuid::Uuid;

use super::*;
use crate::verifier::tests::{FakeJwks, SECRET, TestKey, hs256, hs256_header};

/// Claims of a token issued just now (the layer reads the real clock).
fn fresh(scope: Option<&str>) -> Value {
    let now = now_secs();
    let mut claims = json!({
        "iss": "tokengate", "aud": "tokengate", "sub": "42",
        "iat": now, "exp": now + 900,
        "jti": Uuid::new_v4(), "sid": Uuid::new_v4(),
    });
    if let Some(scope) = scope {
        claims["scope"] = scope.into();
    }
    claims
}

struct Reply {
    status: StatusCode,
    challenge: Option<String>,
    body: Value,
}

/// One request with `authorization` through `layer` to an echo service.
async fn call(layer: AuthLayer, authorization: Option<&str>) -> Reply {
    let mut request = Request::builder().uri("/orders");
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    call_with(layer, request.body(()).unwrap()).await
}

/// `request` through `layer` to a service that echoes what reached it:
/// the claims of an access token, the name of an API token.
async fn call_with(layer: AuthLayer, request: Request<()>) -> Reply {
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|request: Request<()>| async move {
                let claims = request.extensions().get::<Claims>().cloned();
                let mut body = json!({
                    "sub": claims.as_ref().map(|c| c.sub.clone()),
                    "scopes": claims.map(|c| c.scopes),
                });
                if let Some(api) = request.extensions().get::<ApiTokenClaims>() {
                    body["token_name"] = api.name.clone().into();
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body.to_string()))))
            }));
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        challenge,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn secret_layer() -> AuthLayer {
    AuthLayer::new(Verifier::hs256(SECRET).build().unwrap())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn a_valid_token_reaches_the_service_with_its_claims() {
    let token = hs256(&hs256_header(), &fresh(Some("orders:read")), SECRET);
    for authorization in [bearer(&token), format!("bearer   {token} ")] {
        let reply = call(secret_layer(), Some(&authorization)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, json!({"sub": "42", "scopes": ["orders:read"]}));
    }
}

#[tokio::test]
async fn no_token_is_401_with_the_bare_challenge() {
    for authorization in [
        None,
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer"),
        Some("Bearer  "),
    ] {
        let reply = call(secret_layer(), authorization).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(
            reply.challenge.as_deref(),
            Some(r#"Bearer realm="tokengate""#)
        );
        assert_eq!(reply.body["error"], "invalid_token");
        assert!(reply.body["error_description"].is_string());
    }
}

#[tokio::test]
async fn a_refused_token_is_401_invalid_token_and_never_reaches_the_service() {
    let expired = {
        let mut c = fresh(None);
        c["exp"] = (now_secs() - 3600).into();
        hs256(&hs256_header(), &c, SECRET)
    };
    let wrong_typ = hs256(&json!({"alg": "HS256", "typ": "JWT"}), &fresh(None), SECRET);
    let hostile = [
        "not-a-jwt".to_owned(),
        // A refresh token: opaque, never a JWT.
        "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4".to_owned(),
        expired,
        wrong_typ,
        "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiI0MiJ9.".to_owned(),
    ];
    for token in hostile {
        let reply = call(secret_layer(), Some(&bearer(&token))).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(
            reply.challenge.as_deref(),
            Some(r#"Bearer realm="tokengate", error="invalid_token""#)
        );
        assert_eq!(reply.body["error"], "invalid_token");
        assert!(
            reply.body.get("sub").is_none(),
            "the service was not called"
        );
    }
}

#[tokio::test]
async fn a_missing_scope_is_403_naming_every_required_scope() {
    let layer = secret_layer()
        .require_scopes(["orders:read"])
        .unwrap()
        .require_scopes(["orders:write", "orders:read"])
        .unwrap();
    let read_only = hs256(&hs256_header(), &fresh(Some("orders:read")), SECRET);
    let reply = call(layer.clone(), Some(&bearer(&read_only))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.challenge.as_deref(),
        Some(
            r#"Bearer realm="tokengate", error="insufficient_scope", scope="orders:read orders:write""#
        )
    );
    assert_eq!(reply.body["error"], "insufficient_scope");
    let both = hs256(
        &hs256_header(),
        &fresh(Some("orders:write profile orders:read")),
        SECRET,
    );
    assert_eq!(
        call(layer, Some(&bearer(&both))).await.status,
        StatusCode::OK
    );
}

#[test]
fn a_scope_that_cannot_be_named_in_a_challenge_is_refused_at_build() {
    for bad in ["", "a b", "quote\"", "é"] {
        assert_eq!(
            secret_layer().require_scopes([bad]).unwrap_err(),
            InvalidScope(bad.to_owned())
        );
    }
}

#[tokio::test]
async fn the_first_token_of_a_key_waits_for_the_jwks_then_passes() {
    let key = TestKey::new("k1", Algorithm::EdDSA);
    let jwks = FakeJwks::serving(&[&key]);
    let layer = AuthLayer::new(Verifier::jwks_from(jwks.clone()).build().unwrap());
    let token = key.sign(&fresh(None));
    for _ in 0..3 {
        assert_eq!(
            call(layer.clone(), Some(&bearer(&token))).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(jwks.fetches(), 1);
    let stranger = TestKey::new("k2", Algorithm::EdDSA).sign(&fresh(None));
    let reply = call(layer, Some(&bearer(&stranger))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(jwks.fetches(), 1, "within 10 s of the last fetch");
}

#[tokio::test]
async fn keys_that_cannot_be_fetched_are_503_not_401() {
    let jwks = FakeJwks::default();
    jwks.fail();
    let layer = AuthLayer::new(Verifier::jwks_from(jwks).build().unwrap());
    let token = TestKey::new("k1", Algorithm::EdDSA).sign(&fresh(None));
    let reply = call(layer, Some(&bearer(&token))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["error"], "temporarily_unavailable");
    assert_eq!(reply.challenge, None);
}
