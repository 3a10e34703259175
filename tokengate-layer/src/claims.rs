//! The claims of a verified access token, as tokengate signs them
//! (`AccessClaims` in tokengate's `src/tokens/access.rs`), typed for the
//! handler: the granted scopes arrive as a list, not a string to split.

use serde::{Deserialize, Deserializer};
use uuid::Uuid;

/// What a verified access token says. Reaches the handler as a request
/// extension (and, with the `axum` feature, as an extractor).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// The user id (or, for an OAuth client's own token, the client id).
    pub sub: String,
    /// The session the token belongs to; every token of one login shares it.
    pub sid: Uuid,
    /// This token's id, unique per token.
    pub jti: Uuid,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    pub iss: String,
    pub aud: String,
    /// The granted scopes (the `scope` claim, space-separated in the token).
    #[serde(default, rename = "scope", deserialize_with = "scope_list")]
    pub scopes: Vec<String>,
    /// The OAuth client the token was issued to, if any (RFC 9068 §2.2).
    #[serde(default)]
    pub client_id: Option<String>,
    /// The account's email, for sessions of a password login.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether that email was verified.
    #[serde(default)]
    pub email_verified: Option<bool>,
}

impl Claims {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The email, only if it was verified.
    pub fn verified_email(&self) -> Option<&str> {
        self.email
            .as_deref()
            .filter(|_| self.email_verified == Some(true))
    }
}

/// The claims besides those above that the verifier reads but the handler
/// does not need: `nbf` is optional in tokengate's tokens and checked when
/// present.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Signed {
    #[serde(flatten)]
    pub claims: Claims,
    #[serde(default)]
    pub nbf: Option<u64>,
}

fn scope_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    Ok(text
        .as_deref()
        .unwrap_or("")
        .split_ascii_whitespace()
        .map(str::to_owned)
        .collect())
}

/// `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )` (RFC 6749 §3.3): what a
/// required scope may be, so it can be quoted in a challenge as it is.
pub(crate) fn is_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_claim_becomes_a_list_and_may_be_absent() {
        let base = serde_json::json!({
            "sub": "42", "sid": Uuid::new_v4(), "jti": Uuid::new_v4(),
            "iat": 1, "exp": 2, "iss": "tokengate", "aud": "tokengate",
        });
        let claims: Claims = serde_json::from_value(base.clone()).unwrap();
        assert!(claims.scopes.is_empty());
        let mut scoped = base;
        scoped["scope"] = "read  write".into();
        let claims: Claims = serde_json::from_value(scoped).unwrap();
        assert_eq!(claims.scopes, ["read", "write"]);
        assert!(claims.has_scope("write") && !claims.has_scope("admin"));
    }

    #[test]
    fn scope_tokens_follow_rfc_6749() {
        for ok in ["read", "a:b", "x!#[]^~"] {
            assert!(is_scope_token(ok), "{ok}");
        }
        for bad in ["", "a b", "a\"b", "a\\b", "é"] {
            assert!(!is_scope_token(bad), "{bad}");
        }
    }
}
