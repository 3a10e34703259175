//! A user's sessions as a whole: listing them (`GET /sessions`), ending one
//! of them (`DELETE /sessions/{sid}`) or all of them on every replica
//! (`POST /logout {"all": true}`), and the same for an operator by `sub`.
//!
//! The caller proves who they are with a *current* token — an access token
//! that `/authenticate` would accept, or the session's current refresh
//! token — not merely a signed one, as plain logout accepts: ending every
//! session of a user is too much to grant a superseded token.

use uuid::Uuid;

use super::{SessionError, Sessions};
use crate::store::{EndReason, Revocation, SessionInfo, SessionStore};
use crate::time::Millis;
use crate::tokens::AccessClaims;

/// Most sessions one listing returns.
pub const LIST_LIMIT: u32 = 1000;

impl<S: SessionStore> Sessions<S> {
    /// The caller's live sessions, oldest first, with the claims of the
    /// token that asked (its `sid` is the current session).
    pub async fn own_sessions(
        &self,
        token: &str,
        now: Millis,
    ) -> Result<(AccessClaims, Vec<SessionInfo>), SessionError> {
        let claims = self.authenticate(token, now).await?;
        let sessions = self
            .store
            .sessions_of(&claims.owner(), now, LIST_LIMIT)
            .await?;
        Ok((std::sync::Arc::unwrap_or_clone(claims), sessions))
    }

    /// Ends one of the caller's sessions; `UnknownSession` if it is not
    /// theirs or not live (the two are not told apart).
    pub async fn end_own_session(
        &self,
        token: &str,
        sid: Uuid,
        now: Millis,
    ) -> Result<(), SessionError> {
        let claims = self.authenticate(token, now).await?;
        self.end_owned(&claims.owner(), sid, now).await
    }

    /// Ends `owner`'s session `sid`; `UnknownSession` if it is not theirs or
    /// not live.
    pub(super) async fn end_owned(
        &self,
        owner: &str,
        sid: Uuid,
        now: Millis,
    ) -> Result<(), SessionError> {
        match self
            .store
            .end_owned(sid, owner, EndReason::Logout, now)
            .await?
        {
            Revocation::Ended => Ok(()),
            Revocation::Unknown | Revocation::NotOwner => Err(SessionError::UnknownSession),
        }
    }

    /// Ends every session of the holder of a current access token.
    pub async fn logout_all_with_access(
        &self,
        token: &str,
        now: Millis,
    ) -> Result<u64, SessionError> {
        let claims = self.authenticate(token, now).await?;
        Ok(self
            .store
            .end_all(&claims.owner(), EndReason::LogoutAll, now)
            .await?)
    }

    /// Ends every session of the holder of a current refresh token.
    pub async fn logout_all_with_refresh(
        &self,
        presented: &str,
        now: Millis,
    ) -> Result<u64, SessionError> {
        let refresh = self
            .refresh
            .decode(presented)
            .ok_or(SessionError::InvalidGrant)?;
        let state = self
            .inspect_refresh(&refresh, now)
            .await?
            .ok_or(SessionError::InvalidGrant)?;
        Ok(self
            .store
            .end_all(&state.subject.owner(), EndReason::LogoutAll, now)
            .await?)
    }

    /// The live sessions of `owner` (a user's `sub`, or `client:<id>`),
    /// for an operator.
    pub async fn sessions_of(
        &self,
        owner: &str,
        now: Millis,
    ) -> Result<Vec<SessionInfo>, SessionError> {
        Ok(self.store.sessions_of(owner, now, LIST_LIMIT).await?)
    }

    /// Ends every session of `owner`, for an operator.
    pub async fn logout_user(&self, owner: &str, now: Millis) -> Result<u64, SessionError> {
        Ok(self.store.end_all(owner, EndReason::Admin, now).await?)
    }
}
