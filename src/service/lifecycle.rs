//! Before serving and beside it: migrations, the stored clients (and with
//! them whether `/login` starts open), and the background work every
//! replica does while it serves.

use std::sync::atomic::Ordering;

use super::Gate;
use crate::clients::stored::{self, LoadError};
use crate::db::{DbError, DurableStore};
use crate::store::Store;

/// Why a built gate cannot start serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database.url: {0}")]
    Clients(#[from] LoadError),
    #[error(
        "login.clients: required with Redis (cache.url or cache.sentinel), and the database \
         has none either: without trusted clients anyone who reaches /login gets a session as \
         any user (set login.clients, add one with `tokengate client add ID --kind login`, or \
         set login.open: true behind a network that already authenticates callers)"
    )]
    NoLoginClients,
}

impl Gate {
    /// Applies the database migrations not yet applied (every start-up).
    pub async fn migrate(&self) -> Result<(), DbError> {
        self.database.migrate().await
    }

    /// Reads the clients kept in the database, before serving (the
    /// background task re-reads them every `database.clients_refresh`), and
    /// decides whether `/login {"user_id"}` starts open: only without any
    /// login client, in `config.yml` or the database, and then only with
    /// `login.open` or the embedded store (development). With Redis and no
    /// login client anywhere, start-up stops.
    pub async fn load_clients(&self) -> Result<(), StartError> {
        stored::load(&self.database, &self.login_clients, &self.oauth_clients).await?;
        if self.login_clients.ever_had_clients() {
            return Ok(());
        }
        if self.open_login_setting {
            tracing::warn!(
                "login.open is true and there is no login client: /login {{\"user_id\"}} gives \
                 anyone who reaches it a session as any user; only behind a network that \
                 already authenticates its callers"
            );
        } else if matches!(self.sessions.store(), Store::Memory(_)) {
            tracing::warn!(
                "login.clients is empty and the database has no login clients: /login is \
                 open to anyone who can reach it; configure trusted clients before exposing it"
            );
        } else {
            return Err(StartError::NoLoginClients);
        }
        self.login_open.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Whether `/login {"user_id"}` is taken without client credentials:
    /// open from start-up until the first login client appears, then closed
    /// for good.
    pub(super) fn login_is_open(&self) -> bool {
        self.login_open.load(Ordering::Relaxed) && !self.login_clients.ever_had_clients()
    }

    /// What every replica runs beside serving, until dropped: the refresh
    /// of the clients kept in the database, the event relay, the
    /// write-behind of API tokens' last use, the retry of revocations
    /// the cache has not heard of, and the sweep that turns expiries into
    /// `SessionEnded` events (beside the revocation feed's own, faster one
    /// while it has watchers).
    pub async fn run_background(&self) {
        let clients = stored::refresh(
            &self.database,
            &self.login_clients,
            &self.oauth_clients,
            self.clients_refresh,
        );
        let touches = self.api_tokens.write_touches(&self.database);
        let clears = crate::api_tokens::revocation::retry_cache_clears(
            &self.database,
            self.sessions.store(),
        );
        let feed = self.session_feed.run(self.sessions.store());
        let sinks = self.event_sinks.run(self.sessions.store());
        let expiries = crate::session_feed::sweep(
            self.sessions.store(),
            crate::session_feed::EVENTS_SWEEP_EVERY,
        );
        tokio::join!(
            clients,
            self.relay_events(),
            sinks,
            touches,
            clears,
            feed,
            expiries
        );
    }

    /// One relay round now, for a request that just committed an event,
    /// before it answers (see [`crate::events::deliver_now`]); a failure
    /// only wakes the background relay.
    pub(super) async fn deliver_events(&self) {
        let sink = crate::events::ToLog(self.sessions.store());
        crate::events::deliver_now(
            &self.database,
            &sink,
            &self.events_wake,
            self.event_sinks.metrics(),
        )
        .await;
    }

    /// Moves the outbox to the Redis stream (with the embedded store,
    /// events wait in the outbox).
    async fn relay_events(&self) {
        let store = self.sessions.store();
        let sink = crate::events::ToLog(store);
        // With the embedded store the log is this process's memory: /health
        // keeps saying the relay is off, as the outbox is all that lasts.
        let unreported = crate::events::RelayStatus::new(crate::events::Relay::Off);
        let status = match store {
            Store::Redis(_) => &self.relay,
            Store::Memory(_) => &unreported,
        };
        crate::events::relay(
            &self.database,
            &sink,
            &self.events,
            self.events_wake.clone(),
            status,
            self.event_sinks.metrics(),
        )
        .await;
    }
}
