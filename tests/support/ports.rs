//! Free loopback ports for servers that cannot bind port 0 themselves.

use std::net::TcpListener;

/// A port that was free a moment ago. Callers must cope with losing a race
/// for it (retry with a new one), as [`super::redis::RedisServer`] does.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}
