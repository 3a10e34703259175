//! Slow and greedy clients (security hardening): slowloris on headers and on
//! bodies is cut off, idle keep-alive connections are closed, and a flood of
//! idle connections past `server.max_connections` leaves honest clients
//! served. Raw sockets, short real timeouts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, Cluster, eventually};
use crate::support::client;

const SHORT: Duration = Duration::from_secs(1);
/// Scheduling slack on a shared 2-core machine.
pub(crate) const MARGIN: Duration = Duration::from_millis(1500);

async fn cluster(configure: impl FnOnce(&mut tokengate::config::ServerSettings)) -> Cluster {
    Cluster::start_with(Backend::Memory, 1, |s| configure(&mut s.server)).await
}

/// How a trickling client ended: when the server closed it (if it did
/// before `give_up`) and what it answered.
struct Trickled {
    closed_after: Option<Duration>,
    received: Vec<u8>,
}

/// Connects, sends `head` at once, then one byte of `drip` every `every`,
/// until the server closes the connection.
async fn trickle(addr: SocketAddr, head: &'static [u8], drip: u8, every: Duration) -> Trickled {
    let give_up = Duration::from_secs(10);
    let stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let (mut rd, mut wr) = stream.into_split();
    let mut received = Vec::with_capacity(4096);
    let closed = |received| Trickled {
        closed_after: Some(started.elapsed()),
        received,
    };
    if wr.write_all(head).await.is_err() {
        return closed(received);
    }
    while started.elapsed() < give_up {
        let read = tokio::time::timeout(every, rd.read_buf(&mut received)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            return closed(received);
        }
        // Once an answer has begun, stop sending (writing to a socket the
        // server is closing would reset it and lose the rest) and read on.
        if received.is_empty() && wr.write_all(&[drip]).await.is_err() {
            return closed(received);
        }
    }
    Trickled {
        closed_after: None,
        received,
    }
}

/// Reads until the server closes; `None` if it is still open after `within`.
pub(crate) async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut sink = Vec::new();
    loop {
        let left = within.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read_buf(&mut sink)).await {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

/// Sends a GET on a raw connection and reads its whole `pong` answer.
async fn ping_on(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"pong") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read_buf(&mut answer))
            .await
            .expect("answered")
            .unwrap();
        assert!(n > 0, "closed before answering: {answer:?}");
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
}

/// `/ping` and `/login` answer promptly on fresh connections.
async fn others_are_served(cluster: &Cluster) {
    let replica = cluster.a();
    let started = Instant::now();
    let ping = replica.get("/ping").await;
    assert_eq!(ping.status, 200);
    let login = replica.post_json("/login", &json!({ "user_id": 7 })).await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "served slowly: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_are_cut_off_while_others_are_served() {
    // A long idle timeout: the header timer, from the first byte, cuts them off.
    let cluster = cluster(|s| {
        s.header_read_timeout = SHORT;
        s.idle_timeout = Duration::from_secs(30);
    })
    .await;
    let addr = cluster.a().addr;
    let slow: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(trickle(
                addr,
                b"GET /ping HTTP/1.1\r\nHost: test\r\nX-Slow: ",
                b'a',
                Duration::from_millis(250),
            ))
        })
        .collect();
    for _ in 0..4 {
        others_are_served(&cluster).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    for client in slow {
        let trickled = client.await.unwrap();
        let after = trickled.closed_after.expect("slowloris was never cut off");
        assert!(after < SHORT + MARGIN, "cut off late: {after:?}");
        assert!(
            after >= SHORT - Duration::from_millis(100),
            "too early: {after:?}"
        );
        assert!(
            !trickled.received.starts_with(b"HTTP/1.1 200"),
            "an incomplete request was answered"
        );
    }
    others_are_served(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_body_is_answered_408_and_cut_off_while_others_are_served() {
    let cluster = cluster(|s| s.body_read_timeout = SHORT).await;
    let addr = cluster.a().addr;
    let slow: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn(trickle(
                addr,
                b"POST /login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                  Content-Length: 100\r\n\r\n{",
                b' ',
                Duration::from_millis(300),
            ))
        })
        .collect();
    for _ in 0..4 {
        others_are_served(&cluster).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    for client in slow {
        let trickled = client.await.unwrap();
        let after = trickled.closed_after.expect("slow body was never cut off");
        assert!(after < SHORT + MARGIN, "cut off late: {after:?}");
        let text = String::from_utf8_lossy(&trickled.received);
        assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
        assert!(text.contains(r#""error":"request_timeout""#), "{text:?}");
    }
    others_are_served(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    // A long header timeout: the idle timer, not hyper's, closes them.
    let cluster = cluster(|s| {
        s.idle_timeout = SHORT;
        s.header_read_timeout = Duration::from_secs(30);
    })
    .await;
    let addr = cluster.a().addr;

    // Kept alive between requests: each answer restarts the idle clock.
    let mut used = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    ping_on(&mut used).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    ping_on(&mut used).await;
    let closed = closed_within(&mut used, SHORT + MARGIN).await;
    assert!(
        closed.is_some(),
        "an idle keep-alive connection stayed open"
    );
    let total = started.elapsed();
    assert!(
        total >= Duration::from_millis(1600),
        "closed before idle_timeout after the last answer: {total:?}"
    );

    // A connection that never sends a byte is idle from accept.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let after = closed_within(&mut silent, SHORT + MARGIN).await;
    let after = after.expect("a silent connection stayed open");
    assert!(after >= SHORT - Duration::from_millis(100), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_with_every_connection_busy_a_new_one_is_refused() {
    let cluster = cluster(|s| {
        s.max_connections = 2;
        s.body_read_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = cluster.a().addr;
    // Two requests in flight, their bodies trickling: both busy.
    let busy: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(trickle(
                addr,
                b"POST /login HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n{",
                b' ',
                Duration::from_millis(200),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut refused = TcpStream::connect(addr).await.unwrap();
    let after = closed_within(&mut refused, Duration::from_millis(900)).await;
    assert!(after.is_some(), "a third connection was kept past the cap");
    for client in busy {
        let trickled = client.await.unwrap();
        let text = String::from_utf8_lossy(&trickled.received);
        assert!(
            text.starts_with("HTTP/1.1 408"),
            "busy ones were kept: {text:?}"
        );
    }
    // Room again once they are gone.
    others_are_served(&cluster).await;
}

/// `tokengate_open_connections` as `/metrics` on the admin listener `admin`
/// says it (the asking connection included).
async fn open_connections(admin: SocketAddr) -> u64 {
    let reply = client::get(admin, "/metrics").await;
    assert_eq!(reply.status, 200);
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix("tokengate_open_connections "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tokengate_open_connections gauge in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_against_a_cap_of_1000_leave_ping_answering() {
    const CAP: usize = 1000;
    const FLOOD: usize = 10_000;
    // Our 10,000 client sockets and the replica's 1,000 share this process.
    tokengate::server::fd_limit::ensure(&[("the test's sockets", FLOOD + CAP + 1000)])
        .expect("the test needs about 12,000 open files (ulimit -n)");
    let cluster = cluster(|s| s.max_connections = CAP).await;
    let (addr, admin) = (cluster.a().addr, cluster.a().admin_addr);

    let mut flood = Vec::with_capacity(FLOOD);
    let mut peak = 0;
    for i in 0..FLOOD {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .expect("connect within 10s")
            .unwrap();
        flood.push(stream);
        if (i + 1) % 1000 == 0 {
            let ping = client::get(addr, "/ping").await;
            assert_eq!(ping.status, 200, "after {} idle connections", i + 1);
            let open = open_connections(admin).await;
            peak = peak.max(open);
            assert!(open as usize <= CAP, "{open} open connections, cap {CAP}");
        }
    }
    // While all of them are held, fresh clients keep being served.
    for _ in 0..5 {
        let started = Instant::now();
        let ping = client::get(addr, "/ping").await;
        assert_eq!(ping.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(
        peak >= CAP as u64 - 1,
        "the flood never reached the cap: {peak}"
    );

    // Seen from the clients: the server closed all but at most CAP of them.
    let mut still_open = FLOOD;
    let settled = eventually(Duration::from_secs(10), || {
        let mut probe = [0u8; 1];
        still_open = flood
            .iter()
            .filter(|s| matches!(s.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
            .count();
        std::future::ready(still_open <= CAP)
    })
    .await;
    assert!(settled, "{still_open} of the flood still open, cap {CAP}");
    assert!(still_open > 0, "the newest idle connections are kept");
    drop(flood);
    assert!(
        eventually(Duration::from_secs(10), || async {
            open_connections(admin).await <= 2
        })
        .await,
        "connections closed by clients give their slots back"
    );
}
