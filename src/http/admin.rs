//! The management API, on the admin listener only. API tokens (SPEC §9),
//! behind the admin token: `POST /admin/tokens` creates one (the token is in
//! this answer only), `GET /admin/tokens[?all=true]` lists the active ones
//! (or all), `GET /admin/tokens/{id}` shows one, `POST
//! /admin/tokens/{id}/revoke` revokes one on every replica. Users' sessions:
//! `GET /admin/users/{sub}/sessions` lists them and `POST
//! /admin/users/{sub}/logout` ends them all — for the admin token or a
//! trusted login client (HTTP Basic), the backend that logs users in.

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, StatusCode};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{ApiError, RequestBody, Response, bearer_token, body, caller, json_response};
use crate::service::{Gate, NewApiToken, Operator, ServiceError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    ttl_days: Option<u32>,
}

/// `POST /admin/tokens {"name", "scopes", "ttl_days"}` → `201`.
pub async fn create(gate: &Gate, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let caller = caller(gate, &request);
    let admin = bearer_token(request.headers())?.map(str::to_owned);
    let bytes = body::read(request).await?;
    let new = || {
        let CreateRequest {
            name,
            scopes,
            ttl_days,
        } = body::parse(&bytes)?;
        Ok(NewApiToken {
            name,
            scopes,
            ttl_days,
        })
    };
    let created = gate.create_api_token(admin.as_deref(), new, caller).await?;
    let mut body =
        serde_json::to_value(created.view).map_err(|e| ServiceError::Internal(e.to_string()))?;
    body["token"] = created.token.into();
    Ok(json_response(StatusCode::CREATED, &body))
}

/// `GET /admin/tokens[?all=true]`: active tokens, or all with `all=true`.
pub async fn list<B>(gate: &Gate, request: &Request<B>) -> Result<Response, ApiError> {
    let all = super::query_flag(request.uri(), "all");
    let admin = bearer_token(request.headers())?;
    let tokens = gate.api_tokens(admin, all, caller(gate, request)).await?;
    Ok(json_response(StatusCode::OK, &json!({ "tokens": tokens })))
}

/// `GET /admin/tokens/{id}`.
pub async fn show<B>(gate: &Gate, request: &Request<B>) -> Result<Response, ApiError> {
    let admin = bearer_token(request.headers())?;
    let id = token_id(request.uri().path());
    let token = gate.api_token(admin, id, caller(gate, request)).await?;
    Ok(json_response(StatusCode::OK, &token))
}

/// `POST /admin/tokens/{id}/revoke`: idempotent; answers the record and
/// `"cache": "cleared"`, or `"pending"` when the cache could not be told
/// yet (the revocation holds in the database; replicas retry the clear).
pub async fn revoke<B>(gate: &Gate, request: &Request<B>) -> Result<Response, ApiError> {
    let admin = bearer_token(request.headers())?;
    let id = token_id(request.uri().path());
    let revoked = gate
        .revoke_api_token(admin, id, caller(gate, request))
        .await?;
    Ok(json_response(StatusCode::OK, &revoked))
}

/// `GET /admin/users/{sub}/sessions`.
pub async fn user_sessions<B>(gate: &Gate, request: &Request<B>) -> Result<Response, ApiError> {
    let sub = owner(request)?;
    let sessions = gate
        .user_sessions(operator(request)?, &sub, caller(gate, request))
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "sessions": sessions }),
    ))
}

/// `POST /admin/users/{sub}/logout`: `200 {"ended": N}`.
pub async fn logout_user<B>(gate: &Gate, request: &Request<B>) -> Result<Response, ApiError> {
    let sub = owner(request)?;
    let ended = gate
        .logout_user(operator(request)?, &sub, caller(gate, request))
        .await?;
    Ok(json_response(StatusCode::OK, &json!({ "ended": ended })))
}

/// The admin token as `Bearer`, or a login client's HTTP Basic credentials.
fn operator<B>(request: &Request<B>) -> Result<Operator<'_>, ApiError> {
    let authorization = request.headers().get(AUTHORIZATION);
    let is_basic = authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().get(..6))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("basic "));
    Ok(match authorization {
        Some(basic) if is_basic => Operator::LoginClient(HeaderValue::as_bytes(basic)),
        _ => Operator::Admin(bearer_token(request.headers())?),
    })
}

/// The `{sub}` of `/admin/users/{sub}/…`.
fn owner<B>(request: &Request<B>) -> Result<String, ApiError> {
    super::Route::id(request.uri().path()).ok_or(ApiError::NotFound)
}

/// The `{id}` of `/admin/tokens/{id}[/revoke]`; `None` if not a uuid (as
/// unknown as an unknown one).
fn token_id(path: &str) -> Option<Uuid> {
    let id = super::Route::id(path)?;
    Uuid::try_parse(&id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_path() {
        let id = Uuid::now_v7();
        assert_eq!(token_id(&format!("/admin/tokens/{id}")), Some(id));
        assert_eq!(token_id(&format!("/admin/tokens/{id}/revoke")), Some(id));
        assert!(token_id("/admin/tokens/not-a-uuid").is_none());
        assert!(token_id("/admin/tokens/").is_none());
    }
}
