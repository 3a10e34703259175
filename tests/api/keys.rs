//! SPEC §6 keys: EdDSA, ES256 and RS256 signing from PEM files, `kid` on
//! every token, several keys where the first signs and all verify, the JWKS
//! document, and the rotation procedure of docs/oauth.md walked through on
//! replicas that share one Redis — logging no one out.

use std::path::{Path, PathBuf};
use std::process::Command;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use tokengate::config::{Settings, SigningAlgorithm, SigningKeySettings};
use tokengate::tokens::keys::generate_private_key;

use crate::helpers::{Backend, Cluster, Pair};

/// PEM files in a temporary directory, removed on drop.
pub struct KeyDir(PathBuf);

impl KeyDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("tokengate-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Writes a new key made by `tokengate gen-key`'s code.
    pub fn generate(&self, kid: &str, algorithm: SigningAlgorithm) -> SigningKeySettings {
        let path = self.0.join(format!("{kid}.pem"));
        std::fs::write(&path, generate_private_key(algorithm).unwrap()).unwrap();
        key(kid, algorithm, &path)
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn key(kid: &str, algorithm: SigningAlgorithm, path: &Path) -> SigningKeySettings {
    SigningKeySettings {
        kid: kid.into(),
        algorithm,
        private_key_file: path.to_owned(),
        private_key_pem: Default::default(),
    }
}

pub fn use_keys(keys: Vec<SigningKeySettings>) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        s.auth.algorithm = keys[0].algorithm;
        s.auth.signing_keys = keys;
    }
}

fn header(token: &str) -> Header {
    jsonwebtoken::decode_header(token).unwrap()
}

/// Verifies `token` with the public key the replica publishes for its kid.
fn verify_with_jwks(token: &str, jwks: &Value) -> Value {
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let kid = header(token).kid.expect("tokens carry kid");
    let jwk = set.find(&kid).expect("the kid is published");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(header(token).alg);
    validation.set_audience(&["tokengate"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("verifies with the published key")
        .claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_asymmetric_algorithm_signs_and_publishes_its_key() {
    let dir = KeyDir::new();
    for (algorithm, kty) in [
        (SigningAlgorithm::EdDSA, "OKP"),
        (SigningAlgorithm::ES256, "EC"),
        (SigningAlgorithm::RS256, "RSA"),
    ] {
        let kid = format!("{}-1", algorithm.name());
        let keys = vec![dir.generate(&kid, algorithm)];
        let c = Cluster::start_with(Backend::Redis, 2, use_keys(keys)).await;
        let pair = c.a().login(json!("ann")).await;
        let h = header(&pair.access);
        assert_eq!(h.kid.as_deref(), Some(kid.as_str()));
        assert_eq!(h.alg, tokengate::tokens::keys::algorithm(algorithm));
        assert_eq!(h.typ.as_deref(), Some("at+jwt"));
        assert!(c.b().accepts(&pair.access).await);

        let jwks = c.b().get("/.well-known/jwks.json").await.json();
        let published = &jwks["keys"][0];
        assert_eq!(published["kty"], kty);
        assert_eq!(published["kid"], kid.as_str());
        assert_eq!(published["alg"], algorithm.name());
        assert_eq!(published["use"], "sig");
        assert!(published.get("d").is_none(), "no private part");
        assert_eq!(verify_with_jwks(&pair.access, &jwks)["sub"], "ann");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_procedure_logs_no_one_out() {
    let dir = KeyDir::new();
    let old = dir.generate("2026-01", SigningAlgorithm::ES256);
    let new = dir.generate("2026-02", SigningAlgorithm::EdDSA);

    // Step 0: every replica signs with the old key.
    let mut c = Cluster::start_with(Backend::Redis, 2, use_keys(vec![old.clone()])).await;
    let early = c.a().login(json!("early")).await;
    assert_eq!(header(&early.access).kid.as_deref(), Some("2026-01"));

    // Step 1: add the new key second, replica by replica. Signing is unchanged.
    c.add_replica_with(use_keys(vec![old.clone(), new.clone()]))
        .await;
    let step1 = &c.replicas[2];
    let during = step1.login(json!("during")).await;
    assert_eq!(header(&during.access).kid.as_deref(), Some("2026-01"));
    assert!(
        c.a().accepts(&during.access).await,
        "old replicas accept it"
    );
    assert!(step1.accepts(&early.access).await);
    let jwks = step1.get("/.well-known/jwks.json").await.json();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, ["2026-01", "2026-02"]);

    // Step 2: once every replica has it, make the new key first.
    c.add_replica_with(use_keys(vec![new.clone(), old.clone()]))
        .await;
    let step2 = &c.replicas[3];
    let late = step2.login(json!("late")).await;
    assert_eq!(header(&late.access).kid.as_deref(), Some("2026-02"));
    assert!(
        c.replicas[2].accepts(&late.access).await,
        "step-1 replicas know the new key"
    );
    assert!(
        !c.a().accepts(&late.access).await,
        "why step 1 must reach every replica before step 2"
    );
    for pair in [&early, &during] {
        assert!(step2.accepts(&pair.access).await, "old tokens still pass");
    }
    // Sessions survive: refresh tokens do not depend on the signing key.
    let refreshed = Pair::from_reply(&step2.refresh(&early.refresh).await);
    assert_eq!(header(&refreshed.access).kid.as_deref(), Some("2026-02"));

    // Step 3: after the access lifetime, retire the old key.
    c.add_replica_with(use_keys(vec![new.clone()])).await;
    let step3 = &c.replicas[4];
    assert!(step3.accepts(&late.access).await);
    assert!(step3.accepts(&refreshed.access).await);
    assert!(
        !step3.accepts(&during.access).await,
        "old-key tokens end with the old key"
    );
    let jwks = step3.get("/.well-known/jwks.json").await.json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    let again = Pair::from_reply(&step3.refresh(&during.refresh).await);
    assert!(
        step3.accepts(&again.access).await,
        "and its session lives on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn algorithm_confusion_is_refused() {
    let dir = KeyDir::new();
    let keys = vec![dir.generate("ed", SigningAlgorithm::EdDSA)];
    let c = Cluster::start_with(Backend::Memory, 1, use_keys(keys)).await;
    let pair = c.a().login(json!(1)).await;
    let claims = pair_claims(&pair.access);
    let jwks = c.a().get("/.well-known/jwks.json").await.json();
    let public_x = jwks["keys"][0]["x"].as_str().unwrap();
    // HS256 "signed" with the public key, under the EdDSA key's kid.
    let mut forged_header = Header::new(Algorithm::HS256);
    forged_header.kid = Some("ed".into());
    forged_header.typ = Some("at+jwt".into());
    for secret in [public_x.as_bytes(), crate::helpers::SECRET.as_bytes()] {
        let forged =
            jsonwebtoken::encode(&forged_header, &claims, &EncodingKey::from_secret(secret))
                .unwrap();
        assert!(!c.a().accepts(&forged).await);
    }
    assert!(c.a().accepts(&pair.access).await);
}

fn pair_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_made_by_openssl_work_too() {
    let dir = KeyDir::new();
    let cases = [
        (SigningAlgorithm::EdDSA, &["-algorithm", "ed25519"][..]),
        (
            SigningAlgorithm::ES256,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
        (
            SigningAlgorithm::RS256,
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        ),
    ];
    for (algorithm, args) in cases {
        let path = dir.0.join(format!("openssl-{}.pem", algorithm.name()));
        let status = Command::new("openssl")
            .arg("genpkey")
            .args(args)
            .arg("-out")
            .arg(&path)
            .status()
            .expect("openssl is installed (scripts/test installs it)");
        assert!(status.success());
        let keys = vec![key("ossl", algorithm, &path)];
        let c = Cluster::start_with(Backend::Memory, 1, use_keys(keys)).await;
        let pair = c.a().login(json!(1)).await;
        assert!(c.a().accepts(&pair.access).await, "{algorithm:?}");
    }
}
