//! Verifies tokengate's access tokens locally: signature, algorithm, `typ`,
//! issuer, audience and time — what tokengate's own `/authenticate` checks
//! before it asks Redis (SPEC §2, §6, §13).
//!
//! Keys come from tokengate's JWKS, kept in memory and fetched again only
//! when a token names a `kid` we do not know (a rotated-in key), at most once
//! per refresh interval (10 s): a flood of made-up `kid`s costs tokengate one
//! request per interval, not one per token. Or there is one key, the HS256
//! secret shared with tokengate, and nothing to fetch.
//!
//! Verification is synchronous once the key is known (the hot path); only a
//! refresh awaits. Time is read once per call and passed down, so every rule
//! is testable at any "now" without sleeping.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use tokio::time::Instant;

use crate::claims::{Claims, Signed};
use crate::jwks::{HttpJwks, JwksSource, UrlError};
use crate::keys::{Expected, KeySet};
use crate::verified::Verified;

/// The `typ` header of tokengate's access tokens (RFC 9068 §2.1). Refresh
/// tokens are opaque (never JWTs), and any other JWT signed with the same key
/// (an ID token, say) has another `typ`.
const ACCESS_TOKEN_TYPES: [&str; 2] = ["at+jwt", "application/at+jwt"];

/// tokengate refuses HS256 secrets shorter than this (`auth.secret`).
const MIN_SECRET: usize = 32;

/// Why a token was refused. Logged; the caller only learns `invalid_token`
/// (or, for [`Rejection::KeysUnavailable`], that it should retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed")]
    Malformed,
    #[error("bad signature")]
    Signature,
    #[error("algorithm not accepted")]
    Algorithm,
    #[error("not an access token (typ)")]
    Type,
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    /// Signed with a key tokengate does not publish, even after a refresh.
    #[error("unknown key")]
    UnknownKey,
    /// The token names a key we do not have and the JWKS could not be
    /// fetched: not the token's fault, so not a `401`.
    #[error("signing keys unavailable")]
    KeysUnavailable,
}

impl Rejection {
    /// A short stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Signature => "signature",
            Self::Algorithm => "algorithm",
            Self::Type => "type",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::UnknownKey => "unknown_key",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// Why a verifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the HS256 secret must be at least {MIN_SECRET} bytes, as tokengate's auth.secret")]
    ShortSecret,
    #[error("JWKS URL: {0}")]
    Url(#[from] UrlError),
}

/// The outcome of verifying with the keys at hand.
pub(crate) enum Known {
    Verified(Claims),
    Rejected(Rejection),
    /// The token names a `kid` we do not have: worth one refresh.
    UnknownKid(String),
}

/// Verifies access tokens. Cheap to clone (shared keys and refresh state);
/// one per service, shared by every route's layer.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    expected: Expected,
    leeway_secs: u64,
    keys: RwLock<Arc<KeySet>>,
    /// Tokens already verified with these keys.
    verified: Verified,
    /// `None` for the shared secret: nothing to fetch.
    refresh: Option<Refresh>,
}

struct Refresh {
    source: Box<dyn JwksSource>,
    interval: Duration,
    /// Held across a fetch: concurrent requests with new `kid`s wait for the
    /// one fetch instead of starting their own.
    state: tokio::sync::Mutex<RefreshState>,
}

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    /// Whether the last attempt got a usable JWKS.
    healthy: bool,
}

enum Source {
    Secret(Vec<u8>),
    Jwks(Box<dyn JwksSource>),
    JwksUrl(String),
}

/// Builds a [`Verifier`]; see [`Verifier::jwks`] and [`Verifier::hs256`].
/// Defaults are tokengate's: issuer and audience `tokengate`, leeway 5 s.
pub struct VerifierBuilder {
    source: Source,
    issuer: String,
    audience: String,
    leeway: Duration,
    refresh_interval: Duration,
    fetch_timeout: Duration,
    cache: usize,
}

impl VerifierBuilder {
    fn new(source: Source) -> Self {
        Self {
            source,
            issuer: "tokengate".to_owned(),
            audience: "tokengate".to_owned(),
            leeway: Duration::from_secs(5),
            refresh_interval: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(5),
            cache: 10_000,
        }
    }

    /// How many verified tokens are remembered, so the next request with
    /// one skips its signature check (default 10,000; 0: verify every
    /// request). About 1 KiB each.
    pub fn cache(mut self, tokens: usize) -> Self {
        self.cache = tokens;
        self
    }

    /// tokengate's `auth.issuer`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// tokengate's `auth.audience`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Clock-skew tolerance for `exp`, `nbf` and `iat` (whole seconds).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The least time between two JWKS fetches (default 10 s).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// How long one JWKS fetch from a URL may take (default 5 s).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    pub fn build(self) -> Result<Verifier, BuildError> {
        let expected = Expected {
            issuer: self.issuer,
            audience: self.audience,
        };
        let (keys, source): (KeySet, Option<Box<dyn JwksSource>>) = match self.source {
            Source::Secret(secret) if secret.len() < MIN_SECRET => {
                return Err(BuildError::ShortSecret);
            }
            Source::Secret(secret) => (KeySet::secret(&secret, &expected), None),
            Source::Jwks(source) => (KeySet::Published(Default::default()), Some(source)),
            Source::JwksUrl(url) => (
                KeySet::Published(Default::default()),
                Some(Box::new(HttpJwks::new(&url, self.fetch_timeout)?)),
            ),
        };
        let refresh = source.map(|source| Refresh {
            source,
            interval: self.refresh_interval,
            state: tokio::sync::Mutex::new(RefreshState::default()),
        });
        Ok(Verifier {
            inner: Arc::new(Inner {
                expected,
                leeway_secs: self.leeway.as_secs(),
                keys: RwLock::new(Arc::new(keys)),
                verified: Verified::new(self.cache),
                refresh,
            }),
        })
    }
}

impl Verifier {
    /// Keys from tokengate's JWKS, e.g.
    /// `http://tokengate:8080/.well-known/jwks.json` (EdDSA, ES256, RS256).
    pub fn jwks(url: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder::new(Source::JwksUrl(url.into()))
    }

    /// Keys from a JWKS fetched by your own client (TLS, proxies, tests).
    pub fn jwks_from(source: impl JwksSource) -> VerifierBuilder {
        VerifierBuilder::new(Source::Jwks(Box::new(source)))
    }

    /// The HS256 secret shared with tokengate (`auth.secret`, ≥ 32 bytes).
    pub fn hs256(secret: impl Into<Vec<u8>>) -> VerifierBuilder {
        VerifierBuilder::new(Source::Secret(secret.into()))
    }

    /// Fetches the JWKS now, whatever the refresh interval says; for start-up,
    /// so a service can refuse to start without keys instead of answering
    /// `503` later. Nothing to do with a shared secret.
    pub async fn load_keys(&self) -> Result<usize, crate::jwks::BoxError> {
        let Some(refresh) = &self.inner.refresh else {
            return Ok(1);
        };
        let mut state = refresh.state.lock().await;
        self.fetch(refresh, &mut state).await
    }

    /// Verifies `token` now. Fetches the JWKS first if the token names a key
    /// we do not have (at most once per refresh interval).
    pub async fn verify(&self, token: &str) -> Result<Claims, Rejection> {
        self.verify_at(token, now_secs()).await
    }

    /// [`Verifier::verify`] at `now` (Unix seconds).
    pub async fn verify_at(&self, token: &str, now: u64) -> Result<Claims, Rejection> {
        match self.verify_known(token, now) {
            Known::Verified(claims) => Ok(claims),
            Known::Rejected(rejection) => Err(rejection),
            Known::UnknownKid(kid) => {
                self.refresh_for(&kid).await?;
                match self.verify_known(token, now) {
                    Known::Verified(claims) => Ok(claims),
                    Known::Rejected(rejection) => Err(rejection),
                    Known::UnknownKid(_) => Err(Rejection::UnknownKey),
                }
            }
        }
    }

    /// The clock-skew tolerance, whole seconds: also how long past its
    /// `until` a session's end must still be refused.
    pub(crate) fn leeway_secs(&self) -> u64 {
        self.inner.leeway_secs
    }

    /// Verifies with the keys at hand, without waiting for anything.
    pub(crate) fn verify_known(&self, token: &str, now: u64) -> Known {
        if let Some(signed) = self.inner.verified.get(token) {
            return match self.check_times(&signed, now) {
                Ok(()) => Known::Verified(signed.claims),
                Err(rejection) => Known::Rejected(rejection),
            };
        }
        let generation = self.inner.verified.generation();
        let keys = Arc::clone(
            &self
                .inner
                .keys
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let key = match &*keys {
            KeySet::Secret(key) => key,
            KeySet::Published(_) => {
                let kid = match jsonwebtoken::decode_header(token) {
                    Ok(header) => header.kid,
                    Err(error) => return Known::Rejected(rejection(error.kind())),
                };
                // tokengate's tokens always carry a kid.
                let Some(kid) = kid else {
                    return Known::Rejected(Rejection::UnknownKey);
                };
                match keys.find(Some(&kid)) {
                    Some(key) => key,
                    None => return Known::UnknownKid(kid),
                }
            }
        };
        let data = match jsonwebtoken::decode::<Signed>(token, &key.key, &key.validation) {
            Ok(data) => data,
            Err(error) => return Known::Rejected(rejection(error.kind())),
        };
        let typ_ok = data.header.typ.as_deref().is_some_and(|typ| {
            ACCESS_TOKEN_TYPES
                .iter()
                .any(|t| typ.eq_ignore_ascii_case(t))
        });
        if !typ_ok {
            return Known::Rejected(Rejection::Type);
        }
        match self.check_times(&data.claims, now) {
            Ok(()) => {
                let leeway = self.inner.leeway_secs;
                let verified = &self.inner.verified;
                verified.insert(token, &data.claims, generation, now, leeway);
                Known::Verified(data.claims.claims)
            }
            Err(rejection) => Known::Rejected(rejection),
        }
    }

    fn check_times(&self, signed: &Signed, now: u64) -> Result<(), Rejection> {
        let leeway = self.inner.leeway_secs;
        if signed.claims.exp.saturating_add(leeway) < now {
            return Err(Rejection::Expired);
        }
        let not_before = signed.nbf.unwrap_or(0).max(signed.claims.iat);
        if not_before > now.saturating_add(leeway) {
            return Err(Rejection::NotYetValid);
        }
        Ok(())
    }

    /// One refresh for a token that names `kid`, unless another request just
    /// fetched it or the last attempt was less than an interval ago.
    async fn refresh_for(&self, kid: &str) -> Result<(), Rejection> {
        let Some(refresh) = &self.inner.refresh else {
            return Err(Rejection::UnknownKey);
        };
        let mut state = refresh.state.lock().await;
        if self.has_key(kid) {
            return Ok(());
        }
        if let Some(last) = state.last_attempt
            && last.elapsed() < refresh.interval
        {
            return Err(if state.healthy {
                Rejection::UnknownKey
            } else {
                Rejection::KeysUnavailable
            });
        }
        match self.fetch(refresh, &mut state).await {
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::warn!(%error, "JWKS refresh failed; keeping the keys we have");
                Err(Rejection::KeysUnavailable)
            }
        }
    }

    fn has_key(&self, kid: &str) -> bool {
        self.inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .find(Some(kid))
            .is_some()
    }

    /// Fetches and installs the JWKS; the attempt counts for the interval
    /// whether it succeeds or not.
    async fn fetch(
        &self,
        refresh: &Refresh,
        state: &mut RefreshState,
    ) -> Result<usize, crate::jwks::BoxError> {
        state.last_attempt = Some(Instant::now());
        state.healthy = false;
        let document = refresh.source.fetch().await?;
        let keys = KeySet::from_jwks(&document, &self.inner.expected)?;
        let count = keys.len();
        *self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        // A key may have gone: what it verified must not pass any more.
        self.inner.verified.clear();
        state.healthy = true;
        tracing::debug!(keys = count, "JWKS loaded");
        Ok(count)
    }
}

impl fmt::Debug for Verifier {
    /// Never the keys (a shared secret among them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.expected.issuer)
            .field("audience", &self.inner.expected.audience)
            .field("leeway_secs", &self.inner.leeway_secs)
            .field("jwks", &self.inner.refresh.is_some())
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn rejection(kind: &ErrorKind) -> Rejection {
    match kind {
        ErrorKind::InvalidSignature => Rejection::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Rejection::Algorithm,
        ErrorKind::ExpiredSignature => Rejection::Expired,
        ErrorKind::ImmatureSignature => Rejection::NotYetValid,
        ErrorKind::InvalidIssuer => Rejection::Issuer,
        ErrorKind::InvalidAudience => Rejection::Audience,
        _ => Rejection::Malformed,
    }
}

#[cfg(test)]
pub(crate) mod tests;
