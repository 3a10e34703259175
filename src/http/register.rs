//! `POST /register {"email", "password"}` → `201 {"user_id"}` (SPEC §7). A
//! trusted login client (HTTP Basic) may also send `"email_verified": true`
//! (SPEC §11).

use http::header::AUTHORIZATION;
use http::{Request, StatusCode};
use serde::Deserialize;

use super::{ApiError, RequestBody, Response, body, caller, json_response};
use crate::service::{Gate, Registration};

#[derive(Deserialize)]
struct RegisterRequest {
    email: String,
    password: String,
    #[serde(default)]
    email_verified: bool,
}

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
        &serde_json::json!({ "user_id": user_id }),
    ))
}
