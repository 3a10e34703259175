//! Starting sessions and making accounts (SPEC §2, §7, §11): a password
//! login, a `user_id` login a trusted login client vouches for, and
//! registration.

use uuid::Uuid;

use super::{Gate, ServiceError};
use crate::clients::{Attempt, ClientError};
use crate::config::Registration as RegistrationPolicy;
use crate::session::TokenPair;
use crate::users::{Account, Registrant};

/// Longest accepted user id; it travels in every token and header.
const MAX_USER_ID_BYTES: usize = 255;

/// An account asked for: the email, the password, and whether the trusted
/// client that asks says the email is verified (only one may).
#[derive(Debug, Clone)]
pub struct Registration {
    pub email: String,
    pub password: String,
    pub email_verified: bool,
}

impl Gate {
    /// A session for an email and password.
    pub async fn password_login(
        &self,
        email: &str,
        password: &str,
        caller: Attempt,
    ) -> Result<TokenPair, ServiceError> {
        let account = self.account(email, password, caller).await?;
        let sub = account.id.to_string();
        Ok(self
            .sessions
            .login_account(&sub, account.email, account.email_verified, caller.now)
            .await?)
    }

    /// A session for a user id, on the word of a trusted login client (its
    /// HTTP Basic `authorization`), or of anyone while `/login` is open.
    /// `user_id` reads the id from the request once the caller is let in:
    /// a refused caller learns nothing of what its request should hold.
    pub async fn trusted_login(
        &self,
        authorization: Option<&[u8]>,
        user_id: impl FnOnce() -> Result<String, ServiceError>,
        caller: Attempt,
    ) -> Result<TokenPair, ServiceError> {
        if !self.login_is_open() {
            self.authenticate_login_client(authorization, caller)
                .await?;
        }
        let user_id = user_id()?;
        check_user_id(&user_id)?;
        Ok(self.sessions.login(&user_id, caller.now).await?)
    }

    /// Creates an account; returns its id. A trusted login client (its HTTP
    /// Basic `authorization`, then required to be right) may register
    /// without the per-address limit and say the email is verified;
    /// anyone else may register while `users.registration` is open.
    /// `account` reads the request once the caller is let in.
    pub async fn register(
        &self,
        authorization: Option<&[u8]>,
        account: impl FnOnce() -> Result<Registration, ServiceError>,
        caller: Attempt,
    ) -> Result<Uuid, ServiceError> {
        let trusted = match self.authenticate_login_client(authorization, caller).await {
            Ok(()) => true,
            Err(ClientError::Missing) if self.users.registration() == RegistrationPolicy::Open => {
                false
            }
            Err(e) => return Err(e.into()),
        };
        let account = account()?;
        if account.email_verified && !trusted {
            return Err(ClientError::Missing.into());
        }
        let by = Registrant {
            addr: caller.addr,
            trusted,
            email_verified: account.email_verified,
        };
        let store = self.sessions.store();
        let user_id = self
            .users
            .register(
                &self.database,
                store,
                &account.email,
                &account.password,
                by,
                caller.now,
            )
            .await?;
        // Its UserRegistered is in the log before the client hears of the
        // account, so before that user's first UserLoggedIn.
        self.deliver_events().await;
        Ok(user_id)
    }

    /// The account an email and password name, if the password is right;
    /// checked and throttled as every password is (SPEC §7, §11).
    pub(super) async fn account(
        &self,
        email: &str,
        password: &str,
        caller: Attempt,
    ) -> Result<Account, ServiceError> {
        Ok(self
            .users
            .login(
                &self.database,
                self.sessions.store(),
                email,
                password,
                caller,
            )
            .await?)
    }

    /// Checks a login client's HTTP Basic credentials.
    pub(super) async fn authenticate_login_client(
        &self,
        authorization: Option<&[u8]>,
        caller: Attempt,
    ) -> Result<(), ClientError> {
        self.login_clients
            .verify_basic(self.sessions.store(), authorization, caller)
            .await?;
        Ok(())
    }
}

/// The id becomes `sub` and the `X-User-Id` header: it must be printable,
/// and not look like an API token's or an OAuth client's identity
/// (`token:<name>`, `client:<id>`), so that an app behind the gate never
/// takes a user for a service (SPEC §11).
fn check_user_id(sub: &str) -> Result<(), ServiceError> {
    if sub.is_empty() || sub.len() > MAX_USER_ID_BYTES || sub.chars().any(char::is_control) {
        return Err(ServiceError::InvalidRequest(format!(
            "user_id must be 1 to {MAX_USER_ID_BYTES} bytes without control characters"
        )));
    }
    for (prefix, names) in [
        (crate::api_tokens::SUBJECT_PREFIX, "API tokens"),
        (crate::tokens::CLIENT_PREFIX, "OAuth clients"),
    ] {
        if sub.starts_with(prefix) {
            return Err(ServiceError::InvalidRequest(format!(
                "user_id may not start with {prefix:?}: that names {names}"
            )));
        }
    }
    Ok(())
}
