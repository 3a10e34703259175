//! The feed against a scripted tokengate ([`FeedServer`]): what it sends,
//! what it makes of what it reads, and how it behaves when the stream
//! drops, lies, or never comes.

use std::time::Duration;

use uuid::Uuid;

use super::*;
use crate::testing::{FeedServer, LIVE, eventually, session_ended};
use crate::verifier::now_secs;

const TOKEN: &str = "tg_live_watcher";

fn builder(server: &FeedServer) -> FeedBuilder {
    Feed::builder(server.url(), TOKEN).backoff(Duration::from_millis(10), Duration::from_millis(50))
}

fn standing(feed: &Feed, sid: Uuid) -> Standing {
    feed.standing(&sid, now_secs(), now_secs(), 5)
}

async fn live(feed: &Feed) {
    let waited = tokio::time::timeout(crate::testing::WAIT, feed.wait_live()).await;
    assert!(waited.is_ok(), "the feed never went live");
}

#[tokio::test]
async fn the_snapshot_then_live_then_each_end_as_it_happens() {
    let mut server = FeedServer::start().await;
    let feed = builder(&server).start().unwrap();
    let (snapshot, later, other, ignored) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let until = now_secs() + 900;

    let mut stream = server.next().await;
    assert_eq!(
        stream.header("authorization").as_deref(),
        Some("Bearer tg_live_watcher")
    );
    assert_eq!(
        stream.header("accept").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(
        stream.header("last-event-id"),
        None,
        "a first connect gets the snapshot"
    );
    assert_eq!(
        standing(&feed, other),
        Standing::Unknown,
        "not trusted before live"
    );

    stream.open().await;
    stream.send(&session_ended("1-0", snapshot, until)).await;
    eventually("the snapshot is read", || feed.has_ended(&snapshot)).await;
    assert!(!feed.is_live());
    assert_eq!(
        standing(&feed, other),
        Standing::Unknown,
        "the snapshot may not be complete"
    );
    assert_eq!(
        standing(&feed, snapshot),
        Standing::Ended,
        "an end is refused even so"
    );

    stream.send(": keepalive\n\n").await;
    stream.send(LIVE).await;
    live(&feed).await;
    assert_eq!(standing(&feed, other), Standing::Clear);

    // After live: an unknown kind is skipped, a multi-line CRLF event is read.
    let unknown = format!(
        "event: session_renamed\nid: 2-0\ndata: {{\"sid\":\"{ignored}\",\"until\":{until}}}\n\n"
    );
    stream.send(&unknown).await;
    let crlf = format!(
        "event: session_ended\r\nid: 3-0\r\ndata: {{\"sid\":\"{later}\",\r\ndata: \"sub\":\"42\",\"until\":{until}}}\r\n\r\n"
    );
    stream.send(&crlf).await;
    eventually("the end after live is read", || feed.has_ended(&later)).await;
    assert!(!feed.has_ended(&ignored));
    assert_eq!(standing(&feed, later), Standing::Ended);
    assert!(feed.is_live());
}

#[tokio::test]
async fn a_reconnect_resumes_from_the_last_id_and_a_short_outage_keeps_trust() {
    let mut server = FeedServer::start().await;
    let feed = builder(&server)
        .max_outage(Duration::from_secs(3))
        .start()
        .unwrap();
    let (first, missed, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let until = now_secs() + 900;

    let mut stream = server.next().await;
    stream.open().await;
    stream.send(&session_ended("1-0", first, until)).await;
    stream.send(LIVE).await;
    live(&feed).await;
    drop(stream);

    let mut stream = server.next().await;
    assert_eq!(stream.header("last-event-id").as_deref(), Some("1-0"));
    assert!(!feed.is_live());
    assert_eq!(
        standing(&feed, other),
        Standing::Clear,
        "a blip within the bound"
    );
    assert_eq!(standing(&feed, first), Standing::Ended);

    // tokengate replays what came after 1-0, then says live.
    stream.open().await;
    stream.send(&session_ended("2-0", missed, until)).await;
    stream.send(": keepalive\n\n").await;
    stream.send(LIVE).await;
    live(&feed).await;
    assert!(feed.has_ended(&missed));
    drop(stream);

    let stream = server.next().await;
    assert_eq!(
        stream.header("last-event-id").as_deref(),
        Some("2-0"),
        "the id outlives events without one (live, comments)"
    );
}

#[tokio::test]
async fn a_longer_outage_is_not_trusted_until_live_again() {
    let mut server = FeedServer::start().await;
    let feed = builder(&server)
        .max_outage(Duration::from_millis(300))
        .start()
        .unwrap();
    let other = Uuid::new_v4();

    let mut stream = server.next().await;
    stream.open().await;
    stream.send(LIVE).await;
    live(&feed).await;
    drop(stream);

    // The reconnect hangs: tokengate accepted but does not answer yet.
    let mut stream = server.next().await;
    eventually("past the bound, the set is not trusted", || {
        standing(&feed, other) == Standing::Unknown
    })
    .await;
    stream.open().await;
    stream.send(LIVE).await;
    live(&feed).await;
    assert_eq!(standing(&feed, other), Standing::Clear);
}

#[tokio::test]
async fn a_refused_api_token_keeps_the_feed_down_and_retrying() {
    let mut server = FeedServer::start().await;
    let feed = builder(&server).start().unwrap();
    server.next().await.refuse("401 Unauthorized").await;
    server.next().await.refuse("403 Forbidden").await;
    // A third attempt: it keeps trying (a fixed token is picked up).
    let mut stream = server.next().await;
    assert!(!feed.is_live());
    assert_eq!(standing(&feed, Uuid::new_v4()), Standing::Unknown);
    stream.open().await;
    stream.send(LIVE).await;
    live(&feed).await;
}

#[tokio::test]
async fn an_oversize_event_drops_the_stream_and_it_resumes() {
    let mut server = FeedServer::start().await;
    let feed = builder(&server).max_event(1024).start().unwrap();
    let mut stream = server.next().await;
    stream.open().await;
    stream
        .send(&session_ended("1-0", Uuid::new_v4(), now_secs() + 900))
        .await;
    stream.send(LIVE).await;
    live(&feed).await;
    stream.send("data: ").await;
    stream.send(&"x".repeat(2048)).await;
    assert!(stream.closed_by_feed().await, "the feed hung up");
    let stream = server.next().await;
    assert_eq!(stream.header("last-event-id").as_deref(), Some("1-0"));
}

#[tokio::test]
async fn a_silent_stream_is_dropped_and_reopened() {
    let mut server = FeedServer::start().await;
    let feed = builder(&server)
        .idle_timeout(Duration::from_millis(200))
        .start()
        .unwrap();
    let mut stream = server.next().await;
    stream.open().await;
    stream.send(LIVE).await;
    live(&feed).await;
    // Comments keep it open…
    for _ in 0..4 {
        stream.send(": keepalive\n\n").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(feed.is_live());
    // …silence does not.
    assert!(stream.closed_by_feed().await);
    server.next().await;
}

#[tokio::test]
async fn garbage_on_the_stream_never_breaks_the_feed() {
    let mut server = FeedServer::start().await;
    let feed = builder(&server).start().unwrap();
    let sid = Uuid::new_v4();
    let mut stream = server.next().await;
    stream.open().await;
    stream
        .send("event: session_ended\ndata: {not json\n\n")
        .await;
    stream
        .send("event: session_ended\ndata: {\"sid\":\"nope\",\"until\":1}\n\n")
        .await;
    stream
        .send_bytes(b"\xff\xfe\r\r\n:\0\n\xEF\xBB\xBFid: \xff\n\n")
        .await;
    stream.send("event: session_ended\ndata: {\"sid\":\"").await;
    stream
        .send(&format!("{sid}\",\"until\":{}}}\n\n", now_secs() + 900))
        .await;
    stream.send(LIVE).await;
    live(&feed).await;
    assert!(feed.has_ended(&sid), "an event split across reads");
}

#[tokio::test]
async fn ends_whose_tokens_have_expired_are_not_kept() {
    let mut server = FeedServer::start().await;
    let feed = builder(&server).start().unwrap();
    feed.retain_for(5);
    let (past, current) = (Uuid::new_v4(), Uuid::new_v4());
    let mut stream = server.next().await;
    stream.open().await;
    let batch = format!(
        "{}{}{LIVE}",
        session_ended("1-0", past, now_secs() - 60),
        session_ended("2-0", current, now_secs() + 900)
    );
    stream.send(&batch).await;
    live(&feed).await;
    assert!(!feed.has_ended(&past));
    assert!(feed.has_ended(&current));
    assert_eq!(feed.ended_len(), 1, "the past end was pruned");
}

#[tokio::test]
async fn the_task_stops_with_the_last_handle_or_on_shutdown() {
    let mut server = FeedServer::start().await;
    let feed = builder(&server).start().unwrap();
    let mut stream = server.next().await;
    stream.open().await;
    stream.send(LIVE).await;
    live(&feed).await;
    let clone = feed.clone();
    drop(feed);
    assert!(clone.is_live(), "a clone keeps it going");
    drop(clone);
    assert!(stream.closed_by_feed().await);
    assert!(!server.connects_within(Duration::from_millis(200)).await);

    let feed = builder(&server).start().unwrap();
    let mut stream = server.next().await;
    feed.shutdown();
    assert!(stream.closed_by_feed().await);
    assert!(!feed.is_live());
    assert!(!server.connects_within(Duration::from_millis(200)).await);
}

#[test]
fn starting_needs_a_runtime_and_a_plain_http_url() {
    assert!(matches!(
        Feed::builder("http://127.0.0.1:1/events/sessions", TOKEN).start(),
        Err(FeedError::NoRuntime)
    ));
    assert!(matches!(
        Feed::builder("https://tokengate/events/sessions", TOKEN).start(),
        Err(FeedError::Url(_))
    ));
    assert!(matches!(
        Feed::builder("http://tokengate/events/sessions", "bad\ntoken").start(),
        Err(FeedError::Token)
    ));
    let debug = format!("{:?}", Feed::builder("http://tokengate/", "tg_live_secret"));
    assert!(!debug.contains("tg_live_secret"), "{debug}");
}

#[tokio::test]
async fn sessions_begun_before_the_stores_epoch_are_refused() {
    let mut server = FeedServer::start().await;
    let feed = builder(&server).start().unwrap();
    let since_ms = now_secs() * 1000 - 10_000;
    let mut stream = server.next().await;
    stream.open().await;
    stream
        .send(&format!(
            "event: live\nid: 1.0-0\ndata: {{\"since_ms\":{since_ms}}}\n\n"
        ))
        .await;
    live(&feed).await;
    let now = now_secs();
    // A UUIDv7 sid carries the session's start, to the millisecond.
    let at = |ms: u64| {
        Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            ms / 1000,
            (ms % 1000) as u32 * 1_000_000,
        ))
    };
    assert_eq!(
        feed.standing(&at(since_ms - 1), now, now, 5),
        Standing::Ended
    );
    assert_eq!(feed.standing(&at(since_ms), now, now, 5), Standing::Clear);
    // Another sid: the token's iat, in whole seconds, tells.
    let sid = Uuid::new_v4();
    assert_eq!(
        feed.standing(&sid, since_ms / 1000 - 1, now, 5),
        Standing::Ended
    );
    assert_eq!(
        feed.standing(&sid, since_ms / 1000, now, 5),
        Standing::Clear
    );
}
