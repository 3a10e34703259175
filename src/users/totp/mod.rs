//! TOTP (RFC 6238) as a second factor of password accounts (SPEC §15): the
//! rules of enrolling, signing in with a code and turning it off, between
//! the service layer and the durable store.
//!
//! - **Enrolment is stateless until confirmed.** [`Totp::begin`] makes a
//!   secret and hands it out twice: for the user's app (base32, URI, QR
//!   code) and sealed for the confirm form (see [`seal`]). Nothing is
//!   stored until [`Totp::confirm`] sees a code of that secret; then the
//!   encrypted secret and the recovery codes' hashes are written in one
//!   transaction, so no half-enrolled account exists.
//! - **A code is accepted once.** The step of the last accepted code is
//!   stored; a code of that step or an earlier one is refused. The check
//!   and the move are one conditional `UPDATE`, so two replicas given the
//!   same code cannot both accept it (RFC 6238 §5.2). The confirming code
//!   counts as used too.
//! - **A recovery code is accepted once:** deleted if present, one
//!   statement (see [`recovery`]). Recovery codes need no key, so they
//!   still work if `totp.key_file` is lost.
//! - **Guesses are throttled like passwords** ([`crate::throttle`], counter
//!   `totp`, `users.*` limits): per account and address, per address, per
//!   account. Every check is counted before it runs and forgiven when it
//!   passes (or could not be made: the database was down).
//!
//! A code that is wrong, reused, expired or given with a bad sealed token
//! is one answer, [`TotpError::InvalidCode`]: the caller learns nothing
//! about which.

pub mod code;
pub mod recovery;
pub mod seal;

use std::fmt;

use uuid::Uuid;

use crate::clients::Attempt;
use crate::config::TotpSettings;
use crate::db::{DbError, DurableStore, NewTotp};
use crate::store::{SessionStore, StoreError};
use crate::throttle::{Throttle, ThrottleError};
use crate::time::Millis;
use code::Secret;
use seal::Keys;

/// The throttle's name for TOTP checks, apart from passwords' `user`.
const THROTTLE_KIND: &str = "totp";

#[derive(Debug, thiserror::Error)]
pub enum TotpError {
    #[error("TOTP is not configured on this server (totp.key_file)")]
    NotConfigured,
    #[error("invalid code")]
    InvalidCode,
    #[error("TOTP is already on for this account")]
    AlreadyEnabled,
    #[error("too many failed attempts; retry in {0}s")]
    Throttled(u64),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl From<ThrottleError> for TotpError {
    fn from(error: ThrottleError) -> Self {
        match error {
            ThrottleError::Throttled(seconds) => Self::Throttled(seconds),
            ThrottleError::Store(e) => Self::Store(e),
        }
    }
}

/// A new secret to enrol, nothing stored yet: what the enrolment page
/// shows, and `sealed` for its confirm form to post back.
#[derive(Clone)]
pub struct TotpEnrolment {
    /// The secret in base32, to type into an app that cannot scan.
    pub secret: String,
    /// The `otpauth://totp/…` URI the QR code holds.
    pub uri: String,
    /// The QR code of `uri`: one plain `<svg>` element to inline.
    pub qr_svg: String,
    /// The secret sealed for this user, valid for [`seal::ENROLMENT_LIFETIME`].
    pub sealed: String,
}

/// The secret twice over: never in a log line.
impl fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpEnrolment([redacted])")
    }
}

/// What a user typed, as far as its shape tells.
enum Given {
    /// Six digits (spaces left out).
    Code(String),
    /// A recovery code, normalized.
    Recovery(String),
    Nothing,
}

impl Given {
    fn parse(text: &str) -> Self {
        let code: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if code.len() == usize::from(code::DIGITS) && code.bytes().all(|b| b.is_ascii_digit()) {
            return Self::Code(code);
        }
        match recovery::normalize(text) {
            Some(normalized) => Self::Recovery(normalized),
            None => Self::Nothing,
        }
    }
}

pub struct Totp {
    /// `None` without `totp.key_file`: no enrolment, no code check
    /// (recovery codes still work).
    keys: Option<Keys>,
    issuer: String,
    throttle: Throttle,
}

impl Totp {
    pub fn new(settings: &TotpSettings, throttle: Throttle) -> Result<Self, String> {
        let keys = settings
            .key
            .as_ref()
            .map(Keys::new)
            .transpose()
            .map_err(|e| format!("totp.key_file: {e}"))?;
        Ok(Self {
            keys,
            issuer: settings.issuer.clone(),
            throttle,
        })
    }

    fn keys(&self) -> Result<&Keys, TotpError> {
        self.keys.as_ref().ok_or(TotpError::NotConfigured)
    }

    /// Whether the account has TOTP on.
    pub async fn enabled(&self, db: &impl DurableStore, user: Uuid) -> Result<bool, TotpError> {
        Ok(db.totp(user).await?.is_some())
    }

    /// A new secret for `user`, shown as `email` in the app; stores
    /// nothing.
    pub fn begin(&self, user: Uuid, email: &str, now: Millis) -> Result<TotpEnrolment, TotpError> {
        let keys = self.keys()?;
        let secret = Secret::generate();
        let uri = code::otpauth_uri(&self.issuer, email, &secret);
        Ok(TotpEnrolment {
            secret: secret.base32(),
            qr_svg: code::qr_svg(&uri)?,
            uri,
            sealed: keys.seal_enrolment(user, &secret, now)?,
        })
    }

    /// Stores the enrolment `sealed` if `code` is a current code of its
    /// secret; returns the recovery codes, which exist nowhere else.
    pub async fn confirm(
        &self,
        db: &impl DurableStore,
        store: &impl SessionStore,
        user: Uuid,
        sealed: &str,
        code: &str,
        attempt: Attempt,
    ) -> Result<Vec<String>, TotpError> {
        let keys = self.keys()?;
        let check = async {
            let secret = keys
                .open_enrolment(user, sealed, attempt.now)
                .ok_or(TotpError::InvalidCode)?;
            let Given::Code(code) = Given::parse(code) else {
                return Err(TotpError::InvalidCode);
            };
            let step = secret
                .matching_step(&code, attempt.now / 1000, 0)
                .ok_or(TotpError::InvalidCode)?;
            let codes = recovery::generate();
            let enrolment = NewTotp {
                user,
                secret: keys.seal_secret(user, &secret)?,
                last_step: step,
                recovery_hashes: codes
                    .iter()
                    .filter_map(|c| recovery::normalize(c))
                    .map(|c| recovery::hash(&c))
                    .collect(),
                created_at: attempt.now,
            };
            if !db.enable_totp(&enrolment).await? {
                return Err(TotpError::AlreadyEnabled);
            }
            Ok(codes)
        };
        self.throttled(store, user, attempt, check).await
    }

    /// Turns TOTP off, given a current code or a recovery code (either is
    /// used up, as at sign-in).
    pub async fn disable(
        &self,
        db: &impl DurableStore,
        store: &impl SessionStore,
        user: Uuid,
        code: &str,
        attempt: Attempt,
    ) -> Result<(), TotpError> {
        let check = async {
            self.check(db, user, code, attempt.now).await?;
            db.disable_totp(user).await?;
            Ok(())
        };
        self.throttled(store, user, attempt, check).await
    }

    /// The second factor at sign-in: a current code not used before, or
    /// a recovery code, which is then used up.
    pub async fn verify(
        &self,
        db: &impl DurableStore,
        store: &impl SessionStore,
        user: Uuid,
        code: &str,
        attempt: Attempt,
    ) -> Result<(), TotpError> {
        let check = self.check(db, user, code, attempt.now);
        self.throttled(store, user, attempt, check).await
    }

    /// Accepts `given` once: a code of a step after the last one used, or
    /// a recovery code of the account.
    async fn check(
        &self,
        db: &impl DurableStore,
        user: Uuid,
        given: &str,
        now: Millis,
    ) -> Result<(), TotpError> {
        let accepted = match Given::parse(given) {
            Given::Code(code) => {
                let Some(stored) = db.totp(user).await? else {
                    return Err(TotpError::InvalidCode);
                };
                let secret = self.keys()?.open_secret(user, &stored.secret)?;
                match secret.matching_step(&code, now / 1000, stored.last_step) {
                    // Another replica may have taken this step meanwhile.
                    Some(step) => db.use_totp_step(user, step).await?,
                    None => false,
                }
            }
            Given::Recovery(code) => db.use_recovery_code(user, &recovery::hash(&code)).await?,
            Given::Nothing => false,
        };
        if accepted {
            Ok(())
        } else {
            Err(TotpError::InvalidCode)
        }
    }

    /// Runs `check` as one throttled attempt of `user` from the caller's
    /// address: refused unrun past a limit, counted as a failure unless it
    /// proves no wrong code.
    async fn throttled<T>(
        &self,
        store: &impl SessionStore,
        user: Uuid,
        attempt: Attempt,
        check: impl Future<Output = Result<T, TotpError>>,
    ) -> Result<T, TotpError> {
        let user = user.to_string();
        let counters = self
            .throttle
            .counters(THROTTLE_KIND, Some(&user), attempt.addr);
        self.throttle.admit(store, &counters, attempt.now).await?;
        let outcome = check.await;
        if !matches!(outcome, Err(TotpError::InvalidCode)) {
            self.throttle.forgive(store, &counters, attempt.now).await;
        }
        outcome
    }
}

#[cfg(test)]
mod tests;
