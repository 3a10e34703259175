//! `POST /register {"email", "password"}` → `201 {"user_id"}` (SPEC §7).

use http::{Request, StatusCode};
use serde::Deserialize;

use super::{ApiError, RequestBody, Response, attempt, body, json_response, now};
use crate::app::App;
use crate::config::Registration;

#[derive(Deserialize)]
struct RegisterRequest {
    email: String,
    password: String,
}

pub async fn handle(app: &App, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    if app.users.registration() == Registration::Closed {
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        app.authenticate_login_client(authorization, attempt(app, &request))
            .await?;
    }
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
