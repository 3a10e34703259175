//! The accept loops: one task per connection, HTTP/1.1 with keep-alive here,
//! HTTP/2 for gRPC in [`grpc`], and a graceful drain of both on shutdown. No
//! HTTP semantics here — see [`crate::http`] (and [`crate::grpc`]).
//!
//! [`serve`] takes already-bound listeners and any shutdown future, so
//! production (SIGTERM) and tests (port 0, a oneshot) run the same path.
//!
//! Slow and greedy clients are bounded here, each by the cheapest tool:
//! - at most `server.max_connections` open sockets; at the cap a newcomer
//!   evicts the connection idle the longest, or is closed if all are busy
//!   ([`connections`]), so idle floods cannot lock honest clients out and
//!   descriptors never run out ([`fd_limit`] checks the budget at start-up);
//! - `server.idle_timeout` between requests and `server.header_read_timeout`
//!   from a request's first byte to its complete headers ([`connections`]:
//!   hyper's own header timer covers both as one, and stays as a backstop);
//! - `server.body_read_timeout` once the headers are in
//!   ([`crate::http::BodyDeadline`]: hyper
//!   has no body timer), answered `408`;
//! - on the gRPC port, a cap of its own in the same descriptor budget, and a
//!   handshake and an idle timer ([`grpc`]), so neither listener can starve
//!   the other.

mod connections;
pub mod fd_limit;
mod grpc;
mod socket;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use http::header::CONNECTION;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream, UnixListener};

use crate::config::{GrpcSettings, ServerSettings};
use crate::http::BodyDeadline;
use crate::http::Listener;
use crate::proxies::Peer;
use crate::service::Gate;
use connections::http::{self as conns, Http, Timeouts};
use connections::{Admission, Ended, Tracker};
pub use fd_limit::{FdLimit, FdLimitError};
use socket::Socket;

/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The connection caps that share the descriptor budget (see [`fd_limit`]):
/// `server.max_connections`, plus `grpc.max_connections` while gRPC is on.
pub fn fd_budget(server: &ServerSettings, grpc: &GrpcSettings) -> Vec<fd_limit::Cap> {
    let mut caps = vec![("server.max_connections", server.max_connections)];
    if grpc.port != 0 {
        caps.push(("grpc.max_connections", grpc.max_connections));
    }
    caps
}

/// Where the service listens: HTTP on TCP, and beside it on a Unix socket
/// (`server.unix_socket`), the operators' HTTP (`admin.listen`) and gRPC on
/// TCP when given.
pub struct Listeners {
    pub http: TcpListener,
    pub unix: Option<UnixListener>,
    pub admin: Option<TcpListener>,
    pub grpc: Option<TcpListener>,
}

/// Serves HTTP on every listener of `listeners`, and gRPC beside them,
/// until `shutdown` resolves; then stops accepting and waits up to `drain`
/// for in-flight requests and calls to finish (idle keep-alive connections
/// are closed at once; busy ones after their current response).
///
/// Connections on the admin listener and over the Unix socket count against
/// the same `server.max_connections`, with the same timeouts; each request
/// is answered as its listener serves it ([`crate::http::Listener`]). Unix
/// socket peers are, for throttling and `server.trusted_proxies`, 127.0.0.1
/// (the only peers a socket file can have are on this host).
pub async fn serve(
    listeners: Listeners,
    gate: Arc<Gate>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let Listeners {
        http: listener,
        unix,
        admin,
        grpc,
    } = listeners;
    let settings = gate.server_settings().clone();
    let background = {
        let gate = gate.clone();
        tokio::spawn(async move { gate.run_background().await })
    };
    let _background = AbortOnDrop(background);
    let (stop_grpc, grpc_stopped) = tokio::sync::watch::channel(());
    let grpc = grpc.map(|listener| tokio::spawn(grpc::serve(listener, gate.clone(), grpc_stopped)));
    let timeouts = Timeouts {
        idle: settings.idle_timeout,
        header: settings.header_read_timeout,
    };
    let body_timeout = settings.body_read_timeout;
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    // hyper's timer runs from idle to complete headers: the sum of ours.
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.idle + timeouts.header)
        .keep_alive(true);
    let mut tracker =
        Tracker::<Http>::new(settings.max_connections, gate.metrics().open_connections());
    tokio::pin!(shutdown);

    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted.map(|(stream, peer)| tcp(stream, peer, Listener::Public)),
            accepted = accept_tcp(admin.as_ref()) => accepted.map(|(stream, peer)| tcp(stream, peer, Listener::Admin)),
            accepted = accept_unix(unix.as_ref()) => accepted,
        };
        let (stream, peer, via) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Matched explicitly: a disabled select arm would stop
                // accepting for good after the first error.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if tracker.warn_at_cap() {
            tracing::warn!(
                max_connections = settings.max_connections,
                "server.max_connections reached: evicting idle connections, refusing when all are busy"
            );
        }
        let (stream, conn) = match tracker.admit(stream).await {
            Admission::Admitted(stream, conn) => (stream, conn),
            Admission::Refused => {
                tracing::debug!("connection refused: every connection is busy");
                continue;
            }
        };
        let service = {
            let (gate, conn) = (gate.clone(), conn.clone());
            service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                // Where the request comes from, for throttling (see `proxies`).
                request.extensions_mut().insert(Peer(peer));
                let (gate, conn) = (gate.clone(), conn.clone());
                async move {
                    let close_after = conn.begin_request();
                    let request = request.map(|body| BodyDeadline::new(body, body_timeout));
                    let response = crate::http::handle(&gate, via, request).await;
                    // The revocation feed keeps the connection busy while it streams.
                    let busy = conn.clone();
                    let mut response =
                        crate::http::into_stream(gate, response, move || busy.end_request());
                    if close_after {
                        // Evicted while this request was arriving: answer it, then close.
                        response
                            .headers_mut()
                            .insert(CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            })
        };
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            match conns::supervise(connection, &conn, timeouts).await {
                (Ended::Closed, Some(Err(e))) => {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                (Ended::Closed, _) => {}
                (why, _) => tracing::debug!(?why, "connection closed by the server"),
            }
        });
    }

    drop(listener);
    drop(unix);
    drop(admin);
    gate.close_session_feed();
    tracing::info!("shutting down: no longer accepting, draining in-flight requests");
    let _ = stop_grpc.send(());
    let grpc_drained = async {
        if let Some(grpc) = grpc
            && let Err(e) = grpc.await
        {
            tracing::error!(error = %e, "gRPC server task failed");
        }
    };
    let drained = async { tokio::join!(graceful.shutdown(), grpc_drained) };
    if tokio::time::timeout(drain, drained).await.is_err() {
        tracing::warn!(?drain, "drain timed out; exiting with requests in flight");
    }
}

/// Listens on a Unix socket at `path`, readable and writable by its owner
/// and group (0660: put nginx in the group). A socket file left by an
/// earlier run is replaced; one that a live process still listens on, or
/// any other file there, is an error.
pub fn bind_unix(path: &std::path::Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another process listens on it",
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// A TCP connection, tagged with the listener it came in on.
fn tcp(stream: TcpStream, peer: SocketAddr, via: Listener) -> (Socket, SocketAddr, Listener) {
    // Small responses; don't let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    (Socket::Tcp(stream), peer, via)
}

/// The next connection on an optional TCP listener, if there is one; else never.
async fn accept_tcp(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// The next connection on the Unix socket, if there is one; else never. It
/// serves the public routes, as nginx's upstream.
async fn accept_unix(
    unix: Option<&UnixListener>,
) -> std::io::Result<(Socket, SocketAddr, Listener)> {
    let Some(unix) = unix else {
        return std::future::pending().await;
    };
    let (stream, _) = unix.accept().await?;
    let local = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
    Ok((Socket::Unix(stream), local, Listener::Public))
}

/// Ends the gate's background tasks with the server.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
