//! `/authenticate` (any method): the nginx `auth_request` target. Local JWT
//! verification, then one store round trip; identity goes back in headers.

use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;

use super::{ApiError, Response, bearer_token, json_response, now};
use crate::app::App;
use crate::tokens::Rejection;

pub async fn handle(app: &App, headers: &HeaderMap) -> Result<Response, ApiError> {
    let token = bearer_token(headers)?.ok_or(ApiError::MissingToken)?;
    let claims = app.sessions.authenticate(token, now()).await?;
    // `sub` is printable by construction at login, but a token signed with
    // our key elsewhere might not be: refuse rather than fail.
    let user = HeaderValue::from_bytes(claims.sub.as_bytes())
        .map_err(|_| ApiError::InvalidToken(Rejection::Malformed))?;
    let session = HeaderValue::try_from(claims.sid.to_string())
        .map_err(|_| ApiError::InvalidToken(Rejection::Malformed))?;
    let mut response = json_response(
        StatusCode::OK,
        &json!({
            "sub": claims.sub,
            "sid": claims.sid,
            "jti": claims.jti,
            "iat": claims.iat,
            "exp": claims.exp,
            "iss": claims.iss,
            "aud": claims.aud,
        }),
    );
    let out = response.headers_mut();
    out.insert("x-user-id", user);
    out.insert("x-session-id", session);
    Ok(response)
}
