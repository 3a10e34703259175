//! The gRPC listener (SPEC §8, §11): our own accept loop over the gRPC
//! services ([`crate::grpc::routes`]), so that its connections have what
//! HTTP's have — a cap of their own in the descriptor budget
//! (`grpc.max_connections`, the longest-idle evicted at the cap, see
//! [`super::connections`]), a handshake and an idle timer — and a flood of
//! idle sockets on the gRPC port never takes the descriptors
//! `/authenticate` needs.
//!
//! Why not tonic's `serve_with_incoming_shutdown` over a wrapped incoming
//! stream: tonic owns each connection's task, so evicting a connection or
//! closing it on a timer could only be done by failing its socket under
//! hyper (no GOAWAY: a call racing it is lost), and whether a call is in
//! flight cannot be seen from the stream. Serving each connection with
//! hyper's HTTP/2 server ourselves, as tonic does inside, gives us the
//! socket, the service (a call is counted where hyper calls it) and the
//! connection (GOAWAY when idle). What tonic's transport set up is kept:
//! HTTP/2 only, 128 streams per connection, keep-alive pings, TCP_NODELAY,
//! the peer address behind `Request::remote_addr`, the 30 s call timeout
//! answered `CANCELLED`. A client's own `grpc-timeout` is left to the
//! client: when it expires the client resets the stream, and hyper drops
//! the call. Measured (benches/README.md, release build, three runs each):
//! AuthApi/Refresh costs the replica 35 µs of CPU per call, 34 µs on
//! tonic's server (within the run-to-run spread); `/ping`'s CPU per
//! request is the same while 10,000 idle connections sit on the gRPC port.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::Status;
use tonic::codegen::Service;
use tonic::service::Routes;
use tonic::transport::server::TcpConnectInfo;

use super::connections::grpc::{self as conns, Call, Grpc, Timeouts};
use super::connections::{Admission, Conn, Ended, Tracker};
use super::socket::Socket;
use super::{ACCEPT_BACKOFF, AbortOnDrop};
use crate::service::Gate;

/// The longest a call may take to answer; then `CANCELLED` for the caller.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Calls one connection may have open at once (HTTP/2 streams).
const MAX_STREAMS_PER_CONNECTION: u32 = 128;

/// Dead peers are noticed and their connections closed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves gRPC on `listener` until `stop` changes; then stops accepting,
/// shuts every connection down gracefully (calls in flight finish, health
/// watches end) and returns once all are closed (the caller bounds how
/// long, as for HTTP).
pub(super) async fn serve(listener: TcpListener, gate: Arc<Gate>, stop: watch::Receiver<()>) {
    let (routes, reporter) = match crate::grpc::routes(&gate, stop.clone()) {
        Ok(built) => built,
        Err(e) => {
            // The descriptors are compiled in: only a build defect gets here.
            tracing::error!(error = %e, "gRPC reflection descriptors are invalid; gRPC is off");
            return;
        }
    };
    let _health = AbortOnDrop(tokio::spawn(crate::grpc::follow_health(
        gate.clone(),
        reporter,
    )));
    let settings = gate.grpc_settings();
    let timeouts = Timeouts {
        handshake: settings.handshake_timeout,
        idle: settings.idle_timeout,
    };
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    let mut tracker = Tracker::<Grpc>::new(
        settings.max_connections,
        gate.metrics().grpc_open_connections(),
    );
    let local_addr = listener.local_addr().ok();
    let mut stopped = stop.clone();

    loop {
        let (stream, peer) = tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Matched explicitly, as for HTTP: keep accepting.
                    tracing::warn!(error = %e, "gRPC accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        if tracker.warn_at_cap() {
            tracing::warn!(
                max_connections = settings.max_connections,
                "grpc.max_connections reached: evicting idle gRPC connections, refusing when all have calls in flight"
            );
        }
        let (stream, conn) = match tracker.admit(Socket::Tcp(stream)).await {
            Admission::Admitted(stream, conn) => (stream, conn),
            Admission::Refused => {
                tracing::debug!("gRPC connection refused: every connection has a call in flight");
                continue;
            }
        };
        let calls = Calls {
            routes: routes.clone(),
            conn: conn.clone(),
            peer: TcpConnectInfo {
                local_addr,
                remote_addr: Some(peer),
            },
        };
        let connection = http2.serve_connection(TokioIo::new(stream), calls);
        let stop = stop.clone();
        tokio::spawn(async move {
            match conns::supervise(connection, &conn, timeouts, stop).await {
                (Ended::Closed, Some(Err(e))) => {
                    tracing::debug!(error = %e, "gRPC connection ended with an error");
                }
                (Ended::Closed, _) => {}
                (why, _) => tracing::debug!(?why, "gRPC connection closed by the server"),
            }
        });
    }

    drop(listener);
    tracker.drained().await;
}

/// One connection's service: every call counted in flight on its [`Conn`]
/// until its response body is sent (or dropped), answered by the routes.
#[derive(Clone)]
struct Calls {
    routes: Routes,
    conn: Arc<Conn<Grpc>>,
    /// What tonic's `Request::remote_addr` reads.
    peer: TcpConnectInfo,
}

type CallFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<InFlight>, Infallible>> + Send>>;

impl hyper::service::Service<http::Request<Incoming>> for Calls {
    type Response = http::Response<InFlight>;
    type Error = Infallible;
    type Future = CallFuture;

    fn call(&self, mut request: http::Request<Incoming>) -> CallFuture {
        // Here, in the connection's poll, not in the future: the supervisor
        // must see the call before it next decides (connections::grpc).
        let call = self.conn.begin_call();
        request.extensions_mut().insert(self.peer.clone());
        let mut routes = self.routes.clone();
        Box::pin(async move {
            let answer = async {
                poll_fn(|cx| Service::<http::Request<Incoming>>::poll_ready(&mut routes, cx))
                    .await?;
                routes.call(request).await
            };
            let response = match tokio::time::timeout(CALL_TIMEOUT, answer).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                // As tonic's own timeout answers.
                Err(_) => Status::cancelled("Timeout expired").into_http(),
            };
            Ok(response.map(|body| InFlight { body, _call: call }))
        })
    }
}

/// A response body that keeps its call in flight until it is sent or dropped.
struct InFlight {
    body: tonic::body::Body,
    _call: Call,
}

impl Body for InFlight {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
