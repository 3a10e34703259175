//! # tokengate-layer
//!
//! A [`tower::Layer`] that lets a Rust service (axum, tonic, any tower stack)
//! accept tokengate's access tokens without asking tokengate on every
//! request (SPEC §13):
//!
//! - the signature, with keys from tokengate's JWKS (refreshed when a token
//!   names an unknown `kid`, at most once per 10 s) or the HS256 secret shared
//!   with it; the algorithm comes from the key, never from the token;
//! - `typ: at+jwt` (refresh tokens and other JWTs are refused), `iss`, `aud`,
//!   and `exp`/`nbf`/`iat` with a leeway;
//! - the scopes each route requires (`403 insufficient_scope`);
//! - the [`Claims`] reach the handler as a request extension (with the
//!   `axum` feature, as an extractor);
//! - the **revocation feed** ([`Feed`]): tokengate's stream of ended
//!   sessions, so a logged-out session's tokens are refused within
//!   milliseconds (`401`, "the session has ended"); while the feed is down
//!   for longer than its bound, the layer fails closed (`503`) or asks
//!   `/authenticate` per request;
//! - opaque **API tokens** (`tg_live_…`, [`ApiTokens`]), judged by
//!   tokengate's `/auth/validate` with a short-lived cache; the
//!   [`ApiTokenClaims`] reach the handler;
//! - a gRPC client (tonic) gets its refusals as gRPC statuses
//!   (`UNAUTHENTICATED`, `PERMISSION_DENIED`, `UNAVAILABLE`).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::time::Duration;
//! use tokengate_layer::{ApiTokens, AuthLayer, Feed, Verifier};
//!
//! let verifier = Verifier::jwks("http://tokengate:8080/.well-known/jwks.json").build()?;
//! verifier.load_keys().await?; // optional: refuse to start without keys
//! let feed = Feed::builder("http://tokengate:9090/events/sessions", "tg_live_…")
//!     .max_outage(Duration::from_secs(5))
//!     .fallback_authenticate("http://tokengate:8080/authenticate")
//!     .start()?;
//! // Optional: answer the first requests without a 503.
//! let _ = tokio::time::timeout(Duration::from_secs(5), feed.wait_live()).await;
//! let api_tokens = ApiTokens::builder("http://tokengate:8080/auth/validate").build()?;
//!
//! let any_user = AuthLayer::new(verifier.clone()).with_feed(feed.clone());
//! let writers = AuthLayer::new(verifier)
//!     .with_feed(feed)
//!     .with_api_tokens(api_tokens)
//!     .require_scopes(["orders:write"])?;
//! # let _ = (any_user, writers);
//! # Ok(())
//! # }
//! ```
//!
//! ## Layout
//! - [`verifier`]: the checks, the key cache and its refresh rule.
//! - `keys`: JWKS document → keys, each with its pinned algorithm.
//! - [`jwks`]: where the JWKS comes from ([`JwksSource`], [`HttpJwks`]).
//! - [`feed`]: the revocation feed — its task and health (`feed/client`),
//!   the SSE parser (`feed/sse`), the set of ended sessions (`feed/ended`),
//!   and the `/authenticate` fallback (`feed/fallback`).
//! - [`api_tokens`]: `tg_live_…` tokens through `/auth/validate`, cached.
//! - `endpoint`: the one plain HTTP/1.1 client all of those use.
//! - [`layer`]: the tower layer and service, deciding per request.
//! - `response`: its refusals, in words and as JSON; `grpc`: the same as
//!   gRPC statuses.
//! - [`claims`]: what a verified token says.
//! - `axum` (feature): the extractors.

pub mod api_tokens;
#[cfg(feature = "axum")]
mod axum;
pub mod claims;
mod endpoint;
pub mod feed;
mod grpc;
pub mod jwks;
mod keys;
pub mod layer;
mod response;
mod verified;
pub mod verifier;

#[cfg(test)]
mod testing;

pub use api_tokens::{ApiTokenClaims, ApiTokens, ApiTokensBuilder};
pub use claims::Claims;
pub use endpoint::UrlError;
pub use feed::{Feed, FeedBuilder, FeedError};
pub use jwks::{HttpJwks, JwksSource};
pub use layer::{Auth, AuthBody, AuthLayer, InvalidScope};
pub use verifier::{BuildError, Rejection, Verifier, VerifierBuilder};
