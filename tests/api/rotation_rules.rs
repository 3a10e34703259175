//! The rotation rule of `store/rotation.rs`, held to one table on both
//! stores: the memory store applies the Rust function, Redis runs its Lua
//! mirror (`store/scripts/rotate.lua`). A fix to one that the other lacks
//! fails here.

use tokengate::store::{
    Millis, NewSession, Rotation, RotationOutcome, SessionStore, Store, Subject, Timing,
};
use uuid::Uuid;

use crate::helpers::{Backend, Cluster};
use crate::on_both_stores;

on_both_stores!(both_stores_follow_the_rotation_table);

/// Far in the future, so nothing expires by wall-clock TTL during the test.
const T0: Millis = 4_000_000_000_000;

/// What the store is asked after the session rotated once to `successor_scope`.
struct Case {
    name: &'static str,
    generation: u32,
    /// Which secret is presented: 0 = the first, 1 = the successor's, 9 = wrong.
    secret: u8,
    narrow: &'static [&'static str],
    at: Millis,
    expect: Expect,
}

#[derive(Debug, PartialEq)]
enum Expect {
    /// Rotated, the successor carrying this scope and ending then.
    Rotated(&'static str, Millis),
    /// Replayed: the first rotation's successor, unchanged.
    Replayed,
    Reused,
    NotGranted,
    Unknown,
}

fn hash(secret: u8) -> [u8; 16] {
    [secret; 16]
}

const CASES: &[Case] = &[
    Case {
        name: "the successor rotates with the session's grant",
        generation: 1,
        secret: 1,
        narrow: &[],
        at: T0 + 5_000,
        expect: Expect::Rotated("read write", T0 + 5_000 + 600_000),
    },
    Case {
        name: "the successor may narrow to any granted scope",
        generation: 1,
        secret: 1,
        narrow: &["write"],
        at: T0 + 5_000,
        expect: Expect::Rotated("write", T0 + 5_000 + 600_000),
    },
    Case {
        name: "no refresh token outlives max_session",
        generation: 1,
        secret: 1,
        narrow: &[],
        at: T0 + 500_000,
        expect: Expect::Rotated("read write", T0 + 900_000),
    },
    Case {
        name: "the successor may not widen past the grant",
        generation: 1,
        secret: 1,
        narrow: &["admin"],
        at: T0 + 5_000,
        expect: Expect::NotGranted,
    },
    Case {
        name: "a wrong secret for the current generation",
        generation: 1,
        secret: 9,
        narrow: &[],
        at: T0 + 5_000,
        expect: Expect::Unknown,
    },
    Case {
        name: "a grace retry gets the successor",
        generation: 0,
        secret: 0,
        narrow: &[],
        at: T0 + 9_999,
        expect: Expect::Replayed,
    },
    Case {
        name: "a grace retry naming the successor's scope",
        generation: 0,
        secret: 0,
        narrow: &["read"],
        at: T0 + 5_000,
        expect: Expect::Replayed,
    },
    Case {
        name: "a grace retry asking more than the successor holds",
        generation: 0,
        secret: 0,
        narrow: &["read", "write"],
        at: T0 + 5_000,
        expect: Expect::NotGranted,
    },
    Case {
        name: "a retry after the grace window is reuse",
        generation: 0,
        secret: 0,
        narrow: &[],
        at: T0 + 10_000,
        expect: Expect::Reused,
    },
    Case {
        name: "a generation never issued",
        generation: 2,
        secret: 2,
        narrow: &[],
        at: T0 + 5_000,
        expect: Expect::Unknown,
    },
];

const TIMING: Timing = Timing {
    idle: 3_600_000,
    refresh_lifetime: 600_000,
    grace: 10_000,
    max_session: 900_000,
};

/// A session granted `read write` whose first rotation narrowed to `read`.
async fn rotated_once(store: &Store, sid: Uuid) -> RotationOutcome {
    let session = NewSession {
        sid,
        subject: Subject {
            sub: "billing".into(),
            client: Some("billing".into()),
            scope: Some("read write".into()),
            // Carried through every rotation and replay, by both stores.
            email: Some("ops@example.com".into()),
        },
        access_jti: Uuid::new_v4(),
        refresh_hash: hash(0),
        ends_at: T0 + TIMING.refresh_lifetime,
        max_ends_at: T0 + TIMING.max_session,
        now: T0,
    };
    store.create(&session).await.unwrap();
    store
        .rotate(&rotation(sid, 0, 0, &["read"], T0))
        .await
        .unwrap()
}

fn rotation(sid: Uuid, generation: u32, secret: u8, narrow: &[&str], now: Millis) -> Rotation {
    Rotation {
        sid,
        client: Some("billing".into()),
        presented_generation: generation,
        presented_hash: hash(secret),
        successor_hash: hash(secret + 1),
        successor_jti: Uuid::new_v4(),
        narrow: narrow.iter().map(|s| (*s).to_owned()).collect(),
        now,
    }
}

async fn both_stores_follow_the_rotation_table(backend: Backend) {
    let cluster = Cluster::start_with(backend, 0, |s| {
        s.auth.auto_logout = std::time::Duration::from_millis(TIMING.idle);
        s.auth.refresh_lifetime = std::time::Duration::from_millis(TIMING.refresh_lifetime);
        s.auth.refresh_grace = std::time::Duration::from_millis(TIMING.grace);
        s.auth.max_session = std::time::Duration::from_millis(TIMING.max_session);
    })
    .await;
    let store = cluster.new_store();
    for case in CASES {
        let sid = Uuid::new_v4();
        let RotationOutcome::Rotated(first) = rotated_once(&store, sid).await else {
            panic!("{}: the first rotation", case.name);
        };
        assert_eq!(first.scope.as_deref(), Some("read"));
        assert_eq!(first.subject.email.as_deref(), Some("ops@example.com"));
        let r = rotation(sid, case.generation, case.secret, case.narrow, case.at);
        match (store.rotate(&r).await.unwrap(), &case.expect) {
            (RotationOutcome::Rotated(s), Expect::Rotated(scope, ends_at)) => {
                assert_eq!(s.scope.as_deref(), Some(*scope), "{}", case.name);
                assert_eq!(s.ends_at, *ends_at, "{}", case.name);
                assert_eq!(s.access_jti, r.successor_jti, "{}", case.name);
                assert_eq!(s.issued_at, case.at, "{}", case.name);
                assert_eq!(s.subject.email, first.subject.email, "{}", case.name);
            }
            (RotationOutcome::Replayed(s), Expect::Replayed) => {
                assert_eq!(s, first, "{}: exactly the first successor", case.name);
            }
            (RotationOutcome::Reused, Expect::Reused)
            | (RotationOutcome::NotGranted, Expect::NotGranted)
            | (RotationOutcome::Unknown, Expect::Unknown) => {}
            (got, expected) => panic!(
                "{} ({backend:?}): got {got:?}, expected {expected:?}",
                case.name
            ),
        }
        // Refusals change nothing: the successor still rotates.
        if matches!(case.expect, Expect::NotGranted | Expect::Unknown) {
            let again = store.rotate(&rotation(sid, 1, 1, &[], T0 + 5_000)).await;
            assert!(
                matches!(again, Ok(RotationOutcome::Rotated(_))),
                "{}: {again:?}",
                case.name
            );
        }
    }
}
