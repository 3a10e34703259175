//! What clients and the protected app see through nginx, with three replicas.

use std::time::{Duration, Instant};

use http::Method;
use http_body_util::Full;

use crate::support::client::{self, request};
use crate::{
    EXCLUSIVE, app, assert_app_saw, assert_invalid_token, authenticate_at, login, logout, options,
    refresh, start, through_every_replica,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_gets_the_identity_for_get_post_put_and_spoofing_is_replaced() {
    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options());
    let addr = cluster.addr();

    let pair = login(addr, "alice").await;
    for method in [Method::GET, Method::POST, Method::PUT] {
        // A client that claims to be someone else is told who it is.
        let reply = app(
            addr,
            method.clone(),
            Some(&pair.access),
            &[("x-user-id", "admin"), ("x-session-id", "forged")],
        )
        .await;
        assert_app_saw(&reply, &method, &pair);
    }

    // Every replica answers checks for this token (nginx spreads them).
    let seen = through_every_replica(&cluster, &pair.access, 200).await;
    assert_eq!(seen.len(), 3, "{seen:?}");

    // No token: nginx's JSON 401 with tokengate's challenge; the app is not reached.
    let reply = app(addr, Method::POST, None, &[("x-user-id", "admin")]).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="tokengate""#)
    );
    assert_eq!(reply.error(), "unauthorized");
    // A garbage token: refused the same way, whatever the method.
    let reply = app(addr, Method::PUT, Some("not.a.token"), &[]).await;
    assert_invalid_token(&reply);

    // /authenticate is public (it tells the holder about its own token): the
    // claims of a valid one; gate.rs has the rest.
    let reply = client::send(
        addr,
        request(Method::GET, "/authenticate")
            .header("authorization", format!("Bearer {}", pair.access))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["sid"], pair.session_id.as_str(), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_through_nginx_ends_the_session_on_every_replica() {
    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options());
    let addr = cluster.addr();

    let pair = login(addr, "bob").await;
    let other = login(addr, "bob").await; // another session of the same user
    assert_app_saw(
        &app(addr, Method::GET, Some(&pair.access), &[]).await,
        &Method::GET,
        &pair,
    );

    let reply = logout(addr, &pair.access).await;
    assert_eq!(reply.status, 200, "{reply:?}");

    // The very next protected request is refused, with a JSON 401.
    assert_invalid_token(&app(addr, Method::GET, Some(&pair.access), &[]).await);
    // ... whichever replica nginx asks,
    through_every_replica(&cluster, &pair.access, 401).await;
    // ... and at each replica directly.
    for replica in cluster.replica_addrs() {
        let reply = authenticate_at(replica, &pair.access).await;
        assert_eq!(reply.status, 401, "replica {replica}: {reply:?}");
    }
    // The refresh token died with it; the user's other session did not.
    assert_eq!(refresh(addr, &pair.refresh).await.status, 401);
    assert_app_saw(
        &app(addr, Method::PUT, Some(&other.access), &[]).await,
        &Method::PUT,
        &other,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotation_is_seen_by_every_replica() {
    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options());
    let addr = cluster.addr();

    let old = login(addr, "carol").await;
    // Every replica has accepted the old token.
    through_every_replica(&cluster, &old.access, 200).await;

    let reply = refresh(addr, &old.refresh).await;
    let new = crate::Pair::from_reply("carol", &reply);
    assert_eq!(new.session_id, old.session_id);
    assert_ne!(new.access, old.access);
    assert_ne!(new.refresh, old.refresh);

    // A retry of the old refresh token at any replica (within the grace window)
    // gets the one successor nginx's replica minted: the rotation state is shared.
    for replica in cluster.replica_addrs() {
        let retry = refresh(replica, &old.refresh).await;
        assert_eq!(retry.status, 200, "replica {replica}: {retry:?}");
        assert_eq!(
            retry.json()["refresh"],
            new.refresh.as_str(),
            "replica {replica} minted a second successor"
        );
    }

    // The old access token is refused through nginx whichever replica answers,
    through_every_replica(&cluster, &old.access, 401).await;
    // the new one is accepted the same way,
    through_every_replica(&cluster, &new.access, 200).await;
    // and each replica says so directly.
    for replica in cluster.replica_addrs() {
        assert_eq!(authenticate_at(replica, &old.access).await.status, 401);
        let reply = authenticate_at(replica, &new.access).await;
        assert_eq!(reply.status, 200, "replica {replica}: {reply:?}");
        assert_eq!(reply.header("x-user-id"), Some("carol"));
    }
    assert_app_saw(
        &app(addr, Method::POST, Some(&new.access), &[]).await,
        &Method::POST,
        &new,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_logout_through_nginx() {
    const IDLE: Duration = Duration::from_secs(2);
    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options().env("TOKENGATE__AUTH__AUTO_LOGOUT", "2s"));
    let addr = cluster.addr();

    let pair = login(addr, "dave").await;
    let key = format!("tg:{{u:dave}}:s:{}", pair.session_id);
    let ttl = cluster.redis().pttl(&key);
    assert!(
        0 < ttl && ttl <= 2000,
        "session key {key}: PTTL {ttl}, want ≤ 2 s"
    );

    // Activity keeps the session alive past auto_logout: a request every 400 ms
    // for 3 s, each check on whichever replica nginx picks.
    let active_since = Instant::now();
    let mut last_activity = Instant::now();
    while active_since.elapsed() < IDLE * 3 / 2 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_app_saw(
            &app(addr, Method::GET, Some(&pair.access), &[]).await,
            &Method::GET,
            &pair,
        );
        last_activity = Instant::now();
    }

    // Idle: watch Redis (not the service: every check would count as activity)
    // until the session is gone.
    let gone = crate::eventually(Duration::from_secs(5), || async {
        cluster.redis().pttl(&key) == -2
    })
    .await;
    assert!(gone, "the session outlived auto_logout");
    let idle = last_activity.elapsed();
    assert!(
        idle >= IDLE - Duration::from_millis(100),
        "ended after only {idle:?} idle"
    );

    // Logged out everywhere: through nginx, at each replica, and no refresh.
    assert_invalid_token(&app(addr, Method::GET, Some(&pair.access), &[]).await);
    for replica in cluster.replica_addrs() {
        assert_eq!(authenticate_at(replica, &pair.access).await.status, 401);
    }
    assert_eq!(refresh(addr, &pair.refresh).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_clients_and_scopes_at_the_gate_through_nginx() {
    use base64::Engine;
    let _shared = EXCLUSIVE.read().await;
    let hash = tokengate::clients::hash_secret(b"ops-secret").expect("hash");
    let config = format!(
        "oauth:\n  clients:\n    - id: ops\n      secret_hash: '{hash}'\n      scopes: [admin, read]\n"
    );
    let cluster = start(options().config(&config));
    let addr = cluster.addr();
    let get = |path: &str, token: Option<&str>| {
        let mut builder = request(Method::GET, path);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        client::send(addr, builder.body(Full::default()).unwrap())
    };

    // The token endpoint and discovery are public, with URLs clients can use.
    let basic = base64::engine::general_purpose::STANDARD.encode("ops:ops-secret");
    let reply = client::send(
        addr,
        request(Method::POST, "/oauth/token")
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(bytes::Bytes::from_static(
                b"grant_type=client_credentials&scope=admin",
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let admin = reply.json()["access_token"].as_str().unwrap().to_owned();
    let meta = get("/.well-known/oauth-authorization-server", None)
        .await
        .json();
    assert_eq!(meta["token_endpoint"], format!("http://{addr}/oauth/token"));
    assert_eq!(get("/.well-known/jwks.json", None).await.status, 200);
    assert_eq!(
        get("/metrics", None).await.status,
        404,
        "metrics stay private"
    );

    // The scoped location: the admin token passes and the app sees its scope...
    let reply = get("/app/admin/users", Some(&admin)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let echo = reply.json();
    assert_eq!(
        echo["user_id"], "client:ops",
        "never taken for a user named ops"
    );
    assert_eq!(echo["scope"], "admin");
    // ...a user session without the scope gets a clean 403...
    let user = login(addr, "bob").await;
    let reply = get("/app/admin/users", Some(&user.access)).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="tokengate", error="insufficient_scope", scope="admin""#)
    );
    assert_eq!(reply.error(), "forbidden");
    // ...and the unscoped location needs no scope.
    assert_eq!(get("/app/orders", Some(&user.access)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_through_nginx_reaches_every_replica_and_shares_the_session_with_http() {
    use tokengate::grpc::proto::auth_api_client::AuthApiClient;
    use tokengate::grpc::proto::{LogoutRequest, RefreshRequest};

    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options());
    let addr = cluster.addr();
    // One HTTP/2 connection to nginx, as an application holds it.
    let mut grpc = AuthApiClient::connect(cluster.grpc_url())
        .await
        .expect("connect to nginx's gRPC port");

    // An HTTP pair refreshes over gRPC, and the successor works over HTTP.
    let mut pair = login(addr, "grace").await;
    for _ in 0..6 {
        let next = grpc
            .refresh(RefreshRequest {
                refresh_token: pair.refresh.clone(),
            })
            .await
            .expect("Refresh through nginx")
            .into_inner();
        assert_eq!(next.session_id, pair.session_id);
        pair.access = next.access_token;
        pair.refresh = next.refresh_token;
        through_every_replica(&cluster, &pair.access, 200).await;
    }

    // nginx opens one upstream connection per call: the calls of that one client
    // connection went to more than one replica's gRPC port.
    let grpc_ports: Vec<u16> = (0..cluster.replica_count())
        .map(|i| cluster.replica_grpc_addr(i).port())
        .collect();
    let reached: std::collections::BTreeSet<u16> = cluster
        .nginx()
        .access_log()
        .iter()
        .filter(|l| l.uri == "/realchat.auth.v1.AuthApi/Refresh")
        .flat_map(|l| l.upstream_ports())
        .collect();
    assert!(
        reached.iter().all(|p| grpc_ports.contains(p)) && reached.len() > 1,
        "gRPC calls reached {reached:?} of {grpc_ports:?}"
    );

    // A logout over gRPC ends the session for /authenticate everywhere.
    grpc.logout(LogoutRequest {
        refresh_token: pair.refresh.clone(),
    })
    .await
    .expect("Logout through nginx");
    through_every_replica(&cluster, &pair.access, 401).await;
    let reused = grpc
        .refresh(RefreshRequest {
            refresh_token: pair.refresh,
        })
        .await
        .expect_err("a logged-out session does not refresh");
    assert_eq!(reused.code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_passes_nginx_but_health_watch_is_not_published() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options());
    let connect = |url: String| async move {
        let channel = tonic::transport::Channel::from_shared(url).unwrap();
        HealthClient::new(channel.connect().await.expect("connect over gRPC"))
    };
    let mut through = connect(cluster.grpc_url()).await;
    let check = through
        .check(HealthCheckRequest::default())
        .await
        .expect("Health/Check through nginx");
    assert_eq!(check.into_inner().status, ServingStatus::Serving as i32);
    // A watch is a stream nginx would hold for as long as the client likes.
    let watch = through
        .watch(HealthCheckRequest::default())
        .await
        .expect_err("Health/Watch is answered by nginx itself");
    assert_eq!(watch.code(), tonic::Code::Unimplemented, "{watch:?}");

    // A replica itself serves it (bounded there, grpc.max_health_watches).
    let mut direct = connect(format!("http://{}", cluster.replica_grpc_addr(0))).await;
    let mut stream = direct
        .watch(HealthCheckRequest::default())
        .await
        .expect("Health/Watch on a replica's own port")
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
}
