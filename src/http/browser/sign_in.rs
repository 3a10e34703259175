//! `/oauth2/sign_in` and `/oauth2/sign_out`: the forms that start and end
//! a browser session. A sign-in sets the cookie and sends the browser on
//! to `rd` if it may go there (else to `/`); every refusal re-renders the
//! form with one message that does not say which part was wrong.

use http::header::{RETRY_AFTER, SET_COOKIE};
use http::{HeaderValue, Request, StatusCode};

use super::csrf::{self, Form};
use super::redirect::checked_rd;
use super::{
    EXPIRED, cookie, field, page_host, pages, query_param, see_other, sign_in_url, signed_in,
};
use crate::http::body::read_params;
use crate::http::{ApiError, RequestBody, Response, caller};
use crate::service::{Gate, ServiceError};

const WRONG: &str = "Wrong email, password or code.";

/// The sign-in form, with a CSRF cookie of its own (kept if it has one).
/// A browser already signed in goes straight on to `rd`.
pub(super) async fn show<B>(gate: &Gate, request: &Request<B>) -> Result<Response, ApiError> {
    let rd = query_param(request.uri(), "rd").unwrap_or_default();
    if signed_in(gate, request).await?.is_some() {
        return Ok(see_other(&onward(gate, request.headers(), &rd, "/")));
    }
    Ok(form(gate, request.headers(), StatusCode::OK, &rd, "", None))
}

/// The form, re-rendered with `error` if any: a fresh CSRF cookie when the
/// browser has none.
fn form(
    gate: &Gate,
    headers: &http::HeaderMap,
    status: StatusCode,
    rd: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    let settings = gate.cookie_settings();
    let (value, fresh) = match cookie::csrf(headers, settings) {
        Some(value) if value.len() >= 32 => (value.to_owned(), false),
        _ => (csrf::new_cookie_value(), true),
    };
    let token = csrf::token(value.as_bytes(), Form::SignIn);
    let mut response = pages::sign_in(status, rd, &token, email, error);
    if fresh {
        response
            .headers_mut()
            .append(SET_COOKIE, cookie::set_csrf(settings, &value));
    }
    response
}

/// Where a browser goes after a form: `rd` if allowed, else `fallback`.
fn onward(gate: &Gate, headers: &http::HeaderMap, rd: &str, fallback: &str) -> String {
    checked_rd(rd, page_host(headers), gate.cookie_settings())
        .unwrap_or_else(|| fallback.to_owned())
}

pub(super) async fn submit(
    gate: &Gate,
    request: Request<impl RequestBody>,
) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let who = caller(gate, &request);
    let params = read_params(request).await?;
    let field = |name| field(&params, name);
    let (email, rd) = (field("email"), field("rd"));
    let csrf_ok = csrf::same_origin(&headers)
        && cookie::csrf(&headers, gate.cookie_settings())
            .is_some_and(|key| csrf::verify(key.as_bytes(), Form::SignIn, field("csrf")));
    if !csrf_ok {
        tracing::warn!("sign-in form refused: cross-site or without its CSRF token");
        return Ok(form(
            gate,
            &headers,
            StatusCode::FORBIDDEN,
            rd,
            email,
            Some(EXPIRED),
        ));
    }
    if email.is_empty() || field("password").is_empty() {
        let error = Some("Enter your email and password.");
        return Ok(form(
            gate,
            &headers,
            StatusCode::BAD_REQUEST,
            rd,
            email,
            error,
        ));
    }
    let signed_in = gate
        .browser_sign_in(email, field("password"), field("code"), who)
        .await;
    let handle = match signed_in {
        Ok(handle) => handle,
        Err(error) => {
            let (status, message) = match &error {
                ServiceError::InvalidCredentials => (StatusCode::BAD_REQUEST, WRONG.to_owned()),
                ServiceError::TooManyAttempts(seconds) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("Too many failed attempts. Try again in {seconds} seconds."),
                ),
                // TotpNotConfigured: an account with TOTP on, and no
                // totp.key_file to check its codes with (recovery codes
                // still work).
                ServiceError::Busy
                | ServiceError::TotpNotConfigured
                | ServiceError::StoreUnavailable(_)
                | ServiceError::DatabaseUnavailable(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Signing in is unavailable right now. Try again in a moment.".to_owned(),
                ),
                _ => return Err(error.into()),
            };
            error.log("POST", "/oauth2/sign_in");
            gate.count_failure(&error);
            let mut response = form(gate, &headers, status, rd, email, Some(&message));
            if let Some(seconds) = error.retry_after() {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(seconds));
            }
            return Ok(response);
        }
    };
    let mut response = see_other(&onward(gate, &headers, rd, "/"));
    let set = cookie::set_session(
        gate.cookie_settings(),
        &handle.encode(),
        gate.browser_session_lifetime(),
    );
    response.headers_mut().append(SET_COOKIE, set);
    Ok(response)
}

/// `GET /oauth2/sign_out`: a button to confirm, never a sign-out by a
/// mere link (which any page could embed).
pub(super) async fn confirm_sign_out<B>(
    gate: &Gate,
    request: &Request<B>,
) -> Result<Response, ApiError> {
    let rd = query_param(request.uri(), "rd").unwrap_or_default();
    Ok(match signed_in(gate, request).await? {
        Some(identity) => pages::sign_out(
            &rd,
            &csrf::token(&identity.binding_key(), Form::SignOut),
            identity.subject.email.as_deref(),
        ),
        None => pages::message(StatusCode::OK, "Signed out", "You are signed out."),
    })
}

/// `POST /oauth2/sign_out`: ends the session, clears the cookie, and sends
/// the browser to `rd` (if allowed) or the sign-in page.
pub(super) async fn sign_out(
    gate: &Gate,
    request: Request<impl RequestBody>,
) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let refused = || pages::message(StatusCode::FORBIDDEN, "Not signed out", EXPIRED);
    // First: a post from elsewhere arrives without the cookie (SameSite)
    // and must not clear it either.
    if !csrf::same_origin(&headers) {
        tracing::warn!("sign-out refused: posted from another site");
        return Ok(refused());
    }
    let identity = signed_in(gate, &request).await?;
    let params = read_params(request).await?;
    let field = |name| field(&params, name);
    if let Some(identity) = &identity {
        if !csrf::verify(&identity.binding_key(), Form::SignOut, field("csrf")) {
            tracing::warn!("sign-out refused: without its CSRF token");
            return Ok(refused());
        }
        gate.browser_sign_out(identity).await?;
    }
    let mut response = see_other(&onward(gate, &headers, field("rd"), &sign_in_url("")));
    // A dead session's cookie goes too; a browser that sent none keeps
    // whatever it has.
    if cookie::session(&headers, gate.cookie_settings()).is_some() {
        response
            .headers_mut()
            .append(SET_COOKIE, cookie::clear_session(gate.cookie_settings()));
    }
    Ok(response)
}
