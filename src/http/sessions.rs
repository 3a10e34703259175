//! The caller's own sessions, with a current access token as `Bearer`:
//! `GET /sessions` lists them (the one asking is marked `current`), and
//! `DELETE /sessions/{sid}` ends one — on every replica at once.

use http::{Request, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ErrorBody;
use super::{ApiError, Response, Route, bearer_token, json_response};
use crate::service::{Gate, ServiceError, SessionView};

/// The caller's live sessions, oldest first.
#[derive(Serialize, ToSchema)]
pub(super) struct SessionsBody<'a> {
    sessions: Vec<SessionBody<'a>>,
}

/// A session; times in seconds since the epoch, like JWT claims.
// Fields in alphabetical order: the order clients have always seen.
#[derive(Serialize, ToSchema)]
pub(super) struct SessionBody<'a> {
    /// A browser's session (a cookie from `/oauth2/sign_in`), not a token
    /// holder's.
    browser: bool,
    /// The OAuth client it was issued to; `null` for `/login` sessions.
    #[schema(required = true)]
    client_id: Option<&'a str>,
    created_at: u64,
    /// Whether it is the session of the token that asked.
    current: bool,
    last_active: u64,
    session_id: Uuid,
}

impl<'a> From<&'a SessionView> for SessionBody<'a> {
    fn from(view: &'a SessionView) -> Self {
        Self {
            browser: view.browser,
            client_id: view.client_id.as_deref(),
            created_at: view.created_at,
            current: view.current,
            last_active: view.last_active,
            session_id: view.session_id,
        }
    }
}

/// `{}`: done.
#[derive(Serialize, ToSchema)]
pub(super) struct Empty {}

/// Lists the caller's live sessions.
///
/// The session of the token that asks is marked `current`.
#[utoipa::path(
    method(get, head),
    path = "/sessions",
    operation_id = "list_sessions",
    tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The sessions; the caller's own is `current`", body = SessionsBody),
        (status = 401, description = "No access token, or one that is not a live session's current token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"tokengate\"` (with `error=\"invalid_token\"` for a refused token)"))),
        (status = 503, description = "Session store unavailable", body = ErrorBody),
    )
)]
pub async fn list<B>(gate: &Gate, request: &Request<B>) -> Result<Response, ApiError> {
    let token = bearer_token(request.headers())?.ok_or(ServiceError::MissingToken)?;
    let sessions = gate.own_sessions(token).await?;
    let body = SessionsBody {
        sessions: sessions.iter().map(SessionBody::from).collect(),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// Ends one of the caller's sessions.
///
/// On every replica at once.
#[utoipa::path(
    delete,
    path = "/sessions/{sid}",
    operation_id = "end_session",
    tag = "sessions",
    params(("sid" = Uuid, Path, description = "The session's id (`session_id`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Ended", body = Empty),
        (status = 401, description = "No access token, or one that is not a live session's current token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"tokengate\"` (with `error=\"invalid_token\"` for a refused token)"))),
        (status = 404, description = "Not one of the caller's live sessions (`not_found`)", body = ErrorBody),
        (status = 503, description = "Session store unavailable", body = ErrorBody),
    )
)]
pub async fn end<B>(gate: &Gate, request: &Request<B>) -> Result<Response, ApiError> {
    let token = bearer_token(request.headers())?.ok_or(ServiceError::MissingToken)?;
    let sid = Route::id(request.uri().path())
        .and_then(|id| Uuid::try_parse(&id).ok())
        .ok_or(ServiceError::NotFound("no such session of yours"))?;
    gate.end_own_session(token, sid).await?;
    Ok(json_response(StatusCode::OK, &Empty {}))
}
