//! `POST /login {"user_id": 1 | "alice"}`: starts a new session.

use http::{Request, StatusCode};
use serde::Deserialize;

use super::{
    ApiError, RequestBody, Response, attempt, body, json_response, now, token_pair::TokenPairBody,
};
use crate::app::App;

/// Longest accepted user id; it travels in every token and header.
const MAX_USER_ID_BYTES: usize = 255;

#[derive(Deserialize)]
struct LoginRequest {
    user_id: UserId,
}

/// `user_id` as given: an integer or a string, kept as the string `sub`.
struct UserId(String);

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = UserId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E>(self, v: i64) -> Result<UserId, E> {
                Ok(UserId(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<UserId, E> {
                Ok(UserId(v.to_string()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<UserId, E> {
                Ok(UserId(v.to_owned()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

pub async fn handle(app: &App, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    if !app.login_clients.is_empty() {
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        app.authenticate_login_client(authorization, attempt(app, &request))
            .await?;
    }
    let LoginRequest {
        user_id: UserId(sub),
    } = body::parse(&body::read(request).await?)?;
    check_user_id(&sub)?;
    let pair = app.sessions.login(&sub, now()).await?;
    Ok(json_response(StatusCode::OK, &TokenPairBody::from(pair)))
}

/// The id becomes `sub` and the `X-User-Id` header: it must be printable.
fn check_user_id(sub: &str) -> Result<(), ApiError> {
    if sub.is_empty() || sub.len() > MAX_USER_ID_BYTES || sub.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(format!(
            "user_id must be 1 to {MAX_USER_ID_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}
