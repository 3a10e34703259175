//! Opaque API tokens (`tg_live_…`, SPEC §9) are not JWTs: only tokengate
//! can say whether one is valid, through its public `POST /auth/validate`.
//! The layer asks, and keeps each verdict (valid or not) for a short TTL so
//! a busy service asks about each token about once per TTL, not once per
//! request.
//!
//! The TTL adds to tokengate's revocation delay (a revoked token fails
//! everywhere within 1 s): with the default 1 s, a revoked token may pass
//! here for up to 2 s. The cache is bounded, and keyed by a SHA-256 of the
//! token (and the scopes asked for), never the token itself. A tokengate
//! that cannot answer (unreachable, `503`) is never cached: the request
//! gets `503` and the next one asks again.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_lc_rs::digest;
use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use uuid::Uuid;

use crate::endpoint::{Endpoint, UrlError};

/// Where an API token starts; anything else is taken for a JWT.
pub(crate) const PREFIX: &str = "tg_live_";

/// A verdict is a few hundred bytes.
const MAX_ANSWER: usize = 16 * 1024;

/// What a valid API token is: reaches the handler as a request extension
/// (and, with the `axum` feature, as an extractor), where a JWT's
/// [`Claims`](crate::Claims) would be.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiTokenClaims {
    /// The token's id (`tokengate token info ID`).
    pub token_id: Uuid,
    /// The name given when it was created: which service this is.
    pub name: String,
    /// Everything the token may do (not only what the route required).
    pub scopes: Vec<String>,
}

impl ApiTokenClaims {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// tokengate's verdict on one token for one set of required scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Valid(ApiTokenClaims),
    /// Valid, but without a required scope.
    InsufficientScope,
    Invalid,
    /// No verdict: tokengate unreachable or unable to answer.
    Unavailable,
}

/// Builds [`ApiTokens`]; see [`ApiTokens::builder`].
#[derive(Debug)]
pub struct ApiTokensBuilder {
    url: String,
    ttl: Duration,
    max_entries: usize,
    timeout: Duration,
}

impl ApiTokensBuilder {
    /// How long a verdict is reused (default 1 s). It adds to the revocation
    /// delay: a revoked token may pass here this much longer.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How many verdicts are kept at most (default 10,000).
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.max_entries = entries.max(1);
        self
    }

    /// How long one `/auth/validate` call may take before the request gets
    /// `503` (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn build(self) -> Result<ApiTokens, UrlError> {
        Ok(ApiTokens {
            inner: Arc::new(Inner {
                endpoint: Endpoint::parse(&self.url)?,
                ttl: self.ttl,
                max_entries: self.max_entries,
                timeout: self.timeout,
                cache: Mutex::new(HashMap::new()),
            }),
        })
    }
}

/// Checks API tokens with tokengate's `/auth/validate`, through a shared
/// cache. Cheap to clone; one per service, given to every layer
/// ([`AuthLayer::with_api_tokens`](crate::AuthLayer::with_api_tokens)).
#[derive(Clone)]
pub struct ApiTokens {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    ttl: Duration,
    max_entries: usize,
    timeout: Duration,
    cache: Mutex<HashMap<Key, (Verdict, Instant)>>,
}

/// SHA-256 of the token and the required scopes.
pub(crate) type Key = [u8; 32];

#[derive(Serialize)]
struct ValidateRequest<'a> {
    token: &'a str,
    required_scopes: &'a [String],
}

#[derive(Deserialize)]
struct ValidateAnswer {
    valid: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(flatten)]
    claims: Option<ApiTokenClaims>,
}

impl ApiTokens {
    /// Tokens checked at tokengate's `POST /auth/validate`, e.g.
    /// `http://tokengate:8080/auth/validate`.
    pub fn builder(url: impl Into<String>) -> ApiTokensBuilder {
        ApiTokensBuilder {
            url: url.into(),
            ttl: Duration::from_secs(1),
            max_entries: 10_000,
            timeout: Duration::from_secs(2),
        }
    }

    /// The cached verdict, if there is a fresh one: no waiting.
    pub(crate) fn cached(&self, key: &Key) -> Option<Verdict> {
        let cache = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cache
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.inner.ttl)
            .map(|(verdict, _)| verdict.clone())
    }

    /// Asks tokengate about `token` (whose [`key`] is `key`), and caches the
    /// verdict if there is one.
    pub(crate) async fn validate(&self, key: Key, token: &str, required: &[String]) -> Verdict {
        let verdict = self.ask(token, required).await;
        if verdict != Verdict::Unavailable {
            self.remember(key, verdict.clone());
        }
        verdict
    }

    async fn ask(&self, token: &str, required: &[String]) -> Verdict {
        let body = match serde_json::to_vec(&ValidateRequest {
            token,
            required_scopes: required,
        }) {
            Ok(body) => body,
            Err(_) => return Verdict::Unavailable,
        };
        let request = self
            .inner
            .endpoint
            .request()
            .method(Method::POST)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(header::CONNECTION, "close")
            .body(Full::new(Bytes::from(body)));
        let Ok(request) = request else {
            return Verdict::Unavailable;
        };
        let response = match self
            .inner
            .endpoint
            .call(request, MAX_ANSWER, self.inner.timeout)
            .await
        {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(%error, "/auth/validate unreachable");
                return Verdict::Unavailable;
            }
        };
        if response.status() != StatusCode::OK {
            tracing::warn!(status = %response.status(), "/auth/validate gave no verdict");
            return Verdict::Unavailable;
        }
        match serde_json::from_slice::<ValidateAnswer>(response.body()) {
            Ok(ValidateAnswer {
                valid: true,
                claims: Some(claims),
                ..
            }) => Verdict::Valid(claims),
            Ok(ValidateAnswer {
                valid: false,
                error,
                ..
            }) if error.as_deref() == Some("insufficient_scope") => Verdict::InsufficientScope,
            Ok(ValidateAnswer { valid: false, .. }) => Verdict::Invalid,
            Ok(ValidateAnswer { valid: true, .. }) | Err(_) => {
                tracing::warn!("/auth/validate answered something that is not a verdict");
                Verdict::Unavailable
            }
        }
    }

    fn remember(&self, key: Key, verdict: Verdict) {
        let now = Instant::now();
        let mut cache = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.inner.max_entries && !cache.contains_key(&key) {
            let ttl = self.inner.ttl;
            cache.retain(|_, (_, at)| now.duration_since(*at) < ttl);
            // Still full of fresh verdicts (a flood of distinct tokens):
            // any one may go; it is asked about again if it comes back.
            if cache.len() >= self.inner.max_entries
                && let Some(victim) = cache.keys().next().copied()
            {
                cache.remove(&victim);
            }
        }
        cache.insert(key, (verdict, now));
    }

    #[cfg(test)]
    pub(crate) fn cache_len(&self) -> usize {
        self.inner.cache.lock().unwrap().len()
    }
}

/// The cache key: the token never sits in memory longer than the request.
pub(crate) fn key(token: &str, required: &[String]) -> Key {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(token.as_bytes());
    for scope in required {
        // A separator no scope or token contains: ("ab", ["c"]) ≠ ("a", ["bc"]).
        context.update(b" ");
        context.update(scope.as_bytes());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

impl fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiTokens")
            .field("endpoint", &self.inner.endpoint)
            .field("ttl", &self.inner.ttl)
            .field("max_entries", &self.inner.max_entries)
            .finish_non_exhaustive()
    }
}
