//! A session's life after login (SPEC §2, §3): refresh rotation, logout of
//! one session or of every session of its owner, and a user's own list of
//! sessions.

use serde::Serialize;
use uuid::Uuid;

use super::{Gate, ServiceError};
use crate::session::{SessionError, TokenPair};
use crate::store::SessionInfo;
use crate::time::now;
use crate::tokens::Rejection;

/// A session as the API lists it: times in seconds, like JWT claims.
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    pub session_id: Uuid,
    pub created_at: u64,
    pub last_active: u64,
    /// The OAuth client it was issued to; `null` for `/login` sessions.
    pub client_id: Option<String>,
    /// Whether it is the session of the token (or browser) that asked.
    pub current: bool,
    /// A browser's session (SPEC §15), not a token holder's.
    pub browser: bool,
}

impl SessionView {
    pub(super) fn new(session: &SessionInfo, current: Option<Uuid>) -> Self {
        Self {
            session_id: session.sid,
            created_at: session.created_at / 1000,
            last_active: session.last_active / 1000,
            client_id: session.client.clone(),
            current: current == Some(session.sid),
            browser: session.browser,
        }
    }
}

/// How a logout names its session.
#[derive(Debug, Clone, Copy)]
pub enum Logout<'a> {
    /// A correctly signed, unexpired access token of the session (ending
    /// every session needs a current one).
    Access(&'a str),
    /// A refresh token of the session, of any generation (ending every
    /// session needs the current one).
    Refresh(&'a str),
}

impl Gate {
    /// Rotates a refresh token to its successor pair (`/refresh`).
    pub async fn refresh(&self, presented: &str) -> Result<TokenPair, ServiceError> {
        Ok(self.sessions.refresh(presented, None, None, now()).await?)
    }

    /// Ends the session (`all`: every session of its owner, on every
    /// replica). Answers how many sessions `all` ended. Idempotent.
    pub async fn logout(&self, by: Logout<'_>, all: bool) -> Result<Option<u64>, ServiceError> {
        let now = now();
        let ended = match (by, all) {
            (Logout::Access(token), false) => {
                self.sessions.logout_with_access(token, now).await?;
                None
            }
            (Logout::Access(token), true) => {
                Some(self.sessions.logout_all_with_access(token, now).await?)
            }
            (Logout::Refresh(token), false) => self
                .sessions
                .logout_with_refresh(token, now)
                .await
                .map(|()| None)
                .map_err(refresh_logout)?,
            (Logout::Refresh(token), true) => self
                .sessions
                .logout_all_with_refresh(token, now)
                .await
                .map(Some)
                .map_err(refresh_logout)?,
        };
        if let Some(ended) = ended {
            tracing::info!(ended, "every session of a user ended by the user");
        }
        Ok(ended)
    }

    /// The caller's live sessions, oldest first; the one asking is marked
    /// current.
    pub async fn own_sessions(&self, token: &str) -> Result<Vec<SessionView>, ServiceError> {
        let (claims, sessions) = self.sessions.own_sessions(token, now()).await?;
        Ok(sessions
            .iter()
            .map(|s| SessionView::new(s, Some(claims.sid)))
            .collect())
    }

    /// Ends one of the caller's sessions; `NotFound` if it is not one of
    /// their live ones (the two are not told apart).
    pub async fn end_own_session(&self, token: &str, sid: Uuid) -> Result<(), ServiceError> {
        self.sessions.end_own_session(token, sid, now()).await?;
        tracing::info!(%sid, "session ended by its user");
        Ok(())
    }
}

/// Logging out with a refresh token we never minted (or, for all, one no
/// longer current): the token is the problem, not a grant.
fn refresh_logout(error: SessionError) -> ServiceError {
    match error {
        SessionError::InvalidGrant => ServiceError::InvalidToken(Rejection::Malformed),
        other => other.into(),
    }
}
