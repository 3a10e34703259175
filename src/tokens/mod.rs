//! Token formats: signed access JWTs ([`access`]) and opaque refresh tokens
//! ([`refresh`]). Nothing here touches the store; the session rules decide
//! what a verified token is still worth.

pub mod access;
pub mod refresh;

pub use access::{AccessClaims, AccessTokens, Rejection, SignedAccess};
pub use refresh::{RefreshToken, RefreshTokens, SecretHash};
