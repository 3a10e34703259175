//! Encryption of TOTP secrets (AES-256-GCM, `aws-lc-rs`): at rest in the
//! database, and inside the sealed token of a pending enrolment.
//!
//! A stolen database (or backup) without `totp.key_file` yields no secret.
//! The user id is the associated data, so a secret copied onto another
//! account's row does not open there. The two uses get two keys, derived
//! from the configured one with HKDF-SHA256 under different labels: a
//! sealed enrolment can never be passed off as a stored secret, nor the
//! reverse. Nonces are random (96 bits, `RandomizedNonceKey`); a replica
//! seals a handful of secrets a day, far from the 2³² messages where random
//! GCM nonces start to risk a repeat.
//!
//! A pending enrolment is stateless: nothing is stored until the user
//! proves with a code that their app has the secret, so an abandoned
//! enrolment leaves no row behind, and a replica other than the one that
//! began it can finish it. The token carries the secret and its issue time,
//! and is refused after [`ENROLMENT_LIFETIME`].

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use super::TotpError;
use super::code::{SECRET_BYTES, Secret};
use crate::config::TotpKey;
use crate::time::Millis;

/// How long a begun enrolment may be confirmed: time to scan a code and
/// type one, not long enough for a forgotten tab to matter.
pub const ENROLMENT_LIFETIME: Millis = 10 * 60 * 1000;

/// How far ahead of this replica's clock an enrolment's issue time may be:
/// another replica, whose clock is a little ahead, may have begun it.
const CLOCK_SKEW: Millis = 60 * 1000;

/// HKDF labels: the purpose of each derived key.
const SECRETS_LABEL: &[u8] = b"tokengate totp secret at rest v1";
const ENROLMENTS_LABEL: &[u8] = b"tokengate totp pending enrolment v1";

/// The keys of both uses.
pub struct Keys {
    secrets: RandomizedNonceKey,
    enrolments: RandomizedNonceKey,
}

impl Keys {
    pub fn new(key: &TotpKey) -> Result<Self, TotpError> {
        Ok(Self {
            secrets: derive(key, SECRETS_LABEL)?,
            enrolments: derive(key, ENROLMENTS_LABEL)?,
        })
    }

    /// The secret as stored for `user`: nonce || ciphertext || tag.
    pub fn seal_secret(&self, user: Uuid, secret: &Secret) -> Result<Vec<u8>, TotpError> {
        seal(&self.secrets, user, secret.0.to_vec())
    }

    /// The secret stored for `user`. A blob that does not open (another
    /// key file, another user's row, altered bytes) is an error of the
    /// deployment, not of the user's code.
    pub fn open_secret(&self, user: Uuid, blob: &[u8]) -> Result<Secret, TotpError> {
        let plain = open(&self.secrets, user, blob).ok_or_else(|| {
            TotpError::Internal(format!(
                "the TOTP secret of {user} does not open with totp.key_file"
            ))
        })?;
        let bytes = plain.try_into().map_err(|_| {
            TotpError::Internal(format!("the TOTP secret of {user} has the wrong length"))
        })?;
        Ok(Secret(bytes))
    }

    /// A pending enrolment of `secret` for `user`, begun at `now`: URL-safe
    /// base64 (a form field as is).
    pub fn seal_enrolment(
        &self,
        user: Uuid,
        secret: &Secret,
        now: Millis,
    ) -> Result<String, TotpError> {
        let mut plain = secret.0.to_vec();
        plain.extend_from_slice(&now.to_be_bytes());
        Ok(URL_SAFE_NO_PAD.encode(seal(&self.enrolments, user, plain)?))
    }

    /// The secret of a pending enrolment of `user`, if `sealed` is one
    /// (this deployment's, this user's, unaltered) and still fresh at
    /// `now`. `None` otherwise, saying nothing about which.
    pub fn open_enrolment(&self, user: Uuid, sealed: &str, now: Millis) -> Option<Secret> {
        let blob = URL_SAFE_NO_PAD.decode(sealed.trim()).ok()?;
        let plain = open(&self.enrolments, user, &blob)?;
        let (secret, issued) = plain.split_at_checked(SECRET_BYTES)?;
        let issued = Millis::from_be_bytes(issued.try_into().ok()?);
        let fresh = issued <= now.saturating_add(CLOCK_SKEW)
            && now.saturating_sub(issued) <= ENROLMENT_LIFETIME;
        fresh.then(|| secret.try_into().ok().map(Secret)).flatten()
    }
}

/// An AES-256-GCM key for one purpose, from the configured key.
fn derive(key: &TotpKey, label: &[u8]) -> Result<RandomizedNonceKey, TotpError> {
    let failed = |_| TotpError::Internal("cannot derive the TOTP keys".into());
    let mut derived = [0u8; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
        .extract(&key.0)
        .expand(&[label], &AES_256_GCM)
        .map_err(failed)?
        .fill(&mut derived)
        .map_err(failed)?;
    RandomizedNonceKey::new(&AES_256_GCM, &derived).map_err(failed)
}

/// nonce || ciphertext || tag of `plain`, bound to `user`.
fn seal(key: &RandomizedNonceKey, user: Uuid, mut plain: Vec<u8>) -> Result<Vec<u8>, TotpError> {
    let nonce = key
        .seal_in_place_append_tag(Aad::from(user.as_bytes()), &mut plain)
        .map_err(|_| TotpError::Internal("cannot encrypt a TOTP secret".into()))?;
    let mut blob = nonce.as_ref().to_vec();
    blob.append(&mut plain);
    Ok(blob)
}

/// The plaintext of a [`seal`]ed blob, if it is one for `user`.
fn open(key: &RandomizedNonceKey, user: Uuid, blob: &[u8]) -> Option<Vec<u8>> {
    let (nonce, sealed) = blob.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut in_out = sealed.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(user.as_bytes()), &mut in_out)
        .ok()?;
    Some(plain.to_vec())
}
