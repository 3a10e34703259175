//! HTTP/1.1 connections: one request at a time, so a connection moves
//! through phases, and `server.idle_timeout` and `server.header_read_timeout`
//! each run in their own.
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
//! The socket wrapper sees the first byte, the service marks a request
//! begun and answered, and [`supervise`] drives the connection and re-arms
//! one timer whenever the phase changes — all in the connection's own task.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use super::{Conn, Ended, Protocol, Timer, UNSTAMPED};

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

/// The per-connection timers.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub idle: Duration,
    pub header: Duration,
}

/// An HTTP/1.1 connection's phase.
#[derive(Default)]
pub struct Http {
    phase: AtomicU8,
    /// When the current request's first byte arrived: the header deadline.
    head_since: AtomicU64,
}

impl Http {
    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    fn swap_phase(&self, from: u8, to: u8) -> bool {
        self.phase
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl Protocol for Http {
    fn evictable(&self) -> bool {
        matches!(self.phase(), IDLE | HEAD)
    }

    fn try_evict(&self) -> bool {
        self.swap_phase(IDLE, EVICTED) || self.swap_phase(HEAD, EVICTED)
    }

    fn closing(&self) -> bool {
        self.phase() == EVICTED
    }

    /// hyper reads from the socket: the answer before has been written, and
    /// bytes of a new request start its header clock.
    fn on_read(conn: &Conn<Self>, got: usize) {
        let http = &conn.proto;
        let mut phase = http.phase();
        if phase == RESPONDING && http.swap_phase(RESPONDING, IDLE) {
            phase = IDLE;
        }
        if phase == IDLE && got > 0 {
            http.head_since.store(UNSTAMPED, Ordering::Relaxed);
            http.swap_phase(IDLE, HEAD);
        }
    }
}

impl Conn<Http> {
    /// A request's header block is complete. Returns true if the connection
    /// was evicted meanwhile: answer this request, then close.
    pub fn begin_request(&self) -> bool {
        self.proto.phase.swap(BUSY, Ordering::AcqRel) == EVICTED
    }

    /// The answer is ready; the connection counts as idle from now on.
    pub fn end_request(&self) {
        self.idle_since.store(UNSTAMPED, Ordering::Relaxed);
        self.proto.phase.store(RESPONDING, Ordering::Release);
    }

    /// When this connection is to be closed if nothing changes; `None` while
    /// a request is in flight (the body has its own deadline).
    fn deadline(&self, timeouts: &Timeouts) -> Option<(Instant, Ended)> {
        match self.proto.phase() {
            IDLE | RESPONDING => Some((
                self.deadline_from(&self.idle_since, timeouts.idle),
                Ended::IdleTimeout,
            )),
            HEAD => Some((
                self.deadline_from(&self.proto.head_since, timeouts.header),
                Ended::HeaderTimeout,
            )),
            _ => None,
        }
    }
}

/// Drives `connection` until it ends, is evicted, or a timer of its phase
/// runs out; dropping it then closes the socket.
pub async fn supervise<F: Future>(
    connection: F,
    conn: &Conn<Http>,
    timeouts: Timeouts,
) -> (Ended, Option<F::Output>) {
    let mut connection = pin!(connection);
    let mut evict = pin!(conn.wake.notified());
    let mut evict_seen = false;
    let mut timer = Timer {
        sleep: pin!(tokio::time::sleep(Duration::ZERO)),
        armed: None,
    };
    poll_fn(|cx| {
        // Every phase change happens inside this poll (same task), so the
        // deadline computed below is always current.
        if let Poll::Ready(output) = connection.as_mut().poll(cx) {
            return Poll::Ready((Ended::Closed, Some(output)));
        }
        if !evict_seen && evict.as_mut().poll(cx).is_ready() {
            evict_seen = true;
        }
        if evict_seen && conn.proto.closing() {
            return Poll::Ready((Ended::Evicted, None));
        }
        if let Some((deadline, why)) = conn.deadline(&timeouts)
            && timer.poll_at(deadline, cx).is_ready()
        {
            return Poll::Ready((why, None));
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::super::tests::{admitted, pair};
    use super::super::{Admission, Tracker};
    use super::*;
    use prometheus_client::metrics::gauge::Gauge;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_is_evicted_and_busy_ones_are_kept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gauge = Gauge::default();
        let mut tracker = Tracker::<Http>::new(2, gauge.clone());
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
                first_conn.wake.notified().await;
                assert_eq!(first_conn.proto.phase(), EVICTED);
                drop(first);
            }
        };
        let (admission, ()) = tokio::join!(tracker.admit(s3), closer);
        let (_third, third_conn) = admitted(admission);
        assert_eq!(tracker.open(), 2, "the cap holds");
        assert_eq!(
            second_conn.proto.phase(),
            IDLE,
            "the newer idle one was kept"
        );

        // Both busy: a fourth is refused, nobody is evicted.
        assert!(!second_conn.begin_request());
        assert!(!third_conn.begin_request());
        let (s4, _c4) = pair(&listener).await;
        assert!(matches!(tracker.admit(s4).await, Admission::Refused));
        assert_eq!(
            (second_conn.proto.phase(), third_conn.proto.phase()),
            (BUSY, BUSY)
        );
        assert_eq!((tracker.open(), gauge.get()), (2, 2));
    }

    #[tokio::test]
    async fn a_request_beginning_on_an_evicted_connection_is_answered_then_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut tracker = Tracker::<Http>::new(1, Gauge::default());
        let (s1, _c1) = pair(&listener).await;
        let (_first, conn) = admitted(tracker.admit(s1).await);
        assert!(tracker.evict_longest_idle().is_some());
        assert!(conn.begin_request(), "told to close after answering");
        assert!(!conn.proto.evictable());
        assert!(tracker.evict_longest_idle().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_and_header_deadlines_follow_the_phase() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut tracker = Tracker::<Http>::new(4, Gauge::default());
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
        Http::on_read(&conn, 1);
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
        Http::on_read(&conn, 0);
        assert_eq!(conn.proto.phase(), IDLE);
    }
}
