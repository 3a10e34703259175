//! `POST /refresh {"refresh": "..."}`: rotates to the successor pair.

use http::{Request, StatusCode};
use serde::Deserialize;

use super::{ApiError, RequestBody, Response, body, json_response, now, token_pair::TokenPairBody};
use crate::app::App;

#[derive(Deserialize)]
pub(super) struct RefreshRequest {
    pub refresh: String,
}

pub async fn handle(app: &App, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let RefreshRequest { refresh } = body::parse(&body::read(request).await?)?;
    let pair = app.sessions.refresh(&refresh, None, None, now()).await?;
    Ok(json_response(StatusCode::OK, &TokenPairBody::from(pair)))
}
