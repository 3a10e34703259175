//! HTTP semantics (SPEC §2): routing by `(path, method)`, request parsing and
//! the response shapes. One file per endpoint; errors are mapped to responses
//! in [`error`] only.
//!
//! Generic over the request body type so tests can drive the router
//! in-process with `Full<Bytes>`; the server passes hyper's `Incoming`.

mod authenticate;
mod body;
pub mod error;
mod health;
mod login;
mod logout;
mod refresh;
mod token_pair;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use hyper::body::Body;
use serde::Serialize;

use crate::app::App;
use crate::store::Millis;
pub use error::ApiError;

pub type Response = http::Response<Full<Bytes>>;

/// Any request body: hyper's `Incoming` in production, `Full<Bytes>` in tests.
pub trait RequestBody: Body<Data = Bytes, Error: Into<BoxError>> {}
impl<B: Body<Data = Bytes, Error: Into<BoxError>>> RequestBody for B {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const GET_HEAD: &str = "GET, HEAD";
const POST: &str = "POST";

/// Answers one request. Never fails: every error becomes its response here.
pub async fn handle(app: &App, request: Request<impl RequestBody>) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = match route(app, request).await {
        Ok(response) => response,
        Err(error) => {
            error.log(&method, &path);
            error.into_response()
        }
    };
    tracing::debug!(
        %method,
        path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

async fn route(app: &App, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let method = request.method();
    match request.uri().path() {
        "/ping" => {
            allow(method, &[Method::GET, Method::HEAD], GET_HEAD)?;
            Ok(text_response(StatusCode::OK, "pong"))
        }
        "/health" => {
            allow(method, &[Method::GET, Method::HEAD], GET_HEAD)?;
            Ok(health::handle(app).await)
        }
        "/login" => {
            allow(method, &[Method::POST], POST)?;
            login::handle(app, request).await
        }
        "/refresh" => {
            allow(method, &[Method::POST], POST)?;
            refresh::handle(app, request).await
        }
        "/logout" => {
            allow(method, &[Method::POST], POST)?;
            logout::handle(app, request).await
        }
        // nginx's auth_request forwards the client's method: answer them all.
        "/authenticate" => authenticate::handle(app, request.headers()).await,
        _ => Err(ApiError::NotFound),
    }
}

fn allow(method: &Method, allowed: &[Method], header: &'static str) -> Result<(), ApiError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed(header))
    }
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
    let mut response = http::Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text_response(status: StatusCode, body: &'static str) -> Response {
    let mut response = http::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// Wall-clock time for the session rules, which never read the clock.
fn now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}
