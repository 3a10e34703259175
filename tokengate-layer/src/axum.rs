//! The verified [`Claims`] and [`ApiTokenClaims`] as axum extractors
//! (feature `axum`).
//!
//! The layer does the verifying; the extractor only takes what it left in
//! the request. On a route the layer does not cover there is nothing to
//! take, and the handler is refused with the same `401` as a request
//! without a token — a forgotten layer fails closed.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::Response;
use http::request::Parts;

use crate::api_tokens::ApiTokenClaims;
use crate::claims::Claims;
use crate::response::Refusal;

impl<S: Send + Sync> FromRequestParts<S> for Claims {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        extract(parts, "Claims").ok_or_else(refused)
    }
}

/// An API token's identity; on a route that also accepts access tokens,
/// take `Option<ApiTokenClaims>` and `Option<Claims>` and see which came.
impl<S: Send + Sync> FromRequestParts<S> for ApiTokenClaims {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        extract(parts, "ApiTokenClaims").ok_or_else(refused)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Claims {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Infallible> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for ApiTokenClaims {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Infallible> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

/// What the layer left in the request, if it admitted one of this kind.
fn extract<T: Clone + Send + Sync + 'static>(parts: &Parts, name: &str) -> Option<T> {
    let found = parts.extensions.get::<T>().cloned();
    if found.is_none() {
        tracing::warn!("{name} extracted on a route the tokengate layer did not admit it to");
    }
    found
}

/// Nothing to take: the same `401` as a request without a token, so a
/// forgotten layer fails closed.
fn refused() -> Response {
    Refusal::MissingToken
        .respond(false)
        .map(axum::body::Body::new)
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::get;
    use http::{Request, StatusCode, header};
    use serde_json::json;
    use tower::ServiceExt;
    use uuid::Uuid;

    use crate::verifier::now_secs;
    use crate::verifier::tests::{SECRET, hs256, hs256_header};
    use crate::{ApiTokenClaims, AuthLayer, Claims, Verifier};

    async fn whoami(claims: Claims) -> String {
        format!("{} {}", claims.sub, claims.scopes.join(","))
    }

    fn app() -> Router {
        let verifier = Verifier::hs256(SECRET).build().unwrap();
        Router::new()
            .route("/orders", get(whoami))
            .route_layer(
                AuthLayer::new(verifier)
                    .require_scopes(["orders:read"])
                    .unwrap(),
            )
            // Added after the layer: not covered by it.
            .route("/forgotten", get(whoami))
    }

    async fn get_with(path: &str, token: &str) -> (StatusCode, String) {
        let request = Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn token(scope: &str) -> String {
        let now = now_secs();
        let claims = json!({
            "iss": "tokengate", "aud": "tokengate", "sub": "42",
            "iat": now, "exp": now + 900, "scope": scope,
            "jti": Uuid::new_v4(), "sid": Uuid::new_v4(),
        });
        hs256(&hs256_header(), &claims, SECRET)
    }

    #[tokio::test]
    async fn the_handler_gets_the_claims_the_layer_verified() {
        assert_eq!(
            get_with("/orders", &token("orders:read")).await,
            (StatusCode::OK, "42 orders:read".to_owned())
        );
        assert_eq!(
            get_with("/orders", &token("profile")).await.0,
            StatusCode::FORBIDDEN
        );
    }

    #[tokio::test]
    async fn without_the_layer_the_extractor_refuses() {
        let (status, body) = get_with("/forgotten", &token("orders:read")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("invalid_token"), "{body}");
    }

    async fn who(access: Option<Claims>, api: Option<ApiTokenClaims>) -> String {
        match (access, api) {
            (Some(claims), None) => format!("access {}", claims.sub),
            (None, Some(token)) => format!("api {}", token.name),
            other => format!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_route_may_take_either_kind_of_token() {
        let validate = crate::testing::VerdictServer::start(
            200,
            r#"{"valid":true,"scopes":[],"token_id":"00000000-0000-0000-0000-000000000000","name":"billing"}"#,
        )
        .await;
        let verifier = Verifier::hs256(SECRET).build().unwrap();
        let app = Router::new().route("/who", get(who)).route_layer(
            AuthLayer::new(verifier)
                .api_tokens(validate.url("/auth/validate"))
                .unwrap(),
        );
        for (token, expected) in [
            ("tg_live_abc".to_owned(), "api billing"),
            (token(""), "access 42"),
        ] {
            let request = Request::get("/who")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let body = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .unwrap();
            assert_eq!(body, expected);
        }
    }
}
