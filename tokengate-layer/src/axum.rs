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
        extract(parts, "Claims")
    }
}

/// An API token's identity; on a route that also accepts access tokens,
/// take `Option<ApiTokenClaims>` and `Option<Claims>` and see which came.
impl<S: Send + Sync> FromRequestParts<S> for ApiTokenClaims {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        extract(parts, "ApiTokenClaims")
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

fn extract<T: Clone + Send + Sync + 'static>(parts: &Parts, name: &str) -> Result<T, Response> {
    parts.extensions.get::<T>().cloned().ok_or_else(|| {
        tracing::warn!("{name} extracted on a route the tokengate layer did not admit it to");
        Refusal::MissingToken
            .respond(false)
            .map(axum::body::Body::new)
    })
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
    use crate::{AuthLayer, Claims, Verifier};

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
}
