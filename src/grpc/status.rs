//! The one mapping from [`ServiceError`] to a gRPC status (SPEC §8): a code
//! for what went wrong, the message led by the same error code HTTP answers
//! (`email_taken: …`), which is also in the `tokengate-error` metadata, and
//! `retry-after` where HTTP sends `Retry-After`.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::service::ServiceError;

pub fn from_service_error(error: &ServiceError) -> Status {
    use ServiceError as E;
    let code = match error {
        E::InvalidRequest(_) | E::InvalidEmail(_) | E::InvalidPassword(_) | E::OAuth { .. } => {
            Code::InvalidArgument
        }
        E::MissingToken
        | E::InvalidToken(_)
        | E::InvalidGrant
        | E::RefreshReuse
        | E::InvalidClient(_)
        | E::InvalidCredentials
        | E::InvalidCode
        | E::InvalidAdminToken => Code::Unauthenticated,
        E::InsufficientScope(_) | E::SecondFactorRequired | E::AdminDisabled => {
            Code::PermissionDenied
        }
        E::TotpNotConfigured => Code::FailedPrecondition,
        E::NotFound(_) => Code::NotFound,
        E::EmailTaken | E::TotpAlreadyEnabled => Code::AlreadyExists,
        E::RateLimited(_) | E::TooManyAttempts(_) => Code::ResourceExhausted,
        E::StoreUnavailable(_) | E::DatabaseUnavailable(_) | E::Busy => Code::Unavailable,
        E::Internal(_) => Code::Internal,
    };
    let mut status = Status::new(code, format!("{}: {}", error.code(), error.description()));
    let metadata = status.metadata_mut();
    metadata.insert("tokengate-error", MetadataValue::from_static(error.code()));
    if let Some(seconds) = error.retry_after() {
        metadata.insert("retry-after", MetadataValue::from(seconds));
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use crate::users::UserError;

    #[test]
    fn codes_follow_the_spec() {
        let cases: Vec<(ServiceError, Code, &str)> = vec![
            (
                UserError::InvalidEmail("email must look like name@domain").into(),
                Code::InvalidArgument,
                "invalid_email",
            ),
            (
                UserError::InvalidPassword("password must be at least 8 characters".into()).into(),
                Code::InvalidArgument,
                "invalid_password",
            ),
            (
                UserError::InvalidCredentials.into(),
                Code::Unauthenticated,
                "invalid_credentials",
            ),
            (
                UserError::EmailTaken.into(),
                Code::AlreadyExists,
                "email_taken",
            ),
            (
                UserError::Throttled(42).into(),
                Code::ResourceExhausted,
                "too_many_attempts",
            ),
            (
                ServiceError::StoreUnavailable(StoreError::Timeout),
                Code::Unavailable,
                "temporarily_unavailable",
            ),
            (
                ServiceError::InvalidGrant,
                Code::Unauthenticated,
                "invalid_grant",
            ),
            (
                ServiceError::Internal("boom".into()),
                Code::Internal,
                "server_error",
            ),
        ];
        for (error, code, name) in cases {
            let status = from_service_error(&error);
            assert_eq!(status.code(), code, "{error}");
            assert!(
                status.message().starts_with(&format!("{name}: ")),
                "{}",
                status.message()
            );
            assert_eq!(status.metadata().get("tokengate-error").unwrap(), name);
        }
        let throttled = from_service_error(&UserError::Throttled(42).into());
        assert_eq!(throttled.metadata().get("retry-after").unwrap(), "42");
        let internal = from_service_error(&ServiceError::Internal("secret detail".into()));
        assert!(!internal.message().contains("secret detail"));
    }
}
