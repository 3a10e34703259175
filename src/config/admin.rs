//! `admin.*` (SPEC §9): the token that manages API tokens over HTTP.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, Secret, read_secret_file};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// argon2id PHC string of the admin token, from `tokengate hash-secret`.
    pub token_hash: String,
    /// Or a file holding the token itself (Docker secrets), hashed at start.
    pub token_file: Option<PathBuf>,
    /// The file's content, read by [`AdminSettings::resolve`].
    #[serde(skip)]
    pub token: Secret,
}

impl AdminSettings {
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
        if !self.token_hash.is_empty() {
            crate::clients::parse_secret_hash(&self.token_hash)
                .map_err(|e| ConfigError::new("admin.token_hash", e))?;
        }
        Ok(())
    }
}
