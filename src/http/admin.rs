//! The management API of API tokens (SPEC §9), behind the admin token:
//! `POST /admin/tokens` creates one (the token is in this answer only),
//! `GET /admin/tokens[?all=true]` lists the active ones (or all),
//! `GET /admin/tokens/{id}` shows one, `POST /admin/tokens/{id}/revoke`
//! revokes one on every replica. Every action is logged with the token's id
//! and name, never the token.

use http::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{ApiError, RequestBody, Response, attempt, bearer_token, body, json_response, now};
use crate::api_tokens::{self, NewApiToken, TokenView};
use crate::app::App;
use crate::db::DurableStore;

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
    let all = form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .any(|(key, value)| key == "all" && matches!(&*value, "true" | "1"));
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

/// `POST /admin/tokens/{id}/revoke`: idempotent; answers the record.
pub async fn revoke<B>(app: &App, request: &Request<B>) -> Result<Response, ApiError> {
    authorize(app, request).await?;
    let id = token_id(request.uri().path())?;
    let now = now();
    let record = app
        .revoke_api_token(id, now)
        .await?
        .ok_or(ApiError::NotFound)?;
    tracing::info!(%id, name = record.name, "admin: API token revoked");
    Ok(json_response(StatusCode::OK, &TokenView::new(&record, now)))
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
    let rest = path.strip_prefix("/admin/tokens/").unwrap_or_default();
    let id = rest.split('/').next().unwrap_or_default();
    Uuid::try_parse(id).map_err(|_| ApiError::NotFound)
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
