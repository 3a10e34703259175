//! OAuth 2.0 machine clients (SPEC §6): who may ask for which scopes,
//! whether they get refresh tokens, how often they may ask.

use crate::clients::{ClientSecrets, Credential};
use crate::config::OAuthClient;

/// What one configured client is allowed.
#[derive(Debug, Clone)]
pub struct ClientPolicy {
    pub id: String,
    pub scopes: Vec<String>,
    pub refresh_tokens: bool,
    /// Token requests per minute; 0 = unlimited.
    pub rate_limit: u32,
}

pub struct OAuthClients {
    pub secrets: ClientSecrets,
    policies: Vec<ClientPolicy>,
}

impl OAuthClients {
    /// `secrets` is built with `clients` (see [`OAuthClients::credentials`]).
    pub fn new(clients: &[OAuthClient], secrets: ClientSecrets) -> Self {
        let policies = clients
            .iter()
            .map(|c| ClientPolicy {
                id: c.id.clone(),
                scopes: c.scopes.clone(),
                refresh_tokens: c.refresh_tokens,
                rate_limit: c.rate_limit,
            })
            .collect();
        Self { secrets, policies }
    }

    /// What [`ClientSecrets`] needs of each client.
    pub fn credentials(clients: &[OAuthClient]) -> impl Iterator<Item = (&str, Credential<'_>)> {
        clients
            .iter()
            .map(|c| (c.id.as_str(), Credential::Hash(&c.secret_hash)))
    }

    pub fn policy(&self, id: &str) -> Option<&ClientPolicy> {
        self.policies.iter().find(|p| p.id == id)
    }

    /// Every scope some client may be granted, sorted, once each.
    pub fn scopes_supported(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self
            .policies
            .iter()
            .flat_map(|p| p.scopes.iter().map(String::as_str))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

impl ClientPolicy {
    /// The scope to grant for `requested` (RFC 6749 §3.3): all allowed
    /// scopes when nothing is asked for, else exactly what was asked if it is
    /// allowed. `None` when the client has no scopes at all.
    pub fn grant(&self, requested: Option<&str>) -> Result<Option<String>, String> {
        let granted = match requested {
            None => self.scopes.clone(),
            Some(text) => {
                let asked = parse_scope(text)?;
                if let Some(extra) = asked.iter().find(|s| !self.scopes.contains(s)) {
                    return Err(format!("scope {extra:?} is not allowed for this client"));
                }
                asked
            }
        };
        Ok((!granted.is_empty()).then(|| granted.join(" ")))
    }
}

/// Splits a space-separated scope string into distinct scope tokens, in the
/// order given.
pub fn parse_scope(text: &str) -> Result<Vec<String>, String> {
    let mut scopes: Vec<String> = Vec::new();
    for token in text.split(' ').filter(|t| !t.is_empty()) {
        if !is_scope_token(token) {
            return Err(format!("{token:?} is not a valid scope"));
        }
        if !scopes.iter().any(|s| s == token) {
            scopes.push(token.to_owned());
        }
    }
    Ok(scopes)
}

/// `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )` (RFC 6749 §3.3).
pub fn is_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ClientPolicy {
        ClientPolicy {
            id: "billing".into(),
            scopes: vec!["read".into(), "write".into()],
            refresh_tokens: false,
            rate_limit: 0,
        }
    }

    #[test]
    fn grants_everything_allowed_by_default_and_narrows_on_request() {
        let p = policy();
        assert_eq!(p.grant(None).unwrap().as_deref(), Some("read write"));
        assert_eq!(p.grant(Some("write")).unwrap().as_deref(), Some("write"));
        assert_eq!(
            p.grant(Some(" write  read write")).unwrap().as_deref(),
            Some("write read")
        );
        assert!(p.grant(Some("admin")).is_err());
        assert!(p.grant(Some("read \"x\"")).is_err());
        assert_eq!(p.grant(Some("")).unwrap(), None);
        let none = ClientPolicy {
            scopes: vec![],
            ..policy()
        };
        assert_eq!(none.grant(None).unwrap(), None);
    }

    #[test]
    fn scope_tokens_follow_rfc_6749() {
        for ok in ["read", "a:b", "x!#[]^~", "urn:x-y/z"] {
            assert!(is_scope_token(ok), "{ok}");
        }
        for bad in ["", "a b", "a\"b", "a\\b", "é", "\t"] {
            assert!(!is_scope_token(bad), "{bad}");
        }
    }
}
