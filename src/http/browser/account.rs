//! The signed-in user's own pages: their sessions (browser and API alike,
//! each with "sign out this one", and "sign out everywhere") and
//! two-factor authentication (set up with a QR code, confirm, recovery
//! codes, turn off). A browser without a live session is sent to sign in
//! and brought back.

use http::header::SET_COOKIE;
use http::{HeaderMap, Request, StatusCode};
use uuid::Uuid;

use super::csrf::{self, Form};
use super::{EXPIRED, cookie, field, pages, see_other, sign_in_url, signed_in};
use crate::http::body::{Params, read_params};
use crate::http::{ApiError, RequestBody, Response, caller};
use crate::service::{BrowserIdentity, Gate, ServiceError};

const SESSIONS: &str = "/oauth2/sessions";
const TOTP: &str = "/oauth2/totp";

pub(super) async fn sessions<B>(gate: &Gate, request: &Request<B>) -> Result<Response, ApiError> {
    let Some(identity) = signed_in(gate, request).await? else {
        return Ok(see_other(&sign_in_url(SESSIONS)));
    };
    let list = gate.browser_sessions(&identity).await?;
    let token = csrf::token(&identity.binding_key(), Form::Sessions);
    Ok(pages::sessions(
        &list,
        &token,
        identity.subject.email.as_deref(),
        None,
    ))
}

/// The session, the form's fields and whether its CSRF checks passed.
async fn posted(
    gate: &Gate,
    request: Request<impl RequestBody>,
    form: Form,
) -> Result<Result<(BrowserIdentity, Params), Response>, ApiError> {
    let headers: HeaderMap = request.headers().clone();
    let refused = || pages::message(StatusCode::FORBIDDEN, "Nothing changed", EXPIRED);
    // First: a post from elsewhere changes nothing, whatever it carries.
    if !csrf::same_origin(&headers) {
        tracing::warn!("account form refused: posted from another site");
        return Ok(Err(refused()));
    }
    let back = if matches!(form, Form::Totp) {
        TOTP
    } else {
        SESSIONS
    };
    let Some(identity) = signed_in(gate, &request).await? else {
        return Ok(Err(see_other(&sign_in_url(back))));
    };
    let params = read_params(request).await?;
    let token = field(&params, "csrf");
    if !csrf::verify(&identity.binding_key(), form, token) {
        tracing::warn!("account form refused: without its CSRF token");
        return Ok(Err(refused()));
    }
    Ok(Ok((identity, params)))
}

/// `POST /oauth2/sessions`: `sid` ends that session, `all=1` every one.
/// Ending the browser's own sends it to sign in again.
pub(super) async fn end_sessions(
    gate: &Gate,
    request: Request<impl RequestBody>,
) -> Result<Response, ApiError> {
    let (identity, params) = match posted(gate, request, Form::Sessions).await? {
        Ok(posted) => posted,
        Err(page) => return Ok(page),
    };
    let own_ended = if params.get("all")? == Some("1") {
        gate.end_browser_users_sessions(&identity).await?;
        true
    } else {
        let sid = params
            .require("sid")?
            .parse::<Uuid>()
            .map_err(|_| ServiceError::InvalidRequest("sid must be a session id".into()))?;
        match gate.end_browser_users_session(&identity, sid).await {
            // Ended already (elsewhere): the list shows it gone.
            Ok(()) | Err(ServiceError::NotFound(_)) => {}
            Err(other) => return Err(other.into()),
        }
        sid == identity.sid
    };
    if !own_ended {
        return Ok(see_other(SESSIONS));
    }
    let mut response = see_other(&sign_in_url(""));
    response
        .headers_mut()
        .append(SET_COOKIE, cookie::clear_session(gate.cookie_settings()));
    Ok(response)
}

/// The account's id, for TOTP: browser sessions are password logins, whose
/// `sub` is the account's id.
fn account(identity: &BrowserIdentity) -> Result<Uuid, ApiError> {
    identity.subject.sub.parse().map_err(|_| {
        ServiceError::NotFound("two-factor authentication is for password accounts").into()
    })
}

pub(super) async fn totp<B>(gate: &Gate, request: &Request<B>) -> Result<Response, ApiError> {
    let Some(identity) = signed_in(gate, request).await? else {
        return Ok(see_other(&sign_in_url(TOTP)));
    };
    let token = csrf::token(&identity.binding_key(), Form::Totp);
    Ok(if gate.totp_enabled(account(&identity)?).await? {
        pages::totp_on(&token, None)
    } else {
        pages::totp_off(&token, None)
    })
}

/// `POST /oauth2/totp`: `action` = `begin` (a new secret), `confirm` (with
/// `sealed` and `code`: turns it on, shows the recovery codes) or
/// `disable` (with `code`).
pub(super) async fn totp_action(
    gate: &Gate,
    request: Request<impl RequestBody>,
) -> Result<Response, ApiError> {
    let who = caller(gate, &request);
    let (identity, params) = match posted(gate, request, Form::Totp).await? {
        Ok(posted) => posted,
        Err(page) => return Ok(page),
    };
    let user = account(&identity)?;
    let token = csrf::token(&identity.binding_key(), Form::Totp);
    let code = params.get("code")?.unwrap_or("");
    match params.require("action")? {
        "begin" => {
            let password = params.get("password")?.unwrap_or("");
            match gate.confirm_password(&identity, password, who).await {
                Ok(()) => {}
                Err(ServiceError::InvalidCredentials) => {
                    return Ok(pages::totp_off(&token, Some("Wrong password.")));
                }
                Err(other) => return Err(other.into()),
            }
            let email = identity.subject.email.as_deref().unwrap_or("");
            let enrolment = gate.totp_begin(user, email)?;
            Ok(pages::totp_enrol(
                &enrolment.qr_svg,
                &enrolment.secret,
                &enrolment.sealed,
                &token,
            ))
        }
        "confirm" => {
            let sealed = params.get("sealed")?.unwrap_or("");
            match gate.totp_confirm(user, sealed, code, who).await {
                Ok(codes) => Ok(pages::totp_recovery(&codes)),
                Err(e) if is_wrong_code(&e) => Ok(pages::totp_off(
                    &token,
                    Some("That code did not match. Set up again and enter a fresh code."),
                )),
                Err(e) => Err(e.into()),
            }
        }
        "disable" => match gate.totp_disable(user, code, who).await {
            Ok(()) => Ok(pages::totp_off(
                &token,
                Some("Two-factor authentication is off."),
            )),
            Err(e) if is_wrong_code(&e) => {
                Ok(pages::totp_on(&token, Some("That code did not match.")))
            }
            Err(e) => Err(e.into()),
        },
        _ => Err(
            ServiceError::InvalidRequest("action must be begin, confirm or disable".into()).into(),
        ),
    }
}

/// A refused code, told the user on the page (a throttle or an outage is
/// the error page's).
fn is_wrong_code(error: &ServiceError) -> bool {
    matches!(error, ServiceError::InvalidCode)
}
