//! The tower [`Layer`]: `Authorization: Bearer` → a verified identity →
//! the route's required scopes → the identity as a request extension → the
//! service.
//!
//! An access token (a JWT) is verified by the [`Verifier`]; with a
//! [`Feed`], its session must not have ended. An API token (`tg_live_…`)
//! is judged by tokengate, through [`ApiTokens`]. A refused request never
//! reaches the service; it gets tokengate's own answer (see
//! `response`), in gRPC's form to a gRPC client. One layer per set of
//! required scopes: give a route its own layer (`route_layer` in axum) to
//! require more.
//!
//! The hot path is synchronous: with the key at hand, a trusted feed and a
//! cached API-token verdict, the service's own future is returned as it is
//! (no box, no extra task). Only waiting for something — a JWKS refresh for
//! an unknown key, tokengate's verdict on an uncached API token,
//! `/authenticate` while the feed is down — takes the boxed path.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::api_tokens::{self, ApiTokenClaims, ApiTokens, Key, Verdict};
use crate::claims::{Claims, is_scope_token};
use crate::endpoint::UrlError;
use crate::feed::{FallbackVerdict, Feed, Standing};
use crate::response::{self, Refusal};
use crate::verifier::{Known, Rejection, Verifier, now_secs};

/// The body of a response through the layer: the service's, or ours.
pub type AuthBody<B> = Either<B, Full<Bytes>>;

/// A scope given to [`AuthLayer::require_scopes`] is not an RFC 6749 scope
/// token (empty, a space, a quote, a backslash or a non-ASCII character).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid scope")]
pub struct InvalidScope(pub String);

/// Verifies the bearer token of every request and requires its scopes.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    verifier: Verifier,
    required: Arc<[String]>,
    /// `required`, space-separated, as the `403` challenge names it.
    challenge_scope: Arc<str>,
    feed: Option<Feed>,
    api_tokens: Option<ApiTokens>,
}

impl AuthLayer {
    /// Any valid access token passes; no scope is required. Without a feed,
    /// a logged-out session's tokens pass until they expire.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            required: Arc::from(Vec::new()),
            challenge_scope: Arc::from(""),
            feed: None,
            api_tokens: None,
        }
    }

    /// Requires every one of `scopes` (in addition to those required
    /// already); a token without one of them gets `403 insufficient_scope`.
    pub fn require_scopes<I, S>(self, scopes: I) -> Result<Self, InvalidScope>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut required = self.required.to_vec();
        for scope in scopes {
            let scope = scope.into();
            if !is_scope_token(&scope) {
                return Err(InvalidScope(scope));
            }
            if !required.contains(&scope) {
                required.push(scope);
            }
        }
        Ok(Self {
            challenge_scope: Arc::from(required.join(" ")),
            required: Arc::from(required),
            ..self
        })
    }

    /// Refuses the access tokens of sessions that have ended, as the feed
    /// reports them (`401`, "the session has ended"); while the feed cannot
    /// be trusted, fails closed (`503`) or asks `/authenticate`.
    pub fn with_feed(mut self, feed: Feed) -> Self {
        feed.retain_for(self.verifier.leeway_secs());
        self.feed = Some(feed);
        self
    }

    /// Accepts API tokens (`tg_live_…`) that tokengate says are valid and
    /// hold the required scopes; without this they are refused (`401`).
    pub fn with_api_tokens(mut self, api_tokens: ApiTokens) -> Self {
        self.api_tokens = Some(api_tokens);
        self
    }

    /// [`AuthLayer::with_api_tokens`] with the defaults (1 s TTL, 10,000
    /// verdicts) and tokengate's `POST /auth/validate` at `url`.
    pub fn api_tokens(self, url: impl Into<String>) -> Result<Self, UrlError> {
        Ok(self.with_api_tokens(ApiTokens::builder(url).build()?))
    }

    /// What to do with a request, without waiting for anything.
    fn decide(&self, headers: &HeaderMap, now: u64) -> Decision {
        let (authorization, token) = match bearer_token(headers) {
            Ok(Some(found)) => found,
            Ok(None) => return Decision::Refuse(Refusal::MissingToken),
            Err(rejection) => return Decision::Refuse(Refusal::Token(rejection)),
        };
        if token.starts_with(api_tokens::PREFIX) {
            return self.decide_api_token(token);
        }
        match self.verifier.verify_known(token, now) {
            Known::Verified(claims) => self.decide_session(claims, authorization, now),
            Known::Rejected(rejection) => Decision::Refuse(Refusal::Token(rejection)),
            Known::UnknownKid(_) => Decision::Wait(Wait::Keys {
                token: token.to_owned(),
                authorization: authorization.clone(),
            }),
        }
    }

    /// A verified access token: has its session ended?
    fn decide_session(&self, claims: Claims, authorization: &HeaderValue, now: u64) -> Decision {
        let Some(feed) = &self.feed else {
            return self.admit_scopes(claims);
        };
        match feed.standing(&claims.sid, claims.iat, now, self.verifier.leeway_secs()) {
            Standing::Clear => self.admit_scopes(claims),
            Standing::Ended => {
                tracing::debug!(sub = %claims.sub, sid = %claims.sid, "access token refused: session ended");
                Decision::Refuse(Refusal::SessionEnded)
            }
            Standing::Unknown if feed.fallback().is_some() => Decision::Wait(Wait::Authenticate {
                claims,
                authorization: authorization.clone(),
            }),
            Standing::Unknown => Decision::Refuse(Refusal::FeedDown),
        }
    }

    fn admit_scopes(&self, claims: Claims) -> Decision {
        if self.required.iter().all(|scope| claims.has_scope(scope)) {
            Decision::Admit(Identity::Access(claims))
        } else {
            tracing::debug!(sub = %claims.sub, sid = %claims.sid, "access token refused: insufficient scope");
            Decision::Refuse(self.insufficient_scope())
        }
    }

    fn decide_api_token(&self, token: &str) -> Decision {
        let Some(api_tokens) = &self.api_tokens else {
            return Decision::Refuse(Refusal::Token(Rejection::Malformed));
        };
        let key = api_tokens::key(token, &self.required);
        match api_tokens.cached(&key) {
            Some(verdict) => self.api_verdict(verdict),
            None => Decision::Wait(Wait::ApiToken {
                key,
                token: token.to_owned(),
            }),
        }
    }

    fn api_verdict(&self, verdict: Verdict) -> Decision {
        match verdict {
            Verdict::Valid(claims) if self.required.iter().all(|s| claims.has_scope(s)) => {
                Decision::Admit(Identity::Api(claims))
            }
            Verdict::Valid(_) | Verdict::InsufficientScope => {
                Decision::Refuse(self.insufficient_scope())
            }
            Verdict::Invalid => Decision::Refuse(Refusal::ApiToken),
            Verdict::Unavailable => Decision::Refuse(Refusal::Unreachable),
        }
    }

    fn insufficient_scope(&self) -> Refusal {
        Refusal::InsufficientScope(Arc::clone(&self.challenge_scope))
    }

    /// Waits for what [`AuthLayer::decide`] could not know, then decides.
    async fn decide_later(&self, mut wait: Wait, now: u64) -> Result<Identity, Refusal> {
        loop {
            let decision = match wait {
                Wait::Keys {
                    token,
                    authorization,
                } => match self.verifier.verify_at(&token, now).await {
                    Ok(claims) => self.decide_session(claims, &authorization, now),
                    Err(rejection) => Decision::Refuse(Refusal::Token(rejection)),
                },
                Wait::ApiToken { key, token } => match &self.api_tokens {
                    Some(api_tokens) => {
                        self.api_verdict(api_tokens.validate(key, &token, &self.required).await)
                    }
                    None => Decision::Refuse(Refusal::Token(Rejection::Malformed)),
                },
                Wait::Authenticate {
                    claims,
                    authorization,
                } => match self.feed.as_ref().and_then(Feed::fallback) {
                    Some(fallback) => match fallback.ask(authorization).await {
                        FallbackVerdict::Pass => self.admit_scopes(claims),
                        FallbackVerdict::Refused => Decision::Refuse(Refusal::SessionEnded),
                        FallbackVerdict::Unavailable => Decision::Refuse(Refusal::Unreachable),
                    },
                    None => Decision::Refuse(Refusal::FeedDown),
                },
            };
            match decision {
                Decision::Admit(identity) => return Ok(identity),
                Decision::Refuse(refusal) => return Err(refusal),
                Decision::Wait(next) => wait = next,
            }
        }
    }
}

/// Who a request is, once admitted.
enum Identity {
    Access(Claims),
    Api(ApiTokenClaims),
}

impl Identity {
    fn attach<B>(self, request: &mut Request<B>) {
        let extensions = request.extensions_mut();
        match self {
            Self::Access(claims) => {
                extensions.insert(claims);
            }
            Self::Api(claims) => {
                extensions.insert(claims);
            }
        }
    }
}

enum Decision {
    Admit(Identity),
    Refuse(Refusal),
    Wait(Wait),
}

/// What a decision waits for.
enum Wait {
    /// The JWKS, for a token naming a key we do not have.
    Keys {
        token: String,
        authorization: HeaderValue,
    },
    /// tokengate's verdict on an API token not in the cache.
    ApiToken { key: Key, token: String },
    /// `/authenticate`'s verdict, while the feed is not trusted.
    Authenticate {
        claims: Claims,
        authorization: HeaderValue,
    },
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around yours.
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

type Waiting<B, E> = Pin<Box<dyn Future<Output = Result<Response<AuthBody<B>>, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let grpc = response::is_grpc(request.headers());
        let now = now_secs();
        match self.layer.decide(request.headers(), now) {
            Decision::Admit(identity) => {
                identity.attach(&mut request);
                ResponseFuture::Inner {
                    future: self.inner.call(request),
                }
            }
            Decision::Refuse(refusal) => ResponseFuture::refused(refuse(&refusal, grpc)),
            Decision::Wait(wait) => {
                // The service that was polled ready serves this request
                // later; a clone stays for the next one.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let layer = self.layer.clone();
                ResponseFuture::Waiting {
                    future: Box::pin(async move {
                        match layer.decide_later(wait, now).await {
                            Ok(identity) => {
                                identity.attach(&mut request);
                                Ok(inner.call(request).await?.map(Either::Left))
                            }
                            Err(refusal) => Ok(refuse(&refusal, grpc).map(Either::Right)),
                        }
                    }),
                }
            }
        }
    }
}

fn refuse(refusal: &Refusal, grpc: bool) -> Response<Full<Bytes>> {
    tracing::debug!(reason = refusal.label(), "request refused");
    refusal.respond(grpc)
}

pin_project! {
    /// The future of [`Auth`]: the service's own, a refusal, or a wait
    /// (keys, a verdict) followed by the service.
    #[project = Projected]
    pub enum ResponseFuture<F, B, E> {
        Inner { #[pin] future: F },
        Refused { future: Ready<Result<Response<Full<Bytes>>, E>> },
        Waiting { future: Waiting<B, E> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    fn refused(response: Response<Full<Bytes>>) -> Self {
        Self::Refused {
            future: ready(Ok(response)),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<AuthBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Projected::Inner { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(Either::Left))),
            Projected::Refused { future } => Pin::new(future)
                .poll(cx)
                .map(|result| result.map(|response| response.map(Either::Right))),
            Projected::Waiting { future } => future.as_mut().poll(cx),
        }
    }
}

/// The `Authorization` header and its bearer token, as tokengate reads it:
/// `Ok(None)` for no header, another scheme, or `Bearer` without a token; a
/// header that is not text is a refused token.
fn bearer_token(headers: &HeaderMap) -> Result<Option<(&HeaderValue, &str)>, Rejection> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| Rejection::Malformed)?.trim();
    let Some((scheme, token)) = text.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    match token.trim() {
        "" => Ok(None),
        token => Ok(Some((value, token))),
    }
}

#[cfg(test)]
mod tests;
