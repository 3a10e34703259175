//! Connection bookkeeping: the `server.max_connections` cap, eviction of idle
//! connections at the cap, and the per-connection idle and header timers.
//!
//! Why not just hyper's `header_read_timeout`: in hyper 1.x that one timer
//! runs from the moment a connection is idle (accepted, or its last response
//! written) until a complete header block has arrived. Waiting for the next
//! request and sending it slowly share one budget, so the idle timeout (which
//! must stay above nginx's upstream `keepalive_timeout`) and the slowloris
//! bound cannot be set apart, and hyper knows no cap on connections at all.
//! Here, as in Go's and Envoy's servers, *idle* ends at the first byte of the
//! next request and *header read* runs from that byte to the end of the
//! headers. hyper's timer stays on as a backstop set to their sum.
//!
//! Each connection has one [`Conn`]: a few atomics written by its own task
//! (the socket wrapper [`TrackedStream`] sees the first byte, the service marks
//! a request begun and answered) and read by [`supervise`], which drives the
//! connection and re-arms one timer whenever the phase changes. No lock is
//! taken per request. The accept loop alone owns the [`Tracker`] table; it
//! scans it only when the cap is reached, to evict the connection idle the
//! longest (phase compare-and-swap, so a request that begins at that very
//! moment is answered and its connection closed after the response).
//! A slot is given back only after the socket is closed, so the process never
//! holds more than `max_connections` accepted sockets, plus the one being
//! decided on.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use super::socket::Socket;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Waiting for the next request (or for the first request after accept).
const IDLE: u8 = 0;
/// Some bytes of a request arrived; its header block is not complete yet.
const HEAD: u8 = 1;
/// A request is being handled (its body read, its answer computed).
const BUSY: u8 = 2;
/// The answer is computed and being written; idle once hyper reads again.
const RESPONDING: u8 = 3;
/// Chosen by the accept loop to make room; its task closes it.
const EVICTED: u8 = 4;

/// A timestamp not taken yet: the connection's own task takes it on its
/// next poll (which is always right after the change), keeping the clock
/// off the read path. Sorts as "newest" for eviction meanwhile.
const UNSTAMPED: u64 = u64::MAX;

/// How long the accept loop waits for an evicted connection to close.
const EVICTION_WAIT: Duration = Duration::from_millis(500);

/// The per-connection timers.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub idle: Duration,
    pub header: Duration,
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
pub struct Conn {
    shared: Arc<Shared>,
    phase: AtomicU8,
    /// When the connection last became idle (accept or answer): the
    /// eviction order and the idle deadline.
    idle_since: AtomicU64,
    /// When the current request's first byte arrived: the header deadline.
    head_since: AtomicU64,
    closed: AtomicBool,
    evict: Notify,
}

impl Conn {
    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    /// A request's header block is complete. Returns true if the connection
    /// was evicted meanwhile: answer this request, then close.
    pub fn begin_request(&self) -> bool {
        self.phase.swap(BUSY, Ordering::AcqRel) == EVICTED
    }

    /// The answer is ready; the connection counts as idle from now on.
    pub fn end_request(&self) {
        self.idle_since.store(UNSTAMPED, Ordering::Relaxed);
        self.phase.store(RESPONDING, Ordering::Release);
    }

    /// hyper reads from the socket: the answer before has been written, and
    /// bytes of a new request start its header clock.
    fn on_read(&self, got_bytes: bool) {
        let mut phase = self.phase();
        if phase == RESPONDING && self.swap_phase(RESPONDING, IDLE) {
            phase = IDLE;
        }
        if phase == IDLE && got_bytes {
            self.head_since.store(UNSTAMPED, Ordering::Relaxed);
            self.swap_phase(IDLE, HEAD);
        }
    }

    fn swap_phase(&self, from: u8, to: u8) -> bool {
        self.phase
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

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

    /// When this connection is to be closed if nothing changes; `None` while
    /// a request is in flight (the body has its own deadline).
    fn deadline(&self, timeouts: &Timeouts) -> Option<(Instant, Ended)> {
        match self.phase() {
            IDLE | RESPONDING => {
                let since = self.stamp(&self.idle_since);
                Some((self.shared.at(since) + timeouts.idle, Ended::IdleTimeout))
            }
            HEAD => {
                let since = self.stamp(&self.head_since);
                Some((
                    self.shared.at(since) + timeouts.header,
                    Ended::HeaderTimeout,
                ))
            }
            _ => None,
        }
    }

    fn evictable(&self) -> bool {
        matches!(self.phase(), IDLE | HEAD)
    }
}

/// How a supervised connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// hyper finished it (client closed, `Connection: close`, shutdown, error).
    Closed,
    /// Closed to make room for a new connection at the cap.
    Evicted,
    /// No request within `server.idle_timeout`.
    IdleTimeout,
    /// Headers not complete within `server.header_read_timeout`.
    HeaderTimeout,
}

/// Drives `connection` until it ends, is evicted, or a timer of its phase
/// runs out; dropping it then closes the socket.
pub async fn supervise<F: Future>(
    connection: F,
    conn: &Conn,
    timeouts: Timeouts,
) -> (Ended, Option<F::Output>) {
    let mut connection = pin!(connection);
    let mut evict = pin!(conn.evict.notified());
    let mut evict_seen = false;
    let mut timer = pin!(tokio::time::sleep(Duration::ZERO));
    let mut armed: Option<Instant> = None;
    poll_fn(|cx| {
        // Every phase change happens inside this poll (same task), so the
        // deadline computed below is always current.
        if let Poll::Ready(output) = connection.as_mut().poll(cx) {
            return Poll::Ready((Ended::Closed, Some(output)));
        }
        if !evict_seen && evict.as_mut().poll(cx).is_ready() {
            evict_seen = true;
        }
        if evict_seen && conn.phase() == EVICTED {
            return Poll::Ready((Ended::Evicted, None));
        }
        if let Some((deadline, why)) = conn.deadline(&timeouts) {
            if armed != Some(deadline) {
                timer.as_mut().reset(deadline);
                armed = Some(deadline);
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready((why, None));
            }
        }
        Poll::Pending
    })
    .await
}

/// The accept loop's table of open connections.
pub struct Tracker {
    shared: Arc<Shared>,
    table: Vec<Arc<Conn>>,
    cap: usize,
}

/// What [`Tracker::admit`] decided.
pub enum Admission {
    Admitted(TrackedStream, Arc<Conn>),
    /// Every connection is busy: the new one was closed.
    Refused,
}

impl Tracker {
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
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::Acquire)
    }

    /// Takes `stream` in if there is room or room can be made by evicting
    /// the connection idle the longest; else drops (closes) it. Waits at
    /// most [`EVICTION_WAIT`] for an evicted connection to close.
    pub async fn admit(&mut self, stream: Socket) -> Admission {
        let deadline = Instant::now() + EVICTION_WAIT;
        let mut victim: Option<Arc<Conn>> = None;
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
                .is_some_and(|v| v.phase() == EVICTED && !v.closed.load(Ordering::Acquire));
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

    fn register(&mut self, stream: Socket) -> Admission {
        // Closed entries are dropped in bulk: amortised O(1) per accept.
        if self.table.len() >= 2 * self.cap {
            self.table.retain(|c| !c.closed.load(Ordering::Acquire));
        }
        self.shared.open.fetch_add(1, Ordering::AcqRel);
        self.shared.gauge.inc();
        let now = self.shared.now_ms();
        let conn = Arc::new(Conn {
            shared: self.shared.clone(),
            phase: AtomicU8::new(IDLE),
            idle_since: AtomicU64::new(now),
            head_since: AtomicU64::new(now),
            closed: AtomicBool::new(false),
            evict: Notify::new(),
        });
        self.table.push(conn.clone());
        let stream = TrackedStream {
            stream,
            slot: Slot(conn.clone()),
        };
        Admission::Admitted(stream, conn)
    }

    /// Marks the connection idle the longest (no request in flight,
    /// including ones that never sent a complete request) as evicted and
    /// wakes its task. `None` if every connection is busy.
    fn evict_longest_idle(&mut self) -> Option<Arc<Conn>> {
        self.table.retain(|c| !c.closed.load(Ordering::Acquire));
        // A few tries: a candidate may start a request while we look.
        for _ in 0..3 {
            let candidate = self
                .table
                .iter()
                .filter(|c| c.evictable())
                .min_by_key(|c| c.idle_since.load(Ordering::Relaxed))?;
            if candidate.swap_phase(IDLE, EVICTED) || candidate.swap_phase(HEAD, EVICTED) {
                candidate.evict.notify_one();
                return Some(candidate.clone());
            }
        }
        None
    }
}

/// Gives the connection's slot back; dropped after the socket (field order
/// in [`TrackedStream`]), so a freed slot always means a closed socket.
struct Slot(Arc<Conn>);

impl Drop for Slot {
    fn drop(&mut self) {
        let shared = &self.0.shared;
        shared.open.fetch_sub(1, Ordering::AcqRel);
        shared.gauge.dec();
        self.0.closed.store(true, Ordering::Release);
        shared.freed.notify_one();
    }
}

/// The client socket, telling its [`Conn`] when hyper reads.
pub struct TrackedStream {
    // Declared first: closed before the slot is given back.
    stream: Socket,
    slot: Slot,
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        let got_bytes = buf.filled().len() > before;
        self.slot.0.on_read(got_bytes);
        result
    }
}

impl AsyncWrite for TrackedStream {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected loopback pair: (server side, client side).
    async fn pair(listener: &TcpListener) -> (Socket, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (Socket::Tcp(accepted.unwrap().0), client.unwrap())
    }

    fn admitted(admission: Admission) -> (TrackedStream, Arc<Conn>) {
        match admission {
            Admission::Admitted(stream, conn) => (stream, conn),
            Admission::Refused => panic!("refused"),
        }
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_is_evicted_and_busy_ones_are_kept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gauge = Gauge::default();
        let mut tracker = Tracker::new(2, gauge.clone());
        let (s1, _c1) = pair(&listener).await;
        let (first, first_conn) = admitted(tracker.admit(s1).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (s2, _c2) = pair(&listener).await;
        let (_second, second_conn) = admitted(tracker.admit(s2).await);
        assert_eq!((tracker.open(), gauge.get()), (2, 2));

        // The third waits for the oldest idle one to close; its task would
        // drop it on the eviction signal, here the test does.
        let (s3, _c3) = pair(&listener).await;
        let closer = {
            let first_conn = first_conn.clone();
            async move {
                first_conn.evict.notified().await;
                assert_eq!(first_conn.phase(), EVICTED);
                drop(first);
            }
        };
        let (admission, ()) = tokio::join!(tracker.admit(s3), closer);
        let (_third, third_conn) = admitted(admission);
        assert_eq!(tracker.open(), 2, "the cap holds");
        assert_eq!(second_conn.phase(), IDLE, "the newer idle one was kept");

        // Both busy: a fourth is refused, nobody is evicted.
        assert!(!second_conn.begin_request());
        assert!(!third_conn.begin_request());
        let (s4, _c4) = pair(&listener).await;
        assert!(matches!(tracker.admit(s4).await, Admission::Refused));
        assert_eq!((second_conn.phase(), third_conn.phase()), (BUSY, BUSY));
        assert_eq!((tracker.open(), gauge.get()), (2, 2));
    }

    #[tokio::test]
    async fn a_request_beginning_on_an_evicted_connection_is_answered_then_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut tracker = Tracker::new(1, Gauge::default());
        let (s1, _c1) = pair(&listener).await;
        let (_first, conn) = admitted(tracker.admit(s1).await);
        assert!(tracker.evict_longest_idle().is_some());
        assert!(conn.begin_request(), "told to close after answering");
        assert!(!conn.evictable());
        assert!(tracker.evict_longest_idle().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_and_header_deadlines_follow_the_phase() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut tracker = Tracker::new(4, Gauge::default());
        let (s1, _c1) = pair(&listener).await;
        let (_stream, conn) = admitted(tracker.admit(s1).await);
        let timeouts = Timeouts {
            idle: Duration::from_secs(10),
            header: Duration::from_secs(2),
        };
        let start = Instant::now();
        let (at, why) = conn.deadline(&timeouts).unwrap();
        assert_eq!(why, Ended::IdleTimeout);
        assert!(at >= start + Duration::from_secs(9) && at <= start + timeouts.idle);

        tokio::time::advance(Duration::from_secs(3)).await;
        conn.on_read(true);
        let (at, why) = conn.deadline(&timeouts).unwrap();
        assert_eq!(why, Ended::HeaderTimeout);
        assert!(at >= start + Duration::from_secs(5), "from the first byte");

        assert!(!conn.begin_request());
        assert!(conn.deadline(&timeouts).is_none(), "no timer while busy");
        tokio::time::advance(Duration::from_secs(30)).await;
        conn.end_request();
        let (at, why) = conn.deadline(&timeouts).unwrap();
        assert_eq!(why, Ended::IdleTimeout);
        assert!(
            at >= Instant::now() + Duration::from_secs(9),
            "from the answer"
        );
        conn.on_read(false);
        assert_eq!(conn.phase(), IDLE);
    }
}
