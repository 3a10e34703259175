//! SPEC §2: every endpoint's status codes, headers and JSON shapes, and bad
//! input of every kind.

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use serde_json::{Value, json};

use crate::helpers::{Backend, Cluster, Pair};
use crate::on_both_stores;
use crate::support::client::request;

on_both_stores!(
    ping_answers_pong,
    health_reports_the_store,
    login_answers_the_spec_shape,
    login_accepts_integer_and_string_user_ids,
    login_rejects_bad_user_ids,
    authenticate_answers_every_method,
    authenticate_without_a_token_asks_for_one,
    tokens_are_never_interchangeable,
    logout_refuses_bad_credentials,
    bad_input_gets_a_json_error,
    wrong_method_gets_405_with_allow,
    unknown_paths_get_404,
    oversized_bodies_get_413,
    non_json_content_types_get_415,
);

async fn ping_answers_pong(backend: Backend) {
    let c = Cluster::start(backend, 1).await;
    let reply = c.a().get("/ping").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "pong");
    let head = c
        .a()
        .send(
            request(Method::HEAD, "/ping")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

async fn health_reports_the_store(backend: Backend) {
    let c = Cluster::start(backend, 1).await;
    let reply = c.a().get("/health").await;
    assert_eq!(reply.status, 200);
    // Redis and its event relay, or neither (the embedded store).
    let with_redis = if backend == Backend::Redis {
        "ok"
    } else {
        "off"
    };
    assert_eq!(
        reply.json(),
        json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "store": "ok",
            "components": {"redis": with_redis, "database": "ok", "events": with_redis},
        })
    );
}

async fn login_answers_the_spec_shape(backend: Backend) {
    let c = Cluster::start(backend, 1).await;
    let reply = c.a().post_json("/login", &json!({"user_id": 1})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = reply.json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "access",
            "expires_in",
            "refresh",
            "refresh_expires_in",
            "session_id",
            "token_type"
        ]
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["refresh_expires_in"], 2_592_000);
    let pair = Pair::from_reply(&reply);
    assert!(uuid::Uuid::parse_str(&pair.session_id).is_ok());

    let header = jsonwebtoken::decode_header(&pair.access).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256);
    assert!(
        header.kid.is_some_and(|kid| !kid.is_empty()),
        "tokens carry kid"
    );
    let claims = pair.claims();
    for claim in ["iss", "aud", "sub", "iat", "exp", "jti", "sid"] {
        assert!(!claims[claim].is_null(), "claim {claim} in {claims}");
    }
    assert_eq!(claims["iss"], "tokengate");
    assert_eq!(claims["aud"], "tokengate");
    assert_eq!(claims["sub"], "1");
    assert_eq!(claims["sid"], pair.session_id.as_str());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        900
    );
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());

    // Opaque, no JWT, at least 256 bits of base64url.
    assert!(!pair.refresh.contains('.'));
    assert!(pair.refresh.len() >= 43);
    assert!(
        pair.refresh
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let other = c.a().login(json!(1)).await;
    assert_ne!(other.claims()["jti"], claims["jti"], "jti unique per token");
}

async fn login_accepts_integer_and_string_user_ids(backend: Backend) {
    let c = Cluster::start(backend, 1).await;
    for (given, sub) in [
        (json!(42), "42"),
        (json!(-3), "-3"),
        (json!(u64::MAX), "18446744073709551615"),
        (json!("alice"), "alice"),
        (json!("Jürgen Ω"), "Jürgen Ω"),
    ] {
        let pair = c.a().login(given).await;
        assert_eq!(pair.claims()["sub"], sub);
        let auth = c.a().authenticate(&pair.access).await;
        assert_eq!(auth.status, 200);
        assert_eq!(
            auth.headers.get("x-user-id").unwrap().as_bytes(),
            sub.as_bytes()
        );
        assert_eq!(auth.json()["sub"], sub);
    }
}

async fn login_rejects_bad_user_ids(backend: Backend) {
    let c = Cluster::start(backend, 1).await;
    for body in [
        json!({}),
        json!({"user": 1}),
        json!({"user_id": null}),
        json!({"user_id": 1.5}),
        json!({"user_id": true}),
        json!({"user_id": [1]}),
        json!({"user_id": {"id": 1}}),
        json!({"user_id": ""}),
        json!({"user_id": "a\nb"}),
        json!({"user_id": "x".repeat(256)}),
        json!([1]),
        json!("user"),
    ] {
        let reply = c.a().post_json("/login", &body).await;
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.error(), "invalid_request", "{body}");
    }
    assert!(
        c.redis.as_ref().is_none_or(|r| r.keys("*").is_empty()),
        "nothing written"
    );
}

async fn authenticate_answers_every_method(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let pair = c.a().login(json!("carol")).await;
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let reply = c
            .b()
            .send(
                request(method.clone(), "/authenticate?x=1")
                    .header("authorization", format!("Bearer {}", pair.access))
                    .header("content-type", "text/plain")
                    .body(Full::new(Bytes::from("ignored body")))
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, 200, "{method}");
        assert_eq!(reply.header("x-user-id"), Some("carol"));
        assert_eq!(reply.header("x-session-id"), Some(pair.session_id.as_str()));
        if method != Method::HEAD {
            let body = reply.json();
            let claims = pair.claims();
            for claim in ["sub", "sid", "jti", "iat", "exp", "iss", "aud"] {
                assert_eq!(body[claim], claims[claim], "{claim}");
            }
        }
    }
}

async fn authenticate_without_a_token_asks_for_one(backend: Backend) {
    let c = Cluster::start(backend, 1).await;
    let challenge = r#"Bearer realm="tokengate""#;
    for authorization in [
        None,
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer"),
        Some("Bearer   "),
    ] {
        let mut builder = request(Method::GET, "/authenticate");
        if let Some(value) = authorization {
            builder = builder.header("authorization", value);
        }
        let reply = c.a().send(builder.body(Full::default()).unwrap()).await;
        assert_eq!(reply.status, 401, "{authorization:?}");
        assert_eq!(reply.header("www-authenticate"), Some(challenge));
        reply.error();
    }
}

async fn tokens_are_never_interchangeable(backend: Backend) {
    let c = Cluster::start(backend, 1).await;
    let pair = c.a().login(json!(1)).await;
    let as_access = c.a().authenticate(&pair.refresh).await;
    assert_eq!(as_access.status, 401);
    assert_eq!(
        as_access.header("www-authenticate"),
        Some(r#"Bearer realm="tokengate", error="invalid_token""#)
    );
    let as_refresh = c.a().refresh(&pair.access).await;
    assert_eq!(as_refresh.status, 401);
    assert_eq!(as_refresh.error(), "invalid_grant");
    let logout = c.a().logout(&pair.refresh).await;
    assert_eq!(logout.status, 401);
    assert!(c.a().accepts(&pair.access).await, "nothing was ended");
}

async fn logout_refuses_bad_credentials(backend: Backend) {
    let c = Cluster::start(backend, 1).await;
    let pair = c.a().login(json!(1)).await;
    let tampered = format!("{}x", pair.access);
    assert_eq!(c.a().logout(&tampered).await.status, 401);
    // Correctly signed, of this very session, but expired (past the leeway).
    let mut claims = pair.claims();
    claims["exp"] = json!(jsonwebtoken::get_current_timestamp() - 60);
    let header = jsonwebtoken::decode_header(&pair.access).unwrap();
    let expired = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(crate::helpers::SECRET.as_bytes()),
    )
    .unwrap();
    let reply = c.a().logout(&expired).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.error(), "invalid_token");
    assert_eq!(c.a().logout("not.a.jwt").await.status, 401);
    let forged_refresh = c
        .a()
        .post_json("/logout", &json!({"refresh": "bm90IG91cnM"}))
        .await;
    assert_eq!(forged_refresh.status, 401);
    forged_refresh.error();
    let nothing = c
        .a()
        .send(
            request(Method::POST, "/logout")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(nothing.status, 401);
    assert_eq!(
        nothing.header("www-authenticate"),
        Some(r#"Bearer realm="tokengate""#)
    );
    assert!(c.a().accepts(&pair.access).await, "still logged in");
}

async fn bad_input_gets_a_json_error(backend: Backend) {
    let c = Cluster::start(backend, 1).await;
    for path in ["/login", "/refresh", "/logout"] {
        for body in [
            &b"{"[..],
            b"not json",
            b"{\"refresh\": 1}",
            b"{\"refresh\": null}",
            b"\xff\xfe",
            b"[]",
            b"{}",
            b"null",
        ] {
            let reply = c
                .a()
                .send(
                    request(Method::POST, path)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(body)))
                        .unwrap(),
                )
                .await;
            assert_eq!(
                reply.status,
                400,
                "{path} {:?}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(reply.error(), "invalid_request");
            assert_eq!(reply.header("content-type"), Some("application/json"));
        }
    }
    let empty = c
        .a()
        .send(
            request(Method::POST, "/refresh")
                .header("content-type", "application/json")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(empty.status, 400);
    assert_eq!(c.a().get("/ping").await.status, 200, "still serving");
}

async fn wrong_method_gets_405_with_allow(backend: Backend) {
    let c = Cluster::start(backend, 1).await;
    for (method, path, allow) in [
        (Method::POST, "/ping", "GET, HEAD"),
        (Method::DELETE, "/health", "GET, HEAD"),
        (Method::GET, "/login", "POST"),
        (Method::PUT, "/refresh", "POST"),
        (Method::GET, "/logout", "POST"),
    ] {
        let reply = c
            .a()
            .send(request(method.clone(), path).body(Full::default()).unwrap())
            .await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.header("allow"), Some(allow));
        assert_eq!(reply.error(), "method_not_allowed");
    }
}

async fn unknown_paths_get_404(backend: Backend) {
    let c = Cluster::start(backend, 1).await;
    for path in ["/", "/nope", "/login/", "/PING", "/authenticate/x", "/%00"] {
        let reply = c.a().get(path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.error(), "not_found");
    }
}

async fn oversized_bodies_get_413(backend: Backend) {
    let c = Cluster::start(backend, 1).await;
    let padding = "x".repeat(17 * 1024);
    let big = serde_json::to_vec(&json!({"user_id": 1, "padding": padding})).unwrap();
    let declared = c
        .a()
        .send(
            request(Method::POST, "/login")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(big.clone())))
                .unwrap(),
        )
        .await;
    assert_eq!(declared.status, 413);
    assert_eq!(declared.error(), "payload_too_large");

    // Chunked: no Content-Length to check up front.
    let stream = http_body_util::StreamBody::new(futures_util::stream::iter(
        big.chunks(1024)
            .map(|c| Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::copy_from_slice(c))))
            .collect::<Vec<_>>(),
    ));
    let chunked = crate::support::client::send(
        c.a().addr,
        request(Method::POST, "/login")
            .header("content-type", "application/json")
            .body(stream)
            .unwrap(),
    )
    .await;
    assert_eq!(chunked.status, 413);

    // Exactly at the limit is fine.
    let at_limit = format!("{{\"user_id\":1,\"p\":\"{}\"}}", "y".repeat(16 * 1024 - 20));
    assert_eq!(at_limit.len(), 16 * 1024);
    let reply = c
        .a()
        .send(
            request(Method::POST, "/login")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(at_limit)))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200);
}

async fn non_json_content_types_get_415(backend: Backend) {
    let c = Cluster::start(backend, 1).await;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        for path in ["/login", "/refresh", "/logout"] {
            let reply = c
                .a()
                .send(
                    request(Method::POST, path)
                        .header("content-type", content_type)
                        .body(Full::new(Bytes::from_static(b"{\"user_id\":1}")))
                        .unwrap(),
                )
                .await;
            assert_eq!(reply.status, 415, "{content_type} {path}");
            assert_eq!(reply.error(), "unsupported_media_type");
        }
    }
    let charset: Value = json!({"user_id": 5});
    let reply = c
        .a()
        .send(
            request(Method::POST, "/login")
                .header("content-type", "application/json; charset=utf-8")
                .body(Full::new(Bytes::from(charset.to_string())))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200);
}
