//! The feed's task: open the stream, read it into the set, and reopen it
//! when it drops, resuming from the last id seen.
//!
//! Every way a stream ends is the same to this loop (closed, silent past
//! the idle timeout, an oversize event, an error status): mark the feed
//! down, wait the backoff, connect again. A refused API token (`401`/`403`)
//! is a configuration error that only an operator can fix; it is logged
//! (never the token) and retried like the rest, so fixing the token takes
//! effect without a restart.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use serde::Deserialize;
use uuid::Uuid;

use super::sse::{Event, Oversize, Parser};
use super::{Batch, Shared};
use crate::endpoint::{BoxError, Endpoint};

/// Connecting and getting the answer's head must not take longer than this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Connector {
    pub(crate) endpoint: Endpoint,
    /// `Bearer <API token>`, marked sensitive.
    pub(crate) authorization: HeaderValue,
    pub(crate) backoff: (Duration, Duration),
    pub(crate) idle_timeout: Duration,
    pub(crate) max_event: usize,
}

/// How one stream ended.
#[derive(Debug, thiserror::Error)]
enum StreamEnd {
    #[error("cannot connect: {0}")]
    Connect(BoxError),
    #[error("no answer within {CONNECT_TIMEOUT:?}")]
    ConnectTimeout,
    #[error("the API token was refused ({0}); it needs the scope sessions:watch")]
    Refused(StatusCode),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("not an event stream (content-type {0:?})")]
    NotEventStream(Option<HeaderValue>),
    #[error("silent for {0:?}")]
    Idle(Duration),
    #[error("closed by tokengate")]
    Closed,
    #[error("read failed: {0}")]
    Read(hyper::Error),
    #[error(transparent)]
    Oversize(#[from] Oversize),
}

/// `data` of a `session_ended` event (`sub` is not needed here).
#[derive(Deserialize)]
struct SessionEnded {
    sid: Uuid,
    until: u64,
}

pub(crate) async fn run(connector: Connector, shared: Arc<Shared>) {
    let mut last_id = String::new();
    let mut backoff = connector.backoff.0;
    let mut last_drop = String::new();
    loop {
        let mut reached_live = false;
        let drop = connector
            .stream(&shared, &mut last_id, &mut reached_live)
            .await;
        shared.went_down();
        // The same failure again and again is logged once, not every 2 s.
        let text = drop.to_string();
        if text != last_drop || reached_live {
            match &drop {
                StreamEnd::Refused(_) => tracing::error!(error = %drop, "revocation feed refused"),
                _ => tracing::warn!(error = %drop, "revocation feed down; reconnecting"),
            }
        } else {
            tracing::debug!(error = %drop, "revocation feed still down");
        }
        last_drop = text;
        if reached_live {
            backoff = connector.backoff.0;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(connector.backoff.1);
    }
}

impl Connector {
    /// One stream, from connecting to its end.
    async fn stream(
        &self,
        shared: &Shared,
        last_id: &mut String,
        reached_live: &mut bool,
    ) -> StreamEnd {
        let mut request = self
            .endpoint
            .request()
            .header(header::ACCEPT, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .header(header::AUTHORIZATION, self.authorization.clone());
        if !last_id.is_empty() {
            // An id that is no header value cannot be resumed from: the
            // snapshot covers it instead.
            if let Ok(value) = HeaderValue::from_str(last_id) {
                request = request.header("last-event-id", value);
            }
        }
        let request = match request.body(Empty::<Bytes>::new()) {
            Ok(request) => request,
            Err(error) => return StreamEnd::Connect(error.into()),
        };
        let mut exchange =
            match tokio::time::timeout(CONNECT_TIMEOUT, self.endpoint.send(request)).await {
                Ok(Ok(exchange)) => exchange,
                Ok(Err(error)) => return StreamEnd::Connect(error),
                Err(_) => return StreamEnd::ConnectTimeout,
            };
        let response = &mut exchange.response;
        match response.status() {
            StatusCode::OK => {}
            status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                return StreamEnd::Refused(status);
            }
            status => return StreamEnd::Status(status),
        }
        let content_type = response.headers().get(header::CONTENT_TYPE);
        if !content_type
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
        {
            return StreamEnd::NotEventStream(content_type.cloned());
        }
        let mut parser = Parser::resuming(self.max_event, last_id);
        let body = response.body_mut();
        loop {
            let frame = match tokio::time::timeout(self.idle_timeout, body.frame()).await {
                Err(_) => return StreamEnd::Idle(self.idle_timeout),
                Ok(None) => return StreamEnd::Closed,
                Ok(Some(Err(error))) => return StreamEnd::Read(error),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let mut batch = Batch::default();
            let parsed = parser.feed(&data, &mut |event| read_event(event, &mut batch));
            *reached_live |= batch.live;
            // What was parsed before an oversize event still counts.
            shared.apply(batch);
            last_id.clear();
            last_id.push_str(parser.last_event_id());
            if let Err(oversize) = parsed {
                return oversize.into();
            }
        }
    }
}

/// A `live` event's data: the store's epoch, if tokengate names it.
#[derive(serde::Deserialize)]
struct Live {
    since_ms: Option<u64>,
}

fn read_event(event: Event, batch: &mut Batch) {
    match event.kind.as_str() {
        "session_ended" => match serde_json::from_str::<SessionEnded>(&event.data) {
            Ok(ended) => batch.ended.push((ended.sid, ended.until)),
            Err(error) => tracing::warn!(%error, "a session_ended event that is not one; skipped"),
        },
        "live" => {
            batch.live = true;
            batch.since_ms = serde_json::from_str::<Live>(&event.data)
                .ok()
                .and_then(|live| live.since_ms);
        }
        // Other kinds are for other clients (or later versions).
        _ => {}
    }
}
