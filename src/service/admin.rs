//! The operators' API (SPEC §9, §11; served on `admin.listen` only): API
//! tokens behind the admin token, and a user's sessions — for the admin
//! token or for a trusted login client, the backend that logs users in.
//! Every action is logged with what it touched, never a token.

use uuid::Uuid;

use super::{Gate, ServiceError, SessionView};
use crate::api_tokens::{self, NewApiToken, RevokedView, TokenView};
use crate::clients::Attempt;
use crate::db::DurableStore;
use crate::time::now;

/// Who asks for a user's sessions.
#[derive(Debug, Clone, Copy)]
pub enum Operator<'a> {
    /// The bearer token given, if any: it must be the admin token.
    Admin(Option<&'a str>),
    /// A login client's HTTP Basic `Authorization` value.
    LoginClient(&'a [u8]),
}

/// A token just made: the token itself (shown once) and its record.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub token: String,
    pub view: TokenView,
}

const NO_TOKEN: ServiceError = ServiceError::NotFound("no such API token");

impl Gate {
    /// Creates an API token, for the admin token's holder; `new` reads the
    /// request once the caller is let in.
    pub async fn create_api_token(
        &self,
        admin: Option<&str>,
        new: impl FnOnce() -> Result<NewApiToken, ServiceError>,
        caller: Attempt,
    ) -> Result<CreatedToken, ServiceError> {
        self.authorize_admin(admin, caller).await?;
        let now = now();
        let (token, record) = api_tokens::create(&self.database, new()?, now).await?;
        self.deliver_events().await;
        tracing::info!(id = %record.id, name = record.name, scopes = record.scopes.join(" "),
            "admin: API token created");
        Ok(CreatedToken {
            token,
            view: TokenView::new(&record, now),
        })
    }

    /// The active API tokens, or all of them.
    pub async fn api_tokens(
        &self,
        admin: Option<&str>,
        all: bool,
        caller: Attempt,
    ) -> Result<Vec<TokenView>, ServiceError> {
        self.authorize_admin(admin, caller).await?;
        let now = now();
        let records = self.database.api_tokens(all, now).await?;
        tracing::info!(all, count = records.len(), "admin: API tokens listed");
        Ok(records.iter().map(|r| TokenView::new(r, now)).collect())
    }

    /// One API token's record.
    pub async fn api_token(
        &self,
        admin: Option<&str>,
        id: Option<Uuid>,
        caller: Attempt,
    ) -> Result<TokenView, ServiceError> {
        self.authorize_admin(admin, caller).await?;
        let id = id.ok_or(NO_TOKEN)?;
        let record = self.database.api_token(id).await?.ok_or(NO_TOKEN)?;
        tracing::info!(%id, name = record.name, "admin: API token shown");
        Ok(TokenView::new(&record, now()))
    }

    /// Revokes an API token on every replica at once, or leaves the cache
    /// clear pending (the revocation holds in the database; replicas retry
    /// the clear). Idempotent.
    pub async fn revoke_api_token(
        &self,
        admin: Option<&str>,
        id: Option<Uuid>,
        caller: Attempt,
    ) -> Result<RevokedView, ServiceError> {
        self.authorize_admin(admin, caller).await?;
        let id = id.ok_or(NO_TOKEN)?;
        let now = now();
        let revoked = api_tokens::revoke(&self.database, self.sessions.store(), id, now)
            .await?
            .ok_or(NO_TOKEN)?;
        self.deliver_events().await;
        let view = RevokedView::new(&revoked, now);
        tracing::info!(%id, name = revoked.record.name, cache = ?view.cache, "admin: API token revoked");
        Ok(view)
    }

    /// The live sessions of `owner` (a user's `sub`, or `client:<id>`).
    pub async fn user_sessions(
        &self,
        by: Operator<'_>,
        owner: &str,
        caller: Attempt,
    ) -> Result<Vec<SessionView>, ServiceError> {
        self.authorize_operator(by, caller).await?;
        let sessions = self.sessions.sessions_of(owner, caller.now).await?;
        tracing::info!(owner, count = sessions.len(), "admin: sessions listed");
        Ok(sessions.iter().map(|s| SessionView::new(s, None)).collect())
    }

    /// Ends every session of `owner` on every replica; answers how many.
    pub async fn logout_user(
        &self,
        by: Operator<'_>,
        owner: &str,
        caller: Attempt,
    ) -> Result<u64, ServiceError> {
        self.authorize_operator(by, caller).await?;
        let ended = self.sessions.logout_user(owner, caller.now).await?;
        tracing::info!(owner, ended, "admin: every session of a user ended");
        Ok(ended)
    }

    async fn authorize_operator(
        &self,
        by: Operator<'_>,
        caller: Attempt,
    ) -> Result<(), ServiceError> {
        match by {
            Operator::Admin(token) => self.authorize_admin(token, caller).await,
            Operator::LoginClient(basic) => {
                Ok(self.authenticate_login_client(Some(basic), caller).await?)
            }
        }
    }

    /// The bearer token must be the admin token.
    async fn authorize_admin(
        &self,
        token: Option<&str>,
        caller: Attempt,
    ) -> Result<(), ServiceError> {
        Ok(self
            .admin
            .verify(self.sessions.store(), token, caller)
            .await?)
    }
}
