//! Verifying keys, each with the one [`Validation`] that goes with it.
//!
//! The algorithm belongs to the key, never to the token: a JWKS key verifies
//! only with the `alg` its JWK names, the shared secret only with HS256. A
//! token's `alg` header then chooses nothing — `none`, or HS256 "signed" with a
//! public key (algorithm confusion), fails `jsonwebtoken`'s check that the
//! header's algorithm is the one the validation allows. Symmetric keys are
//! never taken from a JWKS document, which is public.

use std::collections::HashMap;

use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// What tokengate signs with (SPEC §6); anything else in a JWKS is skipped.
const ASYMMETRIC: &[(KeyAlgorithm, Algorithm)] = &[
    (KeyAlgorithm::EdDSA, Algorithm::EdDSA),
    (KeyAlgorithm::ES256, Algorithm::ES256),
    (KeyAlgorithm::RS256, Algorithm::RS256),
];

/// What the verifier checks besides the signature, for every key alike.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    pub issuer: String,
    pub audience: String,
}

/// One key and how to verify with it.
pub(crate) struct Key {
    pub key: DecodingKey,
    pub validation: Validation,
}

impl Key {
    fn new(key: DecodingKey, algorithm: Algorithm, expected: &Expected) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&expected.issuer]);
        validation.set_audience(&[&expected.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Time is checked by the verifier against its own clock (see
        // `Verifier::verify_at`), so the rules are testable without sleeping.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Self { key, validation }
    }
}

/// The keys a verifier currently knows.
pub(crate) enum KeySet {
    /// The HS256 secret shared with tokengate (`auth.secret`): one key, and
    /// the token's `kid` (derived from the secret by tokengate) is not needed
    /// to find it.
    Secret(Box<Key>),
    /// tokengate's published keys, by `kid`.
    Published(HashMap<String, Key>),
}

impl KeySet {
    pub fn secret(secret: &[u8], expected: &Expected) -> Self {
        Self::Secret(Box::new(Key::new(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
            expected,
        )))
    }

    /// The usable keys of a JWKS document: signature keys with a `kid` and
    /// an asymmetric algorithm tokengate signs with. A document that is not
    /// a JWK set at all is an error; a key we cannot use is skipped (and
    /// logged), so one odd key does not hide the others.
    pub fn from_jwks(document: &[u8], expected: &Expected) -> Result<Self, serde_json::Error> {
        let set: JwkSet = serde_json::from_slice(document)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.as_deref() else {
                tracing::debug!("JWKS key without kid skipped");
                continue;
            };
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != PublicKeyUse::Signature)
            {
                tracing::debug!(kid, "JWKS key not for signatures skipped");
                continue;
            }
            let algorithm = jwk.common.key_algorithm.and_then(|alg| {
                ASYMMETRIC
                    .iter()
                    .find(|(named, _)| *named == alg)
                    .map(|(_, algorithm)| *algorithm)
            });
            let Some(algorithm) = algorithm else {
                tracing::warn!(kid, alg = ?jwk.common.key_algorithm, "JWKS key with an algorithm tokengate does not sign with skipped");
                continue;
            };
            let key = match DecodingKey::from_jwk(jwk) {
                Ok(key) if key.family() == algorithm.family() => key,
                Ok(_) => {
                    tracing::warn!(kid, "JWKS key whose type does not fit its alg skipped");
                    continue;
                }
                Err(error) => {
                    tracing::warn!(kid, %error, "unusable JWKS key skipped");
                    continue;
                }
            };
            keys.insert(kid.to_owned(), Key::new(key, algorithm, expected));
        }
        Ok(Self::Published(keys))
    }

    /// The key for a token whose header names `kid`.
    pub fn find(&self, kid: Option<&str>) -> Option<&Key> {
        match self {
            Self::Secret(key) => Some(key),
            Self::Published(keys) => keys.get(kid?),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Secret(_) => 1,
            Self::Published(keys) => keys.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> Expected {
        Expected {
            issuer: "tokengate".into(),
            audience: "tokengate".into(),
        }
    }

    #[test]
    fn symmetric_and_odd_keys_in_a_jwks_are_skipped() {
        let document = serde_json::json!({"keys": [
            // A shared secret published by mistake must never verify.
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hs", "alg": "HS256"},
            // An Ed25519 key claiming RS256: the type does not fit the alg.
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "odd", "alg": "RS256"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "enc", "alg": "EdDSA", "use": "enc"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "alg": "EdDSA"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ok", "alg": "EdDSA", "use": "sig"},
        ]});
        let keys = KeySet::from_jwks(&serde_json::to_vec(&document).unwrap(), &expected()).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys.find(Some("ok")).is_some());
        for skipped in ["hs", "odd", "enc"] {
            assert!(keys.find(Some(skipped)).is_none(), "{skipped}");
        }
        assert!(keys.find(None).is_none());
    }

    #[test]
    fn a_document_that_is_not_a_jwk_set_is_an_error() {
        for document in [&b"<html>"[..], b"{}", b"[]"] {
            assert!(KeySet::from_jwks(document, &expected()).is_err());
        }
    }
}
