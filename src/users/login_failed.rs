//! `LoginFailed` (SPEC §14): a password login refused — wrong password,
//! unknown email, or the throttle — appended to the log of events on the
//! failure path only (one round trip there; none on a successful login).
//! It names the email and the address, never the password.

use std::net::IpAddr;

use uuid::Uuid;

use crate::store::SessionStore;
use crate::store::event_log::NewEvent;
use crate::time::Millis;

/// The event's type.
pub const LOGIN_FAILED: &str = "LoginFailed";

/// Why a password login failed: the event's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    WrongPassword,
    UnknownEmail,
    Throttled,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongPassword => "wrong_password",
            Self::UnknownEmail => "unknown_email",
            Self::Throttled => "throttled",
        }
    }
}

/// `LoginFailed {email, reason, address}` about the account if `user` is
/// one, else about the email (as normalized): an unknown email, or a
/// refusal by the throttle, which reads no database to tell.
pub fn event(
    email: &str,
    user: Option<Uuid>,
    failure: Failure,
    addr: IpAddr,
    now: Millis,
) -> NewEvent {
    let data = serde_json::json!({
        "email": email,
        "reason": failure.as_str(),
        "address": addr.to_string(),
    });
    let subject = user.map_or_else(|| email.to_owned(), |id| id.to_string());
    NewEvent::new(LOGIN_FAILED, &subject, &data, now)
}

/// Appends `event`; a failure to is logged, never the caller's answer.
pub async fn record(store: &impl SessionStore, event: NewEvent) {
    if let Err(e) = store.log_events(&[event]).await {
        tracing::warn!(error = %e, "events: LoginFailed not logged");
    }
}
