//! The OAuth 2.0 endpoints' use cases (SPEC §6): the token endpoint's two
//! grants (RFC 6749 §4.4, §6), introspection (RFC 7662), revocation
//! (RFC 7009) and discovery (RFC 8414). They reuse the session rules of
//! `/login` and `/refresh` — same rotation, grace and theft rules.

use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use super::{Gate, OAuthCode, ServiceError};
use crate::api_tokens::ApiToken;
use crate::clients::Attempt;
use crate::oauth::ClientPolicy;
use crate::session::{Introspection, SessionError, TokenPair};
use crate::store::Subject;
use crate::tokens::AccessClaims;
use crate::tokens::api::is_api_token;
use crate::tokens::scope::parse_scope;

/// An OAuth client's id and secret, however the request carried them.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub id: String,
    pub secret: Vec<u8>,
}

/// What the token endpoint was asked (RFC 6749 §4.4.2, §6).
#[derive(Debug, Clone, Copy, Default)]
pub struct Grant<'a> {
    pub grant_type: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub refresh_token: Option<&'a str>,
    /// A JSON body without `grant_type` means `client_credentials` (SPEC §6).
    pub json: bool,
}

/// What the token endpoint issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub pair: TokenPair,
    /// Whether the answer shows the refresh token (a client with
    /// `refresh_tokens: true`).
    pub show_refresh: bool,
}

/// What introspection knows of a token (RFC 7662): live or not.
#[derive(Debug, Clone)]
pub enum Introspected {
    Inactive,
    Access(AccessClaims),
    Refresh {
        sid: Uuid,
        subject: Subject,
        ends_at: u64,
    },
    ApiToken(ApiToken),
}

impl Gate {
    /// The token endpoint.
    pub async fn issue_token(
        &self,
        credentials: ClientCredentials,
        grant: Grant<'_>,
        caller: Attempt,
    ) -> Result<Issued, ServiceError> {
        let client = self.oauth_client(credentials, caller).await?;
        let now = caller.now;
        self.sessions
            .count_request(&client.id, client.rate_limit, now)
            .await?;
        let grant_type = match grant.grant_type {
            Some(grant_type) => grant_type,
            None if grant.json => "client_credentials",
            None => return Err(required("grant_type")),
        };
        match grant_type {
            "client_credentials" => {
                let scope = client
                    .grant(grant.scope)
                    .map_err(|e| ServiceError::oauth(OAuthCode::InvalidScope, e))?;
                let pair = self
                    .sessions
                    .client_credentials(&client.id, scope, client.refresh_tokens, now)
                    .await?;
                Ok(Issued {
                    pair,
                    show_refresh: client.refresh_tokens,
                })
            }
            "refresh_token" if !client.refresh_tokens => Err(ServiceError::oauth(
                OAuthCode::UnauthorizedClient,
                "this client is not configured for refresh tokens",
            )),
            "refresh_token" => {
                let presented = grant
                    .refresh_token
                    .ok_or_else(|| required("refresh_token"))?;
                let narrow = grant
                    .scope
                    .map(parse_scope)
                    .transpose()
                    .map_err(|e| ServiceError::oauth(OAuthCode::InvalidScope, e))?;
                let pair = self
                    .sessions
                    .refresh(presented, Some(&client), narrow.as_deref(), now)
                    .await
                    .map_err(|e| match e {
                        // On this endpoint a bad grant is 400 (RFC 6749 §5.2).
                        SessionError::InvalidGrant | SessionError::RefreshReuse => {
                            ServiceError::oauth(OAuthCode::InvalidGrant, e.to_string())
                        }
                        other => other.into(),
                    })?;
                Ok(Issued {
                    pair,
                    show_refresh: true,
                })
            }
            other => Err(ServiceError::oauth(
                OAuthCode::UnsupportedGrantType,
                format!(
                    "grant_type {other:?} is not supported; use client_credentials or refresh_token"
                ),
            )),
        }
    }

    /// What an OAuth client may know of `token` (RFC 7662).
    pub async fn introspect(
        &self,
        credentials: ClientCredentials,
        token: &str,
        caller: Attempt,
    ) -> Result<Introspected, ServiceError> {
        self.oauth_client(credentials, caller).await?;
        if is_api_token(token) {
            return match self.validate_api_token(token, caller).await {
                Ok(token) => Ok(Introspected::ApiToken(token)),
                Err(ServiceError::InvalidToken(reason)) => {
                    tracing::debug!(reason = reason.label(), "introspect: API token refused");
                    Ok(Introspected::Inactive)
                }
                Err(other) => Err(other),
            };
        }
        Ok(match self.sessions.introspect(token, caller.now).await? {
            None => Introspected::Inactive,
            Some(Introspection::Access(claims)) => Introspected::Access(claims),
            Some(Introspection::Refresh { sid, state }) => Introspected::Refresh {
                sid,
                subject: state.subject,
                ends_at: state.ends_at,
            },
        })
    }

    /// Ends the session of `token` if it was issued to the client
    /// (RFC 7009); an unknown token is no error.
    pub async fn revoke(
        &self,
        credentials: ClientCredentials,
        token: &str,
        caller: Attempt,
    ) -> Result<(), ServiceError> {
        let client = self.oauth_client(credentials, caller).await?;
        Ok(self.sessions.revoke(token, &client.id, caller.now).await?)
    }

    /// The base URL of discovery metadata (RFC 8414): `oauth.public_url`
    /// when set, else `base`, where the request says clients reach us.
    pub fn public_base<'a>(&'a self, base: &'a str) -> &'a str {
        if self.public_url.is_empty() {
            base
        } else {
            &self.public_url
        }
    }

    /// Every scope some OAuth client may be granted (RFC 8414
    /// `scopes_supported`), stored clients as last read included.
    pub fn scopes_supported(&self) -> Vec<String> {
        self.oauth_clients.scopes_supported()
    }

    /// The public keys, as `/.well-known/jwks.json` serves them.
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }

    /// `auth.issuer`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Whether discovery metadata takes its base URL from the request.
    pub fn has_public_url(&self) -> bool {
        !self.public_url.is_empty()
    }

    /// Checks an OAuth client's id and secret; returns what it may do.
    async fn oauth_client(
        &self,
        credentials: ClientCredentials,
        caller: Attempt,
    ) -> Result<Arc<ClientPolicy>, ServiceError> {
        Ok(self
            .oauth_clients
            .verify(
                self.sessions.store(),
                &credentials.id,
                credentials.secret,
                caller,
            )
            .await?)
    }
}

fn required(parameter: &str) -> ServiceError {
    ServiceError::InvalidRequest(format!("parameter {parameter} is required"))
}
