//! SPEC §8 interop: the gRPC API called by grpcio, an independent
//! implementation, with a client generated from `proto/auth_api.proto` at
//! test time (`tests/interop/grpc_client.py`, one call per run). Every
//! scenario runs on two replicas sharing Redis and the database, so what a
//! call does on one holds on the other; the HTTP half is driven from here.
//! Reflection is read by grpcio-reflection's descriptor database and health
//! by grpcio-health-checking's stubs, as a generic tool would.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, Cluster, Pair, Replica, eventually};
use crate::interop::run_script;

const PASSWORD: &str = "correct horse battery";
const SERVICE: &str = "realchat.auth.v1.AuthApi";

/// A gRPC error status as grpcio saw it.
#[derive(Debug)]
struct Failure {
    /// The status code's name, e.g. `ALREADY_EXISTS`.
    code: String,
    /// The HTTP error code that leads the message (`email_taken: …`).
    error: String,
    message: String,
    metadata: Value,
}

/// Runs `grpc_client.py` against `replica`'s gRPC port: the reply's fields,
/// or the status it failed with.
async fn grpcio(replica: &Replica, args: &[&str]) -> Result<Value, Failure> {
    let mut argv = vec![replica.grpc_addr.to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let out = run_script("grpc_client.py", argv).await;
    let answer: Value = serde_json::from_str(out.trim()).expect("grpc_client.py prints JSON");
    if let Some(ok) = answer.get("ok") {
        return Ok(ok.clone());
    }
    let failed = &answer["error"];
    let message = failed["message"].as_str().unwrap_or_default().to_owned();
    Err(Failure {
        code: failed["code"].as_str().unwrap_or_default().to_owned(),
        error: message.split(':').next().unwrap_or_default().to_owned(),
        message,
        metadata: failed["metadata"].clone(),
    })
}

/// One `AuthApi` call by grpcio.
async fn call(replica: &Replica, method: &str, request: Value) -> Result<Value, Failure> {
    grpcio(replica, &["call", method, &request.to_string()]).await
}

async fn register(replica: &Replica, email: &str, password: &str) -> Result<Value, Failure> {
    call(
        replica,
        "Register",
        json!({ "email": email, "password": password }),
    )
    .await
}

async fn login(replica: &Replica, email: &str, password: &str) -> Result<Value, Failure> {
    call(
        replica,
        "Login",
        json!({ "email": email, "password": password }),
    )
    .await
}

async fn refresh(replica: &Replica, refresh_token: &str) -> Result<Value, Failure> {
    call(
        replica,
        "Refresh",
        json!({ "refresh_token": refresh_token }),
    )
    .await
}

async fn logout(replica: &Replica, refresh_token: &str) -> Result<Value, Failure> {
    call(replica, "Logout", json!({ "refresh_token": refresh_token })).await
}

fn text<'a>(reply: &'a Value, field: &str) -> &'a str {
    reply[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {reply}"))
}

/// Two replicas on one Redis and one database.
async fn cluster() -> Cluster {
    Cluster::start(Backend::Redis, 2).await
}

/// A user registered over gRPC on `replica`; returns the user id.
async fn user(replica: &Replica, email: &str) -> String {
    let created = register(replica, email, PASSWORD).await.unwrap();
    text(&created, "user_id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_registers_logs_in_refreshes_and_logs_out() {
    let c = cluster().await;
    let user_id = user(c.a(), "alice@example.com").await;
    assert!(uuid::Uuid::parse_str(&user_id).is_ok(), "{user_id}");

    let pair = login(c.b(), "Alice@Example.com", PASSWORD).await.unwrap();
    assert_eq!(pair["expires_in"], 900, "{pair}");
    assert!(pair["refresh_expires_in"].as_u64().unwrap() > 900, "{pair}");
    let session_id = text(&pair, "session_id");
    assert!(!session_id.is_empty());
    let seen = c.a().authenticate(text(&pair, "access_token")).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.header("x-user-id"), Some(user_id.as_str()));

    let next = refresh(c.a(), text(&pair, "refresh_token")).await.unwrap();
    assert_eq!(text(&next, "session_id"), session_id);
    assert_ne!(text(&next, "refresh_token"), text(&pair, "refresh_token"));
    assert_eq!(next["expires_in"], 900, "{next}");
    assert!(c.b().accepts(text(&next, "access_token")).await);

    let out = logout(c.b(), text(&next, "refresh_token")).await.unwrap();
    assert_eq!(out, json!({}));
    assert!(!c.b().accepts(text(&next, "access_token")).await);
    let after = refresh(c.a(), text(&next, "refresh_token"))
        .await
        .unwrap_err();
    assert_eq!(after.code, "UNAUTHENTICATED", "{after:?}");
    // Idempotent, as over HTTP.
    logout(c.a(), text(&next, "refresh_token")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_and_http_pairs_refresh_on_each_other() {
    let c = cluster().await;
    user(c.a(), "bob@example.com").await;

    // gRPC → HTTP on the other replica → gRPC again: one session.
    let grpc = login(c.a(), "bob@example.com", PASSWORD).await.unwrap();
    let over_http = c.b().refresh(text(&grpc, "refresh_token")).await;
    assert_eq!(over_http.status, 200, "{:?}", over_http.body);
    let over_http = Pair::from_reply(&over_http);
    assert_eq!(over_http.session_id, text(&grpc, "session_id"));
    let back = refresh(c.a(), &over_http.refresh).await.unwrap();
    assert_eq!(text(&back, "session_id"), over_http.session_id);
    assert!(c.b().accepts(text(&back, "access_token")).await);

    // A pair from HTTP's password login refreshes over gRPC, and back.
    let http = c
        .b()
        .post_json(
            "/login",
            &json!({ "email": "bob@example.com", "password": PASSWORD }),
        )
        .await;
    assert_eq!(http.status, 200, "{:?}", http.body);
    let http = Pair::from_reply(&http);
    let over_grpc = refresh(c.a(), &http.refresh).await.unwrap();
    assert_eq!(text(&over_grpc, "session_id"), http.session_id);
    assert!(c.b().accepts(text(&over_grpc, "access_token")).await);
    let again = c.b().refresh(text(&over_grpc, "refresh_token")).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(Pair::from_reply(&again).session_id, http.session_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_logout_ends_the_session_on_the_other_replica() {
    let c = cluster().await;
    user(c.b(), "carol@example.com").await;

    let grpc = login(c.b(), "carol@example.com", PASSWORD).await.unwrap();
    let access = text(&grpc, "access_token");
    assert!(c.b().accepts(access).await);
    logout(c.a(), text(&grpc, "refresh_token")).await.unwrap();
    // At once: no waiting for a cache to expire.
    assert!(
        !c.b().accepts(access).await,
        "logout holds on every replica"
    );
    assert!(!c.a().accepts(access).await);
    let refreshed = c.b().refresh(text(&grpc, "refresh_token")).await;
    assert_eq!(refreshed.status, 401, "{:?}", refreshed.body);

    // So does a session that HTTP began.
    let http = c
        .b()
        .post_json(
            "/login",
            &json!({ "email": "carol@example.com", "password": PASSWORD }),
        )
        .await;
    let http = Pair::from_reply(&http);
    assert!(c.b().accepts(&http.access).await);
    logout(c.a(), &http.refresh).await.unwrap();
    assert!(!c.b().accepts(&http.access).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_reuse_of_rotated_refresh_ends_session() {
    let c = Cluster::start_with(Backend::Redis, 2, |s| {
        s.auth.refresh_grace = Duration::ZERO;
    })
    .await;
    user(c.a(), "dave@example.com").await;
    let first = login(c.a(), "dave@example.com", PASSWORD).await.unwrap();
    let next = refresh(c.b(), text(&first, "refresh_token")).await.unwrap();
    assert!(c.a().accepts(text(&next, "access_token")).await);

    let reuse = refresh(c.a(), text(&first, "refresh_token"))
        .await
        .unwrap_err();
    assert_eq!(
        (reuse.code.as_str(), reuse.error.as_str()),
        ("UNAUTHENTICATED", "invalid_grant"),
        "{reuse:?}"
    );
    // The whole session is over, on both replicas, for both tokens.
    assert!(!c.b().accepts(text(&next, "access_token")).await);
    assert!(!c.a().accepts(text(&next, "access_token")).await);
    let later = refresh(c.b(), text(&next, "refresh_token"))
        .await
        .unwrap_err();
    assert_eq!(later.code, "UNAUTHENTICATED", "{later:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_sees_the_spec_error_codes() {
    let c = cluster().await;
    user(c.a(), "erin@example.com").await;

    let taken = register(c.b(), " ERIN@example.com", "another good one")
        .await
        .unwrap_err();
    assert_eq!(
        (taken.code.as_str(), taken.error.as_str()),
        ("ALREADY_EXISTS", "email_taken"),
        "{taken:?}"
    );
    assert_eq!(taken.metadata["tokengate-error"], "email_taken");

    let weak = register(c.a(), "frank@example.com", "short")
        .await
        .unwrap_err();
    assert_eq!(
        (weak.code.as_str(), weak.error.as_str()),
        ("INVALID_ARGUMENT", "invalid_password"),
        "{weak:?}"
    );
    assert!(weak.message.contains("at least 8 characters"), "{weak:?}");
    assert_eq!(weak.metadata["tokengate-error"], "invalid_password");
    let malformed = register(c.a(), "frank at example.com", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(
        (malformed.code.as_str(), malformed.error.as_str()),
        ("INVALID_ARGUMENT", "invalid_email"),
        "{malformed:?}"
    );

    // A wrong password and an unknown email are answered alike.
    let wrong = login(c.b(), "erin@example.com", "not the password")
        .await
        .unwrap_err();
    let unknown = login(c.a(), "nobody@example.com", PASSWORD)
        .await
        .unwrap_err();
    for failed in [&wrong, &unknown] {
        assert_eq!(
            (failed.code.as_str(), failed.error.as_str()),
            ("UNAUTHENTICATED", "invalid_credentials"),
            "{failed:?}"
        );
        assert_eq!(failed.metadata["tokengate-error"], "invalid_credentials");
    }
    assert_eq!(wrong.message, unknown.message);

    let garbage = refresh(c.a(), "not a token").await.unwrap_err();
    assert_eq!(garbage.code, "UNAUTHENTICATED", "{garbage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_reflection_lists_auth_api_and_health_is_serving() {
    let c = cluster().await;
    for replica in [c.a(), c.b()] {
        let seen = grpcio(replica, &["reflect"]).await.unwrap();
        let services: Vec<&str> = seen["services"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(services.contains(&SERVICE), "{seen}");
        assert!(services.contains(&"grpc.health.v1.Health"), "{seen}");
        // The descriptors themselves, not just the name: enough to call.
        let methods = &seen["methods"];
        for (method, input, output) in [
            ("Register", "RegisterRequest", "RegisterResponse"),
            ("Login", "LoginRequest", "LoginResponse"),
            ("Refresh", "RefreshRequest", "RefreshResponse"),
            ("Logout", "LogoutRequest", "LogoutResponse"),
        ] {
            assert_eq!(
                methods[method],
                json!([
                    format!("realchat.auth.v1.{input}"),
                    format!("realchat.auth.v1.{output}")
                ]),
                "{seen}"
            );
        }

        for service in [SERVICE, ""] {
            let serving = eventually(Duration::from_secs(5), || async {
                grpcio(replica, &["health", service])
                    .await
                    .is_ok_and(|r| r["status"] == "SERVING")
            })
            .await;
            assert!(serving, "health of {service:?} is SERVING");
        }
    }
}
