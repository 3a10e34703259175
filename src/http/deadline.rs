//! The body deadline (`server.body_read_timeout`): a request body that has
//! not fully arrived this long after its headers fails to read, with
//! [`BodyTimeout`], which the HTTP layer answers with `408`. hyper itself
//! has no timer while a body trickles in, so a slow sender would otherwise
//! hold its connection (and a slot under `server.max_connections`) for as
//! long as it likes. Wrapping the body keeps the handlers unchanged.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body did not arrive within `server.body_read_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?} (server.body_read_timeout)")]
pub struct BodyTimeout(pub Duration);

/// A request body that fails once its deadline has passed.
pub struct BodyDeadline<B> {
    inner: B,
    limit: Duration,
    /// `None` for a body that is already complete (GET, `Content-Length: 0`):
    /// nothing to wait for, no clock read.
    deadline: Option<Instant>,
    /// Made only when a read actually has to wait.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B: Body> BodyDeadline<B> {
    /// The deadline starts now, when the headers are in.
    pub fn new(inner: B, limit: Duration) -> Self {
        let deadline = (!inner.is_end_stream()).then(|| Instant::now() + limit);
        Self {
            inner,
            limit,
            deadline,
            timer: None,
        }
    }
}

impl<B> Body for BodyDeadline<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let Some(deadline) = this.deadline else {
            return Poll::Pending;
        };
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_at_the_deadline() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let stream = tokio_stream_from(rx);
        let body = BodyDeadline::new(StreamBody::new(stream), Duration::from_secs(2));
        tx.send(Ok(Frame::data(Bytes::from_static(b"{"))))
            .await
            .unwrap();
        let started = Instant::now();
        let error = body.collect().await.expect_err("times out");
        assert!(error.is::<BodyTimeout>(), "{error}");
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        drop(tx);
    }

    #[tokio::test]
    async fn a_complete_body_reads_through() {
        let body = BodyDeadline::new(Full::new(Bytes::from_static(b"{}")), Duration::ZERO);
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"{}");
    }

    /// A `Stream` over an mpsc receiver, without tokio-stream.
    fn tokio_stream_from<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Unpin {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
