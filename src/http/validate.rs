//! `POST /auth/validate {"token", "required_scopes"}` (SPEC §9): the check
//! services already call, in the shape their clients send. `200` whether or
//! not the token is valid — the answer is in the body; a store or database
//! outage is `503`.

use http::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, RequestBody, Response, body, caller, json_response};
use crate::service::{Gate, Validation};

#[derive(Deserialize)]
struct ValidateRequest {
    token: String,
    #[serde(default)]
    required_scopes: Vec<String>,
}

pub async fn handle(gate: &Gate, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let caller = caller(gate, &request);
    let ValidateRequest {
        token,
        required_scopes,
    } = body::parse(&body::read(request).await?)?;
    let body = match gate.validate(&token, &required_scopes, caller).await? {
        Validation::Valid(token) => json!({
            "valid": true,
            "scopes": token.scopes,
            "token_id": token.id,
            "name": token.name,
        }),
        Validation::MissingScope => json!({"valid": false, "error": "insufficient_scope"}),
        Validation::Invalid => json!({"valid": false}),
    };
    Ok(json_response(StatusCode::OK, &body))
}
