//! The session events the embedded store appends (SPEC §14), with the
//! reasons the Redis scripts give.

use serde_json::Value;
use uuid::Uuid;

use super::MemoryStore;
use crate::store::event_log::LoggedEvent;
use crate::store::{EndReason, NewSession, Rotation, SessionStore, Subject, Timing};
use crate::time::Millis;

const T0: Millis = 1_800_000_000_000;
const TIMING: Timing = Timing {
    access: 900_000,
    idle: 60_000,
    refresh_lifetime: 3_600_000,
    grace: 0,
    max_session: 600_000,
};

fn store() -> MemoryStore {
    let store = MemoryStore::new(TIMING);
    store.event_log().join("test");
    store
}

async fn login(store: &MemoryStore, sub: &str, max_sessions: u32, now: Millis) -> Uuid {
    let sid = Uuid::now_v7();
    store
        .create(&NewSession {
            sid,
            subject: Subject {
                sub: sub.into(),
                ..Subject::default()
            },
            access_jti: Uuid::new_v4(),
            refresh_hash: [1; 16],
            ends_at: now + TIMING.refresh_lifetime.min(TIMING.max_session),
            max_ends_at: now + TIMING.max_session,
            max_sessions,
            browser: None,
            now,
        })
        .await
        .unwrap();
    sid
}

/// The events appended since the last call, as (type, subject, data).
fn drain(store: &MemoryStore) -> Vec<(String, String, Value)> {
    let batch = store.event_log().next("test", 1000);
    let entries: Vec<String> = batch.events.iter().map(|e| e.entry.clone()).collect();
    store.event_log().acknowledge("test", &entries);
    batch.events.iter().map(parts).collect()
}

fn parts(e: &LoggedEvent) -> (String, String, Value) {
    assert_eq!(Uuid::parse_str(&e.id).unwrap().get_version_num(), 7);
    let data = serde_json::from_str(&e.data).unwrap();
    (e.kind.clone(), e.subject.clone(), data)
}

fn ended(sid: Uuid, sub: &str, reason: &str) -> (String, String, Value) {
    let data = serde_json::json!({"sid": sid.to_string(), "sub": sub, "reason": reason});
    ("SessionEnded".into(), sub.into(), data)
}

#[tokio::test]
async fn a_login_and_every_end_are_events_with_their_reason() {
    let store = store();
    let sid = login(&store, "7", 0, T0).await;
    assert_eq!(
        drain(&store),
        [(
            "UserLoggedIn".into(),
            "7".into(),
            serde_json::json!({"sid": sid.to_string(), "client_id": null, "scope": null})
        )]
    );
    store
        .end("ada", sid, EndReason::Logout, T0 + 1)
        .await
        .unwrap();
    store
        .end("ada", sid, EndReason::Logout, T0 + 2)
        .await
        .unwrap();
    assert_eq!(drain(&store), [ended(sid, "7", "logout")], "once");

    let (a, b) = (
        login(&store, "8", 0, T0).await,
        login(&store, "8", 0, T0).await,
    );
    drain(&store);
    store.end_all("8", EndReason::Admin, T0 + 3).await.unwrap();
    let mut got = drain(&store);
    got.sort_by_key(|e| e.2["sid"].as_str().map(str::to_owned));
    let mut want = [ended(a, "8", "admin"), ended(b, "8", "admin")];
    want.sort_by_key(|e| e.2["sid"].as_str().map(str::to_owned));
    assert_eq!(got, want);

    let first = login(&store, "9", 1, T0).await;
    let second = login(&store, "9", 1, T0 + 1).await;
    let got = drain(&store);
    assert_eq!(got[1].0, "UserLoggedIn", "the login, then what it ended");
    assert_eq!(got[2], ended(first, "9", "evicted"), "{got:?}");
    let r = |generation, presented: u8, now| Rotation {
        owner: "ada".into(),
        sid: second,
        client: None,
        narrow: Vec::new(),
        ceiling: None,
        presented_generation: generation,
        presented_hash: [presented; 16],
        successor_hash: [presented + 1; 16],
        successor_jti: Uuid::new_v4(),
        now,
    };
    store.rotate(&r(0, 1, T0 + 10)).await.unwrap();
    store.rotate(&r(0, 1, T0 + 20)).await.unwrap();
    assert_eq!(drain(&store), [ended(second, "9", "reuse")]);
}

#[tokio::test]
async fn expiries_are_idle_or_max_session_ends_at_the_next_sweep() {
    let store = store();
    let idle = login(&store, "7", 0, T0).await;
    let kept = login(&store, "8", 0, T0).await;
    drain(&store);
    // `kept` stays active until its absolute end.
    let mut now = T0;
    while now + 50_000 < T0 + TIMING.max_session {
        now += 50_000;
        let jti = store.lock().by_sid[&kept].access_jti;
        assert!(store.authenticate("ada", kept, jti, now).await.unwrap());
    }
    assert_eq!(store.sweep_ended(T0 + 60_000).await.unwrap(), 1);
    assert_eq!(drain(&store), [ended(idle, "7", "idle")]);
    assert_eq!(store.sweep_ended(T0 + TIMING.max_session).await.unwrap(), 1);
    assert_eq!(drain(&store), [ended(kept, "8", "max_session")]);
}
