//! User accounts (SPEC §7): registration and password login, the rules
//! between the HTTP (and later gRPC) adapters and the durable store.
//!
//! Passwords exist here only as argon2id PHC strings, made and checked in
//! the bounded [`Verifier`] pool that client secrets use, so a flood of
//! registrations or guesses queues there and is refused past its bound. A
//! login for an email nobody registered verifies against a dummy hash with
//! the same parameters, so it costs what a wrong password costs and the two
//! answers cannot be told apart, in content or in time.
//!
//! Failed logins are counted in the session store, shared by replicas (see
//! [`crate::throttle`]): per account from one address, per address, and per
//! account from everywhere (a ceiling only a distributed attack reaches).
//! The account's key is a hash of the normalized email, counted whether or
//! not the account exists: a `429` that only real accounts earned would
//! tell which emails are registered. The check runs before any hashing.

pub mod login_failed;
pub mod rules;
pub mod totp;

use std::net::IpAddr;
use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::clients::{Attempt, parse_secret_hash};
use crate::config::{Registration, UserSettings};
use crate::db::{DbError, DurableStore, NewUser, OutboxEvent, UserLogin};
use crate::store::{SessionStore, StoreError};
use crate::throttle::{Throttle, ThrottleError, address_block};
use crate::time::Millis;
use crate::verifier::{Verifier, VerifyError};

/// What unknown emails verify against: argon2id with the parameters
/// registrations use (`Verifier::hash`), so it costs what a real account
/// costs. Fixed rather than made at start-up, which would hold 19 MiB of
/// argon2 memory in every replica for one hash; what it hashes does not
/// matter, since an unknown email is refused whatever the verify says.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$Tordjuw5TGubyv5fVVC/3A$oMole3I2n7ILX6lRz7i1LE5Y/dCfLw+oecCMyYfSabs";

/// The event a registration writes to the outbox.
pub const USER_REGISTERED: &str = crate::db::events::USER_REGISTERED;

/// The window of `users.registrations_per_address`.
const REGISTRATION_WINDOW: Millis = 3_600_000;

/// Who asks for an account.
#[derive(Debug, Clone, Copy)]
pub struct Registrant {
    /// Where the request comes from (see `server.trusted_proxies`).
    pub addr: IpAddr,
    /// A trusted login client vouches for it: no per-address limit (a
    /// backend registers its many users from one address), and it may say
    /// the email is verified.
    pub trusted: bool,
    /// The email is verified (only a trusted client may say so).
    pub email_verified: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    InvalidEmail(&'static str),
    #[error("{0}")]
    InvalidPassword(String),
    #[error("this email is already registered")]
    EmailTaken,
    #[error("unknown email or wrong password")]
    InvalidCredentials,
    #[error("too many failed logins; retry in {0}s")]
    Throttled(u64),
    #[error(transparent)]
    Verifier(#[from] VerifyError),
    #[error(transparent)]
    Database(DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<DbError> for UserError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::EmailTaken => Self::EmailTaken,
            other => Self::Database(other),
        }
    }
}

impl From<ThrottleError> for UserError {
    fn from(error: ThrottleError) -> Self {
        match error {
            ThrottleError::Throttled(seconds) => Self::Throttled(seconds),
            ThrottleError::Store(e) => Self::Store(e),
        }
    }
}

pub struct Users {
    registration: Registration,
    password_min: usize,
    /// Registrations one address may make per [`REGISTRATION_WINDOW`]
    /// without a trusted client; 0 = no limit.
    registrations_per_address: u32,
    verifier: Arc<Verifier>,
    throttle: Throttle,
    /// What unknown emails verify against.
    dummy: PasswordHash,
}

impl Users {
    pub fn new(
        settings: &UserSettings,
        throttle: Throttle,
        verifier: Arc<Verifier>,
    ) -> Result<Self, String> {
        let dummy = parse_secret_hash(DUMMY_HASH)?;
        Ok(Self {
            registration: settings.registration,
            password_min: settings.password_min,
            registrations_per_address: settings.registrations_per_address,
            verifier,
            throttle,
            dummy,
        })
    }

    pub fn registration(&self) -> Registration {
        self.registration
    }

    /// Creates an account and its `UserRegistered` event; returns its id.
    /// The event is in the outbox; moving it on is the caller's (the
    /// service runs a relay round before it answers).
    /// Anonymous registrations count against their address's hourly limit
    /// (SPEC §11: one address cannot fill the database and the event
    /// stream), checked before any hashing.
    pub async fn register(
        &self,
        db: &impl DurableStore,
        store: &impl SessionStore,
        email: &str,
        password: &str,
        by: Registrant,
        now: Millis,
    ) -> Result<Uuid, UserError> {
        let email = rules::normalize_email(email).map_err(UserError::InvalidEmail)?;
        if let Some(problem) = rules::password_problem(password, self.password_min) {
            return Err(UserError::InvalidPassword(problem));
        }
        if !by.trusted && self.registrations_per_address > 0 {
            let key = format!("reg:{}", address_block(by.addr));
            let limit = self.registrations_per_address;
            if let Some(left) = store
                .count_request(&key, limit, REGISTRATION_WINDOW, now)
                .await?
            {
                return Err(UserError::Throttled(left.div_ceil(1000).max(1)));
            }
        }
        let password_hash = self.verifier.hash(password.as_bytes().to_vec()).await?;
        let user = NewUser {
            id: Uuid::new_v4(),
            email,
            password_hash,
            email_verified: by.trusted && by.email_verified,
            created_at: now,
        };
        db.create_user(&user, &registered_event(&user)).await?;
        Ok(user.id)
    }

    /// Checks an email and password; returns the account. A failure
    /// appends `LoginFailed` to the log of events (see [`login_failed`]).
    pub async fn login(
        &self,
        db: &impl DurableStore,
        store: &impl SessionStore,
        email: &str,
        password: &str,
        attempt: Attempt,
    ) -> Result<Account, UserError> {
        // A malformed address has no account: it is checked like an
        // unknown one, counted by address only.
        let given = email;
        let email = rules::normalize_email(email).ok();
        let account = email.as_deref().map(account_key);
        let counters = self
            .throttle
            .counters("user", account.as_deref(), attempt.addr);
        let named = email.as_deref().unwrap_or(given);
        let failed = |user: Option<Uuid>, why| {
            login_failed::event(named, user, why, attempt.addr, attempt.now)
        };
        // Counted as a failure from here until the password proves right.
        // A refusal reads no database, even to name the account in its
        // event: that is what makes a flood of guesses cheap to refuse.
        if let Err(refused) = self.throttle.admit(store, &counters, attempt.now).await {
            if let ThrottleError::Throttled(_) = refused {
                let why = login_failed::Failure::Throttled;
                login_failed::record(store, failed(None, why)).await;
            }
            return Err(refused.into());
        }
        let found = match &email {
            Some(email) => db.user_by_email(email).await,
            None => Ok(None),
        };
        let user = found.as_ref().ok().and_then(|f| f.as_ref().map(|u| u.id));
        let checked = match found {
            Ok(found) => self.check_password(found, email.clone(), password).await,
            Err(e) => Err(e.into()),
        };
        match &checked {
            Err(UserError::InvalidCredentials) => {
                let why = match user {
                    Some(_) => login_failed::Failure::WrongPassword,
                    None => login_failed::Failure::UnknownEmail,
                };
                login_failed::record(store, failed(user, why)).await;
            }
            _ => self.throttle.forgive(store, &counters, attempt.now).await,
        }
        checked
    }

    /// The account `found` for `email` if `password` is its password.
    async fn check_password(
        &self,
        found: Option<UserLogin>,
        email: Option<String>,
        password: &str,
    ) -> Result<Account, UserError> {
        let verified = if password.len() > crate::config::MAX_PASSWORD_BYTES {
            false // no registration accepts it: nothing to hash
        } else {
            let hash = match &found {
                Some(user) => parse_secret_hash(&user.password_hash)
                    .map_err(|e| UserError::Database(DbError::Internal(e)))?,
                None => self.dummy.clone(),
            };
            self.verifier
                .verify(password.as_bytes().to_vec(), hash)
                .await?
        };
        match (found, email) {
            (Some(user), Some(email)) if verified => Ok(Account {
                id: user.id,
                email,
                email_verified: user.email_verified,
            }),
            _ => Err(UserError::InvalidCredentials),
        }
    }
}

/// An account a password login proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: Uuid,
    /// As stored: normalized.
    pub email: String,
    pub email_verified: bool,
}

/// The throttle's name for an account: a hash, so no address sits in Redis
/// keys and every key has one length.
fn account_key(email: &str) -> String {
    let digest = Sha256::digest(email.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// `UserRegistered {user_id, email, registered_at}` (RFC 3339, UTC), about
/// the user: its subject is the user's id, as the `sub` of its sessions.
fn registered_event(user: &NewUser) -> OutboxEvent {
    let payload = serde_json::json!({
        "user_id": user.id,
        "email": user.email,
        "registered_at": crate::time::rfc3339_millis(user.created_at),
    });
    OutboxEvent {
        id: Uuid::now_v7(),
        kind: USER_REGISTERED.into(),
        subject: user.id.to_string(),
        payload: payload.to_string(),
        created_at: user.created_at,
    }
}

#[cfg(test)]
mod tests;
