//! `POST /register {"email", "password"}` → `201 {"user_id"}` (SPEC §7). A
//! trusted login client (HTTP Basic) may also send `"email_verified": true`
//! (SPEC §11).

use http::header::AUTHORIZATION;
use http::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ErrorBody;
use super::{ApiError, RequestBody, Response, body, caller, json_response};
use crate::service::{Gate, Registration};

/// A new account.
#[derive(Deserialize, ToSchema)]
pub(super) struct RegisterRequest {
    /// Trimmed, compared case-insensitively.
    email: String,
    /// At least `users.password_min` characters, at most 1024 bytes.
    password: String,
    /// Only a trusted login client (HTTP Basic) may say so.
    #[serde(default)]
    email_verified: bool,
}

/// The new account.
#[derive(Serialize, ToSchema)]
pub(super) struct RegisteredBody {
    user_id: Uuid,
}

/// Creates an account.
///
/// Anyone may while `users.registration` is `open`; a trusted login client
/// (HTTP Basic) always may, and may say the email is verified.
#[utoipa::path(
    post,
    path = "/register",
    operation_id = "register",
    tag = "users",
    request_body(content = RegisterRequest),
    security(("login_client" = []), ()),
    responses(
        (status = 201, description = "Registered", body = RegisteredBody),
        (status = 400, description = "Malformed body, invalid email (`invalid_email`) or password (`invalid_password`)", body = ErrorBody),
        (status = 401, description = "Registration is closed and no trusted client authenticated, or `email_verified` without one (`invalid_client`)", body = ErrorBody),
        (status = 409, description = "The email is already registered (`email_taken`)", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address, or failed client checks", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "Session store or database unavailable", body = ErrorBody),
    )
)]
pub async fn handle(gate: &Gate, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let caller = caller(gate, &request);
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let bytes = body::read(request).await?;
    let account = || {
        let RegisterRequest {
            email,
            password,
            email_verified,
        } = body::parse(&bytes)?;
        Ok(Registration {
            email,
            password,
            email_verified,
        })
    };
    let user_id = gate
        .register(authorization.as_deref(), account, caller)
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &RegisteredBody { user_id },
    ))
}
