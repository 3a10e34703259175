//! The types of the events that pass through the outbox, and those the
//! database writes itself, in the transaction of the change they tell of
//! (SPEC §14): an API token created or revoked. The outbox relay moves them
//! to the log like every other row. (`UserRegistered` is made by `users`,
//! which passes it to [`super::DurableStore::create_user`].)
//!
//! `data`, version 1 (docs/events.md): never the token or its hash.
//! - `ApiTokenCreated {token_id, name, scopes, expires_at, created_at}`,
//!   `expires_at` `null` for a token that never expires;
//! - `ApiTokenRevoked {token_id, name, revoked_at}`.
//!
//! Times are RFC 3339 (UTC, milliseconds). The subject is `token:<name>`,
//! whom the token authenticates as.

use serde_json::json;
use uuid::Uuid;

use super::{ApiTokenRecord, OutboxEvent};
use crate::time::{Millis, rfc3339_millis};

pub const USER_REGISTERED: &str = "UserRegistered";
pub const API_TOKEN_CREATED: &str = "ApiTokenCreated";
pub const API_TOKEN_REVOKED: &str = "ApiTokenRevoked";

/// `ApiTokenCreated`, at the token's `created_at`.
pub fn token_created(token: &ApiTokenRecord) -> OutboxEvent {
    let data = json!({
        "token_id": token.id,
        "name": token.name,
        "scopes": token.scopes,
        "expires_at": token.expires_at.map(rfc3339_millis),
        "created_at": rfc3339_millis(token.created_at),
    });
    event(API_TOKEN_CREATED, token, data, token.created_at)
}

/// `ApiTokenRevoked`, at `revoked_at` (the token's first revocation).
pub fn token_revoked(token: &ApiTokenRecord, revoked_at: Millis) -> OutboxEvent {
    let data = json!({
        "token_id": token.id,
        "name": token.name,
        "revoked_at": rfc3339_millis(revoked_at),
    });
    event(API_TOKEN_REVOKED, token, data, revoked_at)
}

fn event(kind: &str, token: &ApiTokenRecord, data: serde_json::Value, at: Millis) -> OutboxEvent {
    OutboxEvent {
        id: Uuid::now_v7(),
        kind: kind.into(),
        subject: token.subject(),
        payload: data.to_string(),
        created_at: at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> ApiTokenRecord {
        ApiTokenRecord {
            id: Uuid::now_v7(),
            name: "billing".into(),
            token_hash: "ab".repeat(32),
            scopes: vec!["read".into(), "write".into()],
            created_at: 1_800_000_000_123,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn events_name_the_token_never_its_hash() {
        let token = token();
        let created = token_created(&token);
        assert_eq!(created.kind, "ApiTokenCreated");
        assert_eq!(created.subject, "token:billing");
        assert_eq!(created.created_at, token.created_at);
        let data: serde_json::Value = serde_json::from_str(&created.payload).unwrap();
        assert_eq!(
            data,
            json!({
                "token_id": token.id,
                "name": "billing",
                "scopes": ["read", "write"],
                "expires_at": null,
                "created_at": "2027-01-15T08:00:00.123Z",
            })
        );
        let revoked = token_revoked(&token, 1_800_000_001_000);
        assert_eq!(revoked.subject, "token:billing");
        let data: serde_json::Value = serde_json::from_str(&revoked.payload).unwrap();
        assert_eq!(
            data,
            json!({"token_id": token.id, "name": "billing", "revoked_at": "2027-01-15T08:00:01.000Z"})
        );
        assert!(!created.payload.contains(&token.token_hash));
        assert!(!revoked.payload.contains(&token.token_hash));
    }
}
