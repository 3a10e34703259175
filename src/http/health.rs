//! `GET /ping` (liveness) and `GET /health`: readiness (SPEC §2, §9) as JSON,
//! `{"status", "version", "store", "components": {"redis", "database",
//! "events"}}`; `503` while the session store or the database does not
//! answer.

use bytes::Bytes;
use http::HeaderValue;
use http::StatusCode;
use http::header::RETRY_AFTER;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Response, json_response, text_response};
use crate::service::{Component, Gate};

/// The replica's readiness.
// Fields in alphabetical order: the order clients have always seen.
#[derive(Serialize, ToSchema)]
pub(super) struct HealthBody {
    components: Components,
    /// `temporarily_unavailable`, when not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error: Option<&'static str>,
    /// What does not answer, when not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error_description: Option<String>,
    /// `ok`, `degraded` (ready, but events do not get out) or `unavailable`.
    status: &'static str,
    /// The session store, whichever it is (Redis or embedded).
    store: State,
    /// tokengate's version.
    version: &'static str,
}

/// Each component's state.
#[derive(Serialize, ToSchema)]
struct Components {
    database: State,
    /// The event relay: `failing` only degrades (events wait in the outbox).
    events: State,
    /// `off` with the embedded store.
    redis: State,
}

/// One component's state.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum State {
    Ok,
    Unavailable,
    Failing,
    /// Not used by this replica.
    Off,
}

impl From<Component> for State {
    fn from(component: Component) -> Self {
        match component {
            Component::Ok => Self::Ok,
            Component::Unavailable => Self::Unavailable,
            Component::Failing => Self::Failing,
            Component::Off => Self::Off,
        }
    }
}

/// Liveness.
///
/// Touches nothing else.
#[utoipa::path(
    method(get, head),
    path = "/ping",
    operation_id = "ping",
    tag = "probes",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain", example = "pong")),
)]
pub fn ping() -> Response {
    text_response(StatusCode::OK, "text/plain", Bytes::from_static(b"pong"))
}

/// Readiness.
///
/// Asks the session store and the database; `503` while either does not
/// answer. A failing event relay only degrades.
#[utoipa::path(
    method(get, head),
    path = "/health",
    operation_id = "health",
    tag = "probes",
    responses(
        (status = 200, description = "Ready (`status` may say `degraded`)", body = HealthBody),
        (status = 503, description = "Not ready: the session store or the database does not answer", body = HealthBody),
    )
)]
pub async fn handle(gate: &Gate) -> Response {
    let health = gate.health().await;
    let mut body = HealthBody {
        components: Components {
            database: health.database.into(),
            events: health.events.into(),
            redis: health.redis.into(),
        },
        error: None,
        error_description: None,
        status: health.status(),
        store: health.store.into(),
        version: env!("CARGO_PKG_VERSION"),
    };
    let Some(failing) = &health.failing else {
        return json_response(StatusCode::OK, &body);
    };
    body.error = Some("temporarily_unavailable");
    body.error_description = Some(format!("{failing} unreachable"));
    let mut response = json_response(StatusCode::SERVICE_UNAVAILABLE, &body);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
