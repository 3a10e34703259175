//! One listener cannot starve another (SPEC §11): the gRPC port's
//! connections have their own cap (`grpc.max_connections`, the longest-idle
//! evicted at it), a handshake and an idle timer, and `Health/Watch`
//! streams are bounded in number and lifetime — so idle sockets or watches
//! on the gRPC port never stop `/ping` and `/authenticate`, nor real calls.
//! Raw sockets for what a client that barely speaks HTTP/2 does, tonic's
//! client for real calls; short real timeouts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use tokengate::grpc::proto::RegisterRequest;
use tokengate::grpc::proto::auth_api_client::AuthApiClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{Backend, Cluster, Pair, eventually};
use crate::slow_clients::{MARGIN, closed_within};

const SHORT: Duration = Duration::from_secs(1);

/// What every HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: the rest of a client's connection preface.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
const GOAWAY: u8 = 7;

async fn cluster(configure: impl FnOnce(&mut tokengate::config::GrpcSettings)) -> Cluster {
    Cluster::start_with(Backend::Redis, 1, |s| configure(&mut s.grpc)).await
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect to the gRPC port")
}

/// A connection that completed the HTTP/2 preface and asks for nothing.
async fn idle_http2(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(SETTINGS).await.unwrap();
    stream
}

/// Whether the server has not closed `stream` (nothing to read, no EOF).
fn still_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 64];
    loop {
        match stream.try_read(&mut probe) {
            Ok(0) => return false,
            Ok(_) => {} // the server's SETTINGS and the like
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

/// The types of the HTTP/2 frames in `bytes` (whole frames only).
fn frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while bytes.len() >= at + 9 {
        let len = usize::from(bytes[at]) << 16
            | usize::from(bytes[at + 1]) << 8
            | usize::from(bytes[at + 2]);
        types.push(bytes[at + 3]);
        at += 9 + len;
    }
    types
}

/// Reads a watch's statuses (health may send one again) to its end: `Ok`
/// if it ended with status OK.
async fn to_the_end(
    watch: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
) -> Result<(), tonic::Status> {
    while watch.message().await?.is_some() {}
    Ok(())
}

async fn serving(health: &mut HealthClient<Channel>) -> bool {
    health
        .check(HealthCheckRequest::default())
        .await
        .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_grpc_connections_past_the_cap_leave_http_and_grpc_served() {
    const CAP: usize = 20;
    const FLOOD: usize = 60;
    let c = cluster(|g| g.max_connections = CAP).await;
    let grpc = c.a().grpc_addr;

    // Half speak HTTP/2 and idle, half never say a word.
    let mut flood = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        flood.push(if i % 2 == 0 {
            idle_http2(grpc).await
        } else {
            TcpStream::connect(grpc).await.unwrap()
        });
    }
    // HTTP is untouched, and a real gRPC call finds room (an idle one goes).
    let started = Instant::now();
    assert_eq!(c.a().get("/ping").await.status, 200);
    let pair = c.a().login(json!(7)).await;
    assert!(c.a().accepts(&pair.access).await);
    let mut api = AuthApiClient::new(channel(grpc).await);
    let user = api
        .register(RegisterRequest {
            email: "flooded@example.com".into(),
            password: "correct horse battery".into(),
        })
        .await
        .expect("a gRPC call past the cap of idle connections");
    assert!(!user.into_inner().user_id.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "served slowly: {:?}",
        started.elapsed()
    );

    // Seen from the clients: the server kept at most CAP, the newest.
    let mut open = FLOOD;
    let settled = eventually(Duration::from_secs(5), || {
        open = flood.iter().filter(|s| still_open(s)).count();
        std::future::ready(open < CAP)
    })
    .await;
    assert!(
        settled,
        "{open} of {FLOOD} idle connections still open, cap {CAP}"
    );
    assert!(
        open > CAP / 2,
        "the newest idle connections are kept: {open}"
    );
    let gauge = c.a().metric("tokengate_grpc_open_connections").await;
    assert!(gauge <= CAP as f64, "{gauge} open, cap {CAP}");
    // Still served after the dust settles.
    let login = c.a().post_json("/login", &json!({"user_id": 8})).await;
    assert_eq!(login.status, 200);
    assert!(c.a().accepts(&Pair::from_reply(&login).access).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_completes_the_preface_is_closed_after_the_handshake_timeout() {
    let c = cluster(|g| {
        g.handshake_timeout = SHORT;
        g.idle_timeout = Duration::from_secs(30);
    })
    .await;
    let grpc = c.a().grpc_addr;
    let mut silent = TcpStream::connect(grpc).await.unwrap();
    let mut partial = TcpStream::connect(grpc).await.unwrap();
    partial.write_all(&PREFACE[..10]).await.unwrap();
    let talking = idle_http2(grpc).await;

    let started = Instant::now();
    let (silent_after, partial_after) = tokio::join!(
        closed_within(&mut silent, SHORT + MARGIN),
        closed_within(&mut partial, SHORT + MARGIN),
    );
    for (what, after) in [("silent", silent_after), ("half a preface", partial_after)] {
        let after =
            after.unwrap_or_else(|| panic!("{what}: still open after {:?}", started.elapsed()));
        assert!(
            after >= SHORT - Duration::from_millis(200),
            "{what}: closed early, {after:?}"
        );
    }
    assert!(
        still_open(&talking),
        "a connection that spoke HTTP/2 waits for the idle timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout_with_a_goaway() {
    let c = cluster(|g| g.idle_timeout = SHORT).await;
    let grpc = c.a().grpc_addr;
    let mut idle = idle_http2(grpc).await;
    let started = Instant::now();
    let mut received = Vec::new();
    let closed = tokio::time::timeout(SHORT + Duration::from_secs(1) + MARGIN, async {
        while idle.read_buf(&mut received).await.is_ok_and(|n| n > 0) {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "an idle connection stayed open: {:?}",
        frame_types(&received)
    );
    assert!(
        started.elapsed() >= SHORT - Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert!(
        frame_types(&received).contains(&GOAWAY),
        "closed without a GOAWAY: {:?}",
        frame_types(&received)
    );

    // A call in flight (a health watch) keeps its connection past it.
    let channel = channel(grpc).await;
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let quiet = tokio::time::timeout(3 * SHORT, watch.message()).await;
    assert!(quiet.is_err(), "the watch ended while in flight: {quiet:?}");
    assert!(serving(&mut HealthClient::new(channel)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_watches_beyond_the_bound_are_refused_and_each_ends_after_its_lifetime() {
    let lifetime = Duration::from_secs(2);
    let c = cluster(|g| {
        g.max_health_watches = 2;
        g.health_watch_lifetime = lifetime;
    })
    .await;
    let channel = channel(c.a().grpc_addr).await;
    let mut health = HealthClient::new(channel);
    let started = Instant::now();
    let mut watches = Vec::new();
    for _ in 0..2 {
        let mut watch = health
            .watch(HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(watch.message().await.unwrap().is_some());
        watches.push(watch);
    }
    let refused = health
        .watch(HealthCheckRequest::default())
        .await
        .expect_err("a third watch is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(serving(&mut health).await, "Check is never refused");

    for mut watch in watches {
        let end = tokio::time::timeout(lifetime + MARGIN, to_the_end(&mut watch))
            .await
            .expect("the watch outlived its lifetime");
        assert!(end.is_ok(), "ended with OK: {end:?}");
    }
    assert!(started.elapsed() >= lifetime - Duration::from_millis(200));
    let again = health.watch(HealthCheckRequest::default()).await;
    assert!(again.is_ok(), "ended watches give their places back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_health_watches_instead_of_waiting_for_them() {
    let mut c = cluster(|_| {}).await;
    let mut watch = HealthClient::new(channel(c.a().grpc_addr).await)
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(watch.message().await.unwrap().is_some());
    let started = Instant::now();
    c.replicas[0].stop().await;
    // The test cluster's drain is 5 s: a watch holding it would take that long.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the drain waited {:?}",
        started.elapsed()
    );
    let end = tokio::time::timeout(Duration::from_secs(1), to_the_end(&mut watch)).await;
    assert!(
        matches!(end, Ok(Ok(()))),
        "the watch ended with OK: {end:?}"
    );
}
