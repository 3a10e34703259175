//! The session events (SPEC §14, version 1) as the store appends them to
//! the log of events, atomically with their cause: `UserLoggedIn` at every
//! session created, `SessionEnded` at every end, whatever ended it. On Redis
//! the scripts build them (`scripts/ended.lua`); the embedded store builds
//! them here, with the same fields.

use uuid::Uuid;

use super::Subject;
use super::event_log::NewEvent;
use crate::time::Millis;

/// `UserLoggedIn`: a session was created.
pub const USER_LOGGED_IN: &str = "UserLoggedIn";
/// `SessionEnded`: a session ended, for an [`EndReason`].
pub const SESSION_ENDED: &str = "SessionEnded";

/// Why a session ended: the `reason` of `SessionEnded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Its holder logged out of it: `POST /logout`, a client's RFC 7009
    /// revocation, `DELETE /sessions/{sid}` by its owner.
    Logout,
    /// Its owner logged out everywhere (`POST /logout {"all": true}`).
    LogoutAll,
    /// A rotated refresh token came back (RFC 9700 §4.14.2).
    Reuse,
    /// It expired from inactivity, or its refresh lifetime ran out.
    Idle,
    /// It reached `auth.max_session`.
    MaxSession,
    /// An operator ended it (`POST /admin/users/{sub}/logout`).
    Admin,
    /// A login past `auth.max_sessions_per_user` ended it.
    Evicted,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::Reuse => "reuse",
            Self::Idle => "idle",
            Self::MaxSession => "max_session",
            Self::Admin => "admin",
            Self::Evicted => "evicted",
        }
    }
}

/// `UserLoggedIn {sid, client_id, scope}` about `subject.sub`.
pub fn logged_in(sid: Uuid, subject: &Subject, now: Millis) -> NewEvent {
    let data = serde_json::json!({
        "sid": sid.to_string(),
        "client_id": subject.client,
        "scope": subject.scope,
    });
    NewEvent::new(USER_LOGGED_IN, &subject.sub, &data, now)
}

/// `SessionEnded {sid, sub, reason}` about `sub`.
pub fn ended(sid: Uuid, sub: &str, reason: EndReason, now: Millis) -> NewEvent {
    let data = serde_json::json!({
        "sid": sid.to_string(),
        "sub": sub,
        "reason": reason.as_str(),
    });
    NewEvent::new(SESSION_ENDED, sub, &data, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_the_fields_of_version_1() {
        let sid = Uuid::nil();
        let subject = Subject {
            sub: "7".into(),
            client: Some("billing".into()),
            ..Subject::default()
        };
        let login = logged_in(sid, &subject, 5);
        assert_eq!(login.kind, "UserLoggedIn");
        assert_eq!(login.subject, "7");
        assert_eq!(login.occurred_at, 5);
        let data: serde_json::Value = serde_json::from_str(&login.data).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"sid": sid.to_string(), "client_id": "billing", "scope": null})
        );
        let end = ended(sid, "7", EndReason::MaxSession, 6);
        let data: serde_json::Value = serde_json::from_str(&end.data).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"sid": sid.to_string(), "sub": "7", "reason": "max_session"})
        );
        assert_eq!(end.id.get_version_num(), 7);
    }
}
