//! The accept loop: one task per connection, HTTP/1.1 with keep-alive, and a
//! graceful drain on shutdown. No HTTP semantics here — see [`crate::http`].
//!
//! [`run`] takes an already-bound listener and any shutdown future, so
//! production (SIGTERM) and tests (port 0, a oneshot) run the same path.

pub mod fd_limit;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::app::App;
pub use fd_limit::{FdLimit, FdLimitError};

/// A client that sends no complete header block within this is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Makes room for `server.max_connections` under the open-file limit
/// (raising the soft limit if allowed); an error names the key.
pub fn ensure_fd_limit(max_connections: usize) -> Result<FdLimit, FdLimitError> {
    fd_limit::ensure(max_connections)
}

/// Serves until `shutdown` resolves, then stops accepting and waits up to
/// `drain` for in-flight requests to finish (idle keep-alive connections are
/// closed at once; busy ones after their current response).
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    tokio::pin!(shutdown);

    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Matched explicitly: a disabled select arm would stop
                    // accepting for good after the first error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Small responses; don't let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, std::convert::Infallible>(crate::http::handle(&app, request).await) }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::info!("shutting down: no longer accepting, draining in-flight requests");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(?drain, "drain timed out; exiting with requests in flight");
    }
}
