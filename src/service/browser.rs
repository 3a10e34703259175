//! Browser sessions (SPEC §15): signing in with a password (and a TOTP code
//! when the account has one), the cookie gate, signing out, and the
//! browser user's own sessions. The pages and the cookie itself are
//! `crate::http::browser`'s; the rules are here.

use uuid::Uuid;

use super::{Gate, ServiceError, SessionView};
use crate::clients::Attempt;
use crate::config::CookieSettings;
use crate::session::browser::{Amr, BrowserHandle, BrowserIdentity};
use crate::store::Subject;
use crate::time::now;

impl Gate {
    /// `cookie.*`, for the transport that sets and reads the cookie.
    pub fn cookie_settings(&self) -> &CookieSettings {
        &self.cookie
    }

    /// How long a browser keeps its session cookie, in seconds: the
    /// session's absolute end (`auth.max_session`); the store ends it
    /// sooner when idle.
    pub fn browser_session_lifetime(&self) -> u64 {
        self.sessions.timing().max_session / 1000
    }

    /// Whether `peer` is a proxy of ours (`server.trusted_proxies`), whose
    /// word on the URL a browser asked for is believed.
    pub fn is_trusted_proxy(&self, peer: std::net::IpAddr) -> bool {
        self.trusted_proxies.trusts(peer)
    }

    /// Starts a browser session for an email and password, and the account's
    /// TOTP code (or a recovery code) when it has TOTP on; returns the
    /// handle its cookie carries. Every wrong part is the same
    /// [`ServiceError::InvalidCredentials`]; both checks are throttled.
    pub async fn browser_sign_in(
        &self,
        email: &str,
        password: &str,
        code: &str,
        caller: Attempt,
    ) -> Result<BrowserHandle, ServiceError> {
        let account = self.account(email, password, caller).await?;
        let amr = self.second_factor(account.id, code, caller).await?;
        let subject = Subject {
            sub: account.id.to_string(),
            email: Some(account.email),
            email_verified: account.email_verified,
            ..Subject::default()
        };
        Ok(self
            .sessions
            .sign_in_browser(subject, amr, caller.now)
            .await?)
    }

    /// The second factor of a password account: a code when it has TOTP on.
    async fn second_factor(
        &self,
        user: Uuid,
        code: &str,
        caller: Attempt,
    ) -> Result<Amr, ServiceError> {
        if !self.totp_enabled(user).await? {
            return Ok(Amr::Password);
        }
        if code.trim().is_empty() {
            return Err(ServiceError::InvalidCredentials);
        }
        match self.totp_verify(user, code, caller).await {
            Ok(()) => Ok(Amr::PasswordAndOtp),
            // Said like a wrong password: nothing tells a guesser that the
            // password was right.
            Err(ServiceError::InvalidCode) => Err(ServiceError::InvalidCredentials),
            Err(other) => Err(other),
        }
    }

    /// The browser user's password again, before a change that could lock
    /// them out (turning TOTP on): a stolen session alone cannot. Checked
    /// and throttled as a sign-in is; starts no session.
    pub async fn confirm_password(
        &self,
        identity: &BrowserIdentity,
        password: &str,
        caller: Attempt,
    ) -> Result<(), ServiceError> {
        let email = identity.subject.email.as_deref().unwrap_or("");
        let account = self.account(email, password, caller).await?;
        if account.id.to_string() != identity.subject.sub {
            return Err(ServiceError::InvalidCredentials);
        }
        Ok(())
    }

    /// The gate for a browser (`/oauth2/auth`): the live session its cookie
    /// opens, with a second factor when `require_otp`. Counts as activity.
    pub async fn browser_session(
        &self,
        cookie: &str,
        require_otp: bool,
        caller: Attempt,
    ) -> Result<BrowserIdentity, ServiceError> {
        let identity = self
            .sessions
            .authenticate_browser(cookie, caller.now)
            .await?;
        if require_otp && !identity.has_otp() {
            return Err(ServiceError::SecondFactorRequired);
        }
        Ok(identity)
    }

    /// Ends the browser's own session, on every replica.
    pub async fn browser_sign_out(&self, identity: &BrowserIdentity) -> Result<(), ServiceError> {
        self.sessions.sign_out_browser(identity, now()).await?;
        tracing::info!(sid = %identity.sid, "browser signed out");
        Ok(())
    }

    /// The browser user's live sessions, oldest first; theirs marked current.
    pub async fn browser_sessions(
        &self,
        identity: &BrowserIdentity,
    ) -> Result<Vec<SessionView>, ServiceError> {
        let sessions = self
            .sessions
            .browser_users_sessions(identity, now())
            .await?;
        Ok(sessions
            .iter()
            .map(|s| SessionView::new(s, Some(identity.sid)))
            .collect())
    }

    /// Ends one of the browser user's sessions (`NotFound` if not theirs).
    pub async fn end_browser_users_session(
        &self,
        identity: &BrowserIdentity,
        sid: Uuid,
    ) -> Result<(), ServiceError> {
        self.sessions
            .end_browser_users_session(identity, sid, now())
            .await?;
        tracing::info!(%sid, "session ended by its user, from a browser");
        Ok(())
    }

    /// Ends every session of the browser user, on every replica.
    pub async fn end_browser_users_sessions(
        &self,
        identity: &BrowserIdentity,
    ) -> Result<u64, ServiceError> {
        let ended = self
            .sessions
            .end_browser_users_sessions(identity, now())
            .await?;
        tracing::info!(
            ended,
            "every session of a user ended by the user, from a browser"
        );
        Ok(ended)
    }
}
