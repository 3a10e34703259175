//! `POST /logout`: ends the session of a bearer access token, or of the
//! refresh token in the body. Idempotent. With `{"all": true}` (or
//! `?all=true`) it ends every session of the token's user, on every
//! replica; that needs a current token (see [`crate::session::per_user`])
//! and answers `{"ended": N}`.

use http::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, RequestBody, Response, bearer_token, body, json_response, now};
use crate::app::App;
use crate::session::SessionError;
use crate::tokens::Rejection;

#[derive(Deserialize)]
struct LogoutRequest {
    refresh: String,
    #[serde(default)]
    all: bool,
}

/// Only `all` of a bearer logout's body; anything else there is ignored,
/// as it always was.
#[derive(Deserialize)]
struct Options {
    #[serde(default)]
    all: bool,
}

pub async fn handle(app: &App, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let all_in_query = super::query_flag(request.uri(), "all");
    let now = now();
    let ended = if let Some(token) = bearer_token(request.headers())?.map(str::to_owned) {
        let all = all_in_query
            || body::read(request)
                .await
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Options>(&bytes).ok())
                .is_some_and(|options| options.all);
        if all {
            Some(app.sessions.logout_all_with_access(&token, now).await?)
        } else {
            app.sessions.logout_with_access(&token, now).await?;
            None
        }
    } else {
        let bytes = body::read(request).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::MissingToken);
        }
        let LogoutRequest { refresh, all } = body::parse(&bytes)?;
        let result = if all || all_in_query {
            app.sessions
                .logout_all_with_refresh(&refresh, now)
                .await
                .map(Some)
        } else {
            app.sessions
                .logout_with_refresh(&refresh)
                .await
                .map(|()| None)
        };
        result.map_err(|e| match e {
            // Logging out with a token we never minted (or, for all, one no
            // longer current): the token is the problem, not a grant.
            SessionError::InvalidGrant => ApiError::InvalidToken(Rejection::Malformed),
            other => other.into(),
        })?
    };
    let body = match ended {
        Some(ended) => {
            tracing::info!(ended, "every session of a user ended by the user");
            json!({ "ended": ended })
        }
        None => json!({}),
    };
    Ok(json_response(StatusCode::OK, &body))
}
