//! Signing keys (SPEC §6): the HS256 secret, or asymmetric keys from PEM
//! files of which the first signs and all verify, matched by `kid`.
//!
//! Several verifying keys are what makes rotation painless: add the new key
//! second, make it first once every replica has it, remove the old one after
//! the access lifetime — no token ever fails on the way. Only public keys
//! reach the JWKS document; HS256 publishes nothing.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::Sha256;

use crate::config::{AuthSettings, SigningAlgorithm};

/// One key that verifies tokens carrying its `kid`.
pub struct VerifyingKey {
    pub kid: String,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// The keys of one replica, built once at start-up.
pub struct Keys {
    pub signing_kid: String,
    pub signing_algorithm: Algorithm,
    pub signing: EncodingKey,
    /// The signing key's verifier comes first.
    pub verifying: Vec<VerifyingKey>,
    /// The public keys as an RFC 7517 JWK set.
    pub jwks: JwkSet,
}

impl Keys {
    /// HS256 with `secret`. Its `kid` is derived from the secret (an HMAC,
    /// which reveals nothing about it), so every replica agrees without
    /// configuration and a new secret gets a new `kid`.
    pub fn hmac(secret: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"tokengate/hs256-kid/v1");
        let kid = URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..8]);
        Self {
            signing_kid: kid.clone(),
            signing_algorithm: Algorithm::HS256,
            signing: EncodingKey::from_secret(secret),
            verifying: vec![VerifyingKey {
                kid,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret),
            }],
            jwks: JwkSet { keys: Vec::new() },
        }
    }

    /// The keys `auth` describes; `secret` is the HS256 key when
    /// `auth.algorithm` is HS256. Settings were validated, so errors here
    /// mean a key file changed under us.
    pub fn from_settings(auth: &AuthSettings, secret: &[u8]) -> Result<Self, String> {
        if auth.algorithm.is_symmetric() {
            return Ok(Self::hmac(secret));
        }
        let mut verifying = Vec::new();
        let mut jwks = Vec::new();
        let mut signing = None;
        for (i, configured) in auth.signing_keys.iter().enumerate() {
            let algorithm = algorithm(configured.algorithm);
            let private =
                parse_private_key(configured.algorithm, configured.private_key_pem.expose())
                    .map_err(|e| format!("auth.signing_keys[{i}].private_key_file: {e}"))?;
            let mut jwk = Jwk::from_encoding_key(&private, algorithm)
                .map_err(|e| format!("key {:?}: no public key: {e}", configured.kid))?;
            jwk.common.key_id = Some(configured.kid.clone());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            let key = DecodingKey::from_jwk(&jwk)
                .map_err(|e| format!("key {:?}: unusable public key: {e}", configured.kid))?;
            verifying.push(VerifyingKey {
                kid: configured.kid.clone(),
                algorithm,
                key,
            });
            jwks.push(jwk);
            if signing.is_none() {
                signing = Some((configured.kid.clone(), algorithm, private));
            }
        }
        let (signing_kid, signing_algorithm, signing) =
            signing.ok_or("auth.signing_keys is empty")?;
        Ok(Self {
            signing_kid,
            signing_algorithm,
            signing,
            verifying,
            jwks: JwkSet { keys: jwks },
        })
    }

    pub fn verifier(&self, kid: &str) -> Option<&VerifyingKey> {
        self.verifying.iter().find(|k| k.kid == kid)
    }
}

pub fn algorithm(algorithm: SigningAlgorithm) -> Algorithm {
    match algorithm {
        SigningAlgorithm::HS256 => Algorithm::HS256,
        SigningAlgorithm::EdDSA => Algorithm::EdDSA,
        SigningAlgorithm::ES256 => Algorithm::ES256,
        SigningAlgorithm::RS256 => Algorithm::RS256,
    }
}

/// Parses a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`; RSA keys
/// may also be PKCS#1) for `algorithm`, and proves it can sign.
pub fn parse_private_key(algorithm: SigningAlgorithm, pem: &str) -> Result<EncodingKey, String> {
    let key = match algorithm {
        SigningAlgorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
        SigningAlgorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        SigningAlgorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        SigningAlgorithm::HS256 => return Err("HS256 has no private key file".into()),
    }
    .map_err(|e| format!("not a PKCS#8 PEM {} private key: {e}", algorithm.name()))?;
    let header = jsonwebtoken::Header::new(self::algorithm(algorithm));
    jsonwebtoken::encode(&header, &serde_json::json!({}), &key)
        .map_err(|e| format!("not a usable {} private key: {e}", algorithm.name()))?;
    Ok(key)
}

/// A new PKCS#8 PEM private key (`tokengate gen-key`).
pub fn generate_private_key(algorithm: SigningAlgorithm) -> Result<String, String> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};

    let rng = SystemRandom::new();
    let failed = |e: aws_lc_rs::error::Unspecified| format!("key generation failed: {e}");
    let der: Vec<u8> = match algorithm {
        SigningAlgorithm::EdDSA => Ed25519KeyPair::generate_pkcs8v1(&rng)
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        SigningAlgorithm::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(failed)?
                .as_ref()
                .to_vec()
        }
        SigningAlgorithm::RS256 => {
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(failed)?
                .as_der()
                .map_err(failed)?
                .as_ref()
                .to_vec()
        }
        SigningAlgorithm::HS256 => {
            return Err("HS256 uses auth.secret; make one with `openssl rand -base64 48`".into());
        }
    };
    let body = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, SigningKeySettings};

    fn settings(keys: &[(&str, SigningAlgorithm)]) -> AuthSettings {
        AuthSettings {
            algorithm: keys[0].1,
            signing_keys: keys
                .iter()
                .map(|(kid, algorithm)| SigningKeySettings {
                    kid: (*kid).into(),
                    algorithm: *algorithm,
                    private_key_file: "unused".into(),
                    private_key_pem: Secret::new(generate_private_key(*algorithm).unwrap()),
                })
                .collect(),
            ..AuthSettings::default()
        }
    }

    #[test]
    fn generated_keys_of_every_algorithm_load_and_publish_a_public_jwk() {
        for algorithm in [
            SigningAlgorithm::EdDSA,
            SigningAlgorithm::ES256,
            SigningAlgorithm::RS256,
        ] {
            let keys = Keys::from_settings(&settings(&[("k1", algorithm)]), b"").unwrap();
            assert_eq!(keys.signing_kid, "k1");
            let jwks = serde_json::to_value(&keys.jwks).unwrap();
            let jwk = &jwks["keys"][0];
            assert_eq!(jwk["kid"], "k1");
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["alg"], algorithm.name());
            for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                assert!(
                    jwk.get(private).is_none(),
                    "{algorithm:?} publishes {private}"
                );
            }
        }
    }

    #[test]
    fn the_first_key_signs_and_all_verify() {
        let keys = Keys::from_settings(
            &settings(&[
                ("new", SigningAlgorithm::EdDSA),
                ("old", SigningAlgorithm::ES256),
            ]),
            b"",
        )
        .unwrap();
        assert_eq!(keys.signing_kid, "new");
        assert_eq!(keys.signing_algorithm, Algorithm::EdDSA);
        assert_eq!(keys.verifier("old").unwrap().algorithm, Algorithm::ES256);
        assert!(keys.verifier("other").is_none());
        assert_eq!(keys.jwks.keys.len(), 2);
    }

    #[test]
    fn hmac_kid_is_stable_and_secret_specific() {
        let a = Keys::hmac(b"0123456789abcdef0123456789abcdef");
        let b = Keys::hmac(b"0123456789abcdef0123456789abcdef");
        let c = Keys::hmac(b"another secret, also 32 bytes long");
        assert_eq!(a.signing_kid, b.signing_kid);
        assert_ne!(a.signing_kid, c.signing_kid);
        assert!(a.jwks.keys.is_empty(), "HS256 publishes nothing");
    }

    #[test]
    fn wrong_or_broken_pem_is_refused() {
        let ed = generate_private_key(SigningAlgorithm::EdDSA).unwrap();
        assert!(parse_private_key(SigningAlgorithm::ES256, &ed).is_err());
        assert!(parse_private_key(SigningAlgorithm::EdDSA, "not a pem").is_err());
        assert!(generate_private_key(SigningAlgorithm::HS256).is_err());
    }
}
