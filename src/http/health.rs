//! `GET /health`: readiness (SPEC §2, §9) as JSON, `{"status", "version",
//! "store", "components": {"redis", "database", "events"}}`; `503` while the
//! session store or the database does not answer.

use http::HeaderValue;
use http::StatusCode;
use http::header::RETRY_AFTER;
use serde_json::json;

use super::{Response, json_response};
use crate::service::Gate;

pub async fn handle(gate: &Gate) -> Response {
    let health = gate.health().await;
    let mut body = json!({
        "status": health.status(),
        "version": env!("CARGO_PKG_VERSION"),
        "store": health.store,
        "components": {
            "redis": health.redis,
            "database": health.database,
            "events": health.events,
        },
    });
    let Some(failing) = &health.failing else {
        return json_response(StatusCode::OK, &body);
    };
    body["error"] = "temporarily_unavailable".into();
    body["error_description"] = format!("{failing} unreachable").into();
    let mut response = json_response(StatusCode::SERVICE_UNAVAILABLE, &body);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
