//! `GET /events/sessions` (SPEC §13): the revocation feed as Server-Sent
//! Events, on the admin listener.
//!
//! The handler admits the watcher and answers the headers; the server then
//! swaps in the body ([`into_stream`]), which a task of its own writes: the
//! snapshot (or what follows `Last-Event-ID`), one `live` event carrying
//! the log's epoch, then each end as the replica's tail hands it over, with
//! a comment every [`KEEPALIVE`]. The stream ends when the watcher leaves,
//! falls too far behind, or the tail loses the log — the watcher then knows
//! to reconnect, and resumes from its last id.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame};
use tokio::sync::{broadcast, mpsc};

use super::{ApiError, RequestBody, Response, bearer_token, caller};
use crate::service::{Cursor, ENDED_PAGE, EndedSession, Gate, LogStart, Watch};

/// A comment this often keeps proxies and the watcher's idle timer happy
/// (the SPEC asks for one at least every 15 s).
const KEEPALIVE: Duration = Duration::from_secs(10);
/// A snapshot also sends ends whose `until` passed this long ago: a
/// downstream service's leeway may still accept their tokens.
const LEEWAY_MARGIN: u64 = 60;
/// Frames waiting for a slow watcher before the writer waits too.
const BUFFERED: usize = 64;

/// The admitted watcher, riding on the response until the server takes it.
#[derive(Clone)]
struct Pending(Arc<Mutex<Option<Watch>>>);

/// A response of the admin listener: a whole body, or the feed.
pub type Reply = http::Response<Either<Full<Bytes>, EventStream>>;

pub(super) async fn handle(
    gate: &Gate,
    request: &Request<impl RequestBody>,
) -> Result<Response, ApiError> {
    let token = bearer_token(request.headers())?;
    let last_event_id = request
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok());
    let watch = gate
        .watch_sessions(token, last_event_id, caller(gate, request))
        .await?;
    let mut response = http::Response::new(Full::default());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx would otherwise hold events back in its buffer.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
        .extensions_mut()
        .insert(Pending(Arc::new(Mutex::new(Some(watch)))));
    Ok(response)
}

/// The response as sent: with the feed as its body if it is the feed's.
/// `on_end` runs once the body is done (the connection is busy until then).
pub fn into_stream(
    gate: Arc<Gate>,
    mut response: Response,
    on_end: impl FnOnce() + Send + 'static,
) -> Reply {
    let watch = response
        .extensions_mut()
        .remove::<Pending>()
        .and_then(|pending| pending.0.lock().ok()?.take());
    let Some(watch) = watch else {
        on_end();
        return response.map(Either::Left);
    };
    let (frames, rx) = mpsc::channel(BUFFERED);
    tokio::spawn(async move { write(&gate, watch, &frames).await });
    response.map(|_| {
        Either::Right(EventStream {
            frames: rx,
            on_end: Some(Box::new(on_end)),
        })
    })
}

/// Writes the feed until the watcher or the log goes.
async fn write(gate: &Gate, watch: Watch, frames: &mpsc::Sender<Bytes>) {
    let Watch {
        subscription,
        mut start,
        snapshot,
    } = watch;
    let epoch = subscription.epoch;
    let mut ends = subscription.ends;
    // The log's newest entry when the first read ended: later ones come
    // from the tail, and those up to it are skipped there.
    let mut sent = loop {
        let page = match gate.ended_sessions(start).await {
            Ok(page) if page.epoch == epoch => page,
            _ => return,
        };
        let full = page.entries.len() >= ENDED_PAGE as usize;
        let now = crate::time::now() / 1000;
        for end in &page.entries {
            if (!snapshot || end.until + LEEWAY_MARGIN > now)
                && frames.send(ended(end, epoch)).await.is_err()
            {
                return;
            }
        }
        if !full {
            break page.last;
        }
        start = LogStart::After(page.entries.last().map_or(page.last, |e| e.id));
    };
    let live = format!(
        "event: live\nid: {}\ndata: {{\"since_ms\":{epoch}}}\n\n",
        Cursor { epoch, id: sent },
    );
    if frames.send(Bytes::from(live)).await.is_err() {
        return;
    }
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    loop {
        let frame = tokio::select! {
            end = ends.recv() => match end {
                Ok(end) if end.id > sent => {
                    sent = end.id;
                    ended(&end, epoch)
                }
                Ok(_) => continue,
                // Behind, or the tail lost the log: the watcher resumes.
                Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => return,
            },
            _ = keepalive.tick() => Bytes::from_static(b": keepalive\n\n"),
            () = frames.closed() => return,
        };
        if frames.send(frame).await.is_err() {
            return;
        }
    }
}

/// One `session_ended` event.
fn ended(end: &EndedSession, epoch: u64) -> Bytes {
    let data = serde_json::json!({"sid": end.sid, "sub": end.sub, "until": end.until});
    Bytes::from(format!(
        "event: session_ended\nid: {}\ndata: {data}\n\n",
        Cursor { epoch, id: end.id }
    ))
}

/// The feed's body: frames from its writer, until it stops.
pub struct EventStream {
    frames: mpsc::Receiver<Bytes>,
    on_end: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end();
        }
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.frames
            .poll_recv(cx)
            .map(|frame| frame.map(|data| Ok(Frame::data(data))))
    }
}
