//! The rotation rule of `store/rotation.rs`, held to one table on both
//! stores: the memory store applies the Rust function, Redis runs its Lua
//! mirror (`store/scripts/rotate.lua`). A fix to one that the other lacks
//! fails here.

use tokengate::store::{
    NewSession, Rotation, RotationOutcome, SessionStore, Store, Subject, Timing,
};
use tokengate::time::Millis;
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
    /// The client's scopes now, if the rotation is bounded by them.
    ceiling: Option<&'static [&'static str]>,
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
        name: "a client's scopes now bound the session",
        generation: 1,
        secret: 1,
        narrow: &[],
        ceiling: Some(&["write", "admin"]),
        at: T0 + 5_000,
        expect: Expect::Rotated("write", T0 + 5_000 + 600_000),
    },
    Case {
        name: "a client left with no scopes leaves its session none",
        generation: 1,
        secret: 1,
        narrow: &[],
        ceiling: Some(&[]),
        at: T0 + 5_000,
        expect: Expect::Rotated("", T0 + 5_000 + 600_000),
    },
    Case {
        name: "narrowing to a scope the client lost is refused",
        generation: 1,
        secret: 1,
        narrow: &["read"],
        ceiling: Some(&["write"]),
        at: T0 + 5_000,
        expect: Expect::NotGranted,
    },
    Case {
        name: "a grace retry gets its successor whatever the client has now",
        generation: 0,
        secret: 0,
        narrow: &[],
        ceiling: Some(&[]),
        at: T0 + 5_000,
        expect: Expect::Replayed,
    },
    Case {
        name: "the successor rotates with the session's grant",
        generation: 1,
        secret: 1,
        narrow: &[],
        ceiling: None,
        at: T0 + 5_000,
        expect: Expect::Rotated("read write", T0 + 5_000 + 600_000),
    },
    Case {
        name: "the successor may narrow to any granted scope",
        generation: 1,
        secret: 1,
        narrow: &["write"],
        ceiling: None,
        at: T0 + 5_000,
        expect: Expect::Rotated("write", T0 + 5_000 + 600_000),
    },
    Case {
        name: "no refresh token outlives max_session",
        generation: 1,
        secret: 1,
        narrow: &[],
        ceiling: None,
        at: T0 + 500_000,
        expect: Expect::Rotated("read write", T0 + 900_000),
    },
    Case {
        name: "the successor may not widen past the grant",
        generation: 1,
        secret: 1,
        narrow: &["admin"],
        ceiling: None,
        at: T0 + 5_000,
        expect: Expect::NotGranted,
    },
    Case {
        name: "a wrong secret for the current generation",
        generation: 1,
        secret: 9,
        narrow: &[],
        ceiling: None,
        at: T0 + 5_000,
        expect: Expect::Unknown,
    },
    Case {
        name: "a grace retry gets the successor",
        generation: 0,
        secret: 0,
        narrow: &[],
        ceiling: None,
        at: T0 + 9_999,
        expect: Expect::Replayed,
    },
    Case {
        name: "a grace retry naming the successor's scope",
        generation: 0,
        secret: 0,
        narrow: &["read"],
        ceiling: None,
        at: T0 + 5_000,
        expect: Expect::Replayed,
    },
    Case {
        name: "a grace retry asking more than the successor holds",
        generation: 0,
        secret: 0,
        narrow: &["read", "write"],
        ceiling: None,
        at: T0 + 5_000,
        expect: Expect::NotGranted,
    },
    Case {
        name: "a retry after the grace window is reuse",
        generation: 0,
        secret: 0,
        narrow: &[],
        ceiling: None,
        at: T0 + 10_000,
        expect: Expect::Reused,
    },
    Case {
        name: "a generation never issued",
        generation: 2,
        secret: 2,
        narrow: &[],
        ceiling: None,
        at: T0 + 5_000,
        expect: Expect::Unknown,
    },
];

const TIMING: Timing = Timing {
    access: 900_000,
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
            email_verified: true,
        },
        access_jti: Uuid::new_v4(),
        refresh_hash: hash(0),
        ends_at: T0 + TIMING.refresh_lifetime,
        max_ends_at: T0 + TIMING.max_session,
        max_sessions: 0,
        browser: None,
        now: T0,
    };
    store.create(&session).await.unwrap();
    store
        .rotate(&rotation(sid, 0, 0, &["read"], None, T0))
        .await
        .unwrap()
}

fn rotation(
    sid: Uuid,
    generation: u32,
    secret: u8,
    narrow: &[&str],
    ceiling: Option<&[&str]>,
    now: Millis,
) -> Rotation {
    let owned = |scopes: &[&str]| scopes.iter().map(|s| (*s).to_owned()).collect();
    Rotation {
        owner: "client:billing".into(),
        sid,
        client: Some("billing".into()),
        presented_generation: generation,
        presented_hash: hash(secret),
        successor_hash: hash(secret + 1),
        successor_jti: Uuid::new_v4(),
        narrow: owned(narrow),
        ceiling: ceiling.map(owned),
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
        assert!(first.subject.email_verified);
        let r = rotation(
            sid,
            case.generation,
            case.secret,
            case.narrow,
            case.ceiling,
            case.at,
        );
        match (store.rotate(&r).await.unwrap(), &case.expect) {
            (RotationOutcome::Rotated(s), Expect::Rotated(scope, ends_at)) => {
                let scope = Some(*scope).filter(|s| !s.is_empty());
                assert_eq!(s.scope.as_deref(), scope, "{}", case.name);
                assert_eq!(s.ends_at, *ends_at, "{}", case.name);
                assert_eq!(s.access_jti, r.successor_jti, "{}", case.name);
                assert_eq!(s.issued_at, case.at, "{}", case.name);
                assert_eq!(s.subject.email, first.subject.email, "{}", case.name);
                assert!(s.subject.email_verified, "{}", case.name);
                if case.ceiling.is_some() {
                    // Narrowed for good: the next rotation, unbounded, keeps it.
                    let next = rotation(sid, 2, 2, &[], None, case.at + 1);
                    let Ok(RotationOutcome::Rotated(next)) = store.rotate(&next).await else {
                        panic!("{}: the next rotation", case.name);
                    };
                    assert_eq!(next.scope.as_deref(), scope, "{}: kept", case.name);
                }
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
            let again = store
                .rotate(&rotation(sid, 1, 1, &[], None, T0 + 5_000))
                .await;
            assert!(
                matches!(again, Ok(RotationOutcome::Rotated(_))),
                "{}: {again:?}",
                case.name
            );
        }
    }
}
