//! The durable half of TOTP (SPEC §15): an account's encrypted secret with
//! the step of its last accepted code, and the hashes of its recovery
//! codes. What they mean — encryption, code checks — is `users::totp`'s;
//! here they are bytes and numbers, changed only by single statements or
//! one transaction, so replicas racing on the same code cannot both win.

use std::fmt;

use uuid::Uuid;

use crate::time::Millis;

/// An account's TOTP as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpRecord {
    /// The secret as sealed by `users::totp` (nonce || ciphertext || tag).
    pub secret: Vec<u8>,
    /// The time step of the last accepted code: no code of it or before
    /// it is accepted again.
    pub last_step: u64,
}

/// Encrypted, but no business of a log line either.
impl fmt::Debug for TotpRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpRecord")
            .field("secret", &"[redacted]")
            .field("last_step", &self.last_step)
            .finish()
    }
}

/// A confirmed enrolment, stored with its recovery codes in one
/// transaction.
#[derive(Clone, PartialEq, Eq)]
pub struct NewTotp {
    pub user: Uuid,
    /// Sealed, as in [`TotpRecord::secret`].
    pub secret: Vec<u8>,
    /// The step of the code that confirmed the enrolment (used up).
    pub last_step: u64,
    /// SHA-256 (lower-case hex) of each recovery code.
    pub recovery_hashes: Vec<String>,
    pub created_at: Millis,
}

impl fmt::Debug for NewTotp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewTotp")
            .field("user", &self.user)
            .field("secret", &"[redacted]")
            .field("last_step", &self.last_step)
            .field("recovery_hashes", &self.recovery_hashes.len())
            .finish()
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct TotpRow {
    pub secret: Vec<u8>,
    pub last_step: i64,
}

impl From<TotpRow> for TotpRecord {
    fn from(row: TotpRow) -> Self {
        Self {
            secret: row.secret,
            last_step: u64::try_from(row.last_step).unwrap_or(0),
        }
    }
}

/// Steps are Unix seconds / 30: far inside BIGINT.
pub(super) fn to_db_step(step: u64) -> i64 {
    i64::try_from(step).unwrap_or(i64::MAX)
}
