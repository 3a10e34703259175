//! `POST /auth/validate {"token", "required_scopes"}` (SPEC §9): the check
//! services already call, in the shape their clients send. `200` whether or
//! not the token is valid — the answer is in the body; a store or database
//! outage is `503`.

use http::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ErrorBody;
use super::{ApiError, RequestBody, Response, body, caller, json_response};
use crate::service::{Gate, Validation};

/// An API token to check.
#[derive(Deserialize, ToSchema)]
pub(super) struct ValidateRequest {
    /// `tg_live_…`
    token: String,
    /// Scopes the token must all hold.
    #[serde(default)]
    required_scopes: Vec<String>,
}

/// The verdict: `{"valid": true, "scopes", "token_id", "name"}`, `{"valid":
/// false, "error": "insufficient_scope"}` or `{"valid": false}`.
// Fields in alphabetical order: the order clients have always seen.
#[derive(Serialize, ToSchema)]
pub(super) struct ValidationBody {
    /// `insufficient_scope`: valid, but without a required scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error: Option<&'static str>,
    /// The token's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    name: Option<String>,
    /// What the token may do.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    token_id: Option<Uuid>,
    valid: bool,
}

impl From<Validation> for ValidationBody {
    fn from(validation: Validation) -> Self {
        let invalid = |error| Self {
            error,
            name: None,
            scopes: None,
            token_id: None,
            valid: false,
        };
        match validation {
            Validation::Valid(token) => Self {
                error: None,
                name: Some(token.name),
                scopes: Some(token.scopes),
                token_id: Some(token.id),
                valid: true,
            },
            Validation::MissingScope => invalid(Some("insufficient_scope")),
            Validation::Invalid => invalid(None),
        }
    }
}

/// Checks an API token and its scopes.
///
/// `200` whether or not it is valid: the verdict is in the body.
#[utoipa::path(
    post,
    path = "/auth/validate",
    operation_id = "validate_api_token",
    tag = "api tokens",
    request_body(content = ValidateRequest),
    responses(
        (status = 200, description = "The verdict, valid or not", body = ValidationBody),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "Session store or database unavailable", body = ErrorBody),
    )
)]
pub async fn handle(gate: &Gate, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let caller = caller(gate, &request);
    let ValidateRequest {
        token,
        required_scopes,
    } = body::parse(&body::read(request).await?)?;
    let validation = gate.validate(&token, &required_scopes, caller).await?;
    Ok(json_response(
        StatusCode::OK,
        &ValidationBody::from(validation),
    ))
}
