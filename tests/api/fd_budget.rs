//! The descriptor budget as the real binary lives it (SPEC §11): both
//! listeners' caps fit under the open-file limit together, so a flood of
//! idle connections on the gRPC port, more than the limit itself, never
//! runs the process out of descriptors — `/ping` keeps answering and no
//! accept fails — and a hard limit that cannot fit both caps stops start-up
//! with one line naming the keys. The limit is set in the child alone.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use http::Method;
use http_body_util::Full;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::process::{Process, wait_for_exit};
use crate::support::client::{self, request};
use crate::support::ports::free_port;

/// The child's RLIMIT_NOFILE, soft and hard: far below the flood.
const OPEN_FILES: u64 = 256;

/// Lowers the child's open-file limit before it runs tokengate.
fn limit_open_files(command: &mut Command) {
    // SAFETY: only setrlimit (async-signal-safe) runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: OPEN_FILES,
                rlim_max: OPEN_FILES,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn start(env: &[(&str, &str)]) -> Process {
    Process::spawn(
        env!("CARGO_MANIFEST_DIR").as_ref(),
        &[],
        env,
        limit_open_files,
    )
}

/// `/ping` answered 200 within 2 s.
async fn pings(p: &Process) -> bool {
    let ping = client::try_send(
        p.addr,
        request(Method::GET, "/ping").body(Full::default()).unwrap(),
    );
    matches!(
        tokio::time::timeout(Duration::from_secs(2), ping).await,
        Ok(Ok(reply)) if reply.status == 200
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_grpc_connections_beyond_the_open_file_limit_leave_ping_answering() {
    const FLOOD: usize = 400;
    let grpc_port = free_port().to_string();
    // 64 + 32 + the reserve fit in 256 open files.
    let mut p = start(&[
        ("TOKENGATE__SERVER__MAX_CONNECTIONS", "64"),
        ("TOKENGATE__GRPC__MAX_CONNECTIONS", "32"),
        ("TOKENGATE__GRPC__PORT", &grpc_port),
    ]);
    p.ready().await;
    let grpc = format!("127.0.0.1:{grpc_port}");

    let mut flood = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&grpc));
        let mut stream = connect.await.expect("connect within 5s").unwrap();
        if i % 2 == 0 {
            // Half speak HTTP/2 (the preface), half say nothing.
            let _ = stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
        }
        flood.push(stream);
        if (i + 1) % 100 == 0 {
            assert!(
                pings(&p).await,
                "/ping after {} idle gRPC connections: {}",
                i + 1,
                p.output()
            );
        }
    }
    let started = Instant::now();
    for _ in 0..5 {
        assert!(pings(&p).await, "/ping with the flood held: {}", p.output());
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    // SIGTERM does not wait on idle gRPC connections (shutdown_timeout: 10s).
    let stopping = Instant::now();
    assert!(p.terminate().success());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    let log = p.output();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(!log.contains("accept failed"), "{log}");
    assert!(
        log.contains("grpc.max_connections reached"),
        "the cap is reported: {log}"
    );
    drop(flood);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_limit_below_both_caps_stops_start_up_naming_the_keys() {
    // 100 + 100 + the reserve do not fit in 256; 100 + the reserve does.
    let caps = [
        ("TOKENGATE__SERVER__MAX_CONNECTIONS", "100"),
        ("TOKENGATE__GRPC__MAX_CONNECTIONS", "100"),
    ];
    let grpc_port = free_port().to_string();
    let mut refused = start(&[caps[0], caps[1], ("TOKENGATE__GRPC__PORT", &grpc_port)]);
    let status = wait_for_exit(&mut refused.child, Duration::from_secs(10));
    assert!(!status.success());
    let out = refused.output();
    assert_eq!(out.trim().lines().count(), 1, "one line: {out}");
    assert!(
        out.contains("server.max_connections + grpc.max_connections: 200 connections"),
        "{out}"
    );
    assert!(out.contains(&OPEN_FILES.to_string()), "{out}");

    // gRPC off (grpc.port 0, as Process starts it): its cap takes nothing.
    let mut off = start(&caps);
    off.ready().await;
    assert!(off.terminate().success());
}
