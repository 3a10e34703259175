//! The answers the layer gives instead of calling the service, shaped like
//! tokengate's own (SPEC §2): a JSON body `{"error", "error_description"}`
//! and the RFC 6750 `WWW-Authenticate` challenge — or, to a gRPC client,
//! the same refusal as a gRPC status (see [`crate::grpc`]).
//!
//! Every refusal is first a [`Refusal`] (why), then an [`Answer`] (status,
//! error code, words, challenge), then one of the two wire forms: the
//! reasons and their words live here once, whatever the transport.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::grpc;
use crate::verifier::Rejection;

const BEARER_CHALLENGE: &str = r#"Bearer realm="tokengate""#;
const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer realm="tokengate", error="invalid_token""#;
const SESSION_ENDED_CHALLENGE: &str =
    r#"Bearer realm="tokengate", error="invalid_token", error_description="the session has ended""#;

/// Why a request does not reach the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No bearer token at all.
    MissingToken,
    /// An access token the verifier refused (or could not judge:
    /// [`Rejection::KeysUnavailable`]).
    Token(Rejection),
    /// A valid token without every required scope; holds them,
    /// space-separated (RFC 6749 scope tokens, checked when the layer was
    /// built, so a valid header value).
    InsufficientScope(Arc<str>),
    /// The token's session has ended (the feed, or `/authenticate`, says so).
    SessionEnded,
    /// An API token tokengate does not know, or has revoked.
    ApiToken,
    /// The revocation feed is down for longer than its bound, with no
    /// fallback: the session might have ended unseen.
    FeedDown,
    /// tokengate could not be asked (`/auth/validate`, `/authenticate`).
    Unreachable,
}

/// A refusal in words, before it takes a transport's form.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) description: Cow<'static, str>,
    pub(crate) challenge: Option<HeaderValue>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl Refusal {
    pub(crate) fn answer(&self) -> Answer {
        let answer =
            |status, error, description: &'static str, challenge: Option<&'static str>| Answer {
                status,
                error,
                description: Cow::Borrowed(description),
                challenge: challenge.map(HeaderValue::from_static),
            };
        let unavailable = |description| {
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                description,
                None,
            )
        };
        let invalid = |description| {
            answer(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                description,
                Some(INVALID_TOKEN_CHALLENGE),
            )
        };
        match self {
            Self::MissingToken => answer(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "no access token given",
                Some(BEARER_CHALLENGE),
            ),
            Self::Token(Rejection::KeysUnavailable) => {
                unavailable("the token's signing keys cannot be fetched right now; retry shortly")
            }
            Self::Token(_) => invalid("the access token is invalid or expired"),
            Self::InsufficientScope(scope) => Answer {
                status: StatusCode::FORBIDDEN,
                error: "insufficient_scope",
                description: Cow::Owned(format!(
                    "the token lacks a required scope (needs {scope:?})"
                )),
                challenge: HeaderValue::from_str(&format!(
                    r#"Bearer realm="tokengate", error="insufficient_scope", scope="{scope}""#
                ))
                .ok(),
            },
            Self::SessionEnded => answer(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the session has ended",
                Some(SESSION_ENDED_CHALLENGE),
            ),
            Self::ApiToken => invalid("the API token is invalid, expired or revoked"),
            Self::FeedDown => unavailable(
                "logouts cannot be checked right now (revocation feed down); retry shortly",
            ),
            Self::Unreachable => {
                unavailable("tokengate cannot be reached right now; retry shortly")
            }
        }
    }

    /// The answer in the form the caller speaks: gRPC if its request was.
    pub(crate) fn respond(&self, grpc: bool) -> Response<Full<Bytes>> {
        let answer = self.answer();
        if grpc {
            grpc::refusal(&answer)
        } else {
            json(&answer)
        }
    }

    /// A short stable label for logs.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::Token(rejection) => rejection.label(),
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::SessionEnded => "session_ended",
            Self::ApiToken => "api_token",
            Self::FeedDown => "feed_down",
            Self::Unreachable => "tokengate_unreachable",
        }
    }
}

/// Whether the request is gRPC (`application/grpc`, `application/grpc+proto`…).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

fn json(answer: &Answer) -> Response<Full<Bytes>> {
    // Two plain strings always serialize; `{}` keeps the shape JSON anyway.
    let body = serde_json::to_vec(&ErrorBody {
        error: answer.error,
        error_description: &answer.description,
    })
    .unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(challenge) = &answer.challenge {
        headers.insert(WWW_AUTHENTICATE, challenge.clone());
    }
    response
}
