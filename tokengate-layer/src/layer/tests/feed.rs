//! The layer with a revocation feed: ended sessions are refused, an
//! untrusted feed fails closed or falls back to `/authenticate`.

use std::time::Duration;

use super::*;
use crate::Feed;
use crate::testing::{FeedServer, LIVE, VerdictServer, eventually, session_ended};

/// A token of session `sid`, issued now.
fn token_of(sid: Uuid, scope: Option<&str>) -> String {
    let mut claims = fresh(scope);
    claims["sid"] = sid.to_string().into();
    hs256(&hs256_header(), &claims, SECRET)
}

async fn live_feed(server: &mut FeedServer, feed: &Feed, ended: &[Uuid]) {
    let mut stream = server.next().await;
    stream.open().await;
    for (i, sid) in ended.iter().enumerate() {
        stream
            .send(&session_ended(&format!("{i}-0"), *sid, now_secs() + 900))
            .await;
    }
    stream.send(LIVE).await;
    tokio::time::timeout(crate::testing::WAIT, feed.wait_live())
        .await
        .unwrap();
    // Kept open for the test's length: a dropped stream is an outage.
    std::mem::forget(stream);
}

fn feed_builder(server: &FeedServer) -> crate::FeedBuilder {
    Feed::builder(server.url(), "tg_live_watcher")
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
}

#[tokio::test]
async fn an_ended_session_is_401_the_session_has_ended() {
    let mut server = FeedServer::start().await;
    let feed = feed_builder(&server).start().unwrap();
    let (ended, alive) = (Uuid::new_v4(), Uuid::new_v4());
    live_feed(&mut server, &feed, &[ended]).await;
    let layer = secret_layer().with_feed(feed);

    let reply = call(layer.clone(), Some(&bearer(&token_of(ended, None)))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.challenge.as_deref(),
        Some(
            r#"Bearer realm="tokengate", error="invalid_token", error_description="the session has ended""#
        )
    );
    assert_eq!(reply.body["error"], "invalid_token");
    assert_eq!(reply.body["error_description"], "the session has ended");

    let reply = call(layer, Some(&bearer(&token_of(alive, None)))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["sub"], "42");
}

#[tokio::test]
async fn before_the_first_live_and_past_the_bound_it_fails_closed() {
    let mut server = FeedServer::start().await;
    let feed = feed_builder(&server)
        .max_outage(Duration::from_millis(300))
        .start()
        .unwrap();
    let layer = secret_layer().with_feed(feed.clone());
    let token = token_of(Uuid::new_v4(), None);

    let mut stream = server.next().await;
    let reply = call(layer.clone(), Some(&bearer(&token))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["error"], "temporarily_unavailable");

    stream.open().await;
    stream.send(LIVE).await;
    tokio::time::timeout(crate::testing::WAIT, feed.wait_live())
        .await
        .unwrap();
    assert_eq!(
        call(layer.clone(), Some(&bearer(&token))).await.status,
        StatusCode::OK
    );

    drop(stream);
    let _hanging = server.next().await;
    eventually("the feed is down", || !feed.is_live()).await;
    let status = call(layer.clone(), Some(&bearer(&token))).await.status;
    assert_eq!(status, StatusCode::OK, "a blip within the bound");
    let mut status = StatusCode::OK;
    tokio::time::timeout(crate::testing::WAIT, async {
        while status == StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(20)).await;
            status = call(layer.clone(), Some(&bearer(&token))).await.status;
        }
    })
    .await
    .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn while_down_the_fallback_asks_authenticate_and_stops_once_live() {
    let authenticate = VerdictServer::start(200, r#"{"sub":"42"}"#).await;
    let mut server = FeedServer::start().await;
    let feed = feed_builder(&server)
        .fallback_authenticate(authenticate.url("/authenticate"))
        .start()
        .unwrap();
    let layer = secret_layer()
        .require_scopes(["orders:read"])
        .unwrap()
        .with_feed(feed.clone());
    let token = token_of(Uuid::new_v4(), Some("orders:read"));
    let authorization = bearer(&token);

    let reply = call(layer.clone(), Some(&authorization)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["sub"], "42");
    assert_eq!(authenticate.calls(), 1);
    assert!(authenticate.last().0.starts_with("GET /authenticate "));
    assert_eq!(
        authenticate.last_header("authorization"),
        Some(authorization.clone())
    );

    let unscoped = token_of(Uuid::new_v4(), None);
    let reply = call(layer.clone(), Some(&bearer(&unscoped))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "scopes still count");

    authenticate.reply(401, r#"{"error":"invalid_token"}"#);
    let reply = call(layer.clone(), Some(&authorization)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["error"], "invalid_token");

    authenticate.reply(503, "{}");
    let reply = call(layer.clone(), Some(&authorization)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let asked = authenticate.calls();

    live_feed(&mut server, &feed, &[]).await;
    authenticate.reply(500, "{}");
    for _ in 0..3 {
        assert_eq!(
            call(layer.clone(), Some(&authorization)).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        authenticate.calls(),
        asked,
        "no per-request calls once live"
    );
}

#[tokio::test]
async fn an_unreachable_fallback_is_503() {
    let nobody = crate::testing::closed_port().await;
    let server = FeedServer::start().await;
    let feed = feed_builder(&server)
        .fallback_authenticate(format!("http://{nobody}/authenticate"))
        .start()
        .unwrap();
    let layer = secret_layer().with_feed(feed);
    let reply = call(layer, Some(&bearer(&token_of(Uuid::new_v4(), None)))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn without_a_feed_nothing_changes() {
    let token = token_of(Uuid::new_v4(), None);
    assert_eq!(
        call(secret_layer(), Some(&bearer(&token))).await.status,
        StatusCode::OK
    );
}
