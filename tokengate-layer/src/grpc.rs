//! A refusal as a gRPC client understands it: a trailers-only response
//! (HTTP `200`, `content-type: application/grpc`, `grpc-status` and
//! `grpc-message` in the headers, no body), as tonic itself answers an
//! error before any message. A gRPC client ignores HTTP statuses and JSON
//! bodies, so without this it would only see a protocol error.
//!
//! `401` → `UNAUTHENTICATED` (16), `403` → `PERMISSION_DENIED` (7), `503` →
//! `UNAVAILABLE` (14, which gRPC clients know to retry). The RFC 6750
//! challenge is kept as `www-authenticate`, for clients that read it.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::response::Answer;

const UNAUTHENTICATED: &str = "16";
const PERMISSION_DENIED: &str = "7";
const UNAVAILABLE: &str = "14";
const INTERNAL: &str = "13";

pub(crate) fn refusal(answer: &Answer) -> Response<Full<Bytes>> {
    let code = match answer.status {
        StatusCode::UNAUTHORIZED => UNAUTHENTICATED,
        StatusCode::FORBIDDEN => PERMISSION_DENIED,
        StatusCode::SERVICE_UNAVAILABLE => UNAVAILABLE,
        _ => INTERNAL,
    };
    let mut response = Response::new(Full::new(Bytes::new()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from_static(code));
    if let Ok(message) = HeaderValue::from_str(&percent_encode(&answer.description)) {
        headers.insert("grpc-message", message);
    }
    if let Some(challenge) = &answer.challenge {
        headers.insert(WWW_AUTHENTICATE, challenge.clone());
    }
    response
}

/// `grpc-message` is percent-encoded UTF-8: every byte outside
/// `0x20..=0x7E`, and `%` itself, becomes `%XX` (gRPC over HTTP/2 spec).
fn percent_encode(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for &byte in message.as_bytes() {
        if (0x20..=0x7E).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::response::Refusal;
    use crate::verifier::Rejection;

    fn header(response: &Response<Full<Bytes>>, name: &str) -> Option<String> {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn each_refusal_becomes_a_trailers_only_status() {
        let cases = [
            (Refusal::MissingToken, "16"),
            (Refusal::Token(Rejection::Expired), "16"),
            (Refusal::SessionEnded, "16"),
            (Refusal::ApiToken, "16"),
            (Refusal::InsufficientScope(Arc::from("orders:write")), "7"),
            (Refusal::Token(Rejection::KeysUnavailable), "14"),
            (Refusal::FeedDown, "14"),
            (Refusal::Unreachable, "14"),
        ];
        for (refusal, code) in cases {
            let http = refusal.respond(false);
            let grpc = refusal.respond(true);
            assert_eq!(grpc.status(), StatusCode::OK, "{refusal:?}");
            assert_eq!(
                header(&grpc, "content-type").as_deref(),
                Some("application/grpc")
            );
            assert_eq!(
                header(&grpc, "grpc-status").as_deref(),
                Some(code),
                "{refusal:?}"
            );
            assert!(header(&grpc, "grpc-message").is_some_and(|m| !m.is_empty()));
            assert_eq!(
                header(&grpc, "www-authenticate"),
                header(&http, "www-authenticate"),
                "{refusal:?}"
            );
            assert_eq!(hyper::body::Body::size_hint(grpc.body()).exact(), Some(0));
        }
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(
            percent_encode("needs \"a:b\" 100% é\n"),
            "needs \"a:b\" 100%25 %C3%A9%0A"
        );
        let refusal = Refusal::InsufficientScope(Arc::from("orders:write"));
        assert_eq!(
            header(&refusal.respond(true), "grpc-message").as_deref(),
            Some(r#"the token lacks a required scope (needs "orders:write")"#)
        );
    }
}
