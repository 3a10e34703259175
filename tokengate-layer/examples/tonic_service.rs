//! A tonic gRPC service protected by tokengate-layer. The served service is
//! tonic-health's `grpc.health.v1.Health` (no proto to build); any tonic
//! service is protected the same way, by the layer on the server.
//!
//! Every call needs a valid token (`authorization: Bearer …` metadata, an
//! access token or an API token). The layer answers a gRPC caller
//! (`content-type: application/grpc`) with gRPC statuses, not HTTP errors:
//!
//! - no token, a bad one, or one whose **session has ended** (logout, the
//!   revocation feed): `UNAUTHENTICATED` (16);
//! - a missing scope (with `require_scopes`): `PERMISSION_DENIED` (7);
//! - keys or the feed unavailable: `UNAVAILABLE` (14).
//!
//! Configuration (environment), as in the `axum_service` example:
//! `LISTEN` (default `127.0.0.1:50051`), `TOKENGATE_URL` (default
//! `http://127.0.0.1:8080`), `TOKENGATE_ADMIN_URL` (default
//! `http://127.0.0.1:9090`), `TOKENGATE_SECRET` (HS256; unset: the JWKS),
//! `TOKENGATE_WATCH_TOKEN` (required; an API token with `sessions:watch`).
//!
//! ## Against the native cluster (`scripts/cluster`)
//!
//! ```sh
//! # 1-3. As in examples/axum_service.rs: `scripts/cluster up --dir /tmp/tg`,
//! #      `. /tmp/tg/cluster.env`, TOKENGATE_WATCH_TOKEN from
//! #      `tokengate token create orders-service --scopes sessions:watch`, then:
//! export TOKENGATE_URL="$TG_URL"
//! export TOKENGATE_ADMIN_URL="http://127.0.0.1:${TG_REPLICA_ADMIN_PORTS%% *}"
//! export TOKENGATE_SECRET="$TG_SECRET"
//! cargo run -p tokengate-layer --example tonic_service
//!
//! # 4. In another shell:
//! ACCESS=$(curl -s "$TG_URL"/login -H 'Content-Type: application/json' -d '{"user_id": 42}' | jq -r .access)
//! grpcurl -H "authorization: Bearer $ACCESS" -plaintext 127.0.0.1:50051 grpc.health.v1.Health/Check
//! #   { "status": "SERVING" }
//! grpcurl -plaintext 127.0.0.1:50051 grpc.health.v1.Health/Check
//! #   ERROR: Code: Unauthenticated  Message: no access token given
//!
//! # 5. End the session; the same token now yields UNAUTHENTICATED at once:
//! curl -s -X POST "$TG_URL"/logout -H "Authorization: Bearer $ACCESS"
//! grpcurl -H "authorization: Bearer $ACCESS" -plaintext 127.0.0.1:50051 grpc.health.v1.Health/Check
//! #   ERROR: Code: Unauthenticated  Message: the session has ended
//! ```
//!
//! The server has no reflection service, so grpcurl needs the health proto
//! if it says it cannot find `grpc.health.v1.Health`: add
//! `-import-path ~/.cargo/registry/src/*/tonic-health-0.14.*/proto -proto health.proto`
//! (tonic-health ships it) to each call.

mod common;

use std::process::ExitCode;

use common::{BoxError, Tokengate, listen_addr};

#[tokio::main]
async fn main() -> ExitCode {
    common::exit("tonic_service", run().await)
}

async fn run() -> Result<(), BoxError> {
    let addr = listen_addr("127.0.0.1:50051")?;
    let tokengate = Tokengate::from_env().await?;

    // The overall server ("") answers SERVING; the reporter could set
    // named services' statuses (kept until the server stops).
    let (_reporter, health) = tonic_health::server::health_reporter();

    eprintln!("gRPC on {addr} (grpc.health.v1.Health, every call needs a token)");
    tonic::transport::Server::builder()
        .layer(tokengate.layer())
        .add_service(health)
        .serve(addr)
        .await?;
    Ok(())
}
