//! The one mapping from errors to the SPEC's HTTP answers: status, JSON body
//! `{"error", "error_description"}` and the headers that go with them. What
//! went wrong in a use case is the service's [`ServiceError`]; the rest are
//! HTTP's own (no such route, wrong method, body too large or too slow,
//! not JSON).

use http::header::{ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::route::PathRefused;
use super::{Response, json_response};
use crate::service::ServiceError;

/// The largest request body we read (SPEC §2).
pub const BODY_LIMIT: usize = crate::service::MAX_REQUEST_BYTES;

const BEARER_CHALLENGE: &str = r#"Bearer realm="tokengate""#;
const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer realm="tokengate", error="invalid_token""#;
const BASIC_CHALLENGE: &str = r#"Basic realm="tokengate", charset="UTF-8""#;

/// Every error's body (SPEC §2).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A machine-readable code: RFC 6749 §5.2 / RFC 6750 §3.1 names where
    /// one exists (`invalid_request`, `invalid_token`, …).
    pub error: &'static str,
    /// What went wrong, for a human.
    pub error_description: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    #[error("request body larger than {BODY_LIMIT} bytes")]
    PayloadTooLarge,
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("the request body did not arrive in time")]
    RequestTimeout,
}

impl ApiError {
    /// A request that cannot be read as the endpoint expects it.
    pub fn invalid(why: impl Into<String>) -> Self {
        Self::Service(ServiceError::InvalidRequest(why.into()))
    }
}

/// A path that could mean another one to a proxy (SPEC §11).
impl From<PathRefused> for ApiError {
    fn from(refused: PathRefused) -> Self {
        Self::invalid(refused.to_string())
    }
}

/// The HTTP status of what went wrong in a use case.
fn status_of(error: &ServiceError) -> StatusCode {
    use ServiceError as E;
    match error {
        E::InvalidRequest(_) | E::InvalidEmail(_) | E::InvalidPassword(_) | E::OAuth { .. } => {
            StatusCode::BAD_REQUEST
        }
        E::EmailTaken | E::TotpAlreadyEnabled => StatusCode::CONFLICT,
        E::MissingToken
        | E::InvalidCredentials
        | E::InvalidCode
        | E::InvalidToken(_)
        | E::InvalidGrant
        | E::RefreshReuse
        | E::InvalidClient(_)
        | E::InvalidAdminToken => StatusCode::UNAUTHORIZED,
        E::InsufficientScope(_)
        | E::SecondFactorRequired
        | E::AdminDisabled
        | E::TotpNotConfigured => StatusCode::FORBIDDEN,
        E::RateLimited(_) | E::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
        E::NotFound(_) => StatusCode::NOT_FOUND,
        E::StoreUnavailable(_) | E::DatabaseUnavailable(_) | E::Busy => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        E::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Service(e) => status_of(e),
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Service(e) => e.code(),
            Self::NotFound => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RequestTimeout => "request_timeout",
        }
    }

    fn description(&self) -> String {
        match self {
            Self::Service(e) => e.description(),
            other => other.to_string(),
        }
    }

    /// Logs what went wrong (use cases say how loudly).
    pub fn log(&self, method: &http::Method, path: &str) {
        match self {
            Self::Service(e) => e.log(method.as_str(), path),
            other => tracing::debug!(%method, path, error = %other, "bad request"),
        }
    }

    pub fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code(),
            error_description: self.description(),
        };
        let mut response = json_response(self.status(), &body);
        let headers = response.headers_mut();
        let Self::Service(error) = self else {
            if let Self::MethodNotAllowed(allow) = self {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            return response;
        };
        if let Some(seconds) = error.retry_after() {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        match error {
            ServiceError::MissingToken => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(BEARER_CHALLENGE));
            }
            ServiceError::InvalidToken(_) | ServiceError::InvalidAdminToken => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(INVALID_TOKEN_CHALLENGE),
                );
            }
            ServiceError::InvalidClient(_) => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(BASIC_CHALLENGE));
            }
            ServiceError::InsufficientScope(scope) => {
                let challenge = format!(
                    r#"Bearer realm="tokengate", error="insufficient_scope", scope="{scope}""#
                );
                // Scopes are validated tokens (no quotes or controls); never fails.
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(WWW_AUTHENTICATE, value);
                }
            }
            _ => {}
        }
        response
    }
}
