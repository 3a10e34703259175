//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>,
//! "Signature scheme"): `v1,` + base64 of HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the secret's bytes
//! (the base64 after `whsec_`).

use base64::Engine;
use base64::alphabet::STANDARD;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{self, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// What every Standard Webhooks secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";

/// Standard base64, with or without its padding (the spec's libraries take
/// both).
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a secret was refused. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("must start with `whsec_` (a Standard Webhooks secret: whsec_ + base64)")]
    Prefix,
    #[error("is not valid base64 after `whsec_`")]
    Base64,
    #[error("is empty after `whsec_`")]
    Empty,
}

/// Signs with one endpoint's key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Signer {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

impl Signer {
    /// From a secret as the endpoint's owner gives it: `whsec_` + base64.
    pub fn from_secret(secret: &str) -> Result<Self, SecretError> {
        let encoded = secret
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::Prefix)?;
        let key = SECRET_BASE64
            .decode(encoded)
            .map_err(|_| SecretError::Base64)?;
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        // HMAC takes a key of any length.
        let mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&key).map_err(|_| SecretError::Empty)?;
        Ok(Self { mac })
    }

    /// The `webhook-signature` header's value for one message.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        format!("v1,{}", general_purpose::STANDARD.encode(tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks libraries' tests, checked with
    /// the `standardwebhooks` Python library 1.3.0 (`Webhook(secret).sign`).
    #[test]
    fn signs_the_standard_webhooks_example() {
        let signer = Signer::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            signer.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn padding_is_optional_and_a_trailing_newline_ignored() {
        // 3 bytes of key → 4 base64 characters, no padding either way; 2
        // bytes → `AAE=` padded, `AAE` not.
        let padded = Signer::from_secret("whsec_AAE=").unwrap();
        let bare = Signer::from_secret("whsec_AAE\n").unwrap();
        assert_eq!(padded.sign("a", 1, b"{}"), bare.sign("a", 1, b"{}"));
    }

    #[test]
    fn refuses_what_is_not_a_secret() {
        assert_eq!(
            Signer::from_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(),
            SecretError::Prefix
        );
        assert_eq!(
            Signer::from_secret("whsec_not base64!").unwrap_err(),
            SecretError::Base64
        );
        assert_eq!(
            Signer::from_secret("whsec_").unwrap_err(),
            SecretError::Empty
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let signer = Signer::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(format!("{signer:?}"), "Signer([redacted])");
    }
}
