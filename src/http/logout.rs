//! `POST /logout`: ends the session of a bearer access token, or of the
//! refresh token in the body. Idempotent.

use http::{Request, StatusCode};
use serde_json::json;

use super::refresh::RefreshRequest;
use super::{ApiError, RequestBody, Response, bearer_token, body, json_response, now};
use crate::app::App;
use crate::session::SessionError;
use crate::tokens::Rejection;

pub async fn handle(app: &App, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    if let Some(token) = bearer_token(request.headers())? {
        app.sessions.logout_with_access(token, now()).await?;
    } else {
        let bytes = body::read(request).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::MissingToken);
        }
        let RefreshRequest { refresh } = body::parse(&bytes)?;
        app.sessions
            .logout_with_refresh(&refresh)
            .await
            .map_err(|e| match e {
                // Logging out with a token we never minted: the token is the
                // problem, not a grant.
                SessionError::InvalidGrant => ApiError::InvalidToken(Rejection::Malformed),
                other => other.into(),
            })?;
    }
    Ok(json_response(StatusCode::OK, &json!({})))
}
