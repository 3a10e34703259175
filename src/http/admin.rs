//! The management API, behind the admin token. API tokens (SPEC §9):
//! `POST /admin/tokens` creates one (the token is in this answer only),
//! `GET /admin/tokens[?all=true]` lists the active ones (or all),
//! `GET /admin/tokens/{id}` shows one, `POST /admin/tokens/{id}/revoke`
//! revokes one on every replica. Every action is logged with the token's id
//! and name, never the token. Users' sessions: `GET
//! /admin/users/{sub}/sessions` lists them and `POST
//! /admin/users/{sub}/logout` ends them all — for the admin token or a
//! trusted login client (HTTP Basic), the backend that logs users in.

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, StatusCode};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{ApiError, RequestBody, Response, attempt, bearer_token, body, json_response, now};
use crate::api_tokens::{self, NewApiToken, RevokedView, TokenView};
use crate::app::App;
use crate::db::DurableStore;
use crate::session::per_user::describe;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    ttl_days: Option<u32>,
}

/// `POST /admin/tokens {"name", "scopes", "ttl_days"}` → `201`.
pub async fn create(app: &App, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    authorize(app, &request).await?;
    let CreateRequest {
        name,
        scopes,
        ttl_days,
    } = body::parse(&body::read(request).await?)?;
    let new = NewApiToken {
        name,
        scopes,
        ttl_days,
    };
    let now = now();
    let (token, record) = api_tokens::create(&app.database, new, now).await?;
    tracing::info!(id = %record.id, name = record.name, scopes = record.scopes.join(" "),
        "admin: API token created");
    let mut body = serde_json::to_value(TokenView::new(&record, now))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    body["token"] = token.into();
    Ok(json_response(StatusCode::CREATED, &body))
}

/// `GET /admin/tokens[?all=true]`: active tokens, or all with `all=true`.
pub async fn list<B>(app: &App, request: &Request<B>) -> Result<Response, ApiError> {
    authorize(app, request).await?;
    let all = super::query_flag(request.uri(), "all");
    let now = now();
    let records = app.database.api_tokens(all, now).await?;
    tracing::info!(all, count = records.len(), "admin: API tokens listed");
    let tokens: Vec<TokenView> = records.iter().map(|r| TokenView::new(r, now)).collect();
    Ok(json_response(StatusCode::OK, &json!({ "tokens": tokens })))
}

/// `GET /admin/tokens/{id}`.
pub async fn show<B>(app: &App, request: &Request<B>) -> Result<Response, ApiError> {
    authorize(app, request).await?;
    let id = token_id(request.uri().path())?;
    let record = app
        .database
        .api_token(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tracing::info!(%id, name = record.name, "admin: API token shown");
    Ok(json_response(
        StatusCode::OK,
        &TokenView::new(&record, now()),
    ))
}

/// `POST /admin/tokens/{id}/revoke`: idempotent; answers the record and
/// `"cache": "cleared"`, or `"pending"` when the cache could not be told
/// yet (the revocation holds in the database; replicas retry the clear).
pub async fn revoke<B>(app: &App, request: &Request<B>) -> Result<Response, ApiError> {
    authorize(app, request).await?;
    let id = token_id(request.uri().path())?;
    let now = now();
    let revoked = app
        .revoke_api_token(id, now)
        .await?
        .ok_or(ApiError::NotFound)?;
    let view = RevokedView::new(&revoked, now);
    tracing::info!(%id, name = revoked.record.name, cache = ?view.cache, "admin: API token revoked");
    Ok(json_response(StatusCode::OK, &view))
}

/// `GET /admin/users/{sub}/sessions`.
pub async fn user_sessions<B>(app: &App, request: &Request<B>) -> Result<Response, ApiError> {
    authorize_for_users(app, request).await?;
    let sub = super::Route::id(request.uri().path()).ok_or(ApiError::NotFound)?;
    let sessions = app.sessions.sessions_of(&sub, now()).await?;
    tracing::info!(sub, count = sessions.len(), "admin: sessions listed");
    let sessions: Vec<_> = sessions.iter().map(|s| describe(s, None)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "sessions": sessions }),
    ))
}

/// `POST /admin/users/{sub}/logout`: `200 {"ended": N}`.
pub async fn logout_user<B>(app: &App, request: &Request<B>) -> Result<Response, ApiError> {
    authorize_for_users(app, request).await?;
    let sub = super::Route::id(request.uri().path()).ok_or(ApiError::NotFound)?;
    let ended = app.sessions.logout_user(&sub).await?;
    tracing::info!(sub, ended, "admin: every session of a user ended");
    Ok(json_response(StatusCode::OK, &json!({ "ended": ended })))
}

/// The admin token as `Bearer`, or a login client's HTTP Basic credentials.
async fn authorize_for_users<B>(app: &App, request: &Request<B>) -> Result<(), ApiError> {
    let authorization = request.headers().get(AUTHORIZATION);
    let is_basic = authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().get(..6))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("basic "));
    if is_basic {
        let attempt = attempt(app, request);
        let basic = authorization.map(HeaderValue::as_bytes);
        return Ok(app.authenticate_login_client(basic, attempt).await?);
    }
    authorize(app, request).await
}

/// The bearer token must be the admin token.
async fn authorize<B>(app: &App, request: &Request<B>) -> Result<(), ApiError> {
    let presented = bearer_token(request.headers())?;
    let attempt = attempt(app, request);
    app.authorize_admin(presented, attempt).await?;
    Ok(())
}

/// The `{id}` of `/admin/tokens/{id}[/revoke]`; not a uuid is not found.
fn token_id(path: &str) -> Result<Uuid, ApiError> {
    let id = super::Route::id(path).ok_or(ApiError::NotFound)?;
    Uuid::try_parse(&id).map_err(|_| ApiError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_path() {
        let id = Uuid::now_v7();
        assert_eq!(token_id(&format!("/admin/tokens/{id}")).unwrap(), id);
        assert_eq!(token_id(&format!("/admin/tokens/{id}/revoke")).unwrap(), id);
        assert!(token_id("/admin/tokens/not-a-uuid").is_err());
        assert!(token_id("/admin/tokens/").is_err());
    }
}
