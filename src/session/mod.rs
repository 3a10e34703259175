//! The session rules (SPEC §2–3, §6): login and client-credentials
//! sessions, refresh rotation with a grace window and reuse detection, logout
//! and revocation, authenticate and introspection, per-client rate limits.
//!
//! This layer owns the tokens and asks the [`SessionStore`] for one atomic
//! decision per request. It knows nothing of HTTP; callers pass "now" so every
//! rule is testable without a clock.
//!
//! Here: starting sessions, logout and authenticate. By concept beside it:
//! [`rotation`] (refresh with grace and reuse detection), [`introspection`]
//! (RFC 7662 and RFC 7009 revocation), [`limits`] (per-client rate limits),
//! [`per_user`] (a user's sessions: list, end one, end all) and
//! [`local_cache`] (SPEC §10, opt-in: authenticate from memory).

pub mod browser;
mod introspection;
mod limits;
pub mod local_cache;
pub mod per_user;
mod rotation;

use std::sync::Arc;

use uuid::Uuid;

use crate::store::{
    EndReason, NewSession, RefreshState, SessionStore, StoreError, Subject, Timing,
};
use crate::time::Millis;
use crate::tokens::verified::VerifiedTokens;
use crate::tokens::{AccessClaims, AccessTokens, Grant, RefreshToken, RefreshTokens, Rejection};

/// A freshly issued (or re-issued) token pair.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access: String,
    pub refresh: String,
    pub expires_in: u64,
    pub refresh_expires_in: u64,
    pub session_id: Uuid,
    pub scope: Option<String>,
}

/// What token introspection (RFC 7662) knows about a live token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Introspection {
    Access(AccessClaims),
    Refresh { sid: Uuid, state: RefreshState },
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("access token refused: {0}")]
    InvalidToken(Rejection),
    #[error("refresh token refused")]
    InvalidGrant,
    #[error("rotated refresh token reused; session ended")]
    RefreshReuse,
    #[error("{0}")]
    InvalidScope(String),
    #[error("the token was not issued to this client")]
    NotOwner,
    #[error("no such session of yours")]
    UnknownSession,
    #[error("rate limit reached; retry in {0}s")]
    RateLimited(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not sign a token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

pub struct Sessions<S> {
    store: S,
    access: AccessTokens,
    refresh: RefreshTokens,
    timing: Timing,
    /// Most live sessions one owner keeps (`auth.max_sessions_per_user`).
    max_sessions: u32,
    /// SPEC §10, when `auth.local_cache.enabled`.
    local: Option<local_cache::LocalCache>,
    /// Tokens verified before, with the local cache.
    verified: Option<VerifiedTokens>,
}

impl<S: SessionStore> Sessions<S> {
    pub fn new(store: S, access: AccessTokens, refresh: RefreshTokens, timing: Timing) -> Self {
        Self {
            store,
            access,
            refresh,
            timing,
            max_sessions: 0,
            local: None,
            verified: None,
        }
    }

    /// Keeps at most `max` live sessions per user (0 = no limit): a login
    /// beyond ends the user's oldest, atomically (SPEC §11). OAuth clients'
    /// own sessions are bounded by their rate limits instead.
    pub fn keeping_at_most(mut self, max: u32) -> Self {
        self.max_sessions = max;
        self
    }

    /// Answers `/authenticate` from `cache` when it can (SPEC §10).
    pub fn with_local_cache(mut self, cache: local_cache::LocalCache) -> Self {
        self.local = Some(cache);
        self
    }

    /// Verifies each access token once, remembering up to `max_entries`
    /// (cached mode: see [`VerifiedTokens`]).
    pub fn remembering_verified(mut self, max_entries: usize) -> Self {
        self.verified = Some(VerifiedTokens::new(max_entries));
        self
    }

    pub fn local_cache(&self) -> Option<&local_cache::LocalCache> {
        self.local.as_ref()
    }

    /// The session lifetimes (`auth.*`).
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Starts a new session for `sub`; other sessions of the user live on
    /// (up to `auth.max_sessions_per_user`).
    pub async fn login(&self, sub: &str, now: Millis) -> Result<TokenPair, SessionError> {
        let subject = Subject {
            sub: sub.into(),
            ..Subject::default()
        };
        self.start(subject, self.timing.refresh_lifetime, now).await
    }

    /// [`Sessions::login`] for an account with an email: every access token
    /// of the session carries it, and whether it was verified.
    pub async fn login_account(
        &self,
        sub: &str,
        email: String,
        email_verified: bool,
        now: Millis,
    ) -> Result<TokenPair, SessionError> {
        let subject = Subject {
            sub: sub.into(),
            email: Some(email),
            email_verified,
            ..Subject::default()
        };
        self.start(subject, self.timing.refresh_lifetime, now).await
    }

    /// Starts a session for an OAuth client (`client_credentials`): `sub` is
    /// the client. Without refresh tokens the session lives exactly as long
    /// as its access token; its refresh token is then never shown to anyone.
    pub async fn client_credentials(
        &self,
        client: &str,
        scope: Option<String>,
        refresh_tokens: bool,
        now: Millis,
    ) -> Result<TokenPair, SessionError> {
        let subject = Subject {
            sub: client.into(),
            client: Some(client.into()),
            scope,
            ..Subject::default()
        };
        let lifetime = if refresh_tokens {
            self.timing.refresh_lifetime
        } else {
            self.access.lifetime_secs() * 1000
        };
        self.start(subject, lifetime, now).await
    }

    async fn start(
        &self,
        subject: Subject,
        lifetime: Millis,
        now: Millis,
    ) -> Result<TokenPair, SessionError> {
        // Time-ordered: a downstream service tells a session begun before
        // the store's epoch (one its Redis lost) by its id (SPEC §13).
        let sid = Uuid::now_v7();
        let refresh = RefreshToken::first(&subject.owner(), sid);
        let access = self.access.sign(
            &subject.sub,
            sid,
            Uuid::new_v4(),
            secs(now),
            Grant {
                scope: subject.scope.as_deref(),
                client_id: subject.client.as_deref(),
                email: subject.email.as_deref(),
                email_verified: subject.email_verified,
            },
        )?;
        let scope = subject.scope.clone();
        // An OAuth client's own sessions are bounded by its rate_limit
        // instead: a fleet of workers may share one client.
        let max_sessions = match subject.client {
            Some(_) => 0,
            None => self.max_sessions,
        };
        // No refresh token, first or rotated, outlives the session itself.
        let max_ends_at = now + self.timing.max_session;
        let ends_at = (now + lifetime).min(max_ends_at);
        self.store
            .create(&NewSession {
                sid,
                subject,
                access_jti: access.claims.jti,
                refresh_hash: refresh.secret_hash(),
                ends_at,
                max_ends_at,
                max_sessions,
                browser: None,
                now,
            })
            .await?;
        Ok(self.pair(access.token, &refresh, scope, now, now, ends_at))
    }

    /// Ends the session of a correctly signed, unexpired access token — even
    /// one superseded by a refresh. Ending an ended session is fine.
    pub async fn logout_with_access(&self, token: &str, now: Millis) -> Result<(), SessionError> {
        let claims = self
            .access
            .verify(token, secs(now))
            .map_err(SessionError::InvalidToken)?;
        self.store
            .end(&claims.owner(), claims.sid, EndReason::Logout, now)
            .await?;
        Ok(())
    }

    /// Ends the session of a refresh token we minted, of any generation.
    pub async fn logout_with_refresh(
        &self,
        presented: &str,
        now: Millis,
    ) -> Result<(), SessionError> {
        let token = self
            .refresh
            .decode(presented)
            .ok_or(SessionError::InvalidGrant)?;
        self.store
            .end(&token.owner, token.sid, EndReason::Logout, now)
            .await?;
        Ok(())
    }

    /// Verifies the token locally, then asks the store — one round trip —
    /// whether it is its session's current token, restarting the idle clock;
    /// with the local cache up, it may answer from memory instead.
    pub async fn authenticate(
        &self,
        token: &str,
        now: Millis,
    ) -> Result<Arc<AccessClaims>, SessionError> {
        let claims = self.verify(token, now)?;
        let owner = claims.owner();
        let local = match &self.local {
            Some(cache) => {
                cache
                    .authenticate(&owner, claims.sid, claims.jti, now)
                    .await
            }
            None => local_cache::Answer::Bypass,
        };
        let current = match local {
            local_cache::Answer::Decided(current) => current?,
            local_cache::Answer::Bypass => {
                self.store
                    .authenticate(&owner, claims.sid, claims.jti, now)
                    .await?
            }
        };
        if current {
            Ok(claims)
        } else {
            Err(SessionError::InvalidToken(Rejection::Revoked))
        }
    }

    /// Verifies `token` locally; in cached mode a token that verified before
    /// only has its times checked again (see [`VerifiedTokens`]).
    fn verify(&self, token: &str, now: Millis) -> Result<Arc<AccessClaims>, SessionError> {
        let now = secs(now);
        let lookup = self.verified.as_ref().map(|memo| (memo, memo.get(token)));
        if let Some((_, lookup)) = &lookup
            && let Some(claims) = &lookup.found
        {
            self.access
                .check_times(claims, now)
                .map_err(SessionError::InvalidToken)?;
            return Ok(claims.clone());
        }
        let claims = Arc::new(
            self.access
                .verify(token, now)
                .map_err(SessionError::InvalidToken)?,
        );
        if let Some((memo, lookup)) = lookup {
            memo.put(lookup, claims.clone());
        }
        Ok(claims)
    }

    /// The answer for an access token issued at `issued_at` and a refresh
    /// token that expires at `ends_at`.
    pub(super) fn pair(
        &self,
        access: String,
        refresh: &RefreshToken,
        scope: Option<String>,
        issued_at: Millis,
        now: Millis,
        ends_at: Millis,
    ) -> TokenPair {
        let access_expires = secs(issued_at) + self.access.lifetime_secs();
        TokenPair {
            access,
            refresh: self.refresh.encode(refresh),
            expires_in: access_expires.saturating_sub(secs(now)),
            refresh_expires_in: secs(ends_at.saturating_sub(now)),
            session_id: refresh.sid,
            scope,
        }
    }
}

pub(super) fn secs(ms: Millis) -> u64 {
    ms / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MockSessionStore, Revocation, RotationOutcome, Successor};
    use crate::tokens::keys::Keys;
    use mockall::predicate::{always, eq};

    const NOW: Millis = 1_800_000_000_000;
    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn sessions(store: MockSessionStore) -> Sessions<MockSessionStore> {
        Sessions::new(
            store,
            AccessTokens::new(Keys::hmac(KEY), "tokengate", "tokengate", 900, 5),
            RefreshTokens::new(KEY),
            TIMING,
        )
    }

    const TIMING: Timing = Timing {
        access: 900_000,
        idle: 600_000,
        refresh_lifetime: 3_600_000,
        grace: 10_000,
        max_session: 7_200_000,
    };

    /// A successor as a store reports it.
    fn issued(subject: Subject, jti: Uuid, at: Millis) -> Successor {
        Successor {
            scope: subject.scope.clone(),
            subject,
            access_jti: jti,
            issued_at: at,
            ends_at: at + TIMING.refresh_lifetime,
        }
    }

    fn user(sub: &str) -> Subject {
        Subject {
            sub: sub.into(),
            ..Subject::default()
        }
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
        assert_eq!(
            (claims.sub.as_str(), stored.subject.sub.as_str()),
            ("7", "7")
        );
        assert_eq!(stored.ends_at, NOW + 3_600_000);
        assert_eq!(stored.max_ends_at, NOW + 7_200_000);
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
            .withf(|n| n.subject.sub == "alice" && n.subject.client.is_none() && n.now == NOW)
            .times(1)
            .returning(|_| Ok(()));
        sessions(store).login("alice", NOW).await.unwrap();
    }

    #[tokio::test]
    async fn users_sessions_are_capped_and_clients_own_ones_are_not() {
        let mut store = MockSessionStore::new();
        store
            .expect_create()
            .withf(|n| n.subject.client.is_none() && n.max_sessions == 3)
            .times(1)
            .returning(|_| Ok(()));
        store
            .expect_create()
            .withf(|n| n.subject.client.is_some() && n.max_sessions == 0)
            .times(1)
            .returning(|_| Ok(()));
        let s = sessions(store).keeping_at_most(3);
        s.login("alice", NOW).await.unwrap();
        s.client_credentials("billing", None, false, NOW)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn store_failure_fails_closed() {
        let mut store = MockSessionStore::new();
        store
            .expect_create()
            .returning(|_| Err(StoreError::Timeout));
        store
            .expect_authenticate()
            .returning(|_, _, _, _| Err(StoreError::Unavailable("down".into())));
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
        let claims = AccessTokens::new(Keys::hmac(KEY), "tokengate", "tokengate", 900, 5)
            .verify(&pair.access, NOW / 1000)
            .unwrap();
        let mut store = MockSessionStore::new();
        store
            .expect_authenticate()
            .with(eq("7"), eq(claims.sid), eq(claims.jti), eq(NOW + 1))
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        let got = sessions(store).authenticate(&pair.access, NOW + 1).await;
        assert_eq!(*got.unwrap(), claims);
    }

    #[tokio::test]
    async fn a_remembered_token_is_still_checked_for_time_and_by_the_store() {
        let pair = logged_in().await;
        let mut store = MockSessionStore::new();
        store
            .expect_authenticate()
            .times(3)
            .returning(|_, _, _, at| Ok(at != NOW + 2));
        let s = sessions(store).remembering_verified(10);
        assert!(s.authenticate(&pair.access, NOW).await.is_ok());
        assert_eq!(s.verified.as_ref().map(VerifiedTokens::len), Some(1));
        assert!(s.authenticate(&pair.access, NOW + 1).await.is_ok());
        // The store decides every time: remembered is not current.
        assert!(matches!(
            s.authenticate(&pair.access, NOW + 2).await,
            Err(SessionError::InvalidToken(Rejection::Revoked))
        ));
        // Past `exp` + leeway (900 s + 5 s): refused before the store is asked.
        assert!(matches!(
            s.authenticate(&pair.access, NOW + 906_000).await,
            Err(SessionError::InvalidToken(Rejection::Expired))
        ));
        // Other bytes are verified afresh: a changed signature fails.
        let mut forged = pair.access.clone();
        let last = forged
            .pop()
            .map_or('A', |c| if c == 'A' { 'B' } else { 'A' });
        forged.push(last);
        assert!(matches!(
            s.authenticate(&forged, NOW).await,
            Err(SessionError::InvalidToken(_))
        ));
    }

    #[tokio::test]
    async fn authenticate_refuses_a_superseded_token() {
        let pair = logged_in().await;
        let mut store = MockSessionStore::new();
        store
            .expect_authenticate()
            .returning(|_, _, _, _| Ok(false));
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
            s.refresh(&pair.access, None, None, NOW).await,
            Err(SessionError::InvalidGrant)
        ));
        assert!(matches!(
            s.logout_with_refresh("garbage", NOW).await,
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
                    && r.client.is_none()
            })
            .times(1)
            .returning(|r| {
                Ok(RotationOutcome::Rotated(issued(
                    user("7"),
                    r.successor_jti,
                    r.now,
                )))
            });
        let s = sessions(store);
        let next = s.refresh(&pair.refresh, None, None, NOW + 5).await.unwrap();
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
                Ok(RotationOutcome::Rotated(issued(
                    user("7"),
                    r.successor_jti,
                    r.now,
                )))
            } else {
                Ok(RotationOutcome::Replayed(issued(
                    user("7"),
                    jti,
                    rotated_at,
                )))
            }
        });
        let s = sessions(store);
        let _ = s
            .refresh(&pair.refresh, None, None, rotated_at)
            .await
            .unwrap();
        let replay = s
            .refresh(&pair.refresh, None, None, rotated_at + 3_000)
            .await
            .unwrap();
        let claims = s.access.verify(&replay.access, NOW / 1000).unwrap();
        assert_eq!(claims.jti, jti);
        assert_eq!(claims.iat, rotated_at / 1000);
        assert_eq!(replay.expires_in, 900 - 3);
        assert_eq!(
            replay.access,
            s.access
                .sign(
                    "7",
                    pair.session_id,
                    jti,
                    rotated_at / 1000,
                    Grant::default()
                )
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
            let got = sessions(store)
                .refresh(&pair.refresh, None, None, NOW)
                .await;
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
            .with(eq("7"), eq(pair.session_id), eq(EndReason::Logout), eq(NOW))
            .times(2)
            .returning(|_, _, _, _| Ok(()));
        let s = sessions(store);
        s.logout_with_access(&pair.access, NOW).await.unwrap();
        s.logout_with_refresh(&pair.refresh, NOW).await.unwrap();
    }

    #[tokio::test]
    async fn client_credentials_sessions_carry_client_and_scope() {
        let mut store = MockSessionStore::new();
        store
            .expect_create()
            .withf(|n| {
                n.subject.client.as_deref() == Some("billing")
                    && n.subject.scope.as_deref() == Some("read")
                    && n.ends_at == NOW + 900_000
            })
            .times(1)
            .returning(|_| Ok(()));
        let s = sessions(store);
        let pair = s
            .client_credentials("billing", Some("read".into()), false, NOW)
            .await
            .unwrap();
        let claims = s.access.verify(&pair.access, NOW / 1000).unwrap();
        assert_eq!(claims.sub, "billing");
        assert_eq!(claims.client_id.as_deref(), Some("billing"));
        assert_eq!(claims.scope.as_deref(), Some("read"));
        assert_eq!(pair.scope.as_deref(), Some("read"));
    }

    #[tokio::test]
    async fn refresh_can_narrow_but_not_widen_the_scope() {
        let pair = logged_in().await;
        let subject = Subject {
            sub: "billing".into(),
            client: Some("billing".into()),
            scope: Some("read write".into()),
            ..Subject::default()
        };
        let mut store = MockSessionStore::new();
        store
            .expect_rotate()
            .withf(|r| {
                r.client.as_deref() == Some("billing")
                    && r.ceiling == Some(vec!["read".into(), "write".into()])
            })
            .returning(move |r| {
                // The store refuses scopes the session does not hold, and
                // says which scope the successor carries.
                Ok(if r.narrow.iter().all(|s| s == "read" || s == "write") {
                    RotationOutcome::Rotated(Successor {
                        scope: Some(r.narrow.join(" ")),
                        ..issued(subject.clone(), r.successor_jti, r.now)
                    })
                } else {
                    RotationOutcome::NotGranted
                })
            });
        let s = sessions(store);
        let billing = crate::oauth::ClientPolicy {
            id: "billing".into(),
            scopes: vec!["read".into(), "write".into()],
            refresh_tokens: true,
            rate_limit: 0,
        };
        let narrow = ["read".to_owned()];
        let next = s
            .refresh(&pair.refresh, Some(&billing), Some(&narrow), NOW)
            .await
            .unwrap();
        assert_eq!(next.scope.as_deref(), Some("read"));
        let claims = s.access.verify(&next.access, NOW / 1000).unwrap();
        assert_eq!(claims.scope.as_deref(), Some("read"));
        let wider = ["admin".to_owned()];
        let refused = s
            .refresh(&pair.refresh, Some(&billing), Some(&wider), NOW)
            .await;
        assert!(matches!(refused, Err(SessionError::InvalidScope(_))));
    }

    #[tokio::test]
    async fn revoke_checks_the_owner_and_ignores_dead_tokens() {
        let mut store = MockSessionStore::new();
        store.expect_create().returning(|_| Ok(()));
        store
            .expect_revoke()
            .with(
                eq("client:billing"),
                always(),
                eq("billing"),
                eq(EndReason::Logout),
                always(),
            )
            .returning(|_, _, _, _, _| Ok(Revocation::Ended));
        let s = sessions(store);
        let mine = s
            .client_credentials("billing", None, true, NOW)
            .await
            .unwrap();
        s.revoke(&mine.access, "billing", NOW).await.unwrap();
        s.revoke(&mine.refresh, "billing", NOW).await.unwrap();
        s.revoke("garbage", "billing", NOW).await.unwrap();
        let theirs = s.login("7", NOW).await.unwrap();
        assert!(matches!(
            s.revoke(&theirs.access, "billing", NOW).await,
            Err(SessionError::NotOwner)
        ));
    }

    #[tokio::test]
    async fn introspection_reports_live_tokens_only() {
        let pair = logged_in().await;
        let mut store = MockSessionStore::new();
        store
            .expect_authenticate()
            .return_once(|_, _, _, _| Ok(true));
        store.expect_inspect_refresh().return_once(|_, _, _, _, _| {
            Ok(Some(RefreshState {
                subject: user("7"),
                ends_at: NOW + 1000,
            }))
        });
        let s = sessions(store);
        assert!(matches!(
            s.introspect(&pair.access, NOW).await.unwrap(),
            Some(Introspection::Access(c)) if c.sub == "7"
        ));
        assert!(matches!(
            s.introspect(&pair.refresh, NOW).await.unwrap(),
            Some(Introspection::Refresh { sid, .. }) if sid == pair.session_id
        ));
        assert_eq!(s.introspect("garbage", NOW).await.unwrap(), None);
    }

    #[tokio::test]
    async fn rate_limits_answer_with_seconds_to_wait() {
        let mut store = MockSessionStore::new();
        store
            .expect_count_request()
            .with(eq("billing"), eq(10), eq(60_000), eq(NOW))
            .returning(|_, _, _, _| Ok(Some(1_500)));
        let s = sessions(store);
        assert!(matches!(
            s.count_request("billing", 10, NOW).await,
            Err(SessionError::RateLimited(2))
        ));
        s.count_request("billing", 0, NOW).await.unwrap();
    }
}
