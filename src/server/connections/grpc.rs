//! HTTP/2 (gRPC) connections: calls are multiplexed, so a connection is
//! idle while no call is in flight, however many bytes (pings, settings)
//! pass. Its timers:
//! - `grpc.handshake_timeout` from accept to the end of the client preface
//!   (the 24 bytes every HTTP/2 client sends first; hyper rejects any other
//!   content), so a socket that never speaks HTTP/2 is closed;
//! - `grpc.idle_timeout` with no call in flight: hyper's graceful shutdown
//!   (GOAWAY), so a client never loses a call to it, then closed after
//!   [`CLOSE_GRACE`] if the peer lingers;
//! - none while a call is in flight (the call timeout and the Watch
//!   lifetime bound those).
//!
//! Calls run in tasks of their own (one per HTTP/2 stream), but each
//! begins inside the connection's poll — hyper calls the service there —
//! so the supervisor, which polls the connection, sees every call begin
//! before it decides anything. Calls end in their own tasks and wake it.
//!
//! One atomic word holds the call count and the flags, so eviction (only
//! with no call in flight) and a call beginning cannot both win: a call
//! that begins on a just-evicted connection is answered, then the
//! connection closes gracefully.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::task::Poll;
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Conn, Ended, Protocol, Timer, UNSTAMPED};

/// Chosen by the accept loop to make room.
const EVICTED: u32 = 1 << 31;
/// The client preface is not complete yet.
const HANDSHAKE: u32 = 1 << 30;
/// The calls in flight.
const CALLS: u32 = HANDSHAKE - 1;

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const PREFACE_LEN: u8 = 24;

/// How long a connection shut down gracefully may take to say goodbye
/// (GOAWAY, and the ping hyper sends with it) once no call is in flight,
/// before it is dropped: a peer that never answers holds nothing up.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The per-connection timers.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub handshake: Duration,
    pub idle: Duration,
}

/// A gRPC connection's calls in flight and flags.
pub struct Grpc {
    state: AtomicU32,
    /// Preface bytes read so far (the connection's own task only).
    preface: AtomicU8,
}

impl Default for Grpc {
    fn default() -> Self {
        Self {
            state: AtomicU32::new(HANDSHAKE),
            preface: AtomicU8::new(0),
        }
    }
}

impl Grpc {
    fn state(&self) -> u32 {
        self.state.load(Ordering::Acquire)
    }
}

impl Protocol for Grpc {
    fn evictable(&self) -> bool {
        let state = self.state();
        state & (EVICTED | CALLS) == 0
    }

    fn try_evict(&self) -> bool {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (state & (EVICTED | CALLS) == 0).then_some(state | EVICTED)
            })
            .is_ok()
    }

    fn closing(&self) -> bool {
        let state = self.state();
        state & EVICTED != 0 && state & CALLS == 0
    }

    fn on_read(conn: &Conn<Self>, got: usize) {
        let grpc = &conn.proto;
        if got == 0 || grpc.state() & HANDSHAKE == 0 {
            return;
        }
        let got = u8::try_from(got).unwrap_or(PREFACE_LEN);
        let read = grpc.preface.load(Ordering::Relaxed).saturating_add(got);
        grpc.preface.store(read, Ordering::Relaxed);
        if read >= PREFACE_LEN {
            // The idle clock starts now, not at accept.
            conn.idle_since.store(UNSTAMPED, Ordering::Relaxed);
            grpc.state.fetch_and(!HANDSHAKE, Ordering::AcqRel);
        }
    }
}

impl Conn<Grpc> {
    /// A call is in flight until the returned guard is dropped (with the
    /// call's response body). Call it where hyper calls the service.
    pub fn begin_call(self: &Arc<Self>) -> Call {
        self.proto.state.fetch_add(1, Ordering::AcqRel);
        Call(self.clone())
    }

    /// When this connection is to be closed if nothing changes; `None`
    /// while a call is in flight.
    fn deadline(&self, timeouts: &Timeouts) -> Option<(Instant, Ended)> {
        let state = self.proto.state();
        if state & CALLS != 0 {
            None
        } else if state & HANDSHAKE != 0 {
            // idle_since is still the accept time.
            Some((
                self.deadline_from(&self.idle_since, timeouts.handshake),
                Ended::HandshakeTimeout,
            ))
        } else {
            Some((
                self.deadline_from(&self.idle_since, timeouts.idle),
                Ended::IdleTimeout,
            ))
        }
    }
}

/// One call in flight on a connection.
pub struct Call(Arc<Conn<Grpc>>);

impl Drop for Call {
    fn drop(&mut self) {
        let conn = &self.0;
        // Before the count drops: a supervisor that sees no call in flight
        // never reads an idle time from before this call.
        conn.idle_since.store(UNSTAMPED, Ordering::Relaxed);
        if conn.proto.state.fetch_sub(1, Ordering::AcqRel) & CALLS == 1 {
            conn.wake.notify_one();
        }
    }
}

/// Drives `connection` until it ends: closed by the peer or hyper, dropped
/// at its handshake deadline or when evicted with no call in flight, or
/// shut down gracefully — GOAWAY; calls in flight finish, then at most
/// [`CLOSE_GRACE`] for the goodbye — when idle for too long, evicted while
/// a call began, or when `stop` changes (the server is shutting down).
pub async fn supervise<C: GracefulConnection>(
    connection: C,
    conn: &Conn<Grpc>,
    timeouts: Timeouts,
    mut stop: watch::Receiver<()>,
) -> (Ended, Option<C::Output>) {
    let mut connection = pin!(connection);
    let mut wake = pin!(conn.wake.notified());
    let mut stopping = pin!(stop.changed());
    let mut timer = Timer {
        sleep: pin!(tokio::time::sleep(Duration::ZERO)),
        armed: None,
    };
    // Why a graceful shutdown was started, and when its grace runs out.
    let mut closing: Option<(Ended, Instant)> = None;
    poll_fn(|cx| {
        loop {
            if let Poll::Ready(output) = connection.as_mut().poll(cx) {
                let why = closing.map_or(Ended::Closed, |(why, _)| why);
                return Poll::Ready((why, Some(output)));
            }
            while wake.as_mut().poll(cx).is_ready() {
                wake.set(conn.wake.notified());
            }
            let state = conn.proto.state();
            let busy = state & CALLS != 0;
            let why = match closing {
                _ if state & EVICTED != 0 && !busy => return Poll::Ready((Ended::Evicted, None)),
                Some((why, grace)) => {
                    if !busy && timer.poll_at(grace, cx).is_ready() {
                        return Poll::Ready((why, None));
                    }
                    return Poll::Pending;
                }
                None if stopping.as_mut().poll(cx).is_ready() => Ended::Closed,
                None if state & EVICTED != 0 => Ended::Evicted,
                None => match conn.deadline(&timeouts) {
                    Some((deadline, why)) if timer.poll_at(deadline, cx).is_ready() => {
                        if why == Ended::HandshakeTimeout {
                            return Poll::Ready((why, None));
                        }
                        why
                    }
                    _ => return Poll::Pending,
                },
            };
            // Polled again at once: the connection writes its GOAWAY.
            connection.as_mut().graceful_shutdown();
            closing = Some((why, Instant::now() + CLOSE_GRACE));
        }
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
    async fn a_connection_with_a_call_in_flight_is_never_evicted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut tracker = Tracker::<Grpc>::new(1, Gauge::default());
        let (s1, _c1) = pair(&listener).await;
        let (_first, conn) = admitted(tracker.admit(s1).await);
        let call = conn.begin_call();
        assert!(!conn.proto.evictable());
        let (s2, _c2) = pair(&listener).await;
        assert!(matches!(tracker.admit(s2).await, Admission::Refused));
        assert_eq!(conn.proto.state() & CALLS, 1);

        drop(call);
        assert!(conn.proto.evictable(), "idle again once the call ended");
        assert!(tracker.evict_longest_idle().is_some());
        assert!(conn.proto.closing());
        // A call that begins now is answered; the connection then closes.
        let late = conn.begin_call();
        assert!(!conn.proto.closing() && !conn.proto.evictable());
        drop(late);
        assert!(conn.proto.closing());
    }

    #[tokio::test(start_paused = true)]
    async fn handshake_then_idle_deadlines_and_none_while_a_call_is_in_flight() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut tracker = Tracker::<Grpc>::new(4, Gauge::default());
        let (s1, _c1) = pair(&listener).await;
        let (_stream, conn) = admitted(tracker.admit(s1).await);
        let timeouts = Timeouts {
            handshake: Duration::from_secs(2),
            idle: Duration::from_secs(60),
        };
        let start = Instant::now();
        let (at, why) = conn.deadline(&timeouts).unwrap();
        assert_eq!(why, Ended::HandshakeTimeout);
        assert!(at <= start + timeouts.handshake);

        // A partial preface is still the handshake.
        tokio::time::advance(Duration::from_secs(1)).await;
        Grpc::on_read(&conn, 10);
        assert_eq!(conn.deadline(&timeouts).unwrap().1, Ended::HandshakeTimeout);
        Grpc::on_read(&conn, 14 + 9);
        let (at, why) = conn.deadline(&timeouts).unwrap();
        assert_eq!(why, Ended::IdleTimeout);
        assert!(at >= start + Duration::from_secs(61), "from the preface");

        let call = conn.begin_call();
        let other = conn.begin_call();
        assert!(conn.deadline(&timeouts).is_none(), "no timer while busy");
        tokio::time::advance(Duration::from_secs(120)).await;
        drop(call);
        assert!(
            conn.deadline(&timeouts).is_none(),
            "one call still in flight"
        );
        drop(other);
        let (at, why) = conn.deadline(&timeouts).unwrap();
        assert_eq!(why, Ended::IdleTimeout);
        assert!(
            at >= Instant::now() + Duration::from_secs(59),
            "from the last call"
        );
    }
}
