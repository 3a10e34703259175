//! SPEC §6 interop: tokens and endpoints checked by independent
//! implementations — PyJWT verifying our tokens through the published JWKS,
//! and Authlib (a standard OAuth 2.0 client) using discovery, both grants,
//! introspection and revocation. The scripts live in `tests/interop/`;
//! `scripts/test` installs their pinned dependencies in
//! `target/interop-venv`. Those of the gRPC API (grpcio) are in `grpc_interop`,
//! the OpenAPI document's (openapi-spec-validator) in `openapi`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use tokengate::config::SigningAlgorithm;

use crate::helpers::{Backend, Cluster};
use crate::keys::{KeyDir, use_keys};
use crate::oauth::{WORKER, with_clients};

pub(crate) fn python() -> PathBuf {
    crate::support::python::with(
        "jwt, authlib, requests, grpc, grpc_tools, grpc_reflection, grpc_health, openapi_spec_validator",
        "PyJWT/Authlib/grpcio/openapi-spec-validator",
    )
}

/// Runs a script of `tests/interop/` off the async runtime; returns stdout.
pub(crate) async fn run_script(script: &str, args: Vec<String>) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    let python = python();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(path)
            .args(args)
            .output()
            .expect("run python")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_verifies_our_tokens_through_the_jwks() {
    let dir = KeyDir::new();
    for algorithm in [
        SigningAlgorithm::EdDSA,
        SigningAlgorithm::ES256,
        SigningAlgorithm::RS256,
    ] {
        let keys = vec![dir.generate(algorithm.name(), algorithm)];
        let c = Cluster::start_with(Backend::Memory, 1, |s| {
            use_keys(keys)(s);
            with_clients(s);
        })
        .await;
        let user = c.a().login(json!("zoe")).await;
        let base = format!("http://{}", c.a().addr);
        let out = run_script("verify_with_jwks.py", vec![base, user.access.clone()]).await;
        let seen: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(seen["alg"], algorithm.name());
        assert_eq!(seen["kid"], algorithm.name());
        assert_eq!(seen["claims"]["sub"], "zoe");
        assert_eq!(seen["claims"]["sid"], user.session_id.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_client_gets_refreshes_introspects_and_revokes() {
    let dir = KeyDir::new();
    let keys = vec![dir.generate("ed", SigningAlgorithm::EdDSA)];
    let c = Cluster::start_with(Backend::Redis, 2, |s| {
        use_keys(keys)(s);
        with_clients(s);
    })
    .await;
    let base = format!("http://{}", c.a().addr);
    let out = run_script(
        "oauth_client.py",
        vec![base.clone(), WORKER.0.into(), WORKER.1.into()],
    )
    .await;
    let seen: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(seen["live"]["sub"], "worker");
    assert_eq!(seen["live"]["scope"], "jobs");
    // What the library did on one replica holds on the other.
    for token in ["first", "refreshed"] {
        let access = seen[token].as_str().unwrap();
        assert!(!c.b().accepts(access).await, "{token} is dead everywhere");
    }
    // And the tokens it got verify independently.
    let verified = run_script(
        "verify_with_jwks.py",
        vec![base, seen["refreshed"].as_str().unwrap().into()],
    )
    .await;
    assert!(verified.contains("\"client_id\": \"worker\""), "{verified}");
}
