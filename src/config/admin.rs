//! `admin.*` (SPEC §9, §11): the operators' listener and the token that
//! manages API tokens over HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, Secret, read_secret_file};

/// Where the operators' endpoints answer unless configured: this host only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// The address (`ip:port`) of the listener that serves `/admin/*` and
    /// `/metrics`, never the public port (SPEC §11); empty: no such listener.
    pub listen: String,
    /// argon2id PHC string of the admin token, from `tokengate hash-secret`.
    pub token_hash: String,
    /// Or a file holding the token itself (Docker secrets), hashed at start.
    pub token_file: Option<PathBuf>,
    /// The file's content, read by [`AdminSettings::resolve`].
    #[serde(skip)]
    pub token: Secret,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.into(),
            token_hash: String::new(),
            token_file: None,
            token: Secret::default(),
        }
    }
}

impl AdminSettings {
    /// The admin listener's address; `None`: off. Checked by `validate`.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }

    /// Whether the admin API is on: without a token it answers `403`.
    pub fn is_enabled(&self) -> bool {
        !self.token_hash.is_empty() || self.token_file.is_some()
    }

    /// Reads `token_file`; one of the two ways only.
    pub(super) fn resolve(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.token_file else {
            return Ok(());
        };
        if !self.token_hash.is_empty() {
            return Err(ConfigError::new(
                "admin.token_file",
                "set admin.token_hash or admin.token_file, not both",
            ));
        }
        self.token = Secret::new(read_secret_file("admin.token_file", path)?);
        // A guessable admin token would be worse than none.
        if self.token.expose().len() < 32 {
            return Err(ConfigError::new(
                "admin.token_file",
                "the token must be at least 32 characters (e.g. `openssl rand -base64 32`)",
            ));
        }
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.is_empty() && self.listen_addr().is_none() {
            return Err(ConfigError::new(
                "admin.listen",
                "not an address and port, e.g. 127.0.0.1:8081 or [::1]:8081 (empty: no admin listener)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;

    fn key(yaml: &str) -> String {
        load(yaml, &[]).unwrap_err().key
    }

    #[test]
    fn the_admin_listener_is_on_loopback_by_default_and_off_when_empty() {
        let default = load("", &[]).unwrap();
        assert_eq!(default.admin.listen, super::DEFAULT_LISTEN);
        assert_eq!(
            default.admin.listen_addr(),
            Some(([127, 0, 0, 1], 8081).into())
        );
        let off = load("", &[("TOKENGATE__ADMIN__LISTEN", "")]).unwrap();
        assert_eq!(off.admin.listen_addr(), None);
        let v6 = load("admin:\n  listen: '[::1]:9000'\n", &[]).unwrap();
        assert_eq!(v6.admin.listen_addr().map(|a| a.port()), Some(9000));
        for bad in [
            "8081",
            "localhost:8081",
            "127.0.0.1",
            "127.0.0.1:http",
            "0.0.0.0:70000",
        ] {
            let error = load("", &[("TOKENGATE__ADMIN__LISTEN", bad)]).unwrap_err();
            assert_eq!(error.key, "admin.listen", "{bad}");
        }
    }

    #[test]
    fn the_admin_token_is_off_by_default_and_given_one_way() {
        let off = load("", &[]).unwrap();
        assert!(!off.admin.is_enabled());

        let hash = crate::clients::hash_secret(b"admin").unwrap();
        let hashed = load(&format!("admin:\n  token_hash: '{hash}'\n"), &[]).unwrap();
        assert!(hashed.admin.is_enabled());
        // A token_hash that is no argon2id hash is refused when the admin
        // token is built (app::tests).

        let dir = std::env::temp_dir().join(format!("tokengate-admin-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("admin_token");
        let token = "0123456789abcdef0123456789abcdef";
        std::fs::write(&file, format!("{token}\n")).unwrap();
        let yaml = format!("admin:\n  token_file: {}\n", file.display());
        let from_file = load(&yaml, &[]).unwrap();
        assert_eq!(from_file.admin.token.expose(), token);
        assert!(!format!("{from_file:?}").contains(token), "redacted");
        assert_eq!(
            key(&format!("{yaml}  token_hash: '{hash}'\n")),
            "admin.token_file"
        );
        std::fs::write(&file, "too short\n").unwrap();
        assert_eq!(key(&yaml), "admin.token_file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
