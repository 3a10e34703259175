//! Reading JSON request bodies safely: content type first, then a hard size
//! cap (by `Content-Length` before reading, and while reading for chunked
//! bodies), then strict parsing with a message that says what is wrong.

use bytes::Bytes;
use http::Request;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;

use super::RequestBody;
use super::error::{ApiError, BODY_LIMIT};

/// Reads the whole body, refusing non-JSON types and oversized bodies.
/// An absent `Content-Type` is taken as JSON.
pub async fn read(request: Request<impl RequestBody>) -> Result<Bytes, ApiError> {
    let headers = request.headers();
    if headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| !is_json(value.as_bytes()))
    {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    match Limited::new(request.into_body(), BODY_LIMIT)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::PayloadTooLarge),
        Err(e) => Err(ApiError::InvalidRequest(format!(
            "could not read the request body: {e}"
        ))),
    }
}

/// Parses a JSON object body into `T`. Only an object: serde would also
/// read a struct from an array (`[1]`), which no client means.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(ApiError::InvalidRequest(
                "the request body is empty; a JSON object is expected".into(),
            ));
        }
        Some(b'{') => {}
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "the request body must be a JSON object".into(),
            ));
        }
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::InvalidRequest(format!("malformed request body: {e}")))
}

/// `application/json`, `application/<anything>+json`, with any parameters.
fn is_json(content_type: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(content_type) else {
        return false;
    };
    let essence = text.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(is_json(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "json",
            "application/jsonp",
            "",
        ] {
            assert!(!is_json(bad.as_bytes()), "{bad}");
        }
    }
}
