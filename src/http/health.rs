//! `GET /health`: readiness (SPEC §2, §9). Says which component fails, so an
//! orchestrator (and a human) can tell "this replica is fine, Redis is not":
//! `{"status", "version", "store", "components": {"redis", "database",
//! "events"}}`. The session store (Redis, when configured) and the database
//! are required — either down is `503`; an event relay that cannot deliver
//! only degrades (events wait in the outbox).

use http::HeaderValue;
use http::StatusCode;
use http::header::RETRY_AFTER;
use serde_json::json;

use super::{Response, json_response};
use crate::app::App;
use crate::db::DurableStore;
use crate::events::Relay;
use crate::store::{SessionStore, Store};

pub async fn handle(app: &App) -> Response {
    let store = app.sessions.store();
    let (store_up, database_up) = tokio::join!(store.ping(), app.database.ping());
    if let Err(e) = &store_up {
        tracing::warn!(error = %e, "health check: session store unreachable");
    }
    if let Err(e) = &database_up {
        tracing::warn!(error = %e, "health check: database unreachable");
    }
    let up = |ok: bool| if ok { "ok" } else { "unavailable" };
    let store_state = up(store_up.is_ok());
    let redis = match store {
        Store::Redis(_) => store_state,
        Store::Memory(_) => "off",
    };
    let events = match app.relay.get() {
        Relay::Off => "off",
        Relay::Delivering => "ok",
        Relay::Failing => "failing",
    };
    let ready = store_up.is_ok() && database_up.is_ok();
    let status = match (ready, events) {
        (false, _) => "unavailable",
        (true, "failing") => "degraded",
        (true, _) => "ok",
    };
    let mut body = json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "store": store_state,
        "components": {
            "redis": redis,
            "database": up(database_up.is_ok()),
            "events": events,
        },
    });
    if ready {
        return json_response(StatusCode::OK, &body);
    }
    let failing = if store_up.is_err() {
        format!("session store ({})", store.kind())
    } else {
        format!("database ({})", app.database.kind())
    };
    body["error"] = "temporarily_unavailable".into();
    body["error_description"] = format!("{failing} unreachable").into();
    let mut response = json_response(StatusCode::SERVICE_UNAVAILABLE, &body);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
