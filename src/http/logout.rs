//! `POST /logout`: ends the session of a bearer access token, or of the
//! refresh token in the body. Idempotent. With `{"all": true}` (or
//! `?all=true`) it ends every session of the token's user, on every
//! replica; that needs a current token and answers `{"ended": N}`.

use http::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, RequestBody, Response, bearer_token, body, json_response};
use crate::service::{Gate, Logout, ServiceError};

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

pub async fn handle(gate: &Gate, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let all_in_query = super::query_flag(request.uri(), "all");
    let ended = if let Some(token) = bearer_token(request.headers())?.map(str::to_owned) {
        let all = all_in_query
            || body::read(request)
                .await
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Options>(&bytes).ok())
                .is_some_and(|options| options.all);
        gate.logout(Logout::Access(&token), all).await?
    } else {
        let bytes = body::read(request).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ServiceError::MissingToken.into());
        }
        let LogoutRequest { refresh, all } = body::parse(&bytes)?;
        gate.logout(Logout::Refresh(&refresh), all || all_in_query)
            .await?
    };
    let body = match ended {
        Some(ended) => json!({ "ended": ended }),
        None => json!({}),
    };
    Ok(json_response(StatusCode::OK, &body))
}
