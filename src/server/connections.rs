//! Connection bookkeeping shared by both listeners: a cap per listener
//! (`server.max_connections`, `grpc.max_connections`), eviction of the
//! connection idle the longest at the cap, and slots given back only once a
//! socket is closed — so the process never holds more accepted sockets than
//! the caps (plus the one being decided on), which is what the descriptor
//! budget ([`super::fd_limit`]) counts on.
//!
//! What "idle" means, and which timers run, is each protocol's own
//! ([`Protocol`]): HTTP/1.1 serves one request at a time and moves through
//! phases ([`http`]); HTTP/2 (gRPC) multiplexes calls, so a connection is
//! idle while none is in flight ([`grpc`]). The table, the slots and the
//! eviction are written once, generic over the protocol, so HTTP's hot path
//! pays nothing for gRPC's (static dispatch, the same atomics as before).
//!
//! Each connection has one [`Conn`]: a few atomics written by its own task
//! (and, for gRPC, by its calls) and read by the accept loop and the
//! connection's supervisor. No lock is taken per request. The accept loop
//! alone owns the [`Tracker`] table; it scans it only when the cap is
//! reached, to evict the connection idle the longest (a compare-and-swap,
//! so a request that begins at that very moment is answered and its
//! connection closed after the response).

pub mod grpc;
pub mod http;

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use super::socket::Socket;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// A timestamp not taken yet: the connection's own task takes it on its
/// next poll (which is always right after the change), keeping the clock
/// off the read path. Sorts as "newest" for eviction meanwhile.
const UNSTAMPED: u64 = u64::MAX;

/// How long the accept loop waits for an evicted connection to close.
const EVICTION_WAIT: Duration = Duration::from_millis(500);

/// At most one cap warning per this while a listener's cap is reached.
const CAP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// What a protocol tells the shared bookkeeping about one connection.
pub trait Protocol: Default + Send + Sync + 'static {
    /// Nothing in flight: the connection may be evicted.
    fn evictable(&self) -> bool;
    /// Marks the connection evicted if it is still evictable.
    fn try_evict(&self) -> bool;
    /// Evicted, and closing without waiting for a request to finish.
    fn closing(&self) -> bool;
    /// The server read from the socket (`got` bytes; 0 = nothing yet).
    fn on_read(conn: &Conn<Self>, got: usize);
}

/// How a supervised connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// hyper finished it (client closed, `Connection: close`, shutdown, error).
    Closed,
    /// Closed to make room for a new connection at the cap.
    Evicted,
    /// Nothing in flight for the listener's idle timeout.
    IdleTimeout,
    /// HTTP: headers not complete within `server.header_read_timeout`.
    HeaderTimeout,
    /// gRPC: no HTTP/2 preface within `grpc.handshake_timeout`.
    HandshakeTimeout,
}

/// State shared by the tracker and every connection.
struct Shared {
    /// Accepted sockets not yet closed.
    open: AtomicUsize,
    /// Signalled each time a socket is closed.
    freed: Notify,
    gauge: Gauge,
    /// Timestamps are milliseconds since this instant.
    epoch: Instant,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(UNSTAMPED - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }
}

/// One connection's state.
pub struct Conn<P> {
    shared: Arc<Shared>,
    /// When the connection last became idle (accept, or its last answer):
    /// the eviction order and the idle deadline.
    idle_since: AtomicU64,
    closed: AtomicBool,
    /// Wakes the connection's supervisor: evicted (both protocols), or the
    /// last call ended (gRPC, whose calls run in tasks of their own).
    wake: Notify,
    proto: P,
}

impl<P> Conn<P> {
    /// Reads a timestamp, taking it now if it is [`UNSTAMPED`].
    fn stamp(&self, field: &AtomicU64) -> u64 {
        match field.load(Ordering::Relaxed) {
            UNSTAMPED => {
                let now = self.shared.now_ms();
                field.store(now, Ordering::Relaxed);
                now
            }
            at => at,
        }
    }

    /// When `timeout` runs out, counted from the time in `field`.
    fn deadline_from(&self, field: &AtomicU64, timeout: Duration) -> Instant {
        self.shared.at(self.stamp(field)) + timeout
    }
}

/// The accept loop's table of one listener's open connections.
pub struct Tracker<P> {
    shared: Arc<Shared>,
    table: Vec<Arc<Conn<P>>>,
    cap: usize,
    cap_warned: Option<Instant>,
}

/// What [`Tracker::admit`] decided.
pub enum Admission<P> {
    Admitted(TrackedStream<P>, Arc<Conn<P>>),
    /// Every connection is busy: the new one was closed.
    Refused,
}

impl<P: Protocol> Tracker<P> {
    pub fn new(cap: usize, gauge: Gauge) -> Self {
        Self {
            shared: Arc::new(Shared {
                open: AtomicUsize::new(0),
                freed: Notify::new(),
                gauge,
                epoch: Instant::now(),
            }),
            table: Vec::new(),
            cap: cap.max(1),
            cap_warned: None,
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::Acquire)
    }

    /// True when the cap is reached and no warning was given for a while:
    /// the caller logs one, naming its key.
    pub fn warn_at_cap(&mut self) -> bool {
        let due = self.open() >= self.cap
            && self
                .cap_warned
                .is_none_or(|at| at.elapsed() >= CAP_WARNING_INTERVAL);
        if due {
            self.cap_warned = Some(Instant::now());
        }
        due
    }

    /// Waits until every connection is closed (the shutdown drain).
    pub async fn drained(&self) {
        loop {
            let mut freed = pin!(self.shared.freed.notified());
            freed.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            freed.await;
        }
    }

    /// Takes `stream` in if there is room or room can be made by evicting
    /// the connection idle the longest; else drops (closes) it. Waits at
    /// most [`EVICTION_WAIT`] for an evicted connection to close.
    pub async fn admit(&mut self, stream: Socket) -> Admission<P> {
        let deadline = Instant::now() + EVICTION_WAIT;
        let mut victim: Option<Arc<Conn<P>>> = None;
        let shared = self.shared.clone();
        loop {
            let mut freed = pin!(shared.freed.notified());
            freed.as_mut().enable();
            if self.open() < self.cap {
                return self.register(stream);
            }
            // A victim that took a request at the last moment closes after
            // answering it, but that may take a while: choose another.
            let pending = victim
                .as_ref()
                .is_some_and(|v| v.proto.closing() && !v.closed.load(Ordering::Acquire));
            if !pending {
                victim = self.evict_longest_idle();
                if victim.is_none() {
                    return Admission::Refused;
                }
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Admission::Refused;
            }
        }
    }

    fn register(&mut self, stream: Socket) -> Admission<P> {
        // Closed entries are dropped in bulk: amortised O(1) per accept.
        if self.table.len() >= 2 * self.cap {
            self.table.retain(|c| !c.closed.load(Ordering::Acquire));
        }
        self.shared.open.fetch_add(1, Ordering::AcqRel);
        self.shared.gauge.inc();
        let conn = Arc::new(Conn {
            shared: self.shared.clone(),
            idle_since: AtomicU64::new(self.shared.now_ms()),
            closed: AtomicBool::new(false),
            wake: Notify::new(),
            proto: P::default(),
        });
        self.table.push(conn.clone());
        let stream = TrackedStream {
            stream,
            slot: Slot(conn.clone()),
        };
        Admission::Admitted(stream, conn)
    }

    /// Marks the connection idle the longest (nothing in flight, including
    /// ones that never sent a complete request) as evicted and wakes its
    /// task. `None` if every connection is busy.
    fn evict_longest_idle(&mut self) -> Option<Arc<Conn<P>>> {
        self.table.retain(|c| !c.closed.load(Ordering::Acquire));
        // A few tries: a candidate may start a request while we look.
        for _ in 0..3 {
            let candidate = self
                .table
                .iter()
                .filter(|c| c.proto.evictable())
                .min_by_key(|c| c.idle_since.load(Ordering::Relaxed))?;
            if candidate.proto.try_evict() {
                candidate.wake.notify_one();
                return Some(candidate.clone());
            }
        }
        None
    }
}

/// Gives the connection's slot back; dropped after the socket (field order
/// in [`TrackedStream`]), so a freed slot always means a closed socket.
struct Slot<P>(Arc<Conn<P>>);

impl<P> Drop for Slot<P> {
    fn drop(&mut self) {
        let shared = &self.0.shared;
        shared.open.fetch_sub(1, Ordering::AcqRel);
        shared.gauge.dec();
        self.0.closed.store(true, Ordering::Release);
        // notify_waiters: both a waiting admit and a waiting drain.
        shared.freed.notify_waiters();
    }
}

/// The client socket, telling its [`Conn`] when the server reads.
pub struct TrackedStream<P> {
    // Declared first: closed before the slot is given back.
    stream: Socket,
    slot: Slot<P>,
}

impl<P: Protocol> AsyncRead for TrackedStream<P> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        P::on_read(&self.slot.0, buf.filled().len() - before);
        result
    }
}

impl<P: Protocol> AsyncWrite for TrackedStream<P> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A timer re-armed only when its deadline changes, for the supervisors.
struct Timer<'a> {
    sleep: Pin<&'a mut tokio::time::Sleep>,
    armed: Option<Instant>,
}

impl Timer<'_> {
    /// Polls the timer for `deadline`; ready once it has passed.
    fn poll_at(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed != Some(deadline) {
            self.sleep.as_mut().reset(deadline);
            self.armed = Some(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected loopback pair: (server side, client side).
    pub(super) async fn pair(listener: &TcpListener) -> (Socket, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (Socket::Tcp(accepted.unwrap().0), client.unwrap())
    }

    pub(super) fn admitted<P>(admission: Admission<P>) -> (TrackedStream<P>, Arc<Conn<P>>) {
        match admission {
            Admission::Admitted(stream, conn) => (stream, conn),
            Admission::Refused => panic!("refused"),
        }
    }

    #[tokio::test]
    async fn the_drain_waits_for_the_last_socket_to_close() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut tracker = Tracker::<http::Http>::new(4, Gauge::default());
        let (s1, _c1) = pair(&listener).await;
        let (stream, _) = admitted(tracker.admit(s1).await);
        let drained = tracker.drained();
        tokio::pin!(drained);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut drained)
                .await
                .is_err(),
            "one connection is still open"
        );
        drop(stream);
        tokio::time::timeout(Duration::from_secs(1), drained)
            .await
            .expect("drained once it closed");
    }

    #[tokio::test]
    async fn the_cap_warning_is_rate_limited() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut tracker = Tracker::<http::Http>::new(1, Gauge::default());
        assert!(!tracker.warn_at_cap(), "below the cap");
        let (s1, _c1) = pair(&listener).await;
        let _first = admitted(tracker.admit(s1).await);
        assert!(tracker.warn_at_cap());
        assert!(!tracker.warn_at_cap(), "once per interval");
    }
}
