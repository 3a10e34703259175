//! The gRPC API (SPEC §8): `realchat.auth.v1.AuthApi` from
//! `proto/auth_api.proto`, served by tonic beside the HTTP server, in the
//! same process and on the same [`App`].
//!
//! A thin adapter, like `http/`: each call parses its message, asks the
//! same rules (`users`, `session`) and maps their errors once, in
//! [`status`], to gRPC codes carrying the HTTP error code. So a pair minted
//! here refreshes over HTTP and back, and every limit, throttle and
//! timing rule holds on both.
//!
//! Beside it: `grpc.health.v1.Health`, reporting the service serving only
//! while the session store and the database answer, and server reflection,
//! so `grpcurl` works without the proto file.

mod auth_api;
mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::app::App;
use crate::db::DurableStore;
use crate::store::SessionStore;

/// The messages and service traits generated from `proto/auth_api.proto`.
pub mod proto {
    tonic::include_proto!("realchat.auth.v1");

    /// The encoded descriptors, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("auth_api");
}

/// The largest message accepted, as the HTTP body limit: no call needs more.
pub const MAX_MESSAGE_BYTES: usize = crate::http::error::BODY_LIMIT;

/// The longest a call may take; then `CANCELLED` for the caller.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Calls one connection may have open at once (HTTP/2 streams).
const MAX_STREAMS_PER_CONNECTION: u32 = 128;

/// How often health follows the store and the database.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// Serves gRPC on `listener` until `shutdown` resolves, then lets calls in
/// flight finish (the caller bounds how long, as for HTTP).
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let auth = proto::auth_api_server::AuthApiServer::new(auth_api::AuthService::new(app.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    // Both reflection versions: grpcurl asks v1 first, many clients
    // (grpcio's included) still ask v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) =
        match (reflection().build_v1(), reflection().build_v1alpha()) {
            (Ok(v1), Ok(v1alpha)) => (v1, v1alpha),
            (Err(e), _) | (_, Err(e)) => {
                // The descriptors are compiled in: only a build defect gets here.
                tracing::error!(error = %e, "gRPC reflection descriptors are invalid; gRPC is off");
                return Ok(());
            }
        };
    let watch = tokio::spawn(follow_health(app, reporter));
    let result = Server::builder()
        .timeout(CALL_TIMEOUT)
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        // Dead peers are noticed and their connections closed.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(auth)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    watch.abort();
    result
}

/// Sets `AuthApi` (and the whole server, `""`) serving while both the
/// session store and the database answer, not serving otherwise.
async fn follow_health(app: Arc<App>, reporter: tonic_health::server::HealthReporter) {
    let service = <proto::auth_api_server::AuthApiServer<auth_api::AuthService> as tonic::server::NamedService>::NAME;
    let mut last = None;
    loop {
        let (store, database) = tokio::join!(app.sessions.store().ping(), app.database.ping());
        let status = if store.is_ok() && database.is_ok() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if last != Some(status) {
            reporter.set_service_status(service, status).await;
            reporter.set_service_status("", status).await;
            last = Some(status);
        }
        tokio::time::sleep(HEALTH_INTERVAL).await;
    }
}
