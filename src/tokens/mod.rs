//! Token formats: signed access JWTs ([`access`], with [`keys`]), opaque
//! refresh tokens ([`refresh`]), API tokens ([`api`]) and scope syntax
//! ([`scope`]). Nothing here touches the store; the session rules decide
//! what a verified token is still worth.

pub mod access;
pub mod api;
pub mod keys;
pub mod refresh;
pub mod scope;
pub mod verified;

pub use access::{AccessClaims, AccessTokens, Grant, Rejection, SignedAccess};
pub use refresh::{RefreshToken, RefreshTokens, SecretHash};

use std::borrow::Cow;

/// How the gate names an OAuth client's own (`client_credentials`) session:
/// `client:<id>`. A user id never starts with it, so a user named like a
/// client is never taken for it (SPEC §11: identities don't collide).
pub const CLIENT_PREFIX: &str = "client:";

/// Who a session belongs to, as the gate names it (`X-User-Id`) and as its
/// owner's session index is keyed: a user's `sub`, or `client:<id>` for a
/// session issued to an OAuth client (whose `sub` is the client id).
/// `store/scripts/owner.lua` says the same in Lua.
pub fn owner<'a>(sub: &'a str, client: Option<&str>) -> Cow<'a, str> {
    match client {
        Some(_) => Cow::Owned(format!("{CLIENT_PREFIX}{sub}")),
        None => Cow::Borrowed(sub),
    }
}
