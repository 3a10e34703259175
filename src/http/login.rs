//! `POST /login`: starts a new session, for a user who proves a password
//! (`{"email", "password"}`, SPEC §7) or for a `user_id` a trusted login
//! client vouches for (`{"user_id": 1 | "alice"}`, SPEC §2).

use http::header::AUTHORIZATION;
use http::{Request, StatusCode};
use serde::Deserialize;
use utoipa::openapi::schema::{OneOfBuilder, Schema, Type};
use utoipa::openapi::{ObjectBuilder, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::error::ErrorBody;
use super::{
    ApiError, RequestBody, Response, body, caller, json_response, token_pair::TokenPairBody,
};
use crate::service::Gate;

/// A session for a user id, on the word of a trusted login client (HTTP
/// Basic).
#[derive(Deserialize, ToSchema)]
pub(super) struct LoginRequest {
    user_id: UserId,
}

/// A session for an account's email and password.
#[derive(Deserialize, ToSchema)]
pub(super) struct PasswordLogin {
    email: String,
    password: String,
}

/// What `/login` takes: one of the two.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // the schema only: bodies are told apart by `Shape`
pub(super) enum LoginBody {
    Trusted(LoginRequest),
    Password(PasswordLogin),
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

impl PartialSchema for UserId {
    fn schema() -> RefOr<Schema> {
        let of = |t| ObjectBuilder::new().schema_type(t).build();
        OneOfBuilder::new()
            .item(of(Type::Integer))
            .item(of(Type::String))
            .description(Some(
                "The user's id: an integer or a string of 1 to 255 bytes",
            ))
            .into()
    }
}

impl ToSchema for UserId {}

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

/// Starts a new session.
///
/// For an email and password, or for a `user_id` a trusted login client
/// vouches for (HTTP Basic; any caller while `/login` is open). Other
/// sessions of the user live on.
#[utoipa::path(
    post,
    path = "/login",
    operation_id = "login",
    tag = "sessions",
    request_body(content = LoginBody),
    security(("login_client" = []), ()),
    responses(
        (status = 200, description = "A new session's token pair", body = TokenPairBody),
        (status = 400, description = "Malformed body or user id", body = ErrorBody),
        (status = 401, description = "Unknown email or wrong password (`invalid_credentials`), or a `user_id` login without a trusted client (`invalid_client`)", body = ErrorBody),
        (status = 429, description = "Too many failures from this address or for this account", body = ErrorBody),
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
    let pair = match serde_json::from_slice::<Shape>(&bytes) {
        Ok(Shape { email, password }) if email.is_some() || password.is_some() => {
            let PasswordLogin { email, password } = body::parse(&bytes)?;
            gate.password_login(&email, &password, caller).await?
        }
        _ => {
            let user_id = || {
                let LoginRequest { user_id } = body::parse(&bytes)?;
                Ok(user_id.0)
            };
            gate.trusted_login(authorization.as_deref(), user_id, caller)
                .await?
        }
    };
    Ok(json_response(StatusCode::OK, &TokenPairBody::from(pair)))
}
