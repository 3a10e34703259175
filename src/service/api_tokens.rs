//! API tokens as services present them (SPEC §9): the check behind the gate
//! and introspection, and `POST /auth/validate`'s answer.

use super::{Gate, ServiceError};
use crate::api_tokens::{ApiToken, ApiTokenError};
use crate::clients::Attempt;

/// `/auth/validate`'s verdict: the answer is in the body, and why a token
/// was refused is for the log only.
#[derive(Debug, Clone)]
pub enum Validation {
    Valid(ApiToken),
    /// Valid, but without a scope that was required.
    MissingScope,
    Invalid,
}

impl Gate {
    /// The API token behind `token`, presented by `caller`: one cache round
    /// trip on a hit; a miss counts against the caller's address (SPEC §11).
    pub(super) async fn validate_api_token(
        &self,
        token: &str,
        caller: Attempt,
    ) -> Result<ApiToken, ServiceError> {
        let cache = self.sessions.store();
        Ok(self
            .api_tokens
            .validate(&self.database, cache, token, caller.addr, caller.now)
            .await?)
    }

    /// Whether `token` is a live API token holding every scope of `required`.
    pub async fn validate(
        &self,
        token: &str,
        required: &[String],
        caller: Attempt,
    ) -> Result<Validation, ServiceError> {
        let cache = self.sessions.store();
        let validated = self
            .api_tokens
            .validate(&self.database, cache, token, caller.addr, caller.now)
            .await;
        Ok(match validated {
            Ok(token) => match token.missing(required) {
                None => Validation::Valid(token),
                Some(missing) => {
                    tracing::warn!(id = %token.id, name = token.name, missing,
                        "validate: API token lacks a scope");
                    Validation::MissingScope
                }
            },
            Err(ApiTokenError::Invalid(reason)) => {
                tracing::warn!(reason = reason.label(), "validate: API token refused");
                self.metrics.auth_failure(reason.label());
                Validation::Invalid
            }
            Err(other) => return Err(other.into()),
        })
    }
}
