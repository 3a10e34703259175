//! `tokengate-layer` (SPEC §13) in an axum service, against the real binary:
//! the tokens a replica issues at `/login` pass the layer, with the keys it
//! publishes at `/.well-known/jwks.json` (EdDSA, made by `tokengate gen-key`)
//! or the HS256 secret it shares; a missing scope is `403`; a refresh token
//! is `401`. The service is called in-process (tower `oneshot`): what is
//! real here is tokengate — its tokens, its JWKS, its keys.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use tokengate_layer::{AuthLayer, Claims, Verifier};
use tower::ServiceExt;

use crate::{BIN, EXCLUSIVE, Pair, login, options, start};

async fn whoami(claims: Claims) -> String {
    format!("{} {}", claims.sub, claims.sid)
}

/// A service with one route for any valid token and one that requires a
/// scope `/login` tokens do not carry.
fn app(verifier: &Verifier) -> Router {
    let any = AuthLayer::new(verifier.clone());
    let writers = AuthLayer::new(verifier.clone())
        .require_scopes(["orders:write"])
        .expect("a valid scope");
    Router::new()
        .route("/orders", get(whoami).layer(any))
        .route("/orders/new", get(whoami).layer(writers))
}

struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    body: String,
}

async fn call(app: &Router, path: &str, token: &str) -> Answer {
    let request = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("a request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .expect("a body");
    Answer {
        status,
        challenge,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// What every verifier must do with a fresh `/login` pair.
async fn holds_for(app: &Router, pair: &Pair) {
    let answer = call(app, "/orders", &pair.access).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, format!("{} {}", pair.user, pair.session_id));

    let answer = call(app, "/orders/new", &pair.access).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert_eq!(
        answer.challenge.as_deref(),
        Some(r#"Bearer realm="tokengate", error="insufficient_scope", scope="orders:write""#)
    );
    assert!(
        answer.body.contains("insufficient_scope"),
        "{}",
        answer.body
    );

    let answer = call(app, "/orders", &pair.refresh).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert_eq!(
        answer.challenge.as_deref(),
        Some(r#"Bearer realm="tokengate", error="invalid_token""#)
    );
    assert!(answer.body.contains("invalid_token"), "{}", answer.body);
}

fn jwks_url(replica: SocketAddr) -> String {
    format!("http://{replica}/.well-known/jwks.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_accepts_eddsa_tokens_by_the_published_keys_and_refuses_the_rest() {
    let _shared = EXCLUSIVE.read().await;
    let key = Command::new(BIN)
        .args(["gen-key", "--algorithm", "EdDSA"])
        .output()
        .expect("run tokengate gen-key");
    assert!(key.status.success(), "gen-key: {key:?}");
    let key_file =
        std::env::temp_dir().join(format!("tokengate-layer-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&key_file, &key.stdout).expect("write the key");
    let config = format!(
        "auth:\n  algorithm: EdDSA\n  signing_keys:\n    - {{kid: \"2026-02\", algorithm: EdDSA, private_key_file: \"{}\"}}\n",
        key_file.display()
    );
    let cluster = start(options().replicas(1).config(&config));
    let _ = std::fs::remove_file(&key_file);

    let verifier = Verifier::jwks(jwks_url(cluster.replica_addr(0)))
        .build()
        .expect("a verifier");
    assert_eq!(verifier.load_keys().await.expect("the JWKS"), 1);
    let pair = login(cluster.addr(), "alice").await;
    holds_for(&app(&verifier), &pair).await;

    // Verified locally: the HS256 secret of the cluster does not verify
    // these tokens, so nothing but the published key did.
    let secret = Verifier::hs256(cluster.secret().as_bytes())
        .build()
        .expect("a verifier");
    assert_eq!(
        call(&app(&secret), "/orders", &pair.access).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_accepts_hs256_tokens_with_the_shared_secret() {
    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options().replicas(1));
    let secret = Verifier::hs256(cluster.secret().as_bytes())
        .build()
        .expect("a verifier");
    let pair = login(cluster.addr(), "bob").await;
    holds_for(&app(&secret), &pair).await;

    // HS256 publishes no key: a JWKS verifier has nothing to accept it with.
    let jwks = Verifier::jwks(jwks_url(cluster.replica_addr(0)))
        .build()
        .expect("a verifier");
    assert_eq!(jwks.load_keys().await.expect("the JWKS"), 0);
    let answer = call(&app(&jwks), "/orders", &pair.access).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
}

/// A key made by `tokengate gen-key`, in a file of its own.
fn key_file(name: &str) -> std::path::PathBuf {
    let key = Command::new(BIN)
        .args(["gen-key", "--algorithm", "EdDSA"])
        .output()
        .expect("run tokengate gen-key");
    assert!(key.status.success(), "gen-key: {key:?}");
    let path = std::env::temp_dir().join(format!("tokengate-{name}-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&path, &key.stdout).expect("write the key");
    path
}

fn signing_keys(keys: &[(&str, &std::path::Path)]) -> String {
    let mut yaml = "auth:\n  algorithm: EdDSA\n  signing_keys:\n".to_owned();
    for (kid, file) in keys {
        yaml.push_str(&format!(
            "    - {{kid: \"{kid}\", algorithm: EdDSA, private_key_file: \"{}\"}}\n",
            file.display()
        ));
    }
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_in_on_tokengate_is_fetched_by_the_layer_without_a_restart() {
    let _shared = EXCLUSIVE.read().await;
    let (old, new) = (key_file("old"), key_file("new"));
    let mut cluster = start(
        options()
            .replicas(1)
            .config(&signing_keys(&[("old", &old)])),
    );
    let verifier = Verifier::jwks(jwks_url(cluster.replica_addr(0)))
        .build()
        .expect("a verifier");
    assert_eq!(verifier.load_keys().await.expect("the JWKS"), 1);
    let app = app(&verifier);
    let before = login(cluster.addr(), "frank").await;
    assert_eq!(
        call(&app, "/orders", &before.access).await.status,
        StatusCode::OK
    );

    // The operator rotates: the new key signs, the old one still verifies.
    std::fs::write(
        cluster.dir().join("config.yml"),
        signing_keys(&[("new", &new), ("old", &old)]),
    )
    .expect("rewrite config.yml");
    tokio::task::block_in_place(|| cluster.restart_replica(0)).expect("restart the replica");
    let after = login(cluster.addr(), "frank").await;
    let header = jsonwebtoken::decode_header(&after.access).expect("a JWT");
    assert_eq!(header.kid.as_deref(), Some("new"));

    // The same layer, never restarted: the unknown kid fetches the JWKS
    // again (at most once per 10 s, so perhaps not at once) and passes.
    let passes = crate::eventually(Duration::from_secs(15), || async {
        call(&app, "/orders", &after.access).await.status == StatusCode::OK
    })
    .await;
    assert!(passes, "a token of the new key never passed");
    assert_eq!(
        call(&app, "/orders", &before.access).await.status,
        StatusCode::OK
    );
    for file in [old, new] {
        let _ = std::fs::remove_file(file);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_variants_of_a_real_token_are_refused() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options().replicas(1));
    let secret = Verifier::hs256(cluster.secret().as_bytes())
        .build()
        .expect("a verifier");
    let app = app(&secret);
    let pair = login(cluster.addr(), "mallory").await;
    assert_eq!(
        call(&app, "/orders", &pair.access).await.status,
        StatusCode::OK
    );
    let mut parts = pair.access.split('.');
    let (header, payload, signature) = (
        parts.next().expect("a header"),
        parts.next().expect("claims"),
        parts.next().expect("a signature"),
    );
    let mut claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(payload).expect("base64")).expect("JSON");
    claims["sub"] = "admin".into();
    let forged = B64.encode(claims.to_string());

    // The claims changed under the same signature.
    let tampered = format!("{header}.{forged}.{signature}");
    // No signature at all.
    let none = format!(
        "{}.{forged}.",
        B64.encode(r#"{"alg":"none","typ":"at+jwt"}"#)
    );
    // Signed with the real secret, but not an access token (`typ: JWT`).
    let mut jwt = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jwt.typ = Some("JWT".to_owned());
    let wrong_typ = jsonwebtoken::encode(
        &jwt,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(cluster.secret().as_bytes()),
    )
    .expect("sign");
    for (what, token) in [
        ("tampered", tampered.as_str()),
        ("alg none", none.as_str()),
        ("typ JWT", wrong_typ.as_str()),
        ("refresh token", pair.refresh.as_str()),
    ] {
        let answer = call(&app, "/orders", token).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            answer.body
        );
        assert!(
            answer.body.contains("invalid_token"),
            "{what}: {}",
            answer.body
        );
    }
}
