//! Serving: the listeners bound, the service run until a signal, drained.

use std::sync::Arc;

use crate::config::Settings;
use crate::server;

/// Runs the service until SIGTERM or SIGINT, then drains. `settings` is
/// resolved and checked whole ([`Settings::load`]); the caller has started
/// logging ([`crate::telemetry::init`]).
pub async fn run(settings: Settings) -> Result<(), String> {
    let caps = server::fd_budget(&settings.server, &settings.grpc);
    let limit = server::fd_limit::ensure(&caps).map_err(|e| e.to_string())?;
    if let server::FdLimit::Raised { from, to } = limit {
        let keys = server::fd_limit::keys(&caps);
        tracing::info!(from, to, "raised the open-file limit for {keys}");
    }
    let app = crate::app::build(&settings).map_err(|e| e.to_string())?;
    app.migrate()
        .await
        .map_err(|e| format!("database.url: cannot apply migrations: {e}"))?;
    app.load_clients().await.map_err(|e| e.to_string())?;
    let address = (settings.server.host.as_str(), settings.server.port);
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        format!(
            "server.host/server.port: cannot listen on {}:{}: {e}",
            address.0, address.1
        )
    })?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let admin = match settings.admin.listen_addr() {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|e| format!("admin.listen: cannot listen on {address}: {e}"))?,
        ),
        None => None,
    };
    let admin_address = admin.as_ref().and_then(|l| l.local_addr().ok());
    let grpc = match settings.grpc.port {
        0 => None,
        port => {
            let address = (settings.server.host.as_str(), port);
            Some(tokio::net::TcpListener::bind(address).await.map_err(|e| {
                format!(
                    "server.host/grpc.port: cannot listen on {}:{}: {e}",
                    address.0, address.1
                )
            })?)
        }
    };
    let grpc_address = grpc.as_ref().and_then(|l| l.local_addr().ok());
    let unix = match &settings.server.unix_socket {
        Some(path) => Some(server::bind_unix(path).map_err(|e| {
            format!(
                "server.unix_socket: cannot listen on {}: {e}",
                path.display()
            )
        })?),
        None => None,
    };
    tracing::info!(address = %local, admin = ?admin_address, grpc = ?grpc_address, unix_socket = ?settings.server.unix_socket,
        store = app.describe_stores().0, database = app.describe_stores().1, "tokengate listening");
    let listeners = server::Listeners {
        http: listener,
        unix,
        admin,
        grpc,
    };
    let signalled = Arc::new(std::sync::OnceLock::new());
    let shutdown = {
        let signalled = signalled.clone();
        async move {
            shutdown_signal().await;
            let _ = signalled.set(tokio::time::Instant::now());
        }
    };
    server::serve(
        listeners,
        Arc::new(app),
        shutdown,
        settings.server.shutdown_timeout,
    )
    .await;
    if let Some(&at) = signalled.get() {
        let until = at + settings.server.shutdown_linger;
        if until > tokio::time::Instant::now() {
            tracing::info!(linger = ?settings.server.shutdown_linger, "drained; refusing connections until server.shutdown_linger has passed");
            tokio::time::sleep_until(until).await;
        }
    }
    if let Some(path) = &settings.server.unix_socket {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM (orchestrators) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
