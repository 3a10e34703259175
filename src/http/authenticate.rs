//! `/authenticate` (any method): the nginx `auth_request` target. Local JWT
//! verification, then one store round trip; identity goes back in headers.
//! An API token (`Bearer tg_live_…`, SPEC §9) is one cache round trip too.
//! `?scope=a+b` also requires those scopes (`403 insufficient_scope`).

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};

use super::{ApiError, Response, attempt, bearer_token, json_bytes_response, json_response, now};
use crate::app::App;
use crate::tokens::Rejection;
use crate::tokens::api::is_api_token;
use crate::tokens::scope::parse_scope;

pub async fn handle<B>(app: &App, request: &Request<B>) -> Result<Response, ApiError> {
    let required = required_scopes(request.uri().query())?;
    let token = bearer_token(request.headers())?.ok_or(ApiError::MissingToken)?;
    if is_api_token(token) {
        return api_token(app, request, token, &required).await;
    }
    let claims = app.sessions.authenticate(token, now()).await?;
    if let Some(missing) = required
        .iter()
        .find(|s| !claims.scopes().any(|held| held == *s))
    {
        tracing::debug!(missing, "scope required at the gate");
        return Err(ApiError::InsufficientScope(required.join(" ")));
    }
    // `sub` is printable by construction, but a token signed with our key
    // elsewhere might not be: refuse rather than fail. An OAuth client's
    // session answers as `client:<id>`, never as a user of that name.
    let malformed = |_| ApiError::InvalidToken(Rejection::Malformed);
    let user = HeaderValue::from_bytes(claims.owner().as_bytes()).map_err(malformed)?;
    let session = HeaderValue::try_from(claims.sid.to_string()).map_err(malformed)?;
    let scope = HeaderValue::from_str(claims.scope.as_deref().unwrap_or("")).map_err(malformed)?;

    let mut response = if request.method() == Method::HEAD {
        // nginx checks with HEAD: don't build a body that would be dropped.
        json_bytes_response(StatusCode::OK, Bytes::new())
    } else {
        // The claims, as signed: sub, sid, jti, iat, exp, iss, aud (+ scope, client_id).
        json_response(StatusCode::OK, &claims)
    };
    // Only a verified email is asserted to apps (SPEC §11).
    let email = claims
        .verified_email()
        .and_then(|email| HeaderValue::from_str(email).ok());
    let out = response.headers_mut();
    identity_headers(app, out, &user, email.as_ref());
    out.insert("x-user-id", user);
    out.insert("x-session-id", session);
    out.insert("x-scope", scope);
    Ok(response)
}

/// An API token at the gate: `X-User-Id: token:<name>`, `X-Token-Id`,
/// `X-Scope`; no session.
async fn api_token<B>(
    app: &App,
    request: &Request<B>,
    token: &str,
    required: &[String],
) -> Result<Response, ApiError> {
    let from = attempt(app, request);
    let token = app.validate_api_token(token, from.addr, from.now).await?;
    if let Some(missing) = token.missing(required) {
        tracing::debug!(missing, id = %token.id, "scope required at the gate");
        return Err(ApiError::InsufficientScope(required.join(" ")));
    }
    let subject = token.subject();
    let scope = token.scopes.join(" ");
    // Names and scopes are printable ASCII by construction (`api_tokens::check`).
    let malformed = |_| ApiError::InvalidToken(Rejection::Malformed);
    let user = HeaderValue::try_from(subject.as_str()).map_err(malformed)?;
    let scope_header = HeaderValue::try_from(scope.as_str()).map_err(malformed)?;
    let id = HeaderValue::try_from(token.id.to_string()).map_err(malformed)?;
    let mut response = if request.method() == Method::HEAD {
        json_bytes_response(StatusCode::OK, Bytes::new())
    } else {
        json_response(
            StatusCode::OK,
            &serde_json::json!({
                "sub": subject,
                "token_id": token.id,
                "name": token.name,
                "scope": scope,
            }),
        )
    };
    let out = response.headers_mut();
    identity_headers(app, out, &user, None);
    out.insert("x-user-id", user);
    out.insert("x-token-id", id);
    out.insert("x-scope", scope_header);
    Ok(response)
}

/// The conventional identity headers configured (`authenticate.identity_headers`):
/// the user in each user header, the email (if the session has a verified
/// one) in each email header.
fn identity_headers(
    app: &App,
    out: &mut http::HeaderMap,
    user: &HeaderValue,
    email: Option<&HeaderValue>,
) {
    for header in &app.identity_headers {
        let value = if header.is_email() { email } else { Some(user) };
        if let Some(value) = value {
            out.insert(header.name(), value.clone());
        }
    }
}

/// Every `scope` parameter of the query, split on spaces (`+` in a query).
fn required_scopes(query: Option<&str>) -> Result<Vec<String>, ApiError> {
    let Some(query) = query else {
        return Ok(Vec::new());
    };
    let mut required = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "scope" {
            for scope in parse_scope(&value).map_err(ApiError::InvalidRequest)? {
                if !required.contains(&scope) {
                    required.push(scope);
                }
            }
        }
    }
    Ok(required)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_come_from_every_scope_parameter() {
        assert!(required_scopes(None).unwrap().is_empty());
        assert_eq!(
            required_scopes(Some("scope=read+write&x=1&scope=admin%20read")).unwrap(),
            ["read", "write", "admin"]
        );
        assert!(required_scopes(Some("scope=%22bad%22")).is_err());
    }
}
