//! Readiness (SPEC §2, §9), for `/health` and gRPC's health service alike:
//! which component answers, so that an orchestrator (and a human) can tell
//! "this replica is fine, Redis is not". The session store (Redis, when
//! configured) and the database are required; an event relay that cannot
//! deliver only degrades (events wait in the outbox).

use serde::Serialize;

use super::Gate;
use crate::db::DurableStore;
use crate::events::Relay;
use crate::store::{SessionStore, Store};

/// One component's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    Ok,
    Unavailable,
    Failing,
    /// Not used by this replica (Redis with the embedded store, the relay
    /// without Redis).
    Off,
}

/// The replica's readiness.
#[derive(Debug, Clone)]
pub struct Health {
    /// The session store, whichever it is.
    pub store: Component,
    pub redis: Component,
    pub database: Component,
    pub events: Component,
    /// When not ready: what fails, for the caller's description.
    pub failing: Option<String>,
}

impl Health {
    /// The store and the database answer.
    pub fn ready(&self) -> bool {
        self.failing.is_none()
    }

    /// `ok`, `degraded` (ready, but events do not get out) or `unavailable`.
    pub fn status(&self) -> &'static str {
        match (self.ready(), self.events) {
            (false, _) => "unavailable",
            (true, Component::Failing) => "degraded",
            (true, _) => "ok",
        }
    }
}

impl Gate {
    /// Asks the session store and the database, at once.
    pub async fn health(&self) -> Health {
        let store = self.sessions.store();
        let (store_up, database_up) = tokio::join!(store.ping(), self.database.ping());
        if let Err(e) = &store_up {
            tracing::warn!(error = %e, "health check: session store unreachable");
        }
        if let Err(e) = &database_up {
            tracing::warn!(error = %e, "health check: database unreachable");
        }
        let up = |ok: bool| {
            if ok {
                Component::Ok
            } else {
                Component::Unavailable
            }
        };
        let store_state = up(store_up.is_ok());
        let failing = if store_up.is_err() {
            Some(format!("session store ({})", store.kind()))
        } else if database_up.is_err() {
            Some(format!("database ({})", self.database.kind()))
        } else {
            None
        };
        Health {
            store: store_state,
            redis: match store {
                Store::Redis(_) => store_state,
                Store::Memory(_) => Component::Off,
            },
            database: up(database_up.is_ok()),
            events: match self.relay.get() {
                Relay::Off => Component::Off,
                Relay::Delivering => Component::Ok,
                Relay::Failing => Component::Failing,
            },
            failing,
        }
    }

    /// `/metrics` in Prometheus's text format.
    pub fn metrics_text(&self) -> String {
        self.metrics.render(self.sessions.store())
    }
}
