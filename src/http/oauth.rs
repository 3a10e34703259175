//! The OAuth 2.0 endpoints (SPEC §6): token (RFC 6749 §4.4, §6),
//! introspection (RFC 7662), revocation (RFC 7009) and a simple verify.
//! They reuse the session rules of `/login` and `/refresh` — same rotation,
//! grace and theft rules — and answer in the OAuth shapes.

use std::sync::Arc;

use http::header::{AUTHORIZATION, PRAGMA};
use http::{HeaderValue, Request, StatusCode};
use percent_encoding::percent_decode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::body::{self, Params};
use super::error::OAuthCode;
use super::{ApiError, RequestBody, Response, attempt, json_response, now};
use crate::api_tokens::ApiTokenError;
use crate::app::App;
use crate::clients::{Attempt, ClientError, parse_basic};
use crate::oauth::ClientPolicy;
use crate::session::{Introspection, SessionError, TokenPair};
use crate::tokens::api::is_api_token;
use crate::tokens::scope::parse_scope;

fn oauth(code: OAuthCode, description: impl Into<String>) -> ApiError {
    ApiError::OAuth {
        code,
        description: description.into(),
    }
}

/// `POST /oauth/token` (and `/token`).
pub async fn token(app: &App, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let authorization = request.headers().get(AUTHORIZATION).cloned();
    let attempt = attempt(app, &request);
    let params = body::read_params(request).await?;
    let client = authenticate_client(app, authorization.as_ref(), &params, attempt).await?;
    let now = now();
    app.sessions
        .count_request(&client.id, client.rate_limit, now)
        .await?;

    // A JSON body without grant_type means client_credentials (SPEC §6).
    let grant_type = match params.get("grant_type")? {
        Some(grant_type) => grant_type,
        None if params.is_json => "client_credentials",
        None => {
            return Err(ApiError::InvalidRequest(
                "parameter grant_type is required".into(),
            ));
        }
    };
    let (pair, show_refresh) = match grant_type {
        "client_credentials" => {
            let scope = client
                .grant(params.get("scope")?)
                .map_err(|e| oauth(OAuthCode::InvalidScope, e))?;
            let pair = app
                .sessions
                .client_credentials(&client.id, scope, client.refresh_tokens, now)
                .await?;
            (pair, client.refresh_tokens)
        }
        "refresh_token" if !client.refresh_tokens => {
            return Err(oauth(
                OAuthCode::UnauthorizedClient,
                "this client is not configured for refresh tokens",
            ));
        }
        "refresh_token" => {
            let presented = params.require("refresh_token")?;
            let narrow = params
                .get("scope")?
                .map(parse_scope)
                .transpose()
                .map_err(|e| oauth(OAuthCode::InvalidScope, e))?;
            let pair = app
                .sessions
                .refresh(presented, Some(&client), narrow.as_deref(), now)
                .await
                .map_err(|e| match e {
                    // On this endpoint a bad grant is 400 (RFC 6749 §5.2).
                    SessionError::InvalidGrant | SessionError::RefreshReuse => {
                        oauth(OAuthCode::InvalidGrant, e.to_string())
                    }
                    other => other.into(),
                })?;
            (pair, true)
        }
        other => {
            return Err(oauth(
                OAuthCode::UnsupportedGrantType,
                format!(
                    "grant_type {other:?} is not supported; use client_credentials or refresh_token"
                ),
            ));
        }
    };
    let mut response = json_response(StatusCode::OK, &token_body(pair, show_refresh));
    response
        .headers_mut()
        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The RFC 6749 §5.1 answer.
fn token_body(pair: TokenPair, show_refresh: bool) -> Value {
    let mut body = json!({
        "access_token": pair.access,
        "token_type": "Bearer",
        "expires_in": pair.expires_in,
    });
    if let Some(scope) = pair.scope {
        body["scope"] = scope.into();
    }
    if show_refresh {
        body["refresh_token"] = pair.refresh.into();
    }
    body
}

/// `POST /oauth/introspect` (RFC 7662).
pub async fn introspect(
    app: &App,
    request: Request<impl RequestBody>,
) -> Result<Response, ApiError> {
    let authorization = request.headers().get(AUTHORIZATION).cloned();
    let attempt = attempt(app, &request);
    let params = body::read_params(request).await?;
    authenticate_client(app, authorization.as_ref(), &params, attempt).await?;
    let token = params.require("token")?;
    let issuer = &app.issuer;
    if is_api_token(token) {
        return introspect_api_token(app, token, attempt).await;
    }
    let body = match app.sessions.introspect(token, now()).await? {
        None => json!({"active": false}),
        Some(Introspection::Access(claims)) => {
            let mut body = json!({
                "active": true,
                "token_type": "Bearer",
                "sub": claims.sub,
                "exp": claims.exp,
                "iat": claims.iat,
                "iss": claims.iss,
                "aud": claims.aud,
                "jti": claims.jti,
                "sid": claims.sid,
            });
            optional(&mut body, "scope", claims.scope);
            optional(&mut body, "client_id", claims.client_id);
            body
        }
        Some(Introspection::Refresh { sid, state }) => {
            let mut body = json!({
                "active": true,
                "token_type": "refresh_token",
                "sub": state.subject.sub,
                "exp": state.ends_at / 1000,
                "iss": issuer,
                "sid": sid,
            });
            optional(&mut body, "scope", state.subject.scope);
            optional(&mut body, "client_id", state.subject.client);
            body
        }
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// RFC 7662 for an API token (SPEC §9): `sub` is `token:<name>`, `jti` its id.
async fn introspect_api_token(app: &App, token: &str, from: Attempt) -> Result<Response, ApiError> {
    let validated = app.validate_api_token(token, from.addr, from.now).await;
    let body = match validated {
        Ok(token) => {
            let mut body = json!({
                "active": true,
                "token_type": "api_token",
                "sub": token.subject(),
                "jti": token.id,
                "scope": token.scopes.join(" "),
                "iat": token.created_at / 1000,
                "iss": app.issuer,
            });
            if let Some(end) = token.expires_at {
                body["exp"] = (end / 1000).into();
            }
            body
        }
        Err(ApiTokenError::Invalid(reason)) => {
            tracing::debug!(reason = reason.label(), "introspect: API token refused");
            json!({"active": false})
        }
        Err(other) => return Err(other.into()),
    };
    Ok(json_response(StatusCode::OK, &body))
}

fn optional(body: &mut Value, key: &str, value: Option<String>) {
    if let Some(value) = value {
        body[key] = value.into();
    }
}

/// `POST /oauth/revoke` (RFC 7009): `200` whether or not the token was live.
pub async fn revoke(app: &App, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let authorization = request.headers().get(AUTHORIZATION).cloned();
    let attempt = attempt(app, &request);
    let params = body::read_params(request).await?;
    let client = authenticate_client(app, authorization.as_ref(), &params, attempt).await?;
    let token = params.require("token")?;
    // token_type_hint only speeds up a search; both kinds are recognised anyway.
    app.sessions.revoke(token, &client.id, now()).await?;
    Ok(json_response(StatusCode::OK, &json!({})))
}

#[derive(Deserialize)]
struct VerifyRequest {
    token: String,
}

/// `POST /oauth/verify {"token": …}`: the checks of `/authenticate`, as JSON.
pub async fn verify(app: &App, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let VerifyRequest { token } = body::parse(&body::read(request).await?)?;
    let body = match app.sessions.authenticate(&token, now()).await {
        Ok(claims) => json!({"valid": true, "claims": claims}),
        Err(SessionError::InvalidToken(reason)) => {
            tracing::debug!(reason = reason.label(), "verify: token refused");
            json!({"valid": false})
        }
        Err(other) => return Err(other.into()),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// Client authentication at the OAuth endpoints (RFC 6749 §2.3.1): HTTP
/// Basic with form-encoded id and secret, or `client_id` + `client_secret`
/// in the body — one method, not both.
async fn authenticate_client(
    app: &App,
    authorization: Option<&HeaderValue>,
    params: &Params,
    attempt: Attempt,
) -> Result<Arc<ClientPolicy>, ApiError> {
    let basic = match authorization.map(|value| parse_basic(value.as_bytes())) {
        None | Some(Err(ClientError::Missing)) => None,
        Some(Err(e)) => return Err(ApiError::InvalidClient(e)),
        Some(Ok((id, secret))) => Some((form_decode(id.as_bytes()), form_decode(&secret))),
    };
    let body_secret = params.get("client_secret")?;
    let body_id = params.get("client_id")?;
    let (id, secret) = match (basic, body_secret) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidRequest(
                "use one client authentication method: HTTP Basic or client_secret".into(),
            ));
        }
        (Some((id, secret)), None) => {
            let id = String::from_utf8(id)
                .map_err(|_| ApiError::InvalidClient(ClientError::Malformed))?;
            if body_id.is_some_and(|body_id| body_id != id) {
                return Err(ApiError::InvalidRequest(
                    "client_id differs from the Basic credentials".into(),
                ));
            }
            (id, secret)
        }
        (None, Some(secret)) => {
            let id = body_id.ok_or_else(|| {
                ApiError::InvalidRequest("client_secret without client_id".into())
            })?;
            (id.to_owned(), secret.as_bytes().to_vec())
        }
        (None, None) => return Err(ApiError::InvalidClient(ClientError::Missing)),
    };
    Ok(app.authenticate_oauth_client(&id, secret, attempt).await?)
}

/// `application/x-www-form-urlencoded` decoding of one value (`+` is a space).
fn form_decode(raw: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&spaced).collect()
}

/// RFC 8414 metadata (`/.well-known/oauth-authorization-server`).
pub fn metadata(app: &App, base: &str) -> Map<String, Value> {
    let auth_methods = json!(["client_secret_basic", "client_secret_post"]);
    let mut metadata = Map::new();
    let mut put = |key: &str, value: Value| {
        metadata.insert(key.to_owned(), value);
    };
    put("issuer", app.issuer.clone().into());
    put("token_endpoint", format!("{base}/oauth/token").into());
    put("jwks_uri", format!("{base}/.well-known/jwks.json").into());
    put(
        "introspection_endpoint",
        format!("{base}/oauth/introspect").into(),
    );
    put("revocation_endpoint", format!("{base}/oauth/revoke").into());
    put(
        "grant_types_supported",
        json!(["client_credentials", "refresh_token"]),
    );
    put("response_types_supported", json!([]));
    put(
        "token_endpoint_auth_methods_supported",
        auth_methods.clone(),
    );
    put(
        "introspection_endpoint_auth_methods_supported",
        auth_methods.clone(),
    );
    put("revocation_endpoint_auth_methods_supported", auth_methods);
    put(
        "scopes_supported",
        json!(app.oauth_clients.scopes_supported()),
    );
    metadata
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_of_basic_credentials() {
        assert_eq!(form_decode(b"a+b%3Ac%25"), b"a b:c%");
        assert_eq!(form_decode(b"plain"), b"plain");
    }
}
