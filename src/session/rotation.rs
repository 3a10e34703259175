//! Refresh rotation (SPEC §2 `/refresh`, RFC 9700 §4.14.2): one successor
//! per token, the very same successor for retries within the grace window,
//! and the end of the session on any other reuse. The rule itself is
//! [`crate::store::rotation::decide`]; this side mints and signs.

use uuid::Uuid;

use super::{SessionError, Sessions, TokenPair, secs};
use crate::oauth::ClientPolicy;
use crate::store::{Rotation, RotationOutcome, SessionStore};
use crate::time::Millis;
use crate::tokens::Grant;

impl<S: SessionStore> Sessions<S> {
    /// Exchanges a refresh token for its successor pair (RFC 9700 §4.14.2):
    /// the first use rotates; a retry within the grace window gets the very
    /// same successor; any other reuse of a rotated token ends the session.
    ///
    /// `client` is the authenticated OAuth client (`None` on `/refresh`):
    /// only its own sessions rotate, and they hold at most the scopes it
    /// has now (SPEC §11). `narrow` asks for fewer scopes than the session
    /// holds (RFC 6749 §6).
    pub async fn refresh(
        &self,
        presented: &str,
        client: Option<&ClientPolicy>,
        narrow: Option<&[String]>,
        now: Millis,
    ) -> Result<TokenPair, SessionError> {
        let token = self
            .refresh
            .decode(presented)
            .ok_or(SessionError::InvalidGrant)?;
        let successor = self
            .refresh
            .successor(&token)
            .ok_or(SessionError::InvalidGrant)?;
        let rotation = Rotation {
            owner: token.owner.clone(),
            sid: token.sid,
            client: client.map(|c| c.id.clone()),
            presented_generation: token.generation,
            presented_hash: token.secret_hash(),
            successor_hash: successor.secret_hash(),
            successor_jti: Uuid::new_v4(),
            narrow: narrow.unwrap_or_default().to_vec(),
            ceiling: client.map(|c| c.scopes.clone()),
            now,
        };
        // A retry within the grace window gets the successor exactly as first
        // issued — same jti, scope and issue time, so the same access token.
        let issued = match self.store.rotate(&rotation).await? {
            RotationOutcome::Rotated(issued) | RotationOutcome::Replayed(issued) => issued,
            RotationOutcome::Reused => {
                tracing::warn!(sid = %token.sid, generation = token.generation,
                    "rotated refresh token presented again; session ended");
                return Err(SessionError::RefreshReuse);
            }
            RotationOutcome::NotGranted => {
                return Err(SessionError::InvalidScope(
                    "a scope asked for was not granted to this session".into(),
                ));
            }
            RotationOutcome::Unknown => return Err(SessionError::InvalidGrant),
        };
        let access = self.access.sign(
            &issued.subject.sub,
            token.sid,
            issued.access_jti,
            secs(issued.issued_at),
            Grant {
                scope: issued.scope.as_deref(),
                client_id: issued.subject.client.as_deref(),
                email: issued.subject.email.as_deref(),
                email_verified: issued.subject.email_verified,
            },
        )?;
        Ok(self.pair(
            access.token,
            &successor,
            issued.scope,
            issued.issued_at,
            now,
            issued.ends_at,
        ))
    }
}
