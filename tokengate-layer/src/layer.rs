//! The tower [`Layer`]: `Authorization: Bearer` → [`Verifier`] → the route's
//! required scopes → the [`Claims`] as a request extension → the service.
//!
//! A refused request never reaches the service; it gets tokengate's own
//! answer (see [`crate::response`]). One layer per set of required scopes:
//! give a route its own layer (`route_layer` in axum) to require more.
//!
//! With the key at hand, verification is synchronous and the service's own
//! future is returned as it is (no box, no extra task); only a token naming
//! an unknown key takes the boxed path that awaits a JWKS refresh.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, Request, Response};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::claims::{Claims, is_scope_token};
use crate::response;
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
}

impl AuthLayer {
    /// Any valid access token passes; no scope is required.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            required: Arc::from(Vec::new()),
            challenge_scope: Arc::from(""),
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
            verifier: self.verifier,
        })
    }

    /// The request with the claims in its extensions, if the token has
    /// every required scope; else the `403`.
    fn admit<B>(&self, claims: Claims, mut request: Request<B>) -> Result<Request<B>, Refusal> {
        if !self.required.iter().all(|scope| claims.has_scope(scope)) {
            tracing::debug!(sub = %claims.sub, sid = %claims.sid, "access token refused: insufficient scope");
            return Err(Refusal::InsufficientScope);
        }
        request.extensions_mut().insert(claims);
        Ok(request)
    }

    fn refusal(&self, refusal: Refusal) -> Response<Full<Bytes>> {
        match refusal {
            Refusal::InsufficientScope => response::insufficient_scope(&self.challenge_scope),
        }
    }
}

/// Why a verified token does not reach the service.
enum Refusal {
    InsufficientScope,
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

type Refreshing<B, E> = Pin<Box<dyn Future<Output = Result<Response<AuthBody<B>>, E>> + Send>>;

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

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let token = match bearer_token(request.headers()) {
            Ok(Some(token)) => token,
            Ok(None) => return ResponseFuture::refused(response::missing_token()),
            Err(rejection) => return refuse(rejection),
        };
        let now = now_secs();
        match self.layer.verifier.verify_known(token, now) {
            Known::Verified(claims) => match self.layer.admit(claims, request) {
                Ok(request) => ResponseFuture::Inner {
                    future: self.inner.call(request),
                },
                Err(refusal) => ResponseFuture::refused(self.layer.refusal(refusal)),
            },
            Known::Rejected(rejection) => refuse(rejection),
            Known::UnknownKid(_) => {
                let token = token.to_owned();
                // The service that was polled ready serves this request
                // later; a clone stays for the next one.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let layer = self.layer.clone();
                ResponseFuture::Refreshing {
                    future: Box::pin(async move {
                        let claims = match layer.verifier.verify_at(&token, now).await {
                            Ok(claims) => claims,
                            Err(rejection) => {
                                log(rejection);
                                return Ok(response::refused(rejection).map(Either::Right));
                            }
                        };
                        match layer.admit(claims, request) {
                            Ok(request) => Ok(inner.call(request).await?.map(Either::Left)),
                            Err(refusal) => Ok(layer.refusal(refusal).map(Either::Right)),
                        }
                    }),
                }
            }
        }
    }
}

fn refuse<F, B, E>(rejection: Rejection) -> ResponseFuture<F, B, E> {
    log(rejection);
    ResponseFuture::refused(response::refused(rejection))
}

fn log(rejection: Rejection) {
    tracing::debug!(reason = rejection.label(), "access token refused");
}

pin_project! {
    /// The future of [`Auth`]: the service's own, a refusal, or a JWKS
    /// refresh followed by the service.
    #[project = Projected]
    pub enum ResponseFuture<F, B, E> {
        Inner { #[pin] future: F },
        Refused { future: Ready<Result<Response<Full<Bytes>>, E>> },
        Refreshing { future: Refreshing<B, E> },
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
            Projected::Refreshing { future } => future.as_mut().poll(cx),
        }
    }
}

/// The bearer token of the `Authorization` header, as tokengate reads it:
/// `Ok(None)` for no header, another scheme, or `Bearer` without a token; a
/// header that is not text is a refused token.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, Rejection> {
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
        token => Ok(Some(token)),
    }
}

#[cfg(test)]
mod tests;
