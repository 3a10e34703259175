//! SPEC §2 `/authenticate`: forged and wrong tokens of every kind get `401
//! invalid_token`, and none of them touches a session.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{Backend, Cluster, Pair, SECRET};
use crate::on_both_stores;

on_both_stores!(
    forged_tokens_are_refused,
    tokens_of_unknown_sessions_are_refused
);

fn sign(header: Value, claims: &Value, key: &[u8]) -> String {
    let header: Header = serde_json::from_value(header).unwrap();
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key)).unwrap()
}

fn at_jwt() -> Value {
    json!({"alg": "HS256", "typ": "at+jwt"})
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

async fn assert_refused(c: &Cluster, token: &str, what: &str) {
    let reply = c.b().authenticate(token).await;
    assert_eq!(reply.status, 401, "{what}");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="tokengate", error="invalid_token""#),
        "{what}"
    );
    assert_eq!(reply.error(), "invalid_token", "{what}");
}

async fn forged_tokens_are_refused(backend: Backend) {
    let c = Cluster::start_with(backend, 2, |s| s.auth.leeway = std::time::Duration::ZERO).await;
    let pair: Pair = c.a().login(json!(1)).await;
    let claims = pair.claims();
    let with = |key: &str, value: Value| {
        let mut c = claims.clone();
        c[key] = value;
        c
    };

    let payload = B64.encode(serde_json::to_vec(&claims).unwrap());
    let alg_none = format!(
        "{}.{payload}.",
        B64.encode(br#"{"alg":"none","typ":"at+jwt"}"#)
    );
    assert_refused(&c, &alg_none, "alg none").await;
    let alg_none_sig = format!("{alg_none}{}", pair.access.rsplit('.').next().unwrap());
    assert_refused(&c, &alg_none_sig, "alg none with a signature").await;

    let wrong_key = sign(at_jwt(), &claims, b"a different key of sufficient length!!");
    assert_refused(&c, &wrong_key, "wrong key").await;

    let hs384 = sign(
        json!({"alg": "HS384", "typ": "at+jwt"}),
        &claims,
        SECRET.as_bytes(),
    );
    assert_refused(&c, &hs384, "other HMAC algorithm").await;

    let mut parts: Vec<&str> = pair.access.split('.').collect();
    let tampered_payload = B64.encode(serde_json::to_vec(&with("sub", json!("admin"))).unwrap());
    parts[1] = &tampered_payload;
    assert_refused(&c, &parts.join("."), "tampered payload").await;

    let expired = with("exp", json!(now() - 1));
    assert_refused(&c, &sign(at_jwt(), &expired, SECRET.as_bytes()), "expired").await;
    let future = with("iat", json!(now() + 3600));
    assert_refused(
        &c,
        &sign(at_jwt(), &future, SECRET.as_bytes()),
        "issued in the future",
    )
    .await;

    let iss = with("iss", json!("evil"));
    assert_refused(&c, &sign(at_jwt(), &iss, SECRET.as_bytes()), "wrong iss").await;
    let aud = with("aud", json!("other-service"));
    assert_refused(&c, &sign(at_jwt(), &aud, SECRET.as_bytes()), "wrong aud").await;
    for typ in [json!("JWT"), json!("id+jwt"), Value::Null] {
        let header = json!({"alg": "HS256", "typ": typ});
        assert_refused(&c, &sign(header, &claims, SECRET.as_bytes()), "wrong typ").await;
    }
    for missing in ["jti", "sid", "exp", "iss", "aud", "sub", "iat"] {
        let mut c2 = claims.clone();
        c2.as_object_mut().unwrap().remove(missing);
        assert_refused(&c, &sign(at_jwt(), &c2, SECRET.as_bytes()), missing).await;
    }
    for garbage in [
        "x",
        "a.b.c",
        "...",
        &"A".repeat(9000),
        "eyJ9.eyJ9.eyJ9",
        "é",
    ] {
        assert_refused(&c, garbage, "garbage").await;
    }

    assert!(
        c.a().accepts(&pair.access).await,
        "the real token still works"
    );
}

async fn tokens_of_unknown_sessions_are_refused(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let pair = c.a().login(json!(1)).await;
    let claims = pair.claims();

    let mut unknown_jti = claims.clone();
    unknown_jti["jti"] = json!(uuid::Uuid::new_v4());
    let token = sign(at_jwt(), &unknown_jti, SECRET.as_bytes());
    assert_refused(&c, &token, "unknown jti in a live session").await;

    let mut unknown_sid = claims.clone();
    unknown_sid["sid"] = json!(uuid::Uuid::new_v4());
    let token = sign(at_jwt(), &unknown_sid, SECRET.as_bytes());
    assert_refused(&c, &token, "unknown sid").await;

    assert!(c.b().accepts(&pair.access).await);
}
