//! `auth.*`: token lifetimes, the session rules' clocks and caps, and the
//! signing keys (checked for shape here; parsed by `crate::tokens::keys`).
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{ConfigError, LocalCacheSettings, Secret, duration, local_cache};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub issuer: String,
    pub audience: String,
    pub secret: Secret,
    pub secret_file: Option<PathBuf>,
    #[serde(deserialize_with = "duration")]
    pub access_lifetime: Duration,
    #[serde(deserialize_with = "duration")]
    pub refresh_lifetime: Duration,
    #[serde(deserialize_with = "duration")]
    pub auto_logout: Duration,
    #[serde(deserialize_with = "duration")]
    pub refresh_grace: Duration,
    #[serde(deserialize_with = "duration")]
    pub leeway: Duration,
    /// Absolute session lifetime from login; rotation never extends it.
    #[serde(deserialize_with = "duration")]
    pub max_session: Duration,
    /// Live sessions one user keeps; a login beyond ends the oldest; 0 = no
    /// limit. (An OAuth client's own sessions are bounded by its rate limit.)
    pub max_sessions_per_user: u32,
    /// Signing algorithm; asymmetric ones take their keys from `signing_keys`.
    pub algorithm: SigningAlgorithm,
    /// Asymmetric keys: the first signs, all verify (matched by `kid`).
    pub signing_keys: Vec<SigningKeySettings>,
    /// SPEC §10; see `local_cache.rs`.
    pub local_cache: LocalCacheSettings,
    #[serde(deserialize_with = "local_cache::optional_duration")]
    pub touch_interval: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SigningAlgorithm {
    #[default]
    HS256,
    EdDSA,
    ES256,
    RS256,
}

impl SigningAlgorithm {
    pub const ALL: [Self; 4] = [Self::HS256, Self::EdDSA, Self::ES256, Self::RS256];

    pub fn name(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
        }
    }

    pub fn is_symmetric(self) -> bool {
        self == Self::HS256
    }
}

impl std::str::FromStr for SigningAlgorithm {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == text)
            .ok_or_else(|| format!("must be one of HS256, EdDSA, ES256, RS256, got {text:?}"))
    }
}

impl<'de> Deserialize<'de> for SigningAlgorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One asymmetric signing key (`auth.signing_keys[]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeySettings {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    pub private_key_file: PathBuf,
    /// The file's content, read by [`Settings::resolved`](super::Settings::resolved).
    #[serde(skip)]
    pub private_key_pem: Secret,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: "tokengate".into(),
            audience: "tokengate".into(),
            secret: Secret::default(),
            secret_file: None,
            access_lifetime: Duration::from_secs(15 * 60),
            refresh_lifetime: Duration::from_secs(720 * 3600),
            auto_logout: Duration::from_secs(24 * 3600),
            refresh_grace: Duration::from_secs(10),
            leeway: Duration::from_secs(5),
            max_session: Duration::from_secs(720 * 3600),
            max_sessions_per_user: 100,
            algorithm: SigningAlgorithm::HS256,
            signing_keys: Vec::new(),
            local_cache: LocalCacheSettings::default(),
            touch_interval: None,
        }
    }
}

impl AuthSettings {
    pub(super) fn validate_keys(&self) -> Result<(), ConfigError> {
        let auth = self;
        if auth.algorithm.is_symmetric() {
            if !auth.signing_keys.is_empty() {
                return Err(ConfigError::new(
                    "auth.signing_keys",
                    "only used with an asymmetric auth.algorithm (EdDSA, ES256, RS256)",
                ));
            }
            return Ok(());
        }
        let Some(first) = auth.signing_keys.first() else {
            return Err(ConfigError::new(
                "auth.signing_keys",
                format!("{} needs at least one key", auth.algorithm.name()),
            ));
        };
        if first.algorithm != auth.algorithm {
            return Err(ConfigError::new(
                "auth.signing_keys[0].algorithm",
                format!(
                    "the first key signs, so it must be auth.algorithm ({})",
                    auth.algorithm.name()
                ),
            ));
        }
        for (i, key) in auth.signing_keys.iter().enumerate() {
            let at = format!("auth.signing_keys[{i}]");
            if key.kid.is_empty() || auth.signing_keys[..i].iter().any(|k| k.kid == key.kid) {
                return Err(ConfigError::new(
                    format!("{at}.kid"),
                    "must be non-empty and unique",
                ));
            }
            if key.algorithm.is_symmetric() {
                return Err(ConfigError::new(
                    format!("{at}.algorithm"),
                    "signing keys are asymmetric: EdDSA, ES256 or RS256",
                ));
            }
        }
        Ok(())
    }
}
