//! What a token is (RFC 7662 introspection) and ending a client's session
//! by token (RFC 7009 revocation).

use super::{Introspection, SessionError, Sessions, secs};
use crate::store::{EndReason, RefreshState, Revocation, SessionStore};
use crate::time::Millis;
use crate::tokens::RefreshToken;

impl<S: SessionStore> Sessions<S> {
    /// Revocation for an OAuth client (RFC 7009): ends the session of an
    /// access or refresh token issued to `client`. A token that is invalid,
    /// expired or already ended needs nothing and is not an error.
    pub async fn revoke(&self, token: &str, client: &str, now: Millis) -> Result<(), SessionError> {
        let (owner, sid) = if let Some(refresh) = self.refresh.decode(token) {
            (refresh.owner, refresh.sid)
        } else {
            match self.access.verify(token, secs(now)) {
                Ok(claims) if claims.client_id.as_deref() != Some(client) => {
                    return Err(SessionError::NotOwner);
                }
                Ok(claims) => (claims.owner().into_owned(), claims.sid),
                Err(_) => return Ok(()),
            }
        };
        match self
            .store
            .revoke(&owner, sid, client, EndReason::Logout, now)
            .await?
        {
            Revocation::Ended | Revocation::Unknown => Ok(()),
            Revocation::NotOwner => Err(SessionError::NotOwner),
        }
    }

    /// What a live token is (RFC 7662); `None` for anything else. An access
    /// token is checked exactly as `/authenticate` does (and counts as use);
    /// a refresh token must be its session's current one.
    pub async fn introspect(
        &self,
        token: &str,
        now: Millis,
    ) -> Result<Option<Introspection>, SessionError> {
        if let Some(refresh) = self.refresh.decode(token) {
            let state = self.inspect_refresh(&refresh, now).await?;
            return Ok(state.map(|state| Introspection::Refresh {
                sid: refresh.sid,
                state,
            }));
        }
        match self.authenticate(token, now).await {
            Ok(claims) => Ok(Some(Introspection::Access(
                std::sync::Arc::unwrap_or_clone(claims),
            ))),
            Err(SessionError::InvalidToken(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// The session behind `refresh` if it is its current token; changes
    /// nothing.
    pub(super) async fn inspect_refresh(
        &self,
        refresh: &RefreshToken,
        now: Millis,
    ) -> Result<Option<RefreshState>, SessionError> {
        Ok(self
            .store
            .inspect_refresh(
                &refresh.owner,
                refresh.sid,
                refresh.generation,
                refresh.secret_hash(),
                now,
            )
            .await?)
    }
}
