//! Reading request bodies safely: content type first, then a hard size cap
//! (by `Content-Length` before reading, and while reading for chunked
//! bodies), then strict parsing with a message that says what is wrong.
//! JSON for our own endpoints; form-encoded or JSON parameters for OAuth.

use bytes::Bytes;
use http::Request;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;

use super::RequestBody;
use super::deadline::BodyTimeout;
use super::error::{ApiError, BODY_LIMIT};
use crate::service::ServiceError;

/// Reads the whole body, refusing non-JSON types and oversized bodies.
/// An absent `Content-Type` is taken as JSON.
pub async fn read(request: Request<impl RequestBody>) -> Result<Bytes, ApiError> {
    if request
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| !is_json(value.as_bytes()))
    {
        return Err(ApiError::UnsupportedMediaType);
    }
    read_limited(request).await
}

/// Parameters of an OAuth request: `application/x-www-form-urlencoded`
/// (RFC 6749; also taken when no `Content-Type` is given) or a JSON object
/// of strings with the same names.
pub struct Params {
    pairs: Vec<(String, String)>,
    pub is_json: bool,
}

impl Params {
    /// The value of `name`. Empty values count as absent and repeating a
    /// parameter is an error (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Result<Option<&str>, ServiceError> {
        let mut values = self
            .pairs
            .iter()
            .filter(|(key, value)| key == name && !value.is_empty());
        let first = values.next().map(|(_, value)| value.as_str());
        if values.next().is_some() {
            return Err(ServiceError::InvalidRequest(format!(
                "parameter {name} is given more than once"
            )));
        }
        Ok(first)
    }

    pub fn require(&self, name: &str) -> Result<&str, ServiceError> {
        self.get(name)?
            .ok_or_else(|| ServiceError::InvalidRequest(format!("parameter {name} is required")))
    }
}

pub async fn read_params(request: Request<impl RequestBody>) -> Result<Params, ApiError> {
    let is_json = match request.headers().get(CONTENT_TYPE) {
        None => false,
        Some(value) if is_json(value.as_bytes()) => true,
        Some(value) if is_form(value.as_bytes()) => false,
        Some(_) => return Err(ApiError::UnsupportedMediaType),
    };
    let bytes = read_limited(request).await?;
    let pairs = if is_json {
        let object: serde_json::Map<String, serde_json::Value> = parse(&bytes)?;
        object
            .into_iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => Ok((key, text)),
                serde_json::Value::Null => Ok((key, String::new())),
                _ => Err(ApiError::invalid(format!(
                    "parameter {key} must be a string"
                ))),
            })
            .collect::<Result<_, _>>()?
    } else {
        form_urlencoded::parse(&bytes).into_owned().collect()
    };
    Ok(Params { pairs, is_json })
}

async fn read_limited(request: Request<impl RequestBody>) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
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
        // The server's body deadline (`server.body_read_timeout`) passed.
        Err(e) if e.is::<BodyTimeout>() => Err(ApiError::RequestTimeout),
        Err(e) => Err(ApiError::invalid(format!(
            "could not read the request body: {e}"
        ))),
    }
}

/// Parses a JSON object body into `T`. Only an object: serde would also
/// read a struct from an array (`[1]`), which no client means.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ServiceError> {
    let invalid = |why: String| ServiceError::InvalidRequest(why);
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(invalid(
                "the request body is empty; a JSON object is expected".into(),
            ));
        }
        Some(b'{') => {}
        Some(_) => return Err(invalid("the request body must be a JSON object".into())),
    }
    // JSON is UTF-8 (RFC 8259 §8.1). `from_slice` checks only the strings it
    // keeps: invalid bytes in an ignored field would pass unseen.
    let text = std::str::from_utf8(bytes)
        .map_err(|e| invalid(format!("malformed request body: not UTF-8 ({e})")))?;
    serde_json::from_str(text).map_err(|e| invalid(format!("malformed request body: {e}")))
}

/// `application/json`, `application/<anything>+json`, with any parameters.
fn is_json(content_type: &[u8]) -> bool {
    application_subtype(content_type).is_some_and(|subtype| {
        subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json")
    })
}

fn is_form(content_type: &[u8]) -> bool {
    application_subtype(content_type)
        .is_some_and(|subtype| subtype.eq_ignore_ascii_case("x-www-form-urlencoded"))
}

/// The subtype of an `application/…` media type, parameters dropped.
fn application_subtype(content_type: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(content_type).ok()?;
    let essence = text.split(';').next().unwrap_or("").trim();
    let (kind, subtype) = essence.split_once('/')?;
    kind.eq_ignore_ascii_case("application").then_some(subtype)
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
        assert!(is_form(b"application/x-www-form-urlencoded; charset=UTF-8"));
        assert!(!is_form(b"multipart/form-data"));
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params {
            pairs: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            is_json: false,
        }
    }

    #[derive(Debug, serde::Deserialize)]
    struct Refresh {
        #[allow(dead_code)]
        refresh: String,
    }

    #[test]
    fn invalid_utf8_is_refused_even_in_ignored_fields() {
        // Found by the json_body fuzz target: serde_json's from_slice skips
        // unknown fields without checking their UTF-8.
        for body in [
            &b"{\"refresh\": \"x\", \"extra\": [0, {\"\x8a\xc4\xb6\": null}]}"[..],
            b"{\"extra\": \"\xff\", \"refresh\": \"x\"}",
        ] {
            assert!(matches!(
                parse::<Refresh>(body),
                Err(ServiceError::InvalidRequest(_))
            ));
        }
        assert!(parse::<Refresh>("{\"extra\": \"é\", \"refresh\": \"x\"}".as_bytes()).is_ok());
    }

    #[test]
    fn params_treat_empty_as_absent_and_refuse_repeats() {
        let p = params(&[("a", "1"), ("b", ""), ("c", "x"), ("c", "y")]);
        assert_eq!(p.get("a").unwrap(), Some("1"));
        assert_eq!(p.get("b").unwrap(), None);
        assert_eq!(p.get("z").unwrap(), None);
        assert!(p.get("c").is_err());
        assert!(p.require("b").is_err());
    }
}
