//! The gRPC API (SPEC §8): `realchat.auth.v1.AuthApi` from
//! `proto/auth_api.proto`, served by tonic beside the HTTP server, in the
//! same process and on the same [`Gate`].
//!
//! A thin adapter, like `http/`: each call parses its message, asks the
//! same rules (`users`, `session`) and maps their errors once, in
//! [`status`], to gRPC codes carrying the HTTP error code. So a pair minted
//! here refreshes over HTTP and back, and every limit, throttle and
//! timing rule holds on both.
//!
//! Beside it: `grpc.health.v1.Health`, reporting the service serving only
//! while the session store and the database answer, its watches bounded
//! ([`health`]), and server reflection, so `grpcurl` works without the
//! proto file.
//!
//! These are services only: the listener, its connection cap and timers,
//! the call timeout and the shutdown drain are `server`'s, as for HTTP.

mod auth_api;
mod health;
mod status;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthReporter;

use crate::service::Gate;

/// The messages and service traits generated from `proto/auth_api.proto`.
pub mod proto {
    tonic::include_proto!("realchat.auth.v1");

    /// The encoded descriptors, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("auth_api");
}

/// The largest message accepted, as over HTTP.
pub const MAX_MESSAGE_BYTES: usize = crate::service::MAX_REQUEST_BYTES;

/// How often health follows the store and the database.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// Every gRPC service in one router, and the reporter that
/// [`follow_health`] keeps current. `stopping` changes when the server
/// begins to shut down (open health watches end then).
pub fn routes(
    gate: &Arc<Gate>,
    stopping: watch::Receiver<()>,
) -> Result<(Routes, HealthReporter), tonic_reflection::server::Error> {
    let reporter = HealthReporter::new();
    let health = HealthServer::new(health::BoundedHealth::new(
        reporter.clone(),
        gate.grpc_settings(),
        stopping,
    ));
    let auth = proto::auth_api_server::AuthApiServer::new(auth_api::AuthService::new(gate.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    // Both reflection versions: grpcurl asks v1 first, many clients
    // (grpcio's included) still ask v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let routes = Routes::new(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(auth)
        .prepare();
    Ok((routes, reporter))
}

/// Sets `AuthApi` (and the whole server, `""`) serving while both the
/// session store and the database answer, not serving otherwise.
pub async fn follow_health(gate: Arc<Gate>, reporter: HealthReporter) {
    let service = <proto::auth_api_server::AuthApiServer<auth_api::AuthService> as tonic::server::NamedService>::NAME;
    let mut last = None;
    loop {
        let status = if gate.health().await.ready() {
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
