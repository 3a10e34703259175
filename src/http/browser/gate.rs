//! `/oauth2/auth` (alias `/api/authz/auth-request`): the gate for browsers,
//! as `/authenticate` is for tokens — one store round trip, identity in
//! headers, and never a `3xx` (nginx's `auth_request` turns one into a
//! `500`): a browser to send to the sign-in page is a `401` whose
//! `Location` nginx redirects to (`error_page 401 =302 $redirect`). No
//! `Set-Cookie` here: the idle clock slides in the store.
//! Also `/oauth2/userinfo` and `/oauth2/start`, as oauth2-proxy has them.

use bytes::Bytes;
use http::header::LOCATION;
use http::{HeaderValue, Request, StatusCode};
use serde::Serialize;
use uuid::Uuid;

use super::redirect::{original_url, sign_in_location};
use super::{cookie, query_param, sign_in_url, to};
use crate::http::{ApiError, Response, caller, json_bytes_response, json_response};
use crate::service::{Gate, ServiceError};

/// The gate. `?require=otp`: only a session signed in with a one-time code
/// passes (`403 second_factor_required` otherwise).
pub(super) async fn auth<B>(gate: &Gate, request: &Request<B>) -> Result<Response, ApiError> {
    let settings = gate.cookie_settings();
    let require_otp = request.uri().query().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "require" && v == "otp")
    });
    let answer = match cookie::session(request.headers(), settings) {
        None => Err(ServiceError::MissingToken),
        Some(value) => {
            gate.browser_session(value, require_otp, caller(gate, request))
                .await
        }
    };
    let identity = match answer {
        Ok(identity) => identity,
        Err(refused @ (ServiceError::MissingToken | ServiceError::InvalidToken(_))) => {
            // Counted as /authenticate counts its refusals.
            gate.count_failure(&refused);
            return Ok(to_sign_in(gate, request));
        }
        Err(other) => return Err(other.into()),
    };
    let malformed = |_| ServiceError::Internal("an identity is not header-safe".into());
    let user = HeaderValue::try_from(identity.subject.sub.as_str()).map_err(malformed)?;
    let mut response = json_bytes_response(StatusCode::OK, Bytes::new());
    let out = response.headers_mut();
    let email = identity.subject.verified_email();
    crate::http::authenticate::identity_headers(out, gate, &user, email);
    let sid = HeaderValue::try_from(identity.sid.to_string()).map_err(malformed)?;
    out.insert("x-session-id", sid);
    out.insert("x-user-id", user);
    out.insert("x-scope", HeaderValue::from_static(""));
    out.insert(
        "x-auth-request-amr",
        HeaderValue::try_from(identity.amr.as_str()).map_err(malformed)?,
    );
    Ok(response)
}

/// `401` with where to sign in: the original URL (from a trusted proxy
/// only) as `rd`.
fn to_sign_in<B>(gate: &Gate, request: &Request<B>) -> Response {
    let original = gate
        .is_trusted_proxy(crate::http::peer(request))
        .then(|| original_url(request.headers()))
        .flatten();
    let location = sign_in_location(gate.cookie_settings(), original.as_deref());
    let mut response = json_response(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({
            "error": "invalid_token",
            "error_description": "sign in to continue",
        }),
    );
    if let Ok(location) = HeaderValue::try_from(location) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

/// Who is signed in, as JSON (for pages' scripts and apps).
#[derive(Serialize)]
struct UserInfo<'a> {
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    email_verified: bool,
    session_id: Uuid,
    amr: Vec<&'a str>,
}

pub(super) async fn userinfo<B>(gate: &Gate, request: &Request<B>) -> Result<Response, ApiError> {
    let identity = super::signed_in(gate, request)
        .await?
        .ok_or(ServiceError::MissingToken)?;
    Ok(json_response(
        StatusCode::OK,
        &UserInfo {
            user: &identity.subject.sub,
            email: identity.subject.email.as_deref(),
            email_verified: identity.subject.email_verified,
            session_id: identity.sid,
            amr: identity.amr.split(' ').collect(),
        },
    ))
}

/// `/oauth2/start?rd=`: on to the sign-in page, `rd` kept (checked there).
pub(super) fn start<B>(request: &Request<B>) -> Response {
    let rd = query_param(request.uri(), "rd").unwrap_or_default();
    to(StatusCode::FOUND, &sign_in_url(&rd))
}
