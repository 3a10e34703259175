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
//!   `axum` feature, as an extractor).
//!
//! Not yet: the revocation feed (a logged-out session's access tokens pass
//! until they expire) and opaque API tokens. See `docs/layer.md`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use tokengate_layer::{AuthLayer, Verifier};
//!
//! let verifier = Verifier::jwks("http://tokengate:8080/.well-known/jwks.json").build()?;
//! verifier.load_keys().await?; // optional: refuse to start without keys
//! let any_user = AuthLayer::new(verifier.clone());
//! let writers = AuthLayer::new(verifier).require_scopes(["orders:write"])?;
//! # let _ = (any_user, writers);
//! # Ok(())
//! # }
//! ```
//!
//! ## Layout
//! - [`verifier`]: the checks, the key cache and its refresh rule.
//! - `keys`: JWKS document → keys, each with its pinned algorithm.
//! - [`jwks`]: where the JWKS comes from ([`JwksSource`], [`HttpJwks`]).
//! - [`layer`]: the tower layer and service; `response`: its refusals.
//! - [`claims`]: what a verified token says.
//! - `axum` (feature): the extractor.

#[cfg(feature = "axum")]
mod axum;
pub mod claims;
pub mod jwks;
mod endpoint;
mod keys;
pub mod layer;
mod response;
pub mod verifier;

pub use claims::Claims;
pub use jwks::{HttpJwks, JwksSource};
pub use layer::{Auth, AuthBody, AuthLayer, InvalidScope};
pub use verifier::{BuildError, Rejection, Verifier, VerifierBuilder};
