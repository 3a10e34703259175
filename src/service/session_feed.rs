//! Who may watch the ends of sessions (`GET /events/sessions`, SPEC §13),
//! and where a watcher's first read of the log starts.

use super::{Gate, ServiceError};
use crate::clients::Attempt;
use crate::session_feed::{PAGE, Subscription};
use crate::store::{Cursor, LogPage, LogStart, SessionStore, StoreError, ended};

/// The scope an API token needs to watch.
pub const WATCH_SCOPE: &str = "sessions:watch";

/// A watcher, admitted.
pub struct Watch {
    pub subscription: Subscription,
    /// Where its first read of the log starts.
    pub start: LogStart,
    /// Whether that read is a snapshot (no usable `Last-Event-ID`): only
    /// ends whose tokens may still verify are sent.
    pub snapshot: bool,
}

impl Gate {
    /// Admits the holder of an API token with [`WATCH_SCOPE`], resuming
    /// after `last_event_id` when it names an entry of the current log.
    pub async fn watch_sessions(
        &self,
        token: Option<&str>,
        last_event_id: Option<&str>,
        caller: Attempt,
    ) -> Result<Watch, ServiceError> {
        let token = token.ok_or(ServiceError::MissingToken)?;
        let token = self.validate_api_token(token, caller).await?;
        if token.missing(&[WATCH_SCOPE.to_owned()]).is_some() {
            return Err(ServiceError::InsufficientScope(WATCH_SCOPE.to_owned()));
        }
        // Expiries since the last sweep anywhere, into the log first.
        if let Err(e) = self.sessions.store().sweep_ended(caller.now).await {
            tracing::warn!(error = %e, "revocation feed: sweep before a snapshot failed");
        }
        let subscription = self.session_feed.subscribe().await.ok_or_else(|| {
            StoreError::Unavailable("the ended-sessions log cannot be followed now".into())
        })?;
        let resume = last_event_id
            .and_then(|id| id.parse::<Cursor>().ok())
            .filter(|cursor| cursor.epoch == subscription.epoch);
        let (start, snapshot) = match resume {
            Some(cursor) => (LogStart::After(cursor.id), false),
            None => {
                let kept = ended::retention(self.session_feed.access());
                (LogStart::Since(caller.now.saturating_sub(kept)), true)
            }
        };
        tracing::info!(token = %token.id, name = token.name, resumed = !snapshot,
            "revocation feed: a watcher connected");
        Ok(Watch {
            subscription,
            start,
            snapshot,
        })
    }

    /// A page of the ended-sessions log for a watcher.
    pub async fn ended_sessions(&self, start: LogStart) -> Result<LogPage, ServiceError> {
        let now = crate::time::now();
        Ok(self.sessions.store().ended_log(start, PAGE, now).await?)
    }

    /// Cuts every watcher off (shutdown).
    pub fn close_session_feed(&self) {
        self.session_feed.close();
    }
}
