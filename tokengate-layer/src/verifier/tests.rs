//! The verifier against tokens made here with `jsonwebtoken`, as tokengate
//! makes them, and against hostile ones. Keys are made in the test; the JWKS
//! comes from a [`FakeJwks`] that counts its fetches; time is an argument
//! (token times) or tokio's paused clock (the refresh interval).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use base64::Engine as _;
use bytes::Bytes;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use uuid::Uuid;

use super::*;
use crate::jwks::FetchFuture;

pub(crate) const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
pub(crate) const NOW: u64 = 1_800_000_000;

/// A signing key made for the test, with its public JWK.
pub(crate) struct TestKey {
    pub kid: String,
    pub algorithm: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Jwk,
}

impl TestKey {
    pub fn new(kid: &str, algorithm: Algorithm) -> Self {
        let rng = SystemRandom::new();
        let encoding = match algorithm {
            Algorithm::EdDSA => {
                EncodingKey::from_ed_der(Ed25519KeyPair::generate_pkcs8v1(&rng).unwrap().as_ref())
            }
            Algorithm::ES256 => EncodingKey::from_ec_der(
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .unwrap()
                    .as_ref(),
            ),
            other => panic!("no test key for {other:?}"),
        };
        let mut jwk = Jwk::from_encoding_key(&encoding, algorithm).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Self {
            kid: kid.to_owned(),
            algorithm,
            encoding,
            jwk,
        }
    }

    /// An access token as tokengate signs it.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(&self.header(), claims)
    }

    pub fn header(&self) -> Value {
        json!({"alg": self.algorithm, "typ": "at+jwt", "kid": self.kid})
    }

    pub fn sign_with(&self, header: &Value, claims: &Value) -> String {
        let header: Header = serde_json::from_value(header.clone()).unwrap();
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// The claims tokengate signs into a token issued at [`NOW`].
pub(crate) fn claims() -> Value {
    json!({
        "iss": "tokengate", "aud": "tokengate", "sub": "42",
        "iat": NOW, "exp": NOW + 900,
        "jti": Uuid::new_v4(), "sid": Uuid::new_v4(),
        "scope": "orders:read orders:write",
    })
}

/// An HS256 token as tokengate signs it with `auth.secret`.
pub(crate) fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let header: Header = serde_json::from_value(header.clone()).unwrap();
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

pub(crate) fn hs256_header() -> Value {
    json!({"alg": "HS256", "typ": "at+jwt", "kid": "derived-from-the-secret"})
}

/// A JWKS that serves what the test puts in it and counts its fetches.
#[derive(Clone, Default)]
pub(crate) struct FakeJwks {
    keys: Arc<Mutex<Option<Vec<Jwk>>>>,
    fetches: Arc<AtomicUsize>,
}

impl FakeJwks {
    pub fn serving(keys: &[&TestKey]) -> Self {
        let fake = Self::default();
        fake.serve(keys);
        fake
    }

    pub fn serve(&self, keys: &[&TestKey]) {
        *self.keys.lock().unwrap() = Some(keys.iter().map(|k| k.jwk.clone()).collect());
    }

    /// Fetches fail from now on (tokengate down).
    pub fn fail(&self) {
        *self.keys.lock().unwrap() = None;
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl JwksSource for FakeJwks {
    fn fetch(&self) -> FetchFuture<'_> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let keys = self.keys.lock().unwrap().clone();
        Box::pin(async move {
            let keys = keys.ok_or("connection refused")?;
            Ok(Bytes::from(serde_json::to_vec(&JwkSet { keys })?))
        })
    }
}

fn jwks_verifier(jwks: &FakeJwks) -> Verifier {
    Verifier::jwks_from(jwks.clone()).build().unwrap()
}

fn secret_verifier() -> Verifier {
    Verifier::hs256(SECRET).build().unwrap()
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        B64.encode(serde_json::to_vec(header).unwrap()),
        B64.encode(serde_json::to_vec(claims).unwrap())
    )
}

#[tokio::test]
async fn eddsa_and_es256_tokens_verify_with_keys_from_one_fetch() {
    let ed = TestKey::new("2026-02", Algorithm::EdDSA);
    let es = TestKey::new("2026-01", Algorithm::ES256);
    let jwks = FakeJwks::serving(&[&ed, &es]);
    let verifier = jwks_verifier(&jwks);
    let c = claims();
    for key in [&ed, &es] {
        let verified = verifier.verify_at(&key.sign(&c), NOW).await.unwrap();
        assert_eq!(verified.sub, "42");
        assert_eq!(verified.sid.to_string(), c["sid"].as_str().unwrap());
        assert_eq!(verified.jti.to_string(), c["jti"].as_str().unwrap());
        assert_eq!((verified.iat, verified.exp), (NOW, NOW + 900));
        assert_eq!(verified.scopes, ["orders:read", "orders:write"]);
    }
    assert_eq!(jwks.fetches(), 1, "the keys are cached");
}

#[tokio::test]
async fn hs256_tokens_verify_with_the_shared_secret_and_no_jwks() {
    let verifier = secret_verifier();
    let mut c = claims();
    c["client_id"] = "billing".into();
    let claims = verifier
        .verify_at(&hs256(&hs256_header(), &c, SECRET), NOW)
        .await
        .unwrap();
    assert_eq!(claims.client_id.as_deref(), Some("billing"));
    // tokengate tolerates a missing kid with one key; so do we.
    let bare = hs256(&json!({"alg": "HS256", "typ": "at+jwt"}), &c, SECRET);
    assert!(verifier.verify_at(&bare, NOW).await.is_ok());
    let other = hs256(&hs256_header(), &c, b"another secret, also 32 bytes long");
    assert_eq!(
        verifier.verify_at(&other, NOW).await,
        Err(Rejection::Signature)
    );
}

#[test]
fn a_short_secret_or_an_https_url_is_refused_at_build() {
    assert!(matches!(
        Verifier::hs256(&b"short"[..]).build(),
        Err(BuildError::ShortSecret)
    ));
    assert!(matches!(
        Verifier::jwks("https://tokengate/.well-known/jwks.json").build(),
        Err(BuildError::Url(_))
    ));
    let debug = format!("{:?}", secret_verifier());
    assert!(!debug.contains("0123456789"), "{debug}");
}

#[tokio::test]
async fn alg_none_is_refused() {
    let ed = TestKey::new("k1", Algorithm::EdDSA);
    let jwks = FakeJwks::serving(&[&ed]);
    for header in [
        json!({"alg": "none", "typ": "at+jwt", "kid": "k1"}),
        json!({"alg": "none", "typ": "at+jwt"}),
    ] {
        let token = unsigned(&header, &claims());
        assert!(jwks_verifier(&jwks).verify_at(&token, NOW).await.is_err());
        assert!(secret_verifier().verify_at(&token, NOW).await.is_err());
    }
}

#[tokio::test]
async fn the_algorithm_comes_from_the_key_never_from_the_token() {
    let ed = TestKey::new("k1", Algorithm::EdDSA);
    let jwks = FakeJwks::serving(&[&ed]);
    // Algorithm confusion: HS256 "signed" with the public key as the secret.
    let public = serde_json::to_value(&ed.jwk).unwrap()["x"]
        .as_str()
        .unwrap()
        .to_owned();
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"});
    for secret in [public.as_bytes(), &B64.decode(&public).unwrap()] {
        let forged = hs256(&header, &claims(), secret);
        assert_eq!(
            jwks_verifier(&jwks).verify_at(&forged, NOW).await,
            Err(Rejection::Algorithm)
        );
    }
    // And the shared secret verifies HS256 only.
    assert_eq!(
        secret_verifier().verify_at(&ed.sign(&claims()), NOW).await,
        Err(Rejection::Algorithm)
    );
}

#[tokio::test]
async fn only_access_tokens_pass_typ() {
    let ed = TestKey::new("k1", Algorithm::EdDSA);
    let jwks = FakeJwks::serving(&[&ed]);
    let verifier = jwks_verifier(&jwks);
    for typ in [json!("JWT"), json!("refresh+jwt"), Value::Null] {
        let header = json!({"alg": "EdDSA", "typ": typ, "kid": "k1"});
        assert_eq!(
            verifier
                .verify_at(&ed.sign_with(&header, &claims()), NOW)
                .await,
            Err(Rejection::Type),
            "{typ}"
        );
    }
    let rfc = json!({"alg": "EdDSA", "typ": "application/at+jwt", "kid": "k1"});
    assert!(
        verifier
            .verify_at(&ed.sign_with(&rfc, &claims()), NOW)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_refresh_token_is_not_an_access_token() {
    // tokengate's refresh tokens are opaque base64url strings, never JWTs.
    let refresh = B64.encode([7u8; 48]);
    let jwks = FakeJwks::serving(&[&TestKey::new("k1", Algorithm::EdDSA)]);
    assert_eq!(
        jwks_verifier(&jwks).verify_at(&refresh, NOW).await,
        Err(Rejection::Malformed)
    );
    assert_eq!(
        secret_verifier().verify_at(&refresh, NOW).await,
        Err(Rejection::Malformed)
    );
    assert_eq!(jwks.fetches(), 0, "garbage never triggers a fetch");
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    let ed = TestKey::new("k1", Algorithm::EdDSA);
    let jwks = FakeJwks::serving(&[&ed]);
    let verifier = jwks_verifier(&jwks);
    let token = ed.sign(&claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut c = claims();
    c["sub"] = "admin".into();
    parts[1] = B64.encode(serde_json::to_vec(&c).unwrap());
    assert_eq!(
        verifier.verify_at(&parts.join("."), NOW).await,
        Err(Rejection::Signature)
    );
    let mut signature = B64.decode(token.rsplit('.').next().unwrap()).unwrap();
    signature[0] ^= 1;
    let flipped = format!(
        "{}.{}",
        token.rsplit_once('.').unwrap().0,
        B64.encode(signature)
    );
    assert_eq!(
        verifier.verify_at(&flipped, NOW).await,
        Err(Rejection::Signature)
    );
}

#[tokio::test]
async fn times_honour_the_leeway() {
    let verifier = Verifier::hs256(SECRET)
        .leeway(Duration::from_secs(5))
        .build()
        .unwrap();
    let token = hs256(&hs256_header(), &claims(), SECRET);
    assert!(verifier.verify_at(&token, NOW + 900 + 5).await.is_ok());
    assert_eq!(
        verifier.verify_at(&token, NOW + 900 + 6).await,
        Err(Rejection::Expired)
    );
    assert_eq!(
        verifier.verify_at(&token, NOW - 6).await,
        Err(Rejection::NotYetValid)
    );
    let mut c = claims();
    c["nbf"] = (NOW + 60).into();
    let later = hs256(&hs256_header(), &c, SECRET);
    assert_eq!(
        verifier.verify_at(&later, NOW).await,
        Err(Rejection::NotYetValid)
    );
    assert!(verifier.verify_at(&later, NOW + 55).await.is_ok());
    let exact = Verifier::hs256(SECRET)
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(
        exact.verify_at(&token, NOW + 901).await,
        Err(Rejection::Expired)
    );
}

#[tokio::test]
async fn wrong_issuer_or_audience_is_refused() {
    let verifier = secret_verifier();
    for (claim, rejection) in [("iss", Rejection::Issuer), ("aud", Rejection::Audience)] {
        let mut c = claims();
        c[claim] = "someone-else".into();
        assert_eq!(
            verifier
                .verify_at(&hs256(&hs256_header(), &c, SECRET), NOW)
                .await,
            Err(rejection)
        );
    }
    let custom = Verifier::hs256(SECRET)
        .issuer("https://auth.example.com")
        .audience("orders")
        .build()
        .unwrap();
    let token = hs256(&hs256_header(), &claims(), SECRET);
    assert_eq!(custom.verify_at(&token, NOW).await, Err(Rejection::Issuer));
}

#[tokio::test]
async fn missing_claims_are_refused() {
    let verifier = secret_verifier();
    for claim in ["sid", "jti", "iat", "exp", "sub", "iss", "aud"] {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(claim);
        assert!(
            verifier
                .verify_at(&hs256(&hs256_header(), &c, SECRET), NOW)
                .await
                .is_err(),
            "{claim} missing"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_unknown_kid_costs_one_refresh_then_is_refused() {
    let known = TestKey::new("known", Algorithm::EdDSA);
    let stranger = TestKey::new("stranger", Algorithm::EdDSA);
    let jwks = FakeJwks::serving(&[&known]);
    let verifier = jwks_verifier(&jwks);
    assert!(
        verifier
            .verify_at(&known.sign(&claims()), NOW)
            .await
            .is_ok()
    );
    assert_eq!(jwks.fetches(), 1);

    // Ten seconds later a token names a key tokengate does not publish.
    tokio::time::advance(Duration::from_secs(10)).await;
    let token = stranger.sign(&claims());
    assert_eq!(
        verifier.verify_at(&token, NOW).await,
        Err(Rejection::UnknownKey)
    );
    assert_eq!(jwks.fetches(), 2, "one refresh");
    // Within the interval, no more fetches, whatever the kid.
    for _ in 0..100 {
        assert_eq!(
            verifier.verify_at(&token, NOW).await,
            Err(Rejection::UnknownKey)
        );
    }
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": Uuid::new_v4()});
    let another = stranger.sign_with(&header, &claims());
    assert_eq!(
        verifier.verify_at(&another, NOW).await,
        Err(Rejection::UnknownKey)
    );
    assert_eq!(jwks.fetches(), 2, "throttled");
    // Known keys keep working meanwhile.
    assert!(
        verifier
            .verify_at(&known.sign(&claims()), NOW)
            .await
            .is_ok()
    );

    tokio::time::advance(Duration::from_millis(9_999)).await;
    let _ = verifier.verify_at(&token, NOW).await;
    assert_eq!(jwks.fetches(), 2, "still within 10 s");
    tokio::time::advance(Duration::from_millis(1)).await;
    let _ = verifier.verify_at(&token, NOW).await;
    assert_eq!(jwks.fetches(), 3, "one more after 10 s");
}

#[tokio::test(start_paused = true)]
async fn a_rotated_in_key_is_picked_up_without_a_restart() {
    let old = TestKey::new("old", Algorithm::ES256);
    let new = TestKey::new("new", Algorithm::EdDSA);
    let jwks = FakeJwks::serving(&[&old]);
    let verifier = jwks_verifier(&jwks);
    assert!(verifier.verify_at(&old.sign(&claims()), NOW).await.is_ok());
    jwks.serve(&[&new, &old]);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(verifier.verify_at(&new.sign(&claims()), NOW).await.is_ok());
    assert!(verifier.verify_at(&old.sign(&claims()), NOW).await.is_ok());
    assert_eq!(jwks.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_unknown_kids_share_one_fetch() {
    let key = TestKey::new("k1", Algorithm::EdDSA);
    let jwks = FakeJwks::serving(&[&key]);
    let verifier = jwks_verifier(&jwks);
    let token = key.sign(&claims());
    let all: Vec<_> = (0..20)
        .map(|_| {
            let (verifier, token) = (verifier.clone(), token.clone());
            tokio::spawn(async move { verifier.verify_at(&token, NOW).await })
        })
        .collect();
    for handle in all {
        assert!(handle.await.unwrap().is_ok());
    }
    assert_eq!(jwks.fetches(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_jwks_is_unavailable_not_a_bad_token() {
    let key = TestKey::new("k1", Algorithm::EdDSA);
    let jwks = FakeJwks::default();
    jwks.fail();
    let verifier = jwks_verifier(&jwks);
    assert!(verifier.load_keys().await.is_err());
    let token = key.sign(&claims());
    assert_eq!(
        verifier.verify_at(&token, NOW).await,
        Err(Rejection::KeysUnavailable)
    );
    assert_eq!(jwks.fetches(), 1, "the failed load counts for the interval");
    // Back up: the next attempt, an interval later, gets the keys.
    jwks.serve(&[&key]);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(verifier.verify_at(&token, NOW).await.is_ok());
    // Down again: the keys at hand still verify.
    jwks.fail();
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(verifier.verify_at(&token, NOW).await.is_ok());
    assert_eq!(jwks.fetches(), 2);
}

#[tokio::test]
async fn a_token_without_kid_is_refused_by_a_jwks_verifier_without_a_fetch() {
    let key = TestKey::new("k1", Algorithm::EdDSA);
    let jwks = FakeJwks::serving(&[&key]);
    let token = key.sign_with(&json!({"alg": "EdDSA", "typ": "at+jwt"}), &claims());
    assert_eq!(
        jwks_verifier(&jwks).verify_at(&token, NOW).await,
        Err(Rejection::UnknownKey)
    );
    assert_eq!(jwks.fetches(), 0);
}
