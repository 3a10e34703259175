//! nginx → tokengate over a Unix socket (`server.unix_socket`), as on one host
//! (nginx/README.md, "One host: a Unix socket"): the whole flow through nginx,
//! and nginx's access log shows it never used the replica's TCP port.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use http::Method;

use crate::{EXCLUSIVE, app, assert_app_saw, assert_invalid_token, login, logout, options, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_reaches_the_replica_over_its_unix_socket() {
    let _shared = EXCLUSIVE.read().await;
    let cluster = start(options().replicas(1).unix_sockets());
    let addr = cluster.addr();
    let socket = cluster
        .replica_socket(0)
        .expect("the replica has a socket")
        .to_path_buf();
    let meta = std::fs::symlink_metadata(&socket).expect("the socket file");
    assert!(meta.file_type().is_socket(), "{}", socket.display());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    // Login, the protected app with the identity, logout, then refused.
    let pair = login(addr, "carol").await;
    let reply = app(
        addr,
        Method::GET,
        Some(&pair.access),
        &[("x-user-id", "admin")],
    )
    .await;
    assert_app_saw(&reply, &Method::GET, &pair);
    assert_eq!(reply.status, 200);
    let reply = logout(addr, &pair.access).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = app(addr, Method::GET, Some(&pair.access), &[]).await;
    assert_invalid_token(&reply);

    // Every request nginx sent to tokengate went to the socket, none to the
    // replica's TCP port: the API (/login, /logout) and the auth checks.
    let want = format!("unix:{}", socket.display());
    let port = cluster.replica_port(0).to_string();
    let log = cluster.nginx().access_log();
    let to_tokengate: Vec<_> = log
        .iter()
        .filter(|l| l.is_auth_check() || l.uri == "/login" || l.uri == "/logout")
        .collect();
    assert!(
        to_tokengate.iter().filter(|l| l.is_auth_check()).count() >= 2
            && to_tokengate.iter().any(|l| l.uri == "/login")
            && to_tokengate.iter().any(|l| l.uri == "/logout"),
        "{log:#?}"
    );
    for line in &to_tokengate {
        assert_eq!(line.upstreams, std::slice::from_ref(&want), "{line:?}");
        assert!(
            !line
                .upstreams
                .iter()
                .any(|u| u.ends_with(&format!(":{port}"))),
            "{line:?}"
        );
    }
}
