//! The gate (SPEC §2 `/authenticate`, §9, §11): a bearer token is either an
//! access JWT of a live session or an opaque API token, and which one is
//! decided here, once, for every transport. The hot path: a JWT is verified
//! locally, then one store round trip (or none with the local cache); an API
//! token is one cache round trip.

use std::borrow::Cow;
use std::sync::Arc;

use super::{Gate, ServiceError};
use crate::api_tokens::ApiToken;
use crate::clients::Attempt;
use crate::session::SessionError;
use crate::tokens::AccessClaims;
use crate::tokens::api::is_api_token;

/// Who a valid bearer token speaks for.
#[derive(Debug, Clone)]
pub enum Identity {
    /// An access token of a live session.
    Session(Arc<AccessClaims>),
    /// A service's API token.
    ApiToken(ApiToken),
}

impl Identity {
    /// As the gate names it (`X-User-Id`): a user's `sub`, `client:<id>`
    /// for an OAuth client's session, `token:<name>` for an API token.
    pub fn user(&self) -> Cow<'_, str> {
        match self {
            Self::Session(claims) => claims.owner(),
            Self::ApiToken(token) => Cow::Owned(token.subject()),
        }
    }

    /// The granted scopes, space-separated.
    pub fn scope(&self) -> Cow<'_, str> {
        match self {
            Self::Session(claims) => Cow::Borrowed(claims.scope.as_deref().unwrap_or("")),
            Self::ApiToken(token) => Cow::Owned(token.scopes.join(" ")),
        }
    }

    /// A verified email to assert to apps, if any (SPEC §11).
    pub fn verified_email(&self) -> Option<&str> {
        match self {
            Self::Session(claims) => claims.verified_email(),
            Self::ApiToken(_) => None,
        }
    }

    /// The first of `required` the token lacks.
    fn missing<'a>(&self, required: &'a [String]) -> Option<&'a str> {
        match self {
            Self::Session(claims) => required
                .iter()
                .find(|s| !claims.scopes().any(|held| held == s.as_str()))
                .map(String::as_str),
            Self::ApiToken(token) => token.missing(required),
        }
    }
}

impl Gate {
    /// Whether `token` may pass, holding every scope in `required`. Counts
    /// as activity of its session (its idle clock restarts).
    pub async fn authenticate(
        &self,
        token: &str,
        required: &[String],
        caller: Attempt,
    ) -> Result<Identity, ServiceError> {
        let identity = if is_api_token(token) {
            Identity::ApiToken(self.validate_api_token(token, caller).await?)
        } else {
            Identity::Session(self.sessions.authenticate(token, caller.now).await?)
        };
        if let Some(missing) = identity.missing(required) {
            tracing::debug!(missing, "scope required at the gate");
            return Err(ServiceError::InsufficientScope(required.join(" ")));
        }
        Ok(identity)
    }

    /// The claims of an access token `/authenticate` would accept, or `None`
    /// (`/oauth/verify`: why it was refused is for the log only).
    pub async fn verify(&self, token: &str) -> Result<Option<Arc<AccessClaims>>, ServiceError> {
        match self.sessions.authenticate(token, crate::time::now()).await {
            Ok(claims) => Ok(Some(claims)),
            Err(SessionError::InvalidToken(reason)) => {
                tracing::debug!(reason = reason.label(), "verify: token refused");
                Ok(None)
            }
            Err(other) => Err(other.into()),
        }
    }
}
