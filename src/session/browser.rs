//! Browser sessions (SPEC §15): a session a cookie opens, not a token pair.
//!
//! The cookie carries an opaque handle, base64url of `sid (16) ‖ secret
//! (32) ‖ owner`: 256 bits from the OS CSPRNG, never a JWT. The store keeps
//! only the secret's SHA-256 (like a refresh token's), in the session's own
//! record: the handle names its session's key (the owner is its hash tag),
//! so the gate is one look-up of one key — the same single round trip as
//! `/authenticate`, on the right slot of a Redis Cluster. A stolen Redis dump
//! opens no browser.
//!
//! The session is an ordinary one otherwise: the same idle clock and
//! absolute end (`auth.auto_logout`, `auth.max_session`), listed and ended
//! with the user's token sessions, counted against the same per-user cap.
//! It lives until `max_session` unless idle; nothing rotates, so the gate
//! never sets a cookie.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::local_cache::BrowserAnswer;
use super::{SessionError, Sessions};
use crate::store::{BrowserLogin, EndReason, NewSession, SessionInfo, SessionStore, Subject};
use crate::time::Millis;
use crate::tokens::refresh::MAX_OWNER;
use crate::tokens::{Rejection, SecretHash};

const SID_LEN: usize = 16;
const SECRET_LEN: usize = 32;
/// Bounds of an encoded handle: cheap rejection of anything else.
const MIN_ENCODED: usize = ((SID_LEN + SECRET_LEN + 1) * 8).div_ceil(6);
const MAX_ENCODED: usize = ((SID_LEN + SECRET_LEN + MAX_OWNER) * 8).div_ceil(6);

/// What a browser's cookie holds. Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BrowserHandle {
    owner: String,
    sid: Uuid,
    secret: [u8; SECRET_LEN],
}

impl std::fmt::Debug for BrowserHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserHandle")
            .field("sid", &self.sid)
            .finish_non_exhaustive()
    }
}

impl BrowserHandle {
    fn new(owner: &str, sid: Uuid) -> Self {
        let mut secret = [0u8; SECRET_LEN];
        rand::fill(&mut secret);
        Self {
            owner: owner.to_owned(),
            sid,
            secret,
        }
    }

    /// The handle a cookie value encodes; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        if !(MIN_ENCODED..=MAX_ENCODED).contains(&value.len()) {
            return None;
        }
        let raw = B64.decode(value).ok()?;
        let (sid, rest) = raw.split_at_checked(SID_LEN)?;
        let (secret, owner) = rest.split_at_checked(SECRET_LEN)?;
        Some(Self {
            owner: std::str::from_utf8(owner).ok()?.to_owned(),
            sid: Uuid::from_slice(sid).ok()?,
            secret: secret.try_into().ok()?,
        })
    }

    /// The cookie's value.
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(SID_LEN + SECRET_LEN + self.owner.len());
        raw.extend_from_slice(self.sid.as_bytes());
        raw.extend_from_slice(&self.secret);
        raw.extend_from_slice(self.owner.as_bytes());
        B64.encode(raw)
    }

    /// What the store keeps, as for refresh tokens.
    fn hash(&self) -> SecretHash {
        crate::tokens::refresh::secret_hash(&self.secret)
    }

    /// A key only this browser's cookie yields, for tokens bound to its
    /// session (the forms' CSRF tokens): a page that cannot read the
    /// cookie cannot make them.
    pub fn binding_key(&self) -> [u8; 32] {
        Sha256::new()
            .chain_update(b"tokengate browser binding\0")
            .chain_update(self.secret)
            .finalize()
            .into()
    }
}

/// How the user proved who they are, in RFC 8176 terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amr {
    /// A password.
    Password,
    /// A password and a one-time code.
    PasswordAndOtp,
}

impl Amr {
    /// As the session keeps it and `X-Auth-Request-Amr` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "pwd",
            Self::PasswordAndOtp => "pwd otp",
        }
    }
}

/// Who a live browser session is. Only the gate makes one, so holding one
/// proves the cookie was checked.
#[derive(Debug, Clone)]
pub struct BrowserIdentity {
    pub sid: Uuid,
    pub subject: Subject,
    /// Space-separated RFC 8176 values (`pwd`, `otp`).
    pub amr: String,
    handle: BrowserHandle,
}

impl BrowserIdentity {
    /// Whether the session was opened with a second factor.
    pub fn has_otp(&self) -> bool {
        self.amr.split(' ').any(|method| method == "otp")
    }

    /// See [`BrowserHandle::binding_key`].
    pub fn binding_key(&self) -> [u8; 32] {
        self.handle.binding_key()
    }
}

impl<S: SessionStore> Sessions<S> {
    /// Starts a browser session for `subject`, who proved who they are by
    /// `amr`; returns the handle its cookie carries. No token is signed:
    /// the session's access jti and refresh hash are random and never
    /// shown, so no token opens it.
    pub async fn sign_in_browser(
        &self,
        subject: Subject,
        amr: Amr,
        now: Millis,
    ) -> Result<BrowserHandle, SessionError> {
        let handle = BrowserHandle::new(&subject.owner(), Uuid::now_v7());
        let mut unused = [0u8; 16];
        rand::fill(&mut unused);
        let ends_at = now + self.timing.max_session;
        self.store
            .create(&NewSession {
                sid: handle.sid,
                subject,
                access_jti: Uuid::new_v4(),
                refresh_hash: unused,
                ends_at,
                max_ends_at: ends_at,
                max_sessions: self.max_sessions,
                browser: Some(BrowserLogin {
                    handle_hash: handle.hash(),
                    amr: amr.as_str().to_owned(),
                }),
                now,
            })
            .await?;
        Ok(handle)
    }

    /// The live browser session a cookie value opens; counts as activity
    /// (its idle clock restarts). One store round trip, or none from the
    /// local cache (SPEC §10); a value that is no handle costs none.
    pub async fn authenticate_browser(
        &self,
        cookie: &str,
        now: Millis,
    ) -> Result<BrowserIdentity, SessionError> {
        let handle =
            BrowserHandle::parse(cookie).ok_or(SessionError::InvalidToken(Rejection::Malformed))?;
        let (owner, sid, hash) = (handle.owner.as_str(), handle.sid, handle.hash());
        let local = match &self.local {
            Some(cache) => cache.authenticate_browser(owner, sid, hash, now).await,
            None => BrowserAnswer::Bypass,
        };
        let found = match local {
            BrowserAnswer::Decided(found) => found?,
            BrowserAnswer::Bypass => {
                self.store
                    .authenticate_browser(owner, sid, hash, now)
                    .await?
            }
        };
        let session = found.ok_or(SessionError::InvalidToken(Rejection::Revoked))?;
        Ok(BrowserIdentity {
            sid: handle.sid,
            subject: session.subject,
            amr: session.amr,
            handle,
        })
    }

    /// Ends the browser's own session.
    pub async fn sign_out_browser(
        &self,
        identity: &BrowserIdentity,
        now: Millis,
    ) -> Result<(), SessionError> {
        let owner = identity.subject.owner();
        Ok(self
            .store
            .end(&owner, identity.sid, EndReason::Logout, now)
            .await?)
    }

    /// The browser user's live sessions, browser and token ones alike.
    pub async fn browser_users_sessions(
        &self,
        identity: &BrowserIdentity,
        now: Millis,
    ) -> Result<Vec<SessionInfo>, SessionError> {
        Ok(self
            .store
            .sessions_of(&identity.subject.owner(), now, super::per_user::LIST_LIMIT)
            .await?)
    }

    /// Ends one of the browser user's sessions; `UnknownSession` if it is
    /// not theirs or not live.
    pub async fn end_browser_users_session(
        &self,
        identity: &BrowserIdentity,
        sid: Uuid,
        now: Millis,
    ) -> Result<(), SessionError> {
        self.end_owned(&identity.subject.owner(), sid, now).await
    }

    /// Ends every session of the browser user, on every replica.
    pub async fn end_browser_users_sessions(
        &self,
        identity: &BrowserIdentity,
        now: Millis,
    ) -> Result<u64, SessionError> {
        let owner = identity.subject.owner();
        Ok(self
            .store
            .end_all(&owner, EndReason::LogoutAll, now)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use mockall::predicate::{always, eq};

    use super::*;
    use crate::store::{BrowserSession, MockSessionStore, Timing};
    use crate::tokens::keys::Keys;
    use crate::tokens::{AccessTokens, RefreshTokens};

    const NOW: Millis = 1_700_000_000_000;

    fn sessions(store: MockSessionStore) -> Sessions<MockSessionStore> {
        let timing = Timing {
            access: 900_000,
            idle: 60_000,
            refresh_lifetime: 3_600_000,
            grace: 5_000,
            max_session: 7_200_000,
        };
        let key = b"0123456789abcdef0123456789abcdef";
        Sessions::new(
            store,
            AccessTokens::new(Keys::hmac(key), "tokengate", "tokengate", 900, 5),
            RefreshTokens::new(key),
            timing,
        )
        .keeping_at_most(3)
    }

    fn ada() -> Subject {
        Subject {
            sub: "ada".into(),
            email: Some("ada@example.com".into()),
            email_verified: true,
            ..Subject::default()
        }
    }

    #[test]
    fn a_handle_survives_its_cookie_and_nothing_else_parses() {
        let handle = BrowserHandle::new("client:billing", Uuid::now_v7());
        let value = handle.encode();
        assert_eq!(BrowserHandle::parse(&value), Some(handle.clone()));
        assert!(!format!("{handle:?}").contains(&value[22..]));
        for bad in [
            "",
            "x",
            &value[..value.len() - 1],
            &"A".repeat(MAX_ENCODED + 1),
            &value.replace('A', "*"),
        ] {
            if bad != value {
                assert_eq!(BrowserHandle::parse(bad), None, "{bad}");
            }
        }
        // Two handles never share a secret, nor a binding key.
        let other = BrowserHandle::new(&handle.owner, handle.sid);
        assert_ne!(other.hash(), handle.hash());
        assert_ne!(other.binding_key(), handle.binding_key());
    }

    #[tokio::test]
    async fn signing_in_stores_the_hash_of_the_handle_never_the_handle() {
        let mut store = MockSessionStore::new();
        store
            .expect_create()
            .withf(|s| {
                s.subject == ada()
                    && s.max_sessions == 3
                    && s.ends_at == NOW + 7_200_000
                    && s.max_ends_at == s.ends_at
                    && s.browser.as_ref().is_some_and(|b| b.amr == "pwd otp")
            })
            .times(1)
            .returning(|_| Ok(()));
        let handle = sessions(store)
            .sign_in_browser(ada(), Amr::PasswordAndOtp, NOW)
            .await
            .unwrap();
        let mut store = MockSessionStore::new();
        let (sid, hash) = (handle.sid, handle.hash());
        store
            .expect_authenticate_browser()
            .with(eq("ada"), eq(sid), eq(hash), eq(NOW + 1))
            .times(1)
            .returning(|_, _, _, _| {
                Ok(Some(BrowserSession {
                    subject: ada(),
                    amr: "pwd otp".into(),
                }))
            });
        let identity = sessions(store)
            .authenticate_browser(&handle.encode(), NOW + 1)
            .await
            .unwrap();
        assert_eq!(identity.sid, sid);
        assert_eq!(identity.subject, ada());
        assert!(identity.has_otp());
    }

    #[tokio::test]
    async fn a_dead_session_or_a_foreign_value_is_refused() {
        let mut store = MockSessionStore::new();
        store
            .expect_authenticate_browser()
            .with(always(), always(), always(), always())
            .times(1)
            .returning(|_, _, _, _| Ok(None));
        let s = sessions(store);
        let handle = BrowserHandle::new("ada", Uuid::now_v7()).encode();
        assert!(matches!(
            s.authenticate_browser(&handle, NOW).await,
            Err(SessionError::InvalidToken(Rejection::Revoked))
        ));
        // Not a handle at all (a JWT, say): refused without asking the store.
        assert!(matches!(
            s.authenticate_browser("eyJhbGciOi.x.y", NOW).await,
            Err(SessionError::InvalidToken(Rejection::Malformed))
        ));
    }
}
