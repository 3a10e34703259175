//! Token formats: signed access JWTs ([`access`], with [`keys`]) and opaque
//! refresh tokens ([`refresh`]). Nothing here touches the store; the session rules decide
//! what a verified token is still worth.

pub mod access;
pub mod keys;
pub mod refresh;
pub mod verified;

pub use access::{AccessClaims, AccessTokens, Grant, Rejection, SignedAccess};
pub use refresh::{RefreshToken, RefreshTokens, SecretHash};
