//! The caller's own sessions, with a current access token as `Bearer`:
//! `GET /sessions` lists them (the one asking is marked `current`), and
//! `DELETE /sessions/{sid}` ends one — on every replica at once.

use http::{Request, StatusCode};
use serde_json::json;
use uuid::Uuid;

use super::{ApiError, Response, Route, bearer_token, json_response, now};
use crate::app::App;
use crate::session::per_user::describe;

/// `GET /sessions`.
pub async fn list<B>(app: &App, request: &Request<B>) -> Result<Response, ApiError> {
    let token = bearer_token(request.headers())?.ok_or(ApiError::MissingToken)?;
    let (claims, sessions) = app.sessions.own_sessions(token, now()).await?;
    let sessions: Vec<_> = sessions
        .iter()
        .map(|s| describe(s, Some(claims.sid)))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "sessions": sessions }),
    ))
}

/// `DELETE /sessions/{sid}`: `200 {}`; `404` if it is not one of the
/// caller's live sessions.
pub async fn end<B>(app: &App, request: &Request<B>) -> Result<Response, ApiError> {
    let token = bearer_token(request.headers())?.ok_or(ApiError::MissingToken)?;
    let sid = Route::id(request.uri().path())
        .and_then(|id| Uuid::try_parse(&id).ok())
        .ok_or(ApiError::UnknownSession)?;
    app.sessions.end_own_session(token, sid, now()).await?;
    tracing::info!(%sid, "session ended by its user");
    Ok(json_response(StatusCode::OK, &json!({})))
}
