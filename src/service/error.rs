//! What went wrong in a use case, said once for both transports: HTTP maps
//! it to a status and a JSON body (`crate::http::error`), gRPC to a code
//! (`crate::grpc::status`). The machine-readable `code` (RFC 6749 §5.2 and
//! RFC 6750 §3.1 names where one exists), the description a caller is
//! told, the log line and the metric label are decided here.

use crate::admin::AdminError;
use crate::api_tokens::ApiTokenError;
use crate::clients::ClientError;
use crate::db::DbError;
use crate::session::SessionError;
use crate::store::StoreError;
use crate::tokens::Rejection;
use crate::users::UserError;
use crate::users::totp::TotpError;
use crate::verifier::VerifyError;

/// RFC 6749 §5.2 error codes of the OAuth endpoints that have no variant of
/// their own in [`ServiceError`] (`invalid_request` and `invalid_client` do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthCode {
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
}

impl OAuthCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("no access token given")]
    MissingToken,
    #[error("access token refused: {0}")]
    InvalidToken(Rejection),
    #[error("refresh token refused")]
    InvalidGrant,
    #[error("rotated refresh token reused; session ended")]
    RefreshReuse,
    #[error("client authentication failed: {0}")]
    InvalidClient(ClientError),
    #[error("the token lacks a required scope (needs {0:?})")]
    InsufficientScope(String),
    #[error("{description}")]
    OAuth {
        code: OAuthCode,
        description: String,
    },
    #[error("rate limit reached; retry in {0}s")]
    RateLimited(u64),
    #[error("too many failed attempts from this client or address; retry in {0}s")]
    TooManyAttempts(u64),
    #[error("too many credential checks waiting; try again")]
    Busy,
    /// No such thing for this caller (an API token id, a session of
    /// theirs): not told apart from "not yours".
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    InvalidEmail(&'static str),
    #[error("{0}")]
    InvalidPassword(String),
    #[error("this email is already registered")]
    EmailTaken,
    #[error("unknown email or wrong password")]
    InvalidCredentials,
    /// A browser session signed in without the second factor a location
    /// demands (`/oauth2/auth?require=otp`).
    #[error("this page needs a session signed in with a one-time code")]
    SecondFactorRequired,
    #[error("{}", AdminError::Disabled)]
    AdminDisabled,
    #[error("admin token refused")]
    InvalidAdminToken,
    /// TOTP (SPEC §15): no `totp.key_file`, so nobody can enrol.
    #[error("{}", TotpError::NotConfigured)]
    TotpNotConfigured,
    /// A TOTP or recovery code that is wrong, used before or expired, or
    /// a sealed enrolment that is not this user's or too old: one answer.
    #[error("invalid code")]
    InvalidCode,
    #[error("{}", TotpError::AlreadyEnabled)]
    TotpAlreadyEnabled,
    #[error(transparent)]
    StoreUnavailable(#[from] StoreError),
    #[error(transparent)]
    DatabaseUnavailable(DbError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ClientError> for ServiceError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Throttled(seconds) => Self::TooManyAttempts(seconds),
            ClientError::Verifier(VerifyError::Busy) => Self::Busy,
            ClientError::Verifier(VerifyError::Internal) => Self::Internal(error.to_string()),
            ClientError::Store(e) => Self::StoreUnavailable(e),
            other => Self::InvalidClient(other),
        }
    }
}

impl From<AdminError> for ServiceError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::Disabled => Self::AdminDisabled,
            AdminError::Missing => Self::MissingToken,
            AdminError::Refused(
                ClientError::Rejected | ClientError::Malformed | ClientError::Missing,
            ) => Self::InvalidAdminToken,
            AdminError::Refused(other) => other.into(),
        }
    }
}

impl From<ApiTokenError> for ServiceError {
    fn from(error: ApiTokenError) -> Self {
        match error {
            ApiTokenError::Invalid(rejection) => Self::InvalidToken(rejection),
            ApiTokenError::BadRequest(why) => Self::InvalidRequest(why),
            ApiTokenError::Store(e) => Self::StoreUnavailable(e),
            ApiTokenError::Database(e) => e.into(),
        }
    }
}

/// A database failure not tied to a user action: an outage is
/// unavailable, anything else ours.
impl From<DbError> for ServiceError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(_) => Self::DatabaseUnavailable(error),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<UserError> for ServiceError {
    fn from(error: UserError) -> Self {
        match error {
            UserError::InvalidEmail(why) => Self::InvalidEmail(why),
            UserError::InvalidPassword(why) => Self::InvalidPassword(why),
            UserError::EmailTaken => Self::EmailTaken,
            UserError::InvalidCredentials => Self::InvalidCredentials,
            UserError::Throttled(seconds) => Self::TooManyAttempts(seconds),
            UserError::Verifier(VerifyError::Busy) => Self::Busy,
            UserError::Verifier(VerifyError::Internal) => Self::Internal(error.to_string()),
            UserError::Database(DbError::Internal(e)) => Self::Internal(e),
            UserError::Database(e) => Self::DatabaseUnavailable(e),
            UserError::Store(e) => Self::StoreUnavailable(e),
        }
    }
}

impl From<TotpError> for ServiceError {
    fn from(error: TotpError) -> Self {
        match error {
            TotpError::NotConfigured => Self::TotpNotConfigured,
            TotpError::InvalidCode => Self::InvalidCode,
            TotpError::AlreadyEnabled => Self::TotpAlreadyEnabled,
            TotpError::Throttled(seconds) => Self::TooManyAttempts(seconds),
            TotpError::Database(e) => e.into(),
            TotpError::Store(e) => Self::StoreUnavailable(e),
            TotpError::Internal(e) => Self::Internal(e),
        }
    }
}

impl From<SessionError> for ServiceError {
    fn from(error: SessionError) -> Self {
        let description = error.to_string();
        match error {
            SessionError::InvalidToken(rejection) => Self::InvalidToken(rejection),
            SessionError::InvalidGrant => Self::InvalidGrant,
            SessionError::RefreshReuse => Self::RefreshReuse,
            SessionError::InvalidScope(_) => Self::OAuth {
                code: OAuthCode::InvalidScope,
                description,
            },
            SessionError::NotOwner => Self::OAuth {
                code: OAuthCode::UnauthorizedClient,
                description,
            },
            SessionError::RateLimited(seconds) => Self::RateLimited(seconds),
            SessionError::UnknownSession => Self::NotFound("no such session of yours"),
            SessionError::Store(e) => Self::StoreUnavailable(e),
            SessionError::Signing(e) => Self::Internal(e.to_string()),
        }
    }
}

impl ServiceError {
    pub(crate) fn oauth(code: OAuthCode, description: impl Into<String>) -> Self {
        Self::OAuth {
            code,
            description: description.into(),
        }
    }

    /// The machine-readable code: the JSON body's `error`, gRPC's
    /// `tokengate-error` metadata.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidEmail(_) => "invalid_email",
            Self::InvalidPassword(_) => "invalid_password",
            Self::EmailTaken => "email_taken",
            Self::InvalidCredentials => "invalid_credentials",
            Self::MissingToken | Self::InvalidToken(_) | Self::InvalidAdminToken => "invalid_token",
            Self::AdminDisabled => "admin_disabled",
            Self::TotpNotConfigured => "totp_not_configured",
            Self::InvalidCode => "invalid_code",
            Self::TotpAlreadyEnabled => "totp_already_enabled",
            Self::InvalidGrant | Self::RefreshReuse => "invalid_grant",
            Self::InvalidClient(_) => "invalid_client",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::SecondFactorRequired => "second_factor_required",
            Self::OAuth { code, .. } => code.as_str(),
            Self::RateLimited(_) => "rate_limited",
            Self::TooManyAttempts(_) => "too_many_attempts",
            Self::NotFound(_) => "not_found",
            Self::StoreUnavailable(_) | Self::DatabaseUnavailable(_) | Self::Busy => {
                "temporarily_unavailable"
            }
            Self::Internal(_) => "server_error",
        }
    }

    /// What the caller is told. Deliberately vague about why a token was
    /// refused (that goes to the log), precise about what to fix in a request.
    pub fn description(&self) -> String {
        match self {
            Self::InvalidToken(_) => "the access token is invalid, expired or revoked".into(),
            Self::InvalidGrant => "the refresh token is invalid, expired or revoked".into(),
            Self::InvalidClient(_) => "client authentication failed".into(),
            Self::StoreUnavailable(_) => "the session store is unavailable; try again".into(),
            Self::DatabaseUnavailable(_) => "the database is unavailable; try again".into(),
            Self::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    /// Seconds to wait before retrying, where the answer says so.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited(seconds) | Self::TooManyAttempts(seconds) => Some(*seconds),
            Self::StoreUnavailable(_) | Self::DatabaseUnavailable(_) | Self::Busy => Some(1),
            _ => None,
        }
    }

    /// A short label for the authentication-failure metric, if this is one.
    pub fn auth_failure(&self) -> Option<&'static str> {
        Some(match self {
            Self::MissingToken => "missing_token",
            Self::InvalidToken(r) => r.label(),
            Self::InvalidGrant => "invalid_grant",
            Self::RefreshReuse => "refresh_reuse",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidAdminToken => "invalid_admin_token",
            Self::InvalidCode => "invalid_code",
            Self::TooManyAttempts(_) => "throttled",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::SecondFactorRequired => "second_factor_required",
            _ => return None,
        })
    }

    /// Auth failures are worth a warning; outages an error; the rest debug.
    /// `method` and `path` say where (an HTTP request, a gRPC call).
    pub fn log(&self, method: &str, path: &str) {
        match self {
            Self::InvalidToken(r) => {
                tracing::warn!(method, path, reason = r.label(), "access token refused");
            }
            Self::InvalidGrant => tracing::warn!(method, path, "refresh token refused"),
            Self::RefreshReuse => tracing::warn!(method, path, "refresh token reuse"),
            Self::InvalidClient(e) => {
                tracing::warn!(method, path, reason = %e, "client authentication failed");
            }
            Self::InsufficientScope(needed) => {
                tracing::warn!(method, path, needed, "access token lacks a scope");
            }
            Self::OAuth { code, description } => {
                tracing::warn!(
                    method,
                    path,
                    error = code.as_str(),
                    description,
                    "oauth request refused"
                );
            }
            Self::RateLimited(_) => tracing::warn!(method, path, "client rate limited"),
            Self::TooManyAttempts(_) => {
                tracing::warn!(method, path, "credential checks throttled after failures");
            }
            Self::Busy => tracing::warn!(method, path, "credential check queue full"),
            Self::InvalidCredentials => tracing::warn!(method, path, "password login refused"),
            Self::InvalidAdminToken => tracing::warn!(method, path, "admin token refused"),
            Self::AdminDisabled => tracing::warn!(method, path, "admin API is off"),
            Self::InvalidCode => tracing::warn!(method, path, "TOTP or recovery code refused"),
            Self::TotpNotConfigured => {
                tracing::warn!(method, path, "TOTP asked for, but totp.key_file is not set");
            }
            Self::StoreUnavailable(e) => {
                tracing::error!(method, path, error = %e, "failing closed");
            }
            Self::DatabaseUnavailable(e) => {
                tracing::error!(method, path, error = %e, "database unavailable");
            }
            Self::Internal(e) => tracing::error!(method, path, error = %e, "internal error"),
            Self::InvalidRequest(why) => {
                let why = without_strings(why);
                tracing::debug!(method, path, error = why, "bad request");
            }
            other => tracing::debug!(method, path, error = %other, "bad request"),
        }
    }
}

/// `text` with the values of quoted strings left out: a parse error quotes
/// what it could not take (`invalid type: string "…"`), and that may be a
/// token put in the wrong field. The caller is told; the log is not.
pub fn without_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        match (quoted, escaped, c) {
            (true, false, '\\') => escaped = true,
            (true, true, _) => escaped = false,
            (true, false, '"') => {
                quoted = false;
                out.push_str("…\"");
            }
            (true, false, _) => {}
            (false, _, '"') => {
                quoted = true;
                out.push('"');
            }
            (false, _, c) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_parse_errors_leave_out_quoted_values() {
        let error = serde_json::from_str::<Vec<String>>(r#""tg_live_se\"cret""#).unwrap_err();
        let logged = without_strings(&error.to_string());
        assert!(
            !logged.contains("tg_live") && !logged.contains("cret"),
            "{logged}"
        );
        assert!(logged.starts_with("invalid type: string \"…\", expected a sequence"));
        assert_eq!(without_strings("unknown field `x`"), "unknown field `x`");
    }
}
