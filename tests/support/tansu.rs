//! A real Kafka-protocol broker, private to one test: `tansu` (Apache-licensed,
//! Kafka-compatible, in Rust) on a free loopback port with in-memory storage.
//! It starts in about a second in ~20 MB, and listens on that one port only,
//! so any number of brokers run side by side. Like many production clusters it
//! does not create topics on first use; memory storage forgets them (and every
//! message) when it stops.
//!
//! `scripts/test` finds it in `~/.cargo/bin`, where `.ci/run` installs it
//! (`cargo install tansu --version 0.6.0 --locked --features dynostore`).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::ports::free_port;
use super::procs::{poll_until, wait_child};

pub struct Tansu {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// `TANSU`, else `tansu` on `PATH`, else `~/.cargo/bin/tansu`.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TANSU") {
        return Some(path.into());
    }
    let on_path = Command::new("tansu")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if on_path {
        return Some("tansu".into());
    }
    let cargo_bin = PathBuf::from(std::env::var_os("HOME")?).join(".cargo/bin/tansu");
    cargo_bin.exists().then_some(cargo_bin)
}

impl Tansu {
    /// A broker, or `None` (after saying why) when tansu is not installed
    /// and this is not CI; in CI a missing tansu fails the test.
    pub fn start(test: &str) -> Option<Self> {
        let Some(binary) = binary() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "tansu is not installed; .ci/run installs it with \
                 `cargo install tansu --version 0.6.0 --locked --features dynostore`"
            );
            eprintln!(
                "SKIPPED {test}: tansu (a Kafka-compatible broker) is not installed; \
                 `cargo install tansu --version 0.6.0 --locked --features dynostore` \
                 (or set TANSU=/path/to/tansu)"
            );
            return None;
        };
        // Another process may take the free port first: try a few.
        for _ in 0..5 {
            let mut tansu = Self {
                binary: binary.clone(),
                port: free_port(),
                child: None,
            };
            if tansu.try_start() {
                return Some(tansu);
            }
        }
        panic!("tansu did not start on any of 5 free ports");
    }

    /// `host:port`, as `events.kafka.brokers` and clients take it.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops it at once (SIGKILL): the broker is gone, with every topic.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = wait_child(&mut child, Duration::from_secs(10));
        }
    }

    /// A new, empty broker on the same port.
    pub fn restart(&mut self) {
        self.kill();
        // The port was just released; a moment for the kernel, at most.
        assert!(
            poll_until(Duration::from_secs(10), || self.try_start()),
            "tansu did not start again on port {}",
            self.port
        );
    }

    fn try_start(&mut self) -> bool {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&self.binary)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = child else {
            return false;
        };
        let port = self.port;
        let listening = poll_until(Duration::from_secs(10), || {
            matches!(child.try_wait(), Ok(Some(_)))
                || TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if listening && matches!(child.try_wait(), Ok(None)) {
            self.child = Some(child);
            true
        } else {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}
