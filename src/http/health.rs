//! `GET /health`: readiness. Says which component fails, so an orchestrator
//! (and a human) can tell "this replica is fine, Redis is not".

use http::HeaderValue;
use http::StatusCode;
use http::header::RETRY_AFTER;
use serde_json::json;

use super::{Response, json_response};
use crate::app::App;
use crate::store::SessionStore;

pub async fn handle(app: &App) -> Response {
    match app.sessions.store().ping().await {
        Ok(()) => json_response(StatusCode::OK, &json!({"status": "ok", "store": "ok"})),
        Err(e) => {
            tracing::warn!(error = %e, "health check: session store unreachable");
            let mut response = json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({
                    "status": "unavailable",
                    "store": "unavailable",
                    "error": "temporarily_unavailable",
                    "error_description": format!("session store ({}) unreachable", app.sessions.store().kind()),
                }),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}
