//! Refusals to a gRPC caller: trailers-only statuses, not HTTP errors.

use super::*;

async fn grpc_call(
    layer: AuthLayer,
    authorization: Option<&str>,
) -> Response<AuthBody<Full<Bytes>>> {
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
        }));
    let mut request = Request::post("/grpc.health.v1.Health/Check")
        .header(http::header::CONTENT_TYPE, "application/grpc+proto");
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    service.oneshot(request.body(()).unwrap()).await.unwrap()
}

fn header<'a, B>(response: &'a Response<B>, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn refusals_are_grpc_statuses_and_a_valid_token_still_passes() {
    let layer = secret_layer().require_scopes(["orders:write"]).unwrap();
    let no_scope = hs256(&hs256_header(), &fresh(None), SECRET);
    let scoped = hs256(&hs256_header(), &fresh(Some("orders:write")), SECRET);
    let cases = [
        (None, "16", Some(r#"Bearer realm="tokengate""#)),
        (
            Some(bearer("not-a-jwt")),
            "16",
            Some(r#"Bearer realm="tokengate", error="invalid_token""#),
        ),
        (
            Some(bearer(&no_scope)),
            "7",
            Some(r#"Bearer realm="tokengate", error="insufficient_scope", scope="orders:write""#),
        ),
    ];
    for (authorization, code, challenge) in cases {
        let response = grpc_call(layer.clone(), authorization.as_deref()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "content-type"), Some("application/grpc"));
        assert_eq!(header(&response, "grpc-status"), Some(code));
        assert!(header(&response, "grpc-message").is_some());
        assert_eq!(header(&response, "www-authenticate"), challenge);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty());
    }
    let response = grpc_call(layer, Some(&bearer(&scoped))).await;
    assert_eq!(header(&response, "grpc-status"), None);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ok");
}

#[tokio::test]
async fn keys_that_cannot_be_fetched_are_unavailable() {
    let jwks = FakeJwks::default();
    jwks.fail();
    let layer = AuthLayer::new(Verifier::jwks_from(jwks).build().unwrap());
    let token = TestKey::new("k1", Algorithm::EdDSA).sign(&fresh(None));
    let response = grpc_call(layer, Some(&bearer(&token))).await;
    assert_eq!(header(&response, "grpc-status"), Some("14"));
}

/// A real gRPC call (tonic's health service, served by tonic through the
/// layer): tonic's client sees the statuses, not a protocol error.
#[tokio::test]
async fn a_tonic_client_sees_unauthenticated_and_permission_denied() {
    use tonic::Code;
    use tonic::transport::server::TcpIncoming;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let layer = secret_layer().require_scopes(["orders:read"]).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);

    let check = |token: Option<String>| {
        let mut request = tonic::Request::new(HealthCheckRequest::default());
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", bearer(&token).parse().unwrap());
        }
        request
    };
    let status = client.check(check(None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "no access token given");

    let unscoped = hs256(&hs256_header(), &fresh(None), SECRET);
    let status = client.check(check(Some(unscoped))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.message(),
        r#"the token lacks a required scope (needs "orders:read")"#
    );
    let challenge = status.metadata().get("www-authenticate").unwrap();
    assert!(challenge.to_str().unwrap().contains("insufficient_scope"));

    let scoped = hs256(&hs256_header(), &fresh(Some("orders:read")), SECRET);
    let answer = client.check(check(Some(scoped))).await.unwrap();
    assert_eq!(
        answer.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}
