//! HTTP semantics (SPEC §2): routing by `(path, method)` on the listener the
//! request came in on ([`route`]), request parsing and the response shapes.
//! One file per endpoint; errors are mapped to responses in [`error`] only.
//!
//! Generic over the request body type so tests can drive the router
//! in-process with `Full<Bytes>`; the server passes hyper's `Incoming`.

mod admin;
mod authenticate;
mod body;
pub mod error;
mod health;
pub(crate) mod login;
mod logout;
mod oauth;
mod refresh;
pub(crate) mod register;
mod request_id;
mod route;
mod sessions;
mod token_pair;
mod validate;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use hyper::body::Body;
use serde::Serialize;
use tracing::Instrument;

use crate::app::App;
use crate::clients::Attempt;
use crate::proxies::Peer;
pub use error::ApiError;
pub use route::Listener;
use route::Route;

pub type Response = http::Response<Full<Bytes>>;

/// Any request body: hyper's `Incoming` in production, `Full<Bytes>` in tests.
pub trait RequestBody: Body<Data = Bytes, Error: Into<BoxError>> {}
impl<B: Body<Data = Bytes, Error: Into<BoxError>>> RequestBody for B {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Answers one request that came in on `listener`. Never fails: every
/// error becomes its response here. Everything logged on the way carries the
/// request's id (see [`request_id`]).
pub async fn handle(
    app: &App,
    listener: Listener,
    mut request: Request<impl RequestBody>,
) -> Response {
    if listener == Listener::Admin {
        // Operators reach it directly, never through the proxy: the peer is
        // the caller, whatever it claims (admin-token guesses count per peer).
        request.headers_mut().remove(X_FORWARDED_FOR);
    }
    let id = request_id::of(request.headers());
    let span = tracing::info_span!("request", id = %id.to_str().unwrap_or("-"));
    let mut response = answer(app, listener, request).instrument(span).await;
    response.headers_mut().insert(request_id::HEADER, id);
    response
}

async fn answer(app: &App, listener: Listener, request: Request<impl RequestBody>) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // For logging; a Uri clone shares its bytes instead of copying the path.
    let uri = request.uri().clone();
    let path = uri.path();
    let (route, result) = route(app, listener, request).await;
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            error.log(&method, path);
            if let Some(reason) = error.auth_failure() {
                app.metrics.auth_failure(reason);
            }
            if matches!(error, ApiError::Unavailable(_)) {
                app.metrics.store_error();
            }
            error.into_response()
        }
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    app.metrics.observe(route, status, elapsed.as_secs_f64());
    tracing::debug!(
        %method,
        path,
        status,
        micros = elapsed.as_micros() as u64,
        "request"
    );
    response
}

/// Whether the query sets `name` to `true` (or `1`), as in `?all=true`.
fn query_flag(uri: &http::Uri, name: &str) -> bool {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .any(|(key, value)| key == name && matches!(&*value, "true" | "1"))
}

/// Dispatches on the path (refused if ambiguous, not found if `listener`
/// does not serve it), then the method. Returns the route's metric label
/// with the answer.
async fn route(
    app: &App,
    listener: Listener,
    request: Request<impl RequestBody>,
) -> (&'static str, Result<Response, ApiError>) {
    let path = request.uri().path();
    if let Err(refused) = route::check_path(path) {
        return ("other", Err(refused.into()));
    }
    let Some(route) = Route::find(path, listener) else {
        return ("other", Err(ApiError::NotFound));
    };
    if !route.allows(request.method()) {
        let allow = route.allow().unwrap_or(route::GET_HEAD);
        return (route.name(), Err(ApiError::MethodNotAllowed(allow)));
    }
    let result = match route {
        Route::Ping => Ok(text_response(StatusCode::OK, "text/plain", "pong".into())),
        Route::Health => Ok(health::handle(app).await),
        Route::Metrics => Ok(text_response(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            app.metrics.render(app.sessions.store()).into(),
        )),
        Route::Login => login::handle(app, request).await,
        Route::Register => register::handle(app, request).await,
        Route::Refresh => refresh::handle(app, request).await,
        Route::Logout => logout::handle(app, request).await,
        Route::Authenticate => authenticate::handle(app, &request).await,
        Route::Token => oauth::token(app, request).await,
        Route::Introspect => oauth::introspect(app, request).await,
        Route::Revoke => oauth::revoke(app, request).await,
        Route::Verify => oauth::verify(app, request).await,
        Route::Jwks => Ok(public_json(app.jwks.clone())),
        Route::Validate => validate::handle(app, request).await,
        Route::AdminTokens if request.method() == Method::POST => admin::create(app, request).await,
        Route::AdminTokens => admin::list(app, &request).await,
        Route::AdminToken => admin::show(app, &request).await,
        Route::AdminRevoke => admin::revoke(app, &request).await,
        Route::Sessions => sessions::list(app, &request).await,
        Route::Session => sessions::end(app, &request).await,
        Route::AdminUserSessions => admin::user_sessions(app, &request).await,
        Route::AdminUserLogout => admin::logout_user(app, &request).await,
        Route::Metadata => {
            let base = public_base(app, request.headers());
            let metadata = serde_json::Value::Object(oauth::metadata(app, &base));
            Ok(public_json(Bytes::from(metadata.to_string())))
        }
    };
    (route.name(), result)
}

/// The bearer token of the `Authorization` header, if it carries one.
/// `Ok(None)`: no header or another scheme. A `Bearer` header without a
/// usable token is refused rather than ignored.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::InvalidToken(crate::tokens::Rejection::Malformed))?;
    let Some((scheme, token)) = text.trim().split_once(' ') else {
        return if text.trim().eq_ignore_ascii_case("bearer") {
            Err(ApiError::MissingToken)
        } else {
            Ok(None)
        };
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    match token.trim() {
        "" => Err(ApiError::MissingToken),
        token => Ok(Some(token)),
    }
}

/// A JSON response; `no-store` because most of ours carry credentials
/// (RFC 6749 §5.1) and none is worth caching.
pub(crate) fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    // Serializing our own plain structs cannot fail; fall back to `{}` anyway.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    json_bytes_response(status, Bytes::from(bytes))
}

/// [`json_response`] for a body that is already JSON text.
pub(crate) fn json_bytes_response(status: StatusCode, body: Bytes) -> Response {
    let mut response = text_response(status, "application/json", body);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response {
    let mut response = http::Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Public, cacheable JSON (keys and metadata): clients may keep it a while.
fn public_json(body: Bytes) -> Response {
    let mut response = text_response(StatusCode::OK, "application/json", body);
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// The base URL clients reach us at: `oauth.public_url`, else the request's
/// `X-Forwarded-Proto`/`X-Forwarded-Host` (set by the proxy) or `Host`.
fn public_base(app: &App, headers: &HeaderMap) -> String {
    if !app.public_url.is_empty() {
        return app.public_url.clone();
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let scheme = match header("x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    };
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// Where a credential check comes from: the client's address (the peer, or
/// what a trusted proxy says) and the time.
fn attempt<B>(app: &App, request: &Request<B>) -> Attempt {
    let peer = request
        .extensions()
        .get::<Peer>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| peer.0.ip());
    let forwarded = request.headers().get_all(X_FORWARDED_FOR);
    Attempt {
        addr: app
            .trusted_proxies
            .client(peer, forwarded.iter().map(HeaderValue::as_bytes)),
        now: now(),
    }
}

const X_FORWARDED_FOR: &str = "x-forwarded-for";

pub(crate) use crate::time::now;
