//! HTTP semantics (SPEC §2): routing by `(path, method)` on the listener the
//! request came in on ([`route`]), request parsing and the response shapes.
//! One file per endpoint; errors are mapped to responses in [`error`] only.
//!
//! Generic over the request body type so tests can drive the router
//! in-process with `Full<Bytes>`; the server passes hyper's `Incoming`.

mod admin;
mod authenticate;
mod body;
mod browser;
mod deadline;
mod discovery;
pub mod error;
mod health;
pub(crate) mod login;
mod logout;
mod oauth;
mod openapi;
mod refresh;
pub(crate) mod register;
mod request_id;
mod route;
mod session_events;
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

use crate::service::{Attempt, Gate, Peer, Rejection, ServiceError};
pub use deadline::{BodyDeadline, BodyTimeout};
pub use error::ApiError;
pub use route::Listener;
use route::Route;
pub use session_events::{EventStream, Reply, into_stream};

pub type Response = http::Response<Full<Bytes>>;

/// Any request body: hyper's `Incoming` in production, `Full<Bytes>` in tests.
pub trait RequestBody: Body<Data = Bytes, Error: Into<BoxError>> {}
impl<B: Body<Data = Bytes, Error: Into<BoxError>>> RequestBody for B {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Answers one request that came in on `listener`. Never fails: every
/// error becomes its response here. Everything logged on the way carries the
/// request's id (see [`request_id`]).
pub async fn handle(
    gate: &Gate,
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
    let mut response = answer(gate, listener, request).instrument(span).await;
    response.headers_mut().insert(request_id::HEADER, id);
    response
}

async fn answer(gate: &Gate, listener: Listener, request: Request<impl RequestBody>) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // For logging; a Uri clone shares its bytes instead of copying the path.
    let uri = request.uri().clone();
    let path = uri.path();
    let (route, result) = route(gate, listener, request).await;
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            error.log(&method, path);
            if let ApiError::Service(e) = &error {
                gate.count_failure(e);
            }
            error.into_response()
        }
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    gate.metrics().observe(route, status, elapsed.as_secs_f64());
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
    gate: &Gate,
    listener: Listener,
    request: Request<impl RequestBody>,
) -> (&'static str, Result<Response, ApiError>) {
    let path = request.uri().path();
    if let Err(refused) = route::check_path(path) {
        return ("other", Err(refused.into()));
    }
    if let Some(page) = browser::Page::find(path) {
        if listener != Listener::Public {
            return ("other", Err(ApiError::NotFound));
        }
        return (page.name(), browser::handle(gate, page, request).await);
    }
    let Some(route) = Route::find(path, listener) else {
        return ("other", Err(ApiError::NotFound));
    };
    if !route.allows(request.method()) {
        let allow = route.allow().unwrap_or(route::GET_HEAD);
        return (route.name(), Err(ApiError::MethodNotAllowed(allow)));
    }
    let result = match route {
        Route::Ping => Ok(health::ping()),
        Route::Health => Ok(health::handle(gate).await),
        Route::Metrics => Ok(text_response(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            gate.metrics_text().into(),
        )),
        Route::Login => login::handle(gate, request).await,
        Route::Register => register::handle(gate, request).await,
        Route::Refresh => refresh::handle(gate, request).await,
        Route::Logout => logout::handle(gate, request).await,
        Route::Authenticate => authenticate::handle(gate, &request).await,
        Route::Token => oauth::token(gate, request).await,
        Route::Introspect => oauth::introspect(gate, request).await,
        Route::Revoke => oauth::revoke(gate, request).await,
        Route::Verify => oauth::verify(gate, request).await,
        Route::Jwks => Ok(discovery::jwks(gate)),
        Route::Validate => validate::handle(gate, request).await,
        Route::AdminTokens if request.method() == Method::POST => {
            admin::create(gate, request).await
        }
        Route::AdminTokens => admin::list(gate, &request).await,
        Route::AdminToken => admin::show(gate, &request).await,
        Route::AdminRevoke => admin::revoke(gate, &request).await,
        Route::Sessions => sessions::list(gate, &request).await,
        Route::Session => sessions::end(gate, &request).await,
        Route::AdminUserSessions => admin::user_sessions(gate, &request).await,
        Route::AdminUserLogout => admin::logout_user(gate, &request).await,
        Route::Metadata => Ok(discovery::metadata(gate, request.headers())),
        Route::Openapi => Ok(openapi::handle()),
        Route::SessionEvents => session_events::handle(gate, &request).await,
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
        .map_err(|_| ServiceError::InvalidToken(Rejection::Malformed))?;
    let Some((scheme, token)) = text.trim().split_once(' ') else {
        return if text.trim().eq_ignore_ascii_case("bearer") {
            Err(ServiceError::MissingToken.into())
        } else {
            Ok(None)
        };
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    match token.trim() {
        "" => Err(ServiceError::MissingToken.into()),
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

/// The base URL clients reach us at, as the request says: its
/// `X-Forwarded-Proto`/`X-Forwarded-Host` (set by the proxy) or `Host`
/// (`oauth.public_url`, when set, wins in the service).
fn public_base(headers: &HeaderMap) -> String {
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

/// Who asks: the client's address (the peer, or what a trusted proxy
/// says) and the time.
fn caller<B>(gate: &Gate, request: &Request<B>) -> Attempt {
    let forwarded = request.headers().get_all(X_FORWARDED_FOR);
    gate.caller(peer(request), forwarded.iter().map(HeaderValue::as_bytes))
}

/// The connection's peer, as the server noted it (unspecified in tests
/// that drive the router without a connection).
fn peer<B>(request: &Request<B>) -> IpAddr {
    request
        .extensions()
        .get::<Peer>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| peer.0.ip())
}

const X_FORWARDED_FOR: &str = "x-forwarded-for";
