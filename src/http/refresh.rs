//! `POST /refresh {"refresh": "..."}`: rotates to the successor pair.

use http::{Request, StatusCode};
use serde::Deserialize;

use super::{ApiError, RequestBody, Response, body, json_response, token_pair::TokenPairBody};
use crate::service::Gate;

#[derive(Deserialize)]
pub(super) struct RefreshRequest {
    pub refresh: String,
}

pub async fn handle(gate: &Gate, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let RefreshRequest { refresh } = body::parse(&body::read(request).await?)?;
    let pair = gate.refresh(&refresh).await?;
    Ok(json_response(StatusCode::OK, &TokenPairBody::from(pair)))
}
