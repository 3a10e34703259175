//! The refresh-rotation rule (SPEC §2 `/refresh`), stated once.
//!
//! [`decide`] is the whole decision: rotate to a single successor, answer a
//! retry within the grace window with that same successor, end the session
//! on any other reuse, refuse scopes that were never granted. The memory
//! store applies it directly; `scripts/rotate.lua` is its line-by-line mirror
//! for Redis (a script must decide inside Redis to stay atomic). One
//! table-driven test (`tests/api/rotation_rules.rs`) holds both stores to it.

use super::{Rotation, Timing};
use crate::time::Millis;
use crate::tokens::SecretHash;

/// What a session record knows that the rule decides on.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    pub generation: u32,
    pub refresh_hash: SecretHash,
    pub rotated_at: Millis,
    /// End of the current refresh token's lifetime.
    pub ends_at: Millis,
    /// The session's absolute end (`auth.max_session` after login).
    pub max_ends_at: Millis,
    pub client: Option<&'a str>,
    /// Scopes granted to the session: the most any successor may carry.
    pub scope: Option<&'a str>,
    /// Scope of the current access token, as stored at the last rotation.
    pub successor_scope: Option<&'a str>,
}

/// What to do with the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Make the rotation's successor current, carrying `scope`, its refresh
    /// token expiring at `ends_at`; the session holds `session_scope` from
    /// now on (narrower than before when its client's scopes shrank).
    Rotate {
        scope: Option<String>,
        ends_at: Millis,
        session_scope: Option<String>,
    },
    /// Answer with the current successor unchanged (restarting the idle clock).
    Replay,
    /// A rotated token came back too late or after its successor was used:
    /// end the session.
    Reuse,
    /// A scope asked for is not held; change nothing.
    NotGranted,
    /// Not a live token of this session and client; change nothing.
    Unknown,
    /// The session is past its end: forget it.
    Expired,
}

/// Decides a rotation against the current record.
pub fn decide(current: &Current<'_>, r: &Rotation, timing: &Timing) -> Verdict {
    if current.client != r.client.as_deref() {
        return Verdict::Unknown;
    }
    if current.ends_at <= r.now {
        return Verdict::Expired;
    }
    if r.presented_generation == current.generation {
        if current.refresh_hash != r.presented_hash {
            return Verdict::Unknown;
        }
        let session_scope = match &r.ceiling {
            None => current.scope.map(str::to_owned),
            Some(ceiling) => within(current.scope, ceiling),
        };
        if !holds_all(session_scope.as_deref(), &r.narrow) {
            return Verdict::NotGranted;
        }
        let scope = if r.narrow.is_empty() {
            session_scope.clone()
        } else {
            Some(r.narrow.join(" "))
        };
        let ends_at = (r.now + timing.refresh_lifetime).min(current.max_ends_at);
        return Verdict::Rotate {
            scope,
            ends_at,
            session_scope,
        };
    }
    let retry = r.presented_generation + 1 == current.generation
        && r.now < current.rotated_at + timing.grace;
    if retry {
        // The retry gets exactly the successor already issued, whatever it
        // asks for; asking for more than that successor holds is refused.
        if !holds_all(current.successor_scope, &r.narrow) {
            return Verdict::NotGranted;
        }
        return Verdict::Replay;
    }
    if r.presented_generation < current.generation {
        return Verdict::Reuse;
    }
    Verdict::Unknown
}

/// The scopes of the space-separated `held` that `ceiling` has, in order;
/// `None` when none is left.
fn within(held: Option<&str>, ceiling: &[String]) -> Option<String> {
    let kept: Vec<&str> = held
        .unwrap_or_default()
        .split(' ')
        .filter(|scope| ceiling.iter().any(|c| c == scope))
        .collect();
    (!kept.is_empty()).then(|| kept.join(" "))
}

/// Whether every scope in `asked` is one of the space-separated `held`.
pub fn holds_all(held: Option<&str>, asked: &[String]) -> bool {
    let held = held.unwrap_or_default();
    asked
        .iter()
        .all(|asked| held.split(' ').any(|scope| scope == asked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    const T0: Millis = 1_800_000_000_000;
    const TIMING: Timing = Timing {
        access: 900_000,
        idle: 60_000,
        refresh_lifetime: 3_600_000,
        grace: 10_000,
        max_session: 7_200_000,
    };

    fn current(scope: Option<&'static str>) -> Current<'static> {
        Current {
            generation: 3,
            refresh_hash: [3; 16],
            rotated_at: T0,
            ends_at: T0 + TIMING.refresh_lifetime,
            max_ends_at: T0 + 5_000_000,
            client: None,
            scope,
            successor_scope: Some("read"),
        }
    }

    fn rotation(generation: u32, hash: u8, narrow: &[&str], now: Millis) -> Rotation {
        Rotation {
            owner: "ada".into(),
            sid: Uuid::nil(),
            client: None,
            presented_generation: generation,
            presented_hash: [hash; 16],
            successor_hash: [hash + 1; 16],
            successor_jti: Uuid::nil(),
            narrow: narrow.iter().map(|s| (*s).to_owned()).collect(),
            ceiling: None,
            now,
        }
    }

    #[test]
    fn the_rule_table() {
        let held = current(Some("read write"));
        let cases: &[(&str, Rotation, Verdict)] = &[
            (
                "current token rotates with the session's scope",
                rotation(3, 3, &[], T0 + 1),
                Verdict::Rotate {
                    scope: Some("read write".into()),
                    ends_at: T0 + 1 + TIMING.refresh_lifetime,
                    session_scope: Some("read write".into()),
                },
            ),
            (
                "current token may narrow",
                rotation(3, 3, &["write"], T0 + 1),
                Verdict::Rotate {
                    scope: Some("write".into()),
                    ends_at: T0 + 1 + TIMING.refresh_lifetime,
                    session_scope: Some("read write".into()),
                },
            ),
            (
                "no successor outlives max_session",
                rotation(3, 3, &[], T0 + 3_000_000),
                Verdict::Rotate {
                    scope: Some("read write".into()),
                    ends_at: T0 + 5_000_000,
                    session_scope: Some("read write".into()),
                },
            ),
            (
                "widening is refused",
                rotation(3, 3, &["admin"], T0 + 1),
                Verdict::NotGranted,
            ),
            (
                "wrong secret for the current generation",
                rotation(3, 9, &[], T0 + 1),
                Verdict::Unknown,
            ),
            (
                "retry in grace gets the successor",
                rotation(2, 2, &[], T0 + 9_999),
                Verdict::Replay,
            ),
            (
                "retry naming the successor's scope",
                rotation(2, 2, &["read"], T0 + 1),
                Verdict::Replay,
            ),
            (
                "retry asking more than the successor holds",
                rotation(2, 2, &["read", "write"], T0 + 1),
                Verdict::NotGranted,
            ),
            (
                "retry after the grace window is reuse",
                rotation(2, 2, &[], T0 + 10_000),
                Verdict::Reuse,
            ),
            (
                "an older generation is reuse at once",
                rotation(1, 1, &[], T0 + 1),
                Verdict::Reuse,
            ),
            (
                "a future generation is unknown",
                rotation(4, 4, &[], T0 + 1),
                Verdict::Unknown,
            ),
            (
                "an ended session is expired",
                rotation(3, 3, &[], T0 + TIMING.refresh_lifetime),
                Verdict::Expired,
            ),
        ];
        for (name, r, expected) in cases {
            assert_eq!(&decide(&held, r, &TIMING), expected, "{name}");
        }
    }

    #[test]
    fn only_the_owning_client_rotates() {
        let mut owned = current(None);
        owned.client = Some("billing");
        assert_eq!(
            decide(&owned, &rotation(3, 3, &[], T0), &TIMING),
            Verdict::Unknown
        );
        let mut r = rotation(3, 3, &[], T0);
        r.client = Some("billing".into());
        assert!(matches!(
            decide(&owned, &r, &TIMING),
            Verdict::Rotate { .. }
        ));
    }

    #[test]
    fn a_client_s_scopes_now_bound_its_session_at_rotation() {
        let held = current(Some("read write"));
        let bounded = |ceiling: &[&str], narrow: &[&str]| {
            let mut r = rotation(3, 3, narrow, T0 + 1);
            r.ceiling = Some(ceiling.iter().map(|s| (*s).to_owned()).collect());
            decide(&held, &r, &TIMING)
        };
        let ends_at = T0 + 1 + TIMING.refresh_lifetime;
        assert_eq!(
            bounded(&["write", "admin"], &[]),
            Verdict::Rotate {
                scope: Some("write".into()),
                ends_at,
                session_scope: Some("write".into()),
            },
            "narrowed to what both have; never widened"
        );
        assert_eq!(
            bounded(&[], &[]),
            Verdict::Rotate {
                scope: None,
                ends_at,
                session_scope: None,
            }
        );
        assert_eq!(bounded(&["write"], &["read"]), Verdict::NotGranted);
        // A retry in grace gets its successor as issued.
        let mut retry = rotation(2, 2, &[], T0 + 1);
        retry.ceiling = Some(vec![]);
        assert_eq!(decide(&held, &retry, &TIMING), Verdict::Replay);
    }

    #[test]
    fn scopes_are_whole_words() {
        let asked = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(holds_all(Some("read write"), &asked(&["write", "read"])));
        assert!(holds_all(None, &[]));
        assert!(!holds_all(Some("read write"), &asked(&["rea"])));
        assert!(!holds_all(None, &asked(&["read"])));
    }
}
