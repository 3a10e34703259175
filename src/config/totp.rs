//! `totp.*` (SPEC §15): the key that encrypts users' TOTP secrets at rest,
//! and the name authenticator apps show beside the account.
//!
//! Plain data, checked for shape: the file must hold exactly 32 bytes (an
//! AES-256 key) as base64 or hex text, so a truncated or mistyped key stops
//! start-up with one line instead of surfacing as "invalid code" for every
//! user. `users::totp` turns the bytes into keys.

use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;

use super::{ConfigError, read_secret_file};

/// Bytes of the key in `totp.key_file` (AES-256).
pub const TOTP_KEY_BYTES: usize = 32;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TotpSettings {
    /// File holding the 32-byte key (base64 or hex), e.g. made by
    /// `openssl rand -base64 32`. Without it nobody can enrol.
    pub key_file: Option<PathBuf>,
    /// The `issuer` of the otpauth URI: what authenticator apps show.
    pub issuer: String,
    /// The file's key, read by [`TotpSettings::resolve`].
    #[serde(skip)]
    pub key: Option<TotpKey>,
}

impl Default for TotpSettings {
    fn default() -> Self {
        Self {
            key_file: None,
            issuer: "tokengate".into(),
            key: None,
        }
    }
}

/// The decoded key: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpKey(pub [u8; TOTP_KEY_BYTES]);

impl fmt::Debug for TotpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl TotpSettings {
    /// Reads and decodes `key_file`.
    pub(super) fn resolve(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.key_file else {
            return Ok(());
        };
        let text = read_secret_file("totp.key_file", path)?;
        let key = decode_key(text.trim()).ok_or_else(|| {
            ConfigError::new(
                "totp.key_file",
                format!(
                    "{} must hold exactly {TOTP_KEY_BYTES} bytes as base64 or hex \
                     (e.g. `openssl rand -base64 32`)",
                    path.display()
                ),
            )
        })?;
        self.key = Some(TotpKey(key));
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        // The otpauth label is `issuer:account`: a colon would move the split.
        if self.issuer.is_empty() || self.issuer.contains(':') {
            return Err(ConfigError::new(
                "totp.issuer",
                "must be a non-empty name without ':'",
            ));
        }
        Ok(())
    }
}

/// 64 hex digits, or base64 (standard or URL-safe, padded or not) of 32
/// bytes. Hex first: 64 hex digits are also valid base64 (of 48 bytes).
fn decode_key(text: &str) -> Option<[u8; TOTP_KEY_BYTES]> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = if text.len() == 2 * TOTP_KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..TOTP_KEY_BYTES)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?
    } else {
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())?
    };
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;
    use super::*;

    /// Settings with `content` in a key file.
    fn with_key_file(content: &str) -> Result<super::super::Settings, ConfigError> {
        let dir = std::env::temp_dir().join(format!("tokengate-totp-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("totp.key");
        std::fs::write(&path, content).unwrap();
        let yaml = format!("totp:\n  key_file: {}\n", path.display());
        let result = load(&yaml, &[]);
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    #[test]
    fn totp_is_off_without_a_key_file_and_issued_as_tokengate() {
        let s = load("", &[]).unwrap();
        assert_eq!(s.totp.key_file, None);
        assert_eq!(s.totp.key, None);
        assert_eq!(s.totp.issuer, "tokengate");
    }

    #[test]
    fn the_key_file_holds_32_bytes_as_base64_or_hex() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
        let base64 = base64::engine::general_purpose::STANDARD.encode(key);
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        for text in [
            format!("{base64}\n"),
            base64.trim_end_matches('=').into(),
            hex,
        ] {
            let s = with_key_file(&text).unwrap();
            assert_eq!(s.totp.key, Some(TotpKey(key)), "{text}");
        }
    }

    #[test]
    fn a_key_of_another_length_or_no_key_at_all_stops_start_up() {
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 31]);
        let long = base64::engine::general_purpose::STANDARD.encode([1u8; 48]);
        for text in [short.as_str(), long.as_str(), "", "not a key at all"] {
            let error = with_key_file(text).unwrap_err();
            assert_eq!(error.key, "totp.key_file", "{text}");
            assert!(error.message.contains("exactly 32 bytes"), "{error}");
            assert!(!error.message.contains(text) || text.is_empty());
        }
        let missing = load("totp:\n  key_file: /nonexistent/totp.key\n", &[]).unwrap_err();
        assert_eq!(missing.key, "totp.key_file");
    }

    #[test]
    fn the_issuer_is_a_name_without_a_colon() {
        for bad in ["", "a:b"] {
            let error = load("", &[("TOKENGATE__TOTP__ISSUER", bad)]).unwrap_err();
            assert_eq!(error.key, "totp.issuer", "{bad:?}");
        }
        let s = load("totp:\n  issuer: Example Corp\n", &[]).unwrap();
        assert_eq!(s.totp.issuer, "Example Corp");
    }

    #[test]
    fn the_checked_in_config_file_holds_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yml");
        let empty = config::Environment::with_prefix("TOKENGATE")
            .source(Some(std::collections::HashMap::new()));
        let s = super::super::Settings::load_from(Some(&path), empty).unwrap();
        let d = TotpSettings::default();
        assert_eq!(s.totp.key_file, d.key_file);
        assert_eq!(s.totp.issuer, d.issuer);
    }

    #[test]
    fn the_key_is_redacted_in_debug_output() {
        let printed = format!("{:?}", TotpKey([42; 32]));
        assert_eq!(printed, "[redacted]");
    }
}
