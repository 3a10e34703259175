//! `POST /logout`: ends the session of a bearer access token, or of the
//! refresh token in the body. Idempotent. With `{"all": true}` (or
//! `?all=true`) it ends every session of the token's user, on every
//! replica; that needs a current token and answers `{"ended": N}`.

use http::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::{ApiError, RequestBody, Response, bearer_token, body, json_response};
use crate::service::{Gate, Logout, ServiceError};

/// The session to end, by its refresh token (without a bearer token; with
/// one, only `all` is read).
#[derive(Deserialize, ToSchema)]
pub(super) struct LogoutRequest {
    /// A refresh token of the session, of any generation (`all` needs the
    /// current one).
    refresh: String,
    /// End every session of the token's user, on every replica.
    #[serde(default)]
    all: bool,
}

/// `{}`, or how many sessions `all` ended.
#[derive(Serialize, ToSchema)]
pub(super) struct LogoutBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    ended: Option<u64>,
}

/// Only `all` of a bearer logout's body; anything else there is ignored,
/// as it always was.
#[derive(Deserialize)]
struct Options {
    #[serde(default)]
    all: bool,
}

/// Ends a session.
///
/// The session of the bearer access token, or of the refresh token in the
/// body, on every replica at once. Idempotent: an already ended session is
/// `200` too. With `all`, every session of the token's user.
#[utoipa::path(
    post,
    path = "/logout",
    operation_id = "logout",
    tag = "sessions",
    params(("all" = Option<bool>, Query, description = "`true` (or `1`): end every session of the token's user")),
    request_body(content = Option<LogoutRequest>, description = "Required without a bearer token"),
    security(("bearer" = []), ()),
    responses(
        (status = 200, description = "Ended (`ended`: with `all`)", body = LogoutBody),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No token, or a bad signature, expired or malformed one; `all` with a superseded token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"tokengate\"` (with `error=\"invalid_token\"` for a refused access token)"))),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "Session store unavailable", body = ErrorBody),
    )
)]
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
    Ok(json_response(StatusCode::OK, &LogoutBody { ended }))
}
