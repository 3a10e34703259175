//! The session rules (SPEC §2–3): login, refresh rotation with a grace
//! window and reuse detection, logout, authenticate.
//!
//! This layer owns the tokens and asks the [`SessionStore`] for one atomic
//! decision per request. It knows nothing of HTTP; callers pass "now" so every
//! rule is testable without a clock.

use uuid::Uuid;

use crate::store::{Millis, NewSession, Rotation, RotationOutcome, SessionStore, StoreError};
use crate::tokens::{AccessClaims, AccessTokens, RefreshToken, RefreshTokens, Rejection};

/// A freshly issued (or re-issued) token pair, in the `/login` answer shape.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access: String,
    pub refresh: String,
    pub expires_in: u64,
    pub refresh_expires_in: u64,
    pub session_id: Uuid,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("access token refused: {0}")]
    InvalidToken(Rejection),
    #[error("refresh token refused")]
    InvalidGrant,
    #[error("rotated refresh token reused; session ended")]
    RefreshReuse,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not sign a token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

pub struct Sessions<S> {
    store: S,
    access: AccessTokens,
    refresh: RefreshTokens,
    refresh_lifetime: Millis,
}

impl<S: SessionStore> Sessions<S> {
    pub fn new(
        store: S,
        access: AccessTokens,
        refresh: RefreshTokens,
        refresh_lifetime: Millis,
    ) -> Self {
        Self {
            store,
            access,
            refresh,
            refresh_lifetime,
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Starts a new session for `sub`; other sessions of the user live on.
    pub async fn login(&self, sub: &str, now: Millis) -> Result<TokenPair, SessionError> {
        let sid = Uuid::new_v4();
        let refresh = RefreshToken::first(sid);
        let access = self.access.sign(sub, sid, Uuid::new_v4(), secs(now))?;
        self.store
            .create(&NewSession {
                sid,
                sub: sub.into(),
                access_jti: access.claims.jti,
                refresh_hash: refresh.secret_hash(),
                now,
            })
            .await?;
        Ok(self.pair(access.token, &refresh, now, now))
    }

    /// Exchanges a refresh token for its successor pair (RFC 9700 §4.14.2):
    /// the first use rotates; a retry within the grace window gets the very
    /// same successor; any other reuse of a rotated token ends the session.
    pub async fn refresh(&self, presented: &str, now: Millis) -> Result<TokenPair, SessionError> {
        let token = self
            .refresh
            .decode(presented)
            .ok_or(SessionError::InvalidGrant)?;
        let successor = self
            .refresh
            .successor(&token)
            .ok_or(SessionError::InvalidGrant)?;
        let rotation = Rotation {
            sid: token.sid,
            presented_generation: token.generation,
            presented_hash: token.secret_hash(),
            successor_hash: successor.secret_hash(),
            successor_jti: Uuid::new_v4(),
            now,
        };
        match self.store.rotate(&rotation).await? {
            RotationOutcome::Rotated { sub } => {
                let access =
                    self.access
                        .sign(&sub, token.sid, rotation.successor_jti, secs(now))?;
                Ok(self.pair(access.token, &successor, now, now))
            }
            RotationOutcome::Replayed {
                sub,
                access_jti,
                rotated_at,
            } => {
                let access = self
                    .access
                    .sign(&sub, token.sid, access_jti, secs(rotated_at))?;
                Ok(self.pair(access.token, &successor, rotated_at, now))
            }
            RotationOutcome::Reused => {
                tracing::warn!(sid = %token.sid, generation = token.generation,
                    "rotated refresh token presented again; session ended");
                Err(SessionError::RefreshReuse)
            }
            RotationOutcome::Unknown => Err(SessionError::InvalidGrant),
        }
    }

    /// Ends the session of a correctly signed, unexpired access token — even
    /// one superseded by a refresh. Ending an ended session is fine.
    pub async fn logout_with_access(&self, token: &str, now: Millis) -> Result<(), SessionError> {
        let claims = self
            .access
            .verify(token, secs(now))
            .map_err(SessionError::InvalidToken)?;
        self.store.end(claims.sid).await?;
        Ok(())
    }

    /// Ends the session of a refresh token we minted, of any generation.
    pub async fn logout_with_refresh(&self, presented: &str) -> Result<(), SessionError> {
        let token = self
            .refresh
            .decode(presented)
            .ok_or(SessionError::InvalidGrant)?;
        self.store.end(token.sid).await?;
        Ok(())
    }

    /// Verifies the token locally, then asks the store — one round trip —
    /// whether it is its session's current token, restarting the idle clock.
    pub async fn authenticate(
        &self,
        token: &str,
        now: Millis,
    ) -> Result<AccessClaims, SessionError> {
        let claims = self
            .access
            .verify(token, secs(now))
            .map_err(SessionError::InvalidToken)?;
        if self.store.authenticate(claims.sid, claims.jti, now).await? {
            Ok(claims)
        } else {
            Err(SessionError::InvalidToken(Rejection::Revoked))
        }
    }

    fn pair(
        &self,
        access: String,
        refresh: &RefreshToken,
        issued_at: Millis,
        now: Millis,
    ) -> TokenPair {
        let access_expires = secs(issued_at) + self.access.lifetime_secs();
        let refresh_expires = issued_at + self.refresh_lifetime;
        TokenPair {
            access,
            refresh: self.refresh.encode(refresh),
            expires_in: access_expires.saturating_sub(secs(now)),
            refresh_expires_in: secs(refresh_expires.saturating_sub(now)),
            session_id: refresh.sid,
        }
    }
}

fn secs(ms: Millis) -> u64 {
    ms / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MockSessionStore;
    use mockall::predicate::{always, eq};

    const NOW: Millis = 1_800_000_000_000;
    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn sessions(store: MockSessionStore) -> Sessions<MockSessionStore> {
        Sessions::new(
            store,
            AccessTokens::new(KEY, "tokengate", "tokengate", 900, 5),
            RefreshTokens::new(KEY),
            3_600_000,
        )
    }

    fn refresh_tokens() -> RefreshTokens {
        RefreshTokens::new(KEY)
    }

    /// A login against a store that accepts anything; returns the pair.
    async fn logged_in() -> TokenPair {
        let mut store = MockSessionStore::new();
        store.expect_create().returning(|_| Ok(()));
        sessions(store).login("7", NOW).await.unwrap()
    }

    #[tokio::test]
    async fn login_stores_the_hash_and_jti_of_what_it_returns() {
        let stored = std::sync::Arc::new(std::sync::Mutex::new(None));
        let mut store = MockSessionStore::new();
        let sink = stored.clone();
        store.expect_create().times(1).returning(move |n| {
            *sink.lock().unwrap() = Some(n.clone());
            Ok(())
        });
        let s = sessions(store);
        let pair = s.login("7", NOW).await.unwrap();
        assert_eq!(pair.expires_in, 900);
        assert_eq!(pair.refresh_expires_in, 3600);

        let stored = stored.lock().unwrap().clone().unwrap();
        let claims = s.access.verify(&pair.access, NOW / 1000).unwrap();
        let refresh = refresh_tokens().decode(&pair.refresh).unwrap();
        assert_eq!((claims.sub.as_str(), stored.sub.as_str()), ("7", "7"));
        assert_eq!(claims.sid, pair.session_id);
        assert_eq!(stored.sid, pair.session_id);
        assert_eq!(stored.access_jti, claims.jti);
        assert_eq!(stored.refresh_hash, refresh.secret_hash());
        assert_eq!(refresh.sid, pair.session_id);
        assert_eq!(refresh.generation, 0);
    }

    #[tokio::test]
    async fn login_passes_the_new_session_to_the_store() {
        let mut store = MockSessionStore::new();
        store
            .expect_create()
            .withf(|n| n.sub == "alice" && n.now == NOW)
            .times(1)
            .returning(|_| Ok(()));
        sessions(store).login("alice", NOW).await.unwrap();
    }

    #[tokio::test]
    async fn store_failure_fails_closed() {
        let mut store = MockSessionStore::new();
        store
            .expect_create()
            .returning(|_| Err(StoreError::Timeout));
        store
            .expect_authenticate()
            .returning(|_, _, _| Err(StoreError::Unavailable("down".into())));
        let s = sessions(store);
        assert!(matches!(
            s.login("7", NOW).await,
            Err(SessionError::Store(StoreError::Timeout))
        ));
        let access = logged_in().await.access;
        assert!(matches!(
            s.authenticate(&access, NOW).await,
            Err(SessionError::Store(_))
        ));
    }

    #[tokio::test]
    async fn authenticate_asks_the_store_about_the_token_it_verified() {
        let pair = logged_in().await;
        let claims = AccessTokens::new(KEY, "tokengate", "tokengate", 900, 5)
            .verify(&pair.access, NOW / 1000)
            .unwrap();
        let mut store = MockSessionStore::new();
        store
            .expect_authenticate()
            .with(eq(claims.sid), eq(claims.jti), eq(NOW + 1))
            .times(1)
            .returning(|_, _, _| Ok(true));
        let got = sessions(store).authenticate(&pair.access, NOW + 1).await;
        assert_eq!(got.unwrap(), claims);
    }

    #[tokio::test]
    async fn authenticate_refuses_a_superseded_token() {
        let pair = logged_in().await;
        let mut store = MockSessionStore::new();
        store.expect_authenticate().returning(|_, _, _| Ok(false));
        let got = sessions(store).authenticate(&pair.access, NOW).await;
        assert!(matches!(
            got,
            Err(SessionError::InvalidToken(Rejection::Revoked))
        ));
    }

    #[tokio::test]
    async fn bad_tokens_never_reach_the_store() {
        let pair = logged_in().await;
        let mut store = MockSessionStore::new();
        store.expect_authenticate().never();
        store.expect_rotate().never();
        store.expect_end().never();
        let s = sessions(store);
        let expired = NOW + 901_000 + 5_000;
        assert!(matches!(
            s.authenticate(&pair.access, expired).await,
            Err(SessionError::InvalidToken(Rejection::Expired))
        ));
        assert!(matches!(
            s.authenticate(&pair.refresh, NOW).await,
            Err(SessionError::InvalidToken(Rejection::Malformed))
        ));
        assert!(matches!(
            s.refresh(&pair.access, NOW).await,
            Err(SessionError::InvalidGrant)
        ));
        assert!(matches!(
            s.logout_with_refresh("garbage").await,
            Err(SessionError::InvalidGrant)
        ));
        assert!(matches!(
            s.logout_with_access(&pair.access, expired).await,
            Err(SessionError::InvalidToken(Rejection::Expired))
        ));
    }

    #[tokio::test]
    async fn refresh_presents_the_decoded_token_and_its_successor() {
        let pair = logged_in().await;
        let presented = refresh_tokens().decode(&pair.refresh).unwrap();
        let successor = refresh_tokens().successor(&presented).unwrap();
        let (p_hash, s_hash) = (presented.secret_hash(), successor.secret_hash());
        let sid = pair.session_id;

        let mut store = MockSessionStore::new();
        store
            .expect_rotate()
            .withf(move |r| {
                r.sid == sid
                    && r.presented_generation == 0
                    && r.presented_hash == p_hash
                    && r.successor_hash == s_hash
                    && r.now == NOW + 5
            })
            .times(1)
            .returning(|_| Ok(RotationOutcome::Rotated { sub: "7".into() }));
        let s = sessions(store);
        let next = s.refresh(&pair.refresh, NOW + 5).await.unwrap();
        assert_eq!(next.refresh, refresh_tokens().encode(&successor));
        assert_eq!(next.session_id, pair.session_id);
        let claims = s.access.verify(&next.access, NOW / 1000).unwrap();
        assert_eq!(claims.sub, "7");
        assert_ne!(next.access, pair.access);
    }

    #[tokio::test]
    async fn a_replay_reissues_the_identical_successor() {
        let pair = logged_in().await;
        let jti = Uuid::new_v4();
        let rotated_at = NOW + 1_500;

        let mut store = MockSessionStore::new();
        let mut first = true;
        store.expect_rotate().times(2).returning(move |r| {
            if std::mem::take(&mut first) {
                // The first request rotated and stored its jti...
                assert_ne!(r.successor_jti, jti);
                Ok(RotationOutcome::Rotated { sub: "7".into() })
            } else {
                Ok(RotationOutcome::Replayed {
                    sub: "7".into(),
                    access_jti: jti,
                    rotated_at,
                })
            }
        });
        let s = sessions(store);
        let _ = s.refresh(&pair.refresh, rotated_at).await.unwrap();
        let replay = s.refresh(&pair.refresh, rotated_at + 3_000).await.unwrap();
        let claims = s.access.verify(&replay.access, NOW / 1000).unwrap();
        assert_eq!(claims.jti, jti);
        assert_eq!(claims.iat, rotated_at / 1000);
        assert_eq!(replay.expires_in, 900 - 3);
        assert_eq!(
            replay.access,
            s.access
                .sign("7", pair.session_id, jti, rotated_at / 1000)
                .unwrap()
                .token
        );
    }

    #[tokio::test]
    async fn reuse_and_unknown_are_refused() {
        let pair = logged_in().await;
        for (outcome, reuse) in [
            (RotationOutcome::Reused, true),
            (RotationOutcome::Unknown, false),
        ] {
            let mut store = MockSessionStore::new();
            store
                .expect_rotate()
                .with(always())
                .return_once(move |_| Ok(outcome));
            let got = sessions(store).refresh(&pair.refresh, NOW).await;
            match got {
                Err(SessionError::RefreshReuse) => assert!(reuse),
                Err(SessionError::InvalidGrant) => assert!(!reuse),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn logout_ends_the_session_of_either_token() {
        let pair = logged_in().await;
        let mut store = MockSessionStore::new();
        store
            .expect_end()
            .with(eq(pair.session_id))
            .times(2)
            .returning(|_| Ok(()));
        let s = sessions(store);
        s.logout_with_access(&pair.access, NOW).await.unwrap();
        s.logout_with_refresh(&pair.refresh).await.unwrap();
    }
}
