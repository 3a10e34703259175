//! The caller's own sessions, with a current access token as `Bearer`:
//! `GET /sessions` lists them (the one asking is marked `current`), and
//! `DELETE /sessions/{sid}` ends one — on every replica at once.

use http::{Request, StatusCode};
use serde_json::json;
use uuid::Uuid;

use super::{ApiError, Response, Route, bearer_token, json_response};
use crate::service::{Gate, ServiceError};

/// `GET /sessions`.
pub async fn list<B>(gate: &Gate, request: &Request<B>) -> Result<Response, ApiError> {
    let token = bearer_token(request.headers())?.ok_or(ServiceError::MissingToken)?;
    let sessions = gate.own_sessions(token).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "sessions": sessions }),
    ))
}

/// `DELETE /sessions/{sid}`: `200 {}`; `404` if it is not one of the
/// caller's live sessions.
pub async fn end<B>(gate: &Gate, request: &Request<B>) -> Result<Response, ApiError> {
    let token = bearer_token(request.headers())?.ok_or(ServiceError::MissingToken)?;
    let sid = Route::id(request.uri().path())
        .and_then(|id| Uuid::try_parse(&id).ok())
        .ok_or(ServiceError::NotFound("no such session of yours"))?;
    gate.end_own_session(token, sid).await?;
    Ok(json_response(StatusCode::OK, &json!({})))
}
