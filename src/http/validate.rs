//! `POST /auth/validate {"token", "required_scopes"}` (SPEC §9): the check
//! services already call, in the shape their clients send. `200` whether or
//! not the token is valid — the answer is in the body, and why a token was
//! refused is for the log only; a store or database outage is `503`.

use http::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, RequestBody, Response, attempt, body, json_response};
use crate::api_tokens::ApiTokenError;
use crate::app::App;

#[derive(Deserialize)]
struct ValidateRequest {
    token: String,
    #[serde(default)]
    required_scopes: Vec<String>,
}

pub async fn handle(app: &App, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let from = attempt(app, &request);
    let ValidateRequest {
        token,
        required_scopes,
    } = body::parse(&body::read(request).await?)?;
    let validated = app.validate_api_token(&token, from.addr, from.now).await;
    let body = match validated {
        Ok(token) => match token.missing(&required_scopes) {
            None => json!({
                "valid": true,
                "scopes": token.scopes,
                "token_id": token.id,
                "name": token.name,
            }),
            Some(missing) => {
                tracing::warn!(id = %token.id, name = token.name, missing,
                    "validate: API token lacks a scope");
                json!({"valid": false, "error": "insufficient_scope"})
            }
        },
        Err(ApiTokenError::Invalid(reason)) => {
            tracing::warn!(reason = reason.label(), "validate: API token refused");
            app.metrics.auth_failure(reason.label());
            json!({"valid": false})
        }
        Err(other) => return Err(other.into()),
    };
    Ok(json_response(StatusCode::OK, &body))
}
