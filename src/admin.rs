//! The admin token (SPEC §9): the one credential of the management API
//! (`/admin/…`), configured as `admin.token_hash` (argon2id) or
//! `admin.token_file`. It is checked like a client secret — argon2id in the
//! bounded verifier pool, failures throttled per address across replicas,
//! and once it verified, later requests compare an HMAC of it in constant
//! time instead of hashing again (see [`crate::clients`]).

use std::sync::Arc;

use crate::clients::{Attempt, ClientError, ClientSecrets, Credential};
use crate::config::AdminSettings;
use crate::store::SessionStore;
use crate::throttle::Throttle;
use crate::verifier::Verifier;

/// The name the admin token's failures are counted under.
const ADMIN: &str = "admin";

pub struct Admin {
    /// `None`: no admin token configured, the admin API is off.
    token: Option<ClientSecrets<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("the admin API is off: set admin.token_hash or admin.token_file")]
    Disabled,
    #[error("no admin token given")]
    Missing,
    #[error("admin token refused: {0}")]
    Refused(ClientError),
}

impl Admin {
    /// From settings whose `token_file` was read; an unusable token is an
    /// error that names its key.
    pub fn new(
        settings: &AdminSettings,
        verifier: Arc<Verifier>,
        throttle: Throttle,
    ) -> Result<Self, String> {
        if !settings.is_enabled() {
            return Ok(Self { token: None });
        }
        let credential = match &settings.token_file {
            Some(_) => Credential::Secret(settings.token.expose().as_bytes()),
            None => Credential::Hash(&settings.token_hash),
        };
        let token =
            ClientSecrets::labelled(None, ADMIN, [(ADMIN, credential, ())], verifier, throttle)
                .map_err(|e| {
                    let key = e.field.replace("secret", "admin.token");
                    format!("{key}: {e}")
                })?;
        Ok(Self { token: Some(token) })
    }

    /// Checks a presented bearer token.
    pub async fn verify(
        &self,
        store: &impl SessionStore,
        presented: Option<&str>,
        attempt: Attempt,
    ) -> Result<(), AdminError> {
        let token = self.token.as_ref().ok_or(AdminError::Disabled)?;
        let presented = presented.ok_or(AdminError::Missing)?;
        token
            .verify(store, ADMIN, presented.as_bytes().to_vec(), attempt)
            .await
            .map(drop)
            .map_err(AdminError::Refused)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use super::*;
    use crate::config::Secret;
    use crate::store::memory::MemoryStore;
    use crate::throttle::Limits;

    fn admin(settings: &AdminSettings) -> Admin {
        let verifier = Arc::new(Verifier::per_core(8, Duration::from_secs(5)));
        let throttle = Throttle::new(Limits {
            per_pair: 2,
            per_address: 100,
            per_identity: 0,
            window: 60_000,
        });
        Admin::new(settings, verifier, throttle).unwrap()
    }

    fn attempt() -> Attempt {
        Attempt {
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            now: 1_000,
        }
    }

    #[tokio::test]
    async fn only_the_configured_token_passes_and_guesses_are_throttled() {
        let store = MemoryStore::for_tests();
        let token = "an admin token of at least thirty-two characters";
        let hashed = AdminSettings {
            token_hash: crate::clients::hash_secret(token.as_bytes()).unwrap(),
            ..AdminSettings::default()
        };
        let from_file = AdminSettings {
            token_file: Some("/run/secrets/admin".into()),
            token: Secret::new(token),
            ..AdminSettings::default()
        };
        for settings in [hashed, from_file] {
            let admin = admin(&settings);
            let store = MemoryStore::for_tests();
            assert!(admin.verify(&store, Some(token), attempt()).await.is_ok());
            assert!(matches!(
                admin.verify(&store, None, attempt()).await,
                Err(AdminError::Missing)
            ));
            for _ in 0..2 {
                assert!(matches!(
                    admin.verify(&store, Some("wrong"), attempt()).await,
                    Err(AdminError::Refused(ClientError::Rejected))
                ));
            }
            assert!(matches!(
                admin.verify(&store, Some("wrong"), attempt()).await,
                Err(AdminError::Refused(ClientError::Throttled(_)))
            ));
            // The right token, once verified, is compared without argon2 or
            // the throttle: a flood of guesses does not lock the admin out.
            assert!(admin.verify(&store, Some(token), attempt()).await.is_ok());
        }
        let off = admin(&AdminSettings::default());
        assert!(matches!(
            off.verify(&store, Some(token), attempt()).await,
            Err(AdminError::Disabled)
        ));
    }
}
