//! `POST /register {"email", "password"}` → `201 {"user_id"}` (SPEC §7).

use http::{Request, StatusCode};
use serde::Deserialize;

use super::{ApiError, RequestBody, Response, attempt, body, json_response, now};
use crate::app::App;
use crate::clients::Attempt;
use crate::config::Registration;

/// Whether this caller may register users, also for gRPC `Register`: with
/// `users.registration: closed` only a trusted login client (HTTP Basic in
/// `authorization`) may; checked before the request is read.
pub(crate) async fn check_allowed(
    app: &App,
    authorization: Option<&[u8]>,
    attempt: Attempt,
) -> Result<(), ApiError> {
    if app.users.registration() == Registration::Closed {
        app.authenticate_login_client(authorization, attempt)
            .await?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct RegisterRequest {
    email: String,
    password: String,
}

pub async fn handle(app: &App, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    check_allowed(app, authorization, attempt(app, &request)).await?;
    let RegisterRequest { email, password } = body::parse(&body::read(request).await?)?;
    let user_id = app
        .users
        .register(&app.database, &email, &password, now())
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "user_id": user_id }),
    ))
}
