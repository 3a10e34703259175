//! `grpc.health.v1.Health` with bounded watches (SPEC §11). `Check` is
//! tonic-health's. `Watch` is a stream that may otherwise stay open for
//! ever, holding a connection busy (so never idle, never evicted): here at
//! most `grpc.max_health_watches` are open at once per replica (beyond,
//! `RESOURCE_EXHAUSTED`; 0 = Watch off, `UNIMPLEMENTED`), each ends with
//! `OK` after `grpc.health_watch_lifetime` (clients watch again), and all
//! end at once when the server shuts down, so that they never hold the
//! drain. The nginx example does not publish Watch at all.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::sync::{Semaphore, watch};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

use crate::config::GrpcSettings;

/// The health service, its watches bounded.
pub struct BoundedHealth {
    inner: HealthService,
    /// One permit per watch that may be open; `None` = Watch off.
    watches: Option<Arc<Semaphore>>,
    lifetime: Duration,
    /// Changes when the server begins to shut down.
    stopping: watch::Receiver<()>,
}

impl BoundedHealth {
    /// Answers from `reporter`'s statuses.
    pub fn new(
        reporter: HealthReporter,
        settings: &GrpcSettings,
        stopping: watch::Receiver<()>,
    ) -> Self {
        let max = settings.max_health_watches.min(Semaphore::MAX_PERMITS);
        Self {
            inner: HealthService::from_health_reporter(reporter),
            watches: (max > 0).then(|| Arc::new(Semaphore::new(max))),
            lifetime: settings.health_watch_lifetime,
            stopping,
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for BoundedHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let Some(watches) = &self.watches else {
            return Err(Status::unimplemented(
                "Health/Watch is off on this server (grpc.max_health_watches: 0); use Health/Check",
            ));
        };
        let permit = watches.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(
                "too many Health/Watch streams on this replica (grpc.max_health_watches); \
                 use Health/Check, or watch again later",
            )
        })?;
        let statuses = self.inner.watch(request).await?.into_inner();
        let (lifetime, mut stopping) = (self.lifetime, self.stopping.clone());
        // The permit lives in the future that ends the stream: given back
        // when the watch ends, or when the caller goes away (dropped).
        let end = async move {
            let _permit = permit;
            tokio::select! {
                () = tokio::time::sleep(lifetime) => {}
                _ = stopping.changed() => {}
            }
        };
        Ok(Response::new(Box::pin(statuses.take_until(end))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use tonic_health::pb::health_check_response::ServingStatus;

    fn bounded(max: usize, lifetime: Duration) -> (BoundedHealth, watch::Sender<()>) {
        let (stop, stopping) = watch::channel(());
        let settings = GrpcSettings {
            max_health_watches: max,
            health_watch_lifetime: lifetime,
            ..GrpcSettings::default()
        };
        let health = BoundedHealth::new(HealthReporter::new(), &settings, stopping);
        (health, stop)
    }

    async fn watch(health: &BoundedHealth) -> Result<WatchStream, Status> {
        let request = Request::new(HealthCheckRequest {
            service: String::new(),
        });
        health.watch(request).await.map(Response::into_inner)
    }

    async fn first_status(stream: &mut WatchStream) -> i32 {
        stream.next().await.unwrap().unwrap().status
    }

    #[tokio::test(start_paused = true)]
    async fn watches_are_bounded_in_number_and_end_after_their_lifetime() {
        let (health, _stop) = bounded(2, Duration::from_secs(60));
        let mut first = watch(&health).await.unwrap();
        let mut second = watch(&health).await.unwrap();
        assert_eq!(
            first_status(&mut first).await,
            ServingStatus::Serving as i32
        );
        let refused = watch(&health).await.err().unwrap();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        // Check is never refused.
        let check = health
            .check(Request::new(HealthCheckRequest::default()))
            .await
            .unwrap();
        assert_eq!(check.into_inner().status, ServingStatus::Serving as i32);

        drop(second.next().await);
        drop(second);
        let mut third = watch(&health).await.expect("a slot was given back");
        assert_eq!(
            first_status(&mut third).await,
            ServingStatus::Serving as i32
        );

        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(
            first.next().await.is_none(),
            "ended (OK) after its lifetime"
        );
        assert!(third.next().await.is_none());
        let _fourth = watch(&health)
            .await
            .expect("ended watches give their slots back");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_every_watch() {
        let (health, stop) = bounded(2, Duration::from_secs(600));
        let mut open = watch(&health).await.unwrap();
        first_status(&mut open).await;
        stop.send(()).unwrap();
        assert!(open.next().await.is_none());
    }

    #[tokio::test]
    async fn zero_watches_is_watch_off() {
        let (health, _stop) = bounded(0, Duration::from_secs(600));
        let off = watch(&health).await.err().unwrap();
        assert_eq!(off.code(), Code::Unimplemented);
    }
}
