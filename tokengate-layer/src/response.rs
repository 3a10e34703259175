//! The answers the layer gives instead of calling the service, shaped like
//! tokengate's own (SPEC §2): a JSON body `{"error", "error_description"}`
//! and the RFC 6750 `WWW-Authenticate` challenge.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::verifier::Rejection;

const BEARER_CHALLENGE: &str = r#"Bearer realm="tokengate""#;
const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer realm="tokengate", error="invalid_token""#;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

/// No bearer token in the request: `401` with the bare challenge.
pub(crate) fn missing_token() -> Response<Full<Bytes>> {
    let mut response = json(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "no access token given",
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(BEARER_CHALLENGE));
    response
}

/// A token was sent and refused: `401 invalid_token`, or `503` when the
/// keys to judge it could not be fetched (not the caller's fault).
pub(crate) fn refused(rejection: Rejection) -> Response<Full<Bytes>> {
    if rejection == Rejection::KeysUnavailable {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the token's signing keys cannot be fetched right now; retry shortly",
        );
    }
    let mut response = json(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "the access token is invalid or expired",
    );
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(INVALID_TOKEN_CHALLENGE),
    );
    response
}

/// A valid token without every scope the route requires: `403` naming them
/// all (`scope` is a space-separated list of RFC 6749 scope tokens, checked
/// when the layer was built, so it is a valid header value).
pub(crate) fn insufficient_scope(scope: &str) -> Response<Full<Bytes>> {
    let description = format!("the token lacks a required scope (needs {scope:?})");
    let mut response = json(StatusCode::FORBIDDEN, "insufficient_scope", &description);
    let challenge =
        format!(r#"Bearer realm="tokengate", error="insufficient_scope", scope="{scope}""#);
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

fn json(status: StatusCode, error: &str, error_description: &str) -> Response<Full<Bytes>> {
    // Two plain strings always serialize; `{}` keeps the shape JSON anyway.
    let body = serde_json::to_vec(&ErrorBody {
        error,
        error_description,
    })
    .unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
