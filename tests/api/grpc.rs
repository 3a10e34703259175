//! The gRPC API (SPEC §8) with tonic's own client: the same rules, store and
//! tokens as HTTP — a pair from gRPC refreshes over HTTP and back, a logout
//! over gRPC holds on the other replica's `/authenticate` — errors mapped to
//! gRPC codes carrying the HTTP error code, health and message limits.

use std::time::Duration;

use tokengate::db::{Database, DurableStore};
use tokengate::grpc::proto::auth_api_client::AuthApiClient;
use tokengate::grpc::proto::{LoginRequest, LogoutRequest, RefreshRequest, RegisterRequest};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{Backend, Cluster, Db, Pair, Replica, eventually};
use crate::on_both_databases;

on_both_databases!(
    a_grpc_pair_lives_the_same_session_as_an_http_one,
    errors_carry_grpc_codes_and_the_http_error_code,
);

const PASSWORD: &str = "correct horse battery";

async fn client(replica: &Replica) -> AuthApiClient<Channel> {
    AuthApiClient::connect(format!("http://{}", replica.grpc_addr))
        .await
        .expect("connect to the gRPC API")
}

fn code_of(status: &Status) -> (Code, String) {
    let error = status
        .message()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    (status.code(), error)
}

async fn register(
    client: &mut AuthApiClient<Channel>,
    email: &str,
    password: &str,
) -> Result<String, Status> {
    client
        .register(RegisterRequest {
            email: email.into(),
            password: password.into(),
        })
        .await
        .map(|r| r.into_inner().user_id)
}

async fn a_grpc_pair_lives_the_same_session_as_an_http_one(db: Db) {
    let c = Cluster::start_with(Backend::Redis, 2, |s| db.configure(s)).await;
    let (mut a, mut b) = (client(c.a()).await, client(c.b()).await);
    let user_id = register(&mut a, "alice@example.com", PASSWORD)
        .await
        .unwrap();
    let login = b
        .login(LoginRequest {
            email: "Alice@Example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(login.expires_in, 900);
    assert!(!login.session_id.is_empty());
    // Known to HTTP on the other replica.
    let seen = c.a().authenticate(&login.access_token).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.header("x-user-id"), Some(user_id.as_str()));

    // gRPC → HTTP → gRPC, one session throughout.
    let over_http = c.a().refresh(&login.refresh_token).await;
    assert_eq!(over_http.status, 200, "{:?}", over_http.body);
    let over_http = Pair::from_reply(&over_http);
    assert_eq!(over_http.session_id, login.session_id);
    let back = a
        .refresh(RefreshRequest {
            refresh_token: over_http.refresh.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(back.session_id, login.session_id);
    assert!(c.b().accepts(&back.access_token).await);

    // A logout over gRPC holds on the other replica at once.
    b.logout(LogoutRequest {
        refresh_token: back.refresh_token.clone(),
    })
    .await
    .unwrap();
    assert!(!c.a().accepts(&back.access_token).await);
    // Idempotent, as over HTTP.
    b.logout(LogoutRequest {
        refresh_token: back.refresh_token,
    })
    .await
    .unwrap();
}

async fn errors_carry_grpc_codes_and_the_http_error_code(db: Db) {
    let c = Cluster::start_with(Backend::Redis, 1, |s| {
        db.configure(s);
        s.auth.refresh_grace = Duration::ZERO;
        s.users.max_failures = 3;
    })
    .await;
    let client = client(c.a()).await;
    let mut a = client.clone();
    register(&mut a, "bob@example.com", PASSWORD).await.unwrap();
    let taken = register(&mut a, " BOB@example.com", "another good one")
        .await
        .unwrap_err();
    assert_eq!(code_of(&taken), (Code::AlreadyExists, "email_taken".into()));
    assert_eq!(
        taken.metadata().get("tokengate-error").unwrap(),
        "email_taken"
    );
    let weak = register(&mut a, "carol@example.com", "short")
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&weak),
        (Code::InvalidArgument, "invalid_password".into())
    );
    assert!(
        weak.message().contains("at least 8 characters"),
        "{}",
        weak.message()
    );
    let email = register(&mut a, "carol at example.com", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&email),
        (Code::InvalidArgument, "invalid_email".into())
    );

    // A rotated refresh token used again ends the session.
    let login = |password: &'static str| {
        let mut a = client.clone();
        async move {
            a.login(LoginRequest {
                email: "bob@example.com".into(),
                password: password.into(),
            })
            .await
        }
    };
    let pair = login(PASSWORD).await.unwrap().into_inner();
    let next = a
        .refresh(RefreshRequest {
            refresh_token: pair.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let reuse = a
        .refresh(RefreshRequest {
            refresh_token: pair.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&reuse),
        (Code::Unauthenticated, "invalid_grant".into())
    );
    assert!(
        !c.a().accepts(&next.access_token).await,
        "reuse ended the session"
    );
    let garbage = a
        .refresh(RefreshRequest {
            refresh_token: "not a token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(garbage.code(), Code::Unauthenticated);

    // Wrong passwords, then the throttle, shared with HTTP.
    for _ in 0..3 {
        let wrong = login("not the password").await.unwrap_err();
        assert_eq!(
            code_of(&wrong),
            (Code::Unauthenticated, "invalid_credentials".into())
        );
    }
    let throttled = login(PASSWORD).await.unwrap_err();
    assert_eq!(
        code_of(&throttled),
        (Code::ResourceExhausted, "too_many_attempts".into())
    );
    let wait: u64 = throttled
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&wait));
    let http = c
        .a()
        .post_json(
            "/login",
            &serde_json::json!({"email": "bob@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(http.status, 429, "the same counters over HTTP");

    // A message over the limit is refused, and the server goes on.
    let huge = register(&mut a, "dave@example.com", &"x".repeat(64 * 1024))
        .await
        .unwrap_err();
    assert_eq!(huge.code(), Code::OutOfRange, "{huge:?}");
    register(&mut a, "dave@example.com", PASSWORD)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_store_and_reflection_lists_the_service() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let mut c = Cluster::start(Backend::Redis, 1).await;
    let channel = Channel::from_shared(format!("http://{}", c.a().grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    let status = |mut health: HealthClient<Channel>| async move {
        health
            .check(HealthCheckRequest {
                service: "realchat.auth.v1.AuthApi".into(),
            })
            .await
            .map(|r| r.into_inner().status)
            .ok()
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            status(health.clone()).await == Some(ServingStatus::Serving as i32)
        })
        .await
    );
    c.redis_mut().kill();
    assert!(
        eventually(Duration::from_secs(10), || async {
            status(health.clone()).await == Some(ServingStatus::NotServing as i32)
        })
        .await,
        "the store down is NOT_SERVING"
    );
    c.redis_mut().restart();
    assert!(
        eventually(Duration::from_secs(10), || async {
            status(health.clone()).await == Some(ServingStatus::Serving as i32)
        })
        .await
    );
    let overall = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overall.status, ServingStatus::Serving as i32);

    // The calls are counted by method and code.
    let mut a = client(c.a()).await;
    let _ = register(&mut a, "erin@example.com", "short").await;
    let metrics = String::from_utf8_lossy(&c.a().get_admin("/metrics").await.body).into_owned();
    assert!(
        metrics.contains(r#"tokengate_grpc_calls_total{method="/realchat.auth.v1.AuthApi/Register",code="INVALID_ARGUMENT"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_calls_in_flight_finish() {
    let mut c = Cluster::start(Backend::Memory, 1).await;
    let grpc = client(c.a()).await;
    let before = c.a().verifications().await;
    let mut call = grpc.clone();
    let call =
        tokio::spawn(async move { register(&mut call, "drain@example.com", PASSWORD).await });
    // Its password is being hashed: the call is in flight.
    assert!(
        eventually(Duration::from_secs(5), || async {
            c.a().verifications().await > before
        })
        .await
    );
    c.replicas[0].stop().await;
    let user_id = call
        .await
        .unwrap()
        .expect("a call in flight at shutdown is answered");
    assert!(uuid::Uuid::parse_str(&user_id).is_ok());
    assert!(
        client_fails(c.replicas[0].grpc_addr).await,
        "and then nothing is served"
    );
}

async fn client_fails(addr: std::net::SocketAddr) -> bool {
    AuthApiClient::connect(format!("http://{addr}"))
        .await
        .is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_get_a_status_and_write_nothing() {
    // Many refusals from one address: no throttle in the way.
    let c = Cluster::start_with(Backend::Memory, 1, |s| s.users.max_failures = 0).await;
    let mut a = client(c.a()).await;
    let long = format!("{}@example.com", "a".repeat(10_000));
    for (email, password) in [
        ("", ""),
        ("eve\0@example.com", PASSWORD),
        ("ève@exämple.com", PASSWORD),
        (long.as_str(), PASSWORD),
        ("eve@example.com", ""),
        ("eve@example.com", "\0\0\0\0\0\0\0"),
    ] {
        let refused = register(&mut a, email, password).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{email:.40?}: {refused:?}"
        );
        let login = a
            .login(LoginRequest {
                email: email.into(),
                password: password.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(login.code(), Code::Unauthenticated, "{email:.40?}");
    }
    let db = Database::open(&c.settings.database).unwrap();
    assert_eq!(db.pending_events().await.unwrap(), 0, "nothing was written");
    // Still serving.
    register(&mut a, "eve@example.com", PASSWORD).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_registration_takes_basic_credentials_as_metadata() {
    use base64::Engine;
    let c = Cluster::start_with(Backend::Memory, 1, |s| {
        s.users.registration = tokengate::config::Registration::Closed;
        s.login.clients = vec![tokengate::config::LoginClient {
            id: "web".into(),
            secret_hash: tokengate::clients::hash_secret(b"web-secret").unwrap(),
            ..Default::default()
        }];
    })
    .await;
    let mut a = client(c.a()).await;
    let anonymous = register(&mut a, "frank@example.com", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&anonymous),
        (Code::Unauthenticated, "invalid_client".into())
    );
    let mut request = tonic::Request::new(RegisterRequest {
        email: "frank@example.com".into(),
        password: PASSWORD.into(),
    });
    let basic = base64::engine::general_purpose::STANDARD.encode("web:web-secret");
    request
        .metadata_mut()
        .insert("authorization", format!("Basic {basic}").parse().unwrap());
    let created = a
        .register(request)
        .await
        .expect("a trusted client registers");
    assert!(uuid::Uuid::parse_str(&created.into_inner().user_id).is_ok());
}
