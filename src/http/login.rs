//! `POST /login`: starts a new session, for a user who proves a password
//! (`{"email", "password"}`, SPEC §7) or for a `user_id` a trusted login
//! client vouches for (`{"user_id": 1 | "alice"}`, SPEC §2).

use http::{Request, StatusCode};
use serde::Deserialize;

use super::{
    ApiError, RequestBody, Response, attempt, body, json_response, now, token_pair::TokenPairBody,
};
use crate::app::App;
use crate::clients::Attempt;
use crate::session::TokenPair;

/// Longest accepted user id; it travels in every token and header.
const MAX_USER_ID_BYTES: usize = 255;

#[derive(Deserialize)]
struct LoginRequest {
    user_id: UserId,
}

#[derive(Deserialize)]
struct PasswordLogin {
    email: String,
    password: String,
}

/// Which kind of login a body asks for: any `email` or `password` field
/// makes it a password login (then both are required).
#[derive(Deserialize)]
struct Shape {
    email: Option<serde::de::IgnoredAny>,
    password: Option<serde::de::IgnoredAny>,
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
    let attempt = attempt(app, &request);
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let bytes = body::read(request).await?;
    let sub = match serde_json::from_slice::<Shape>(&bytes) {
        Ok(Shape { email, password }) if email.is_some() || password.is_some() => {
            let PasswordLogin { email, password } = body::parse(&bytes)?;
            return Ok(json_response(
                StatusCode::OK,
                &TokenPairBody::from(password_login(app, &email, &password, attempt).await?),
            ));
        }
        _ => trusted_login(app, authorization.as_deref(), attempt, &bytes).await?,
    };
    let pair = app.sessions.login(&sub, now()).await?;
    Ok(json_response(StatusCode::OK, &TokenPairBody::from(pair)))
}

/// A session for an email and password, also for gRPC `Login`.
pub(crate) async fn password_login(
    app: &App,
    email: &str,
    password: &str,
    attempt: Attempt,
) -> Result<TokenPair, ApiError> {
    let account = app
        .users
        .login(
            &app.database,
            app.sessions.store(),
            email,
            password,
            attempt,
        )
        .await?;
    let sub = account.id.to_string();
    Ok(app
        .sessions
        .login_account(&sub, account.email, account.email_verified, now())
        .await?)
}

/// `{"user_id"}` from a trusted login client (any caller while `/login` is
/// open, as decided at start-up).
async fn trusted_login(
    app: &App,
    authorization: Option<&[u8]>,
    attempt: Attempt,
    bytes: &[u8],
) -> Result<String, ApiError> {
    if !app.login_is_open() {
        app.authenticate_login_client(authorization, attempt)
            .await?;
    }
    let LoginRequest {
        user_id: UserId(sub),
    } = body::parse(bytes)?;
    check_user_id(&sub)?;
    Ok(sub)
}

/// The id becomes `sub` and the `X-User-Id` header: it must be printable,
/// and not look like an API token's or an OAuth client's identity
/// (`token:<name>`, `client:<id>`), so that an app behind the gate never
/// takes a user for a service (SPEC §11).
fn check_user_id(sub: &str) -> Result<(), ApiError> {
    if sub.is_empty() || sub.len() > MAX_USER_ID_BYTES || sub.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(format!(
            "user_id must be 1 to {MAX_USER_ID_BYTES} bytes without control characters"
        )));
    }
    for (prefix, names) in [
        (crate::api_tokens::SUBJECT_PREFIX, "API tokens"),
        (crate::tokens::CLIENT_PREFIX, "OAuth clients"),
    ] {
        if sub.starts_with(prefix) {
            return Err(ApiError::InvalidRequest(format!(
                "user_id may not start with {prefix:?}: that names {names}"
            )));
        }
    }
    Ok(())
}
