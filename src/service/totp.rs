//! TOTP as a second factor (SPEC §15): what the browser pages call to
//! enrol an account, turn TOTP off, and check the second factor at sign-in.
//! The rules are `users::totp`'s; this layer gives them the stores and the
//! clock, and says what went wrong as a [`ServiceError`].

use uuid::Uuid;

use super::{Gate, ServiceError};
use crate::clients::Attempt;
pub use crate::users::totp::TotpEnrolment;

impl Gate {
    /// Whether the account has TOTP on.
    pub async fn totp_enabled(&self, user: Uuid) -> Result<bool, ServiceError> {
        Ok(self.totp.enabled(&self.database, user).await?)
    }

    /// A new secret to enrol (nothing stored yet). `TotpNotConfigured`
    /// when `totp.key_file` is not set.
    pub fn totp_begin(&self, user: Uuid, email: &str) -> Result<TotpEnrolment, ServiceError> {
        Ok(self.totp.begin(user, email, crate::time::now())?)
    }

    /// Confirms an enrolment with a code from the app; returns the 10
    /// recovery codes (shown once). `TotpAlreadyEnabled` if the account
    /// has TOTP on; `InvalidCode` for a wrong code or a sealed enrolment
    /// that is not this user's or too old.
    pub async fn totp_confirm(
        &self,
        user: Uuid,
        sealed: &str,
        code: &str,
        caller: Attempt,
    ) -> Result<Vec<String>, ServiceError> {
        let store = self.sessions.store();
        Ok(self
            .totp
            .confirm(&self.database, store, user, sealed, code, caller)
            .await?)
    }

    /// Turns TOTP off, given a current code or a recovery code.
    pub async fn totp_disable(
        &self,
        user: Uuid,
        code: &str,
        caller: Attempt,
    ) -> Result<(), ServiceError> {
        let store = self.sessions.store();
        Ok(self
            .totp
            .disable(&self.database, store, user, code, caller)
            .await?)
    }

    /// Checks a second factor at sign-in: a current code (single use) or a
    /// recovery code (used up). `InvalidCode` also when the account has no
    /// TOTP: ask [`Gate::totp_enabled`] first.
    pub async fn totp_verify(
        &self,
        user: Uuid,
        code: &str,
        caller: Attempt,
    ) -> Result<(), ServiceError> {
        let store = self.sessions.store();
        Ok(self
            .totp
            .verify(&self.database, store, user, code, caller)
            .await?)
    }
}
