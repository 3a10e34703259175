//! The one mapping from [`ApiError`] to a gRPC status (SPEC §8): the code
//! by the HTTP status it stands for, the message led by the same error code
//! HTTP answers (`email_taken: …`), which is also in the `tokengate-error`
//! metadata, and `retry-after` where HTTP sends `Retry-After`.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::http::ApiError;

pub fn from_api_error(error: &ApiError) -> Status {
    let code = match error.status().as_u16() {
        400 | 413 | 415 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        408 => Code::DeadlineExceeded,
        409 => Code::AlreadyExists,
        429 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        _ => Code::Internal,
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
        let cases: Vec<(ApiError, Code, &str)> = vec![
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
                ApiError::Unavailable(StoreError::Timeout),
                Code::Unavailable,
                "temporarily_unavailable",
            ),
            (
                ApiError::InvalidGrant,
                Code::Unauthenticated,
                "invalid_grant",
            ),
            (
                ApiError::Internal("boom".into()),
                Code::Internal,
                "server_error",
            ),
        ];
        for (error, code, name) in cases {
            let status = from_api_error(&error);
            assert_eq!(status.code(), code, "{error}");
            assert!(
                status.message().starts_with(&format!("{name}: ")),
                "{}",
                status.message()
            );
            assert_eq!(status.metadata().get("tokengate-error").unwrap(), name);
        }
        let throttled = from_api_error(&UserError::Throttled(42).into());
        assert_eq!(throttled.metadata().get("retry-after").unwrap(), "42");
        let internal = from_api_error(&ApiError::Internal("secret detail".into()));
        assert!(!internal.message().contains("secret detail"));
    }
}
