//! OAuth 2.0 machine clients (SPEC §6): who may ask for which scopes,
//! whether they get refresh tokens, how often they may ask.

use crate::clients::{ClientSecrets, Credential, Policy};
use crate::config::OAuthClient;
use crate::db::StoredClient;
use crate::tokens::scope::{is_scope_token, parse_scope};

/// What one client is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPolicy {
    pub id: String,
    pub scopes: Vec<String>,
    pub refresh_tokens: bool,
    /// Token requests per minute; 0 = unlimited.
    pub rate_limit: u32,
}

/// The OAuth clients: secrets and policies, from `oauth.clients` and the
/// database.
pub type OAuthClients = ClientSecrets<ClientPolicy>;

impl Policy for ClientPolicy {
    fn from_stored(client: &StoredClient) -> Self {
        Self {
            id: client.id.clone(),
            scopes: client.scopes.clone(),
            refresh_tokens: client.refresh_tokens,
            rate_limit: client.rate_limit,
        }
    }
}

impl From<&OAuthClient> for ClientPolicy {
    fn from(client: &OAuthClient) -> Self {
        Self {
            id: client.id.clone(),
            scopes: client.scopes.clone(),
            refresh_tokens: client.refresh_tokens,
            rate_limit: client.rate_limit,
        }
    }
}

/// What [`ClientSecrets::new`] needs of each configured client, once its
/// scopes are scope tokens (an error names the key).
pub fn configured(
    clients: &[OAuthClient],
) -> Result<Vec<(&str, Credential<'_>, ClientPolicy)>, String> {
    clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if let Some(bad) = c.scopes.iter().find(|s| !is_scope_token(s)) {
                return Err(format!(
                    "oauth.clients[{i}].scopes: {bad:?} is not a scope \
                     (printable ASCII, no space, quote or backslash)"
                ));
            }
            Ok((
                c.id.as_str(),
                Credential::Hash(&c.secret_hash),
                ClientPolicy::from(c),
            ))
        })
        .collect()
}

impl ClientSecrets<ClientPolicy> {
    /// Every scope some client may be granted, sorted, once each (discovery's
    /// `scopes_supported`; stored clients as last read included).
    pub fn scopes_supported(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .policies()
            .iter()
            .flat_map(|p| p.scopes.iter().cloned())
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
}
