//! The token-pair answer shared by `/login` and `/refresh`.

use serde::Serialize;
use uuid::Uuid;

use crate::service::TokenPair;

#[derive(Serialize)]
pub struct TokenPairBody {
    access: String,
    refresh: String,
    token_type: &'static str,
    expires_in: u64,
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
