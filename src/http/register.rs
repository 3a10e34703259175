//! `POST /register {"email", "password"}` → `201 {"user_id"}` (SPEC §7).
//! A trusted login client (HTTP Basic) may also send `"email_verified":
//! true` (SPEC §11); anyone else's registrations are limited per address.

use http::{Request, StatusCode};
use serde::Deserialize;

use super::{ApiError, RequestBody, Response, attempt, body, json_response, now};
use crate::app::App;
use crate::clients::{Attempt, ClientError};
use crate::config::Registration;
use crate::users::Registrant;

/// Who registers, also for gRPC `Register`: a trusted login client when the
/// request carries one's HTTP Basic credentials (then they must be right),
/// else anyone — unless `users.registration: closed`, which lets only
/// trusted clients in. Checked before the request is read.
pub(crate) async fn registrant(
    app: &App,
    authorization: Option<&[u8]>,
    attempt: Attempt,
) -> Result<Registrant, ApiError> {
    let trusted = match app.authenticate_login_client(authorization, attempt).await {
        Ok(()) => true,
        Err(ClientError::Missing) if app.users.registration() == Registration::Open => false,
        Err(e) => return Err(e.into()),
    };
    Ok(Registrant {
        addr: attempt.addr,
        trusted,
        email_verified: false,
    })
}

/// Creates the account; returns its id.
pub(crate) async fn register(
    app: &App,
    by: Registrant,
    email: &str,
    password: &str,
) -> Result<uuid::Uuid, ApiError> {
    if by.email_verified && !by.trusted {
        return Err(ClientError::Missing.into());
    }
    let store = app.sessions.store();
    Ok(app
        .users
        .register(&app.database, store, email, password, by, now())
        .await?)
}

#[derive(Deserialize)]
struct RegisterRequest {
    email: String,
    password: String,
    #[serde(default)]
    email_verified: bool,
}

pub async fn handle(app: &App, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let by = registrant(app, authorization, attempt(app, &request)).await?;
    let RegisterRequest {
        email,
        password,
        email_verified,
    } = body::parse(&body::read(request).await?)?;
    let by = Registrant {
        email_verified,
        ..by
    };
    let user_id = register(app, by, &email, &password).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "user_id": user_id }),
    ))
}
