//! While the set is not trusted: ask tokengate's public `/authenticate`
//! about the request's token, as nginx does (SPEC §2). Only a `200` lets
//! the request through; a `401`/`403` is tokengate saying the token is no
//! good (the session ended while we were not listening); anything else is
//! no answer, and no answer never passes.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::Empty;

use crate::endpoint::Endpoint;

/// tokengate's `/authenticate` answers with the claims: a few hundred bytes.
const MAX_ANSWER: usize = 16 * 1024;

#[derive(Debug)]
pub(crate) struct Fallback {
    endpoint: Endpoint,
    timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    Refused,
    Unavailable,
}

impl Fallback {
    pub(crate) fn new(endpoint: Endpoint, timeout: Duration) -> Self {
        Self { endpoint, timeout }
    }

    /// Asks about the request's own `Authorization` header.
    pub(crate) async fn ask(&self, authorization: HeaderValue) -> Verdict {
        let request = self
            .endpoint
            .request()
            .method(Method::GET)
            .header(header::AUTHORIZATION, authorization)
            .header(header::CONNECTION, "close")
            .body(Empty::<Bytes>::new());
        let request = match request {
            Ok(request) => request,
            Err(_) => return Verdict::Unavailable,
        };
        match self.endpoint.call(request, MAX_ANSWER, self.timeout).await {
            Ok(response) => match response.status() {
                StatusCode::OK => Verdict::Pass,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Verdict::Refused,
                status => {
                    tracing::warn!(%status, "fallback /authenticate gave no verdict");
                    Verdict::Unavailable
                }
            },
            Err(error) => {
                tracing::warn!(%error, "fallback /authenticate unreachable");
                Verdict::Unavailable
            }
        }
    }
}
