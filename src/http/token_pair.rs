//! The token-pair answer shared by `/login` and `/refresh`.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::service::TokenPair;

/// A session's token pair.
#[derive(Serialize, ToSchema)]
pub struct TokenPairBody {
    /// The access token: a JWT (`typ: at+jwt`) for `Authorization: Bearer`.
    access: String,
    /// The refresh token: opaque, single-use, for `/refresh`.
    refresh: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
    /// Seconds until the refresh token expires.
    refresh_expires_in: u64,
    session_id: Uuid,
}

impl From<TokenPair> for TokenPairBody {
    fn from(pair: TokenPair) -> Self {
        Self {
            access: pair.access,
            refresh: pair.refresh,
            token_type: "Bearer",
            expires_in: pair.expires_in,
            refresh_expires_in: pair.refresh_expires_in,
            session_id: pair.session_id,
        }
    }
}
