//! `POST /refresh {"refresh": "..."}`: rotates to the successor pair.

use http::{Request, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::{ApiError, RequestBody, Response, body, json_response, token_pair::TokenPairBody};
use crate::service::Gate;

/// A refresh token to rotate.
#[derive(Deserialize, ToSchema)]
pub(super) struct RefreshRequest {
    /// The session's current refresh token (or, within
    /// `auth.refresh_grace`, the one just rotated).
    pub refresh: String,
}

/// Rotates a refresh token to its successor pair.
///
/// Same `session_id`; the presented pair stops working on every replica.
/// Retries within `auth.refresh_grace` get the same successor; a rotated
/// token presented later ends the session.
#[utoipa::path(
    post,
    path = "/refresh",
    operation_id = "refresh",
    tag = "sessions",
    request_body(content = RefreshRequest),
    responses(
        (status = 200, description = "The successor pair", body = TokenPairBody),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Unknown, expired or malformed refresh token, or a reused one — then the session is ended (`invalid_grant`)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "Session store unavailable", body = ErrorBody),
    )
)]
pub async fn handle(gate: &Gate, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let RefreshRequest { refresh } = body::parse(&body::read(request).await?)?;
    let pair = gate.refresh(&refresh).await?;
    Ok(json_response(StatusCode::OK, &TokenPairBody::from(pair)))
}
