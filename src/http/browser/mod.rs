//! Browser sessions over HTTP (SPEC §15): the cookie gate nginx asks
//! (`/oauth2/auth`), the pages a person uses (sign in, sign out, their
//! sessions, two-factor authentication) and the small JSON and redirect
//! endpoints oauth2-proxy's users expect (`/oauth2/userinfo`,
//! `/oauth2/start`). Paths and behaviour follow oauth2-proxy and Authelia
//! so their nginx configs carry over (docs/browser.md).
//!
//! Pages are HTML, not part of the JSON API (`/openapi.json`): they answer
//! on the public listener only, and their errors are pages too, except
//! where a script asks (`/oauth2/auth`, `/oauth2/userinfo`).

mod account;
mod cookie;
mod csrf;
mod gate;
mod pages;
mod redirect;
mod sign_in;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;

use super::body::Params;
use super::{ApiError, RequestBody, Response, caller};
use crate::service::{BrowserIdentity, Gate, ServiceError};

/// The browser endpoints, one per path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Page {
    /// `/oauth2/auth`, `/api/authz/auth-request`: the gate (any method).
    Auth,
    SignIn,
    SignOut,
    UserInfo,
    Start,
    Sessions,
    Totp,
    Stylesheet,
}

impl Page {
    pub(super) fn find(path: &str) -> Option<Self> {
        Some(match path {
            "/oauth2/auth" | "/api/authz/auth-request" => Self::Auth,
            "/oauth2/sign_in" => Self::SignIn,
            "/oauth2/sign_out" => Self::SignOut,
            "/oauth2/userinfo" => Self::UserInfo,
            "/oauth2/start" => Self::Start,
            "/oauth2/sessions" => Self::Sessions,
            "/oauth2/totp" => Self::Totp,
            pages::STYLESHEET_PATH => Self::Stylesheet,
            _ => return None,
        })
    }

    /// The label of its metrics.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Auth => "/oauth2/auth",
            Self::SignIn => "/oauth2/sign_in",
            Self::SignOut => "/oauth2/sign_out",
            Self::UserInfo => "/oauth2/userinfo",
            Self::Start => "/oauth2/start",
            Self::Sessions => "/oauth2/sessions",
            Self::Totp => "/oauth2/totp",
            Self::Stylesheet => pages::STYLESHEET_PATH,
        }
    }

    /// Whether a form posts to it (else it answers GET and HEAD only).
    fn takes_posts(self) -> bool {
        matches!(
            self,
            Self::SignIn | Self::SignOut | Self::Sessions | Self::Totp
        )
    }
}

/// Answers a request for `page`.
pub(super) async fn handle(
    gate: &Gate,
    page: Page,
    request: Request<impl RequestBody>,
) -> Result<Response, ApiError> {
    let method = request.method();
    let post = method == Method::POST;
    let get = method == Method::GET || method == Method::HEAD;
    if page != Page::Auth && !(get || post && page.takes_posts()) {
        let allow = if page.takes_posts() {
            "GET, HEAD, POST"
        } else {
            "GET, HEAD"
        };
        return Err(ApiError::MethodNotAllowed(allow));
    }
    match page {
        Page::Auth => gate::auth(gate, &request).await,
        Page::UserInfo => gate::userinfo(gate, &request).await,
        Page::Start => Ok(gate::start(&request)),
        Page::Stylesheet => Ok(stylesheet()),
        Page::SignIn if post => sign_in::submit(gate, request).await,
        Page::SignIn => sign_in::show(gate, &request).await,
        Page::SignOut if post => sign_in::sign_out(gate, request).await,
        Page::SignOut => sign_in::confirm_sign_out(gate, &request).await,
        Page::Sessions if post => account::end_sessions(gate, request).await,
        Page::Sessions => account::sessions(gate, &request).await,
        Page::Totp if post => account::totp_action(gate, request).await,
        Page::Totp => account::totp(gate, &request).await,
    }
}

/// The browser's live session, `None` if it has no cookie or a dead one.
/// Counts as activity, as the gate does.
async fn signed_in<B>(
    gate: &Gate,
    request: &Request<B>,
) -> Result<Option<BrowserIdentity>, ApiError> {
    let Some(cookie) = cookie::session(request.headers(), gate.cookie_settings()) else {
        return Ok(None);
    };
    match gate
        .browser_session(cookie, false, caller(gate, request))
        .await
    {
        Ok(identity) => Ok(Some(identity)),
        Err(ServiceError::InvalidToken(_)) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// The host the page was reached on, for `rd`'s check: `Host`, as nginx
/// passes it (`proxy_set_header Host $host`).
fn page_host(headers: &HeaderMap) -> Option<&str> {
    headers.get(http::header::HOST)?.to_str().ok()
}

/// What a refused form's page says: forged, or simply old.
const EXPIRED: &str = "This form expired or came from another site. Please try again.";

/// A form field's value; absent, empty or repeated: `""`.
fn field<'a>(params: &'a Params, name: &str) -> &'a str {
    params.get(name).ok().flatten().unwrap_or("")
}

/// The value of a query parameter.
fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// `303 See Other`: after a form, the browser GETs `location`.
fn see_other(location: &str) -> Response {
    to(StatusCode::SEE_OTHER, location)
}

/// A redirect: `status` and `Location`.
fn to(status: StatusCode, location: &str) -> Response {
    let mut response = http::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    // `location` is `rd` as checked (no control characters) or our own path.
    if let Ok(value) = HeaderValue::try_from(location) {
        headers.insert(LOCATION, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The sign-in page's URL with `rd` (relative: on this host).
fn sign_in_url(rd: &str) -> String {
    let mut url = String::from("/oauth2/sign_in");
    if !rd.is_empty() {
        url.push_str("?rd=");
        url.extend(form_urlencoded::byte_serialize(rd.as_bytes()));
    }
    url
}

fn stylesheet() -> Response {
    let mut response =
        http::Response::new(Full::new(Bytes::from_static(pages::STYLESHEET.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}
