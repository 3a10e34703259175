//! Stand-ins for tokengate in tests, on 127.0.0.1:0, written on raw TCP so
//! a test controls every byte: a revocation feed the test scripts
//! connection by connection, and a verdict server (`/auth/validate`,
//! `/authenticate`) that answers what the test sets and counts its calls.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Long enough for a loaded machine, short enough for a failing test.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Waits until `condition` holds (polling), or fails the test.
pub(crate) async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let polled = tokio::time::timeout(WAIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "never: {what}");
}

/// Reads one request head (and its `content-length` body).
async fn read_request(socket: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        bytes.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let length = header_in(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = bytes[head_end..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&buf[..n]);
    }
    Some((head, body))
}

fn header_in(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// A revocation feed: each connection is handed to the test to script.
pub(crate) struct FeedServer {
    pub(crate) addr: SocketAddr,
    connections: mpsc::UnboundedReceiver<FeedConnection>,
}

pub(crate) struct FeedConnection {
    pub(crate) head: String,
    socket: TcpStream,
}

impl FeedServer {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, connections) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some((head, _)) = read_request(&mut socket).await {
                        let _ = tx.send(FeedConnection { head, socket });
                    }
                });
            }
        });
        Self { addr, connections }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/events/sessions", self.addr)
    }

    /// The next connection the feed makes.
    pub(crate) async fn next(&mut self) -> FeedConnection {
        tokio::time::timeout(WAIT, self.connections.recv())
            .await
            .expect("the feed did not connect")
            .expect("the server stopped")
    }

    /// Whether the feed connects again within `within`.
    pub(crate) async fn connects_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, self.connections.recv())
            .await
            .is_ok()
    }
}

impl FeedConnection {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        header_in(&self.head, name)
    }

    /// Starts the event stream (close-delimited, as a proxy may send it).
    pub(crate) async fn open(&mut self) {
        self.send(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n",
        )
        .await;
    }

    /// Answers with `status` (e.g. `401 Unauthorized`) and closes.
    pub(crate) async fn refuse(mut self, status: &str) {
        let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        self.send(&reply).await;
    }

    pub(crate) async fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes()).await;
    }

    pub(crate) async fn send_bytes(&mut self, bytes: &[u8]) {
        // The feed may have hung up (that is sometimes the point).
        let _ = self.socket.write_all(bytes).await;
        let _ = self.socket.flush().await;
    }

    /// Waits until the feed closes its end.
    pub(crate) async fn closed_by_feed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        tokio::time::timeout(WAIT, async {
            loop {
                match self.socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }
}

/// `event: session_ended` for `sid`, valid `until`, with `id`.
pub(crate) fn session_ended(id: &str, sid: uuid::Uuid, until: u64) -> String {
    format!(
        "event: session_ended\nid: {id}\ndata: {{\"sid\":\"{sid}\",\"sub\":\"42\",\"until\":{until}}}\n\n"
    )
}

pub(crate) const LIVE: &str = "event: live\ndata: {}\n\n";

/// Answers every request with the status and body the test set last, and
/// remembers what it was asked.
#[derive(Clone)]
pub(crate) struct VerdictServer {
    pub(crate) addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    reply: Arc<Mutex<(u16, String)>>,
    asked: Arc<Mutex<Vec<(String, String)>>>,
}

impl VerdictServer {
    pub(crate) async fn start(status: u16, body: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Self {
            addr: listener.local_addr().unwrap(),
            calls: Arc::default(),
            reply: Arc::new(Mutex::new((status, body.to_owned()))),
            asked: Arc::default(),
        };
        let state = server.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let Some((head, body)) = read_request(&mut socket).await else {
                        return;
                    };
                    state.calls.fetch_add(1, Ordering::SeqCst);
                    state
                        .asked
                        .lock()
                        .unwrap()
                        .push((head, String::from_utf8_lossy(&body).into_owned()));
                    let (status, body) = state.reply.lock().unwrap().clone();
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        server
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn reply(&self, status: u16, body: &str) {
        *self.reply.lock().unwrap() = (status, body.to_owned());
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The last request: its head and body.
    pub(crate) fn last(&self) -> (String, String) {
        self.asked
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn last_header(&self, name: &str) -> Option<String> {
        header_in(&self.last().0, name)
    }
}

/// A port nothing listens on (bound, then closed).
pub(crate) async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
