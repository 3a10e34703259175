//! `/authenticate` (any method): the nginx `auth_request` target. The
//! service decides (a JWT session, or an API token); identity goes back in
//! headers. `?scope=a+b` also requires those scopes (`403
//! insufficient_scope`).

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};

use super::{ApiError, Response, bearer_token, caller, json_bytes_response, json_response};
use crate::service::{Gate, Identity, Rejection, ServiceError, parse_scope};

pub async fn handle<B>(gate: &Gate, request: &Request<B>) -> Result<Response, ApiError> {
    let required = required_scopes(request.uri().query())?;
    let token = bearer_token(request.headers())?.ok_or(ServiceError::MissingToken)?;
    let identity = gate
        .authenticate(token, &required, caller(gate, request))
        .await?;
    // Names and scopes are printable by construction, but a token signed
    // with our key elsewhere might not be: refuse rather than fail.
    let malformed = |_| ServiceError::InvalidToken(Rejection::Malformed);
    let user = HeaderValue::from_bytes(identity.user().as_bytes()).map_err(malformed)?;
    let scope = HeaderValue::from_bytes(identity.scope().as_bytes()).map_err(malformed)?;
    let mut response = if request.method() == Method::HEAD {
        // nginx checks with HEAD: don't build a body that would be dropped.
        json_bytes_response(StatusCode::OK, Bytes::new())
    } else {
        match &identity {
            // The claims, as signed: sub, sid, jti, iat, exp, iss, aud (+ scope, client_id).
            Identity::Session(claims) => json_response(StatusCode::OK, claims),
            Identity::ApiToken(token) => json_response(
                StatusCode::OK,
                &serde_json::json!({
                    "sub": token.subject(),
                    "token_id": token.id,
                    "name": token.name,
                    "scope": identity.scope(),
                }),
            ),
        }
    };
    let email = identity
        .verified_email()
        .and_then(|email| HeaderValue::from_str(email).ok());
    let out = response.headers_mut();
    for header in gate.identity_headers() {
        let value = if header.is_email() {
            email.as_ref()
        } else {
            Some(&user)
        };
        if let Some(value) = value {
            out.insert(header.name(), value.clone());
        }
    }
    match &identity {
        Identity::Session(claims) => {
            let session = HeaderValue::try_from(claims.sid.to_string()).map_err(malformed)?;
            out.insert("x-session-id", session);
        }
        Identity::ApiToken(token) => {
            let id = HeaderValue::try_from(token.id.to_string()).map_err(malformed)?;
            out.insert("x-token-id", id);
        }
    }
    out.insert("x-user-id", user);
    out.insert("x-scope", scope);
    Ok(response)
}

/// Every `scope` parameter of the query, split on spaces (`+` in a query).
fn required_scopes(query: Option<&str>) -> Result<Vec<String>, ApiError> {
    let Some(query) = query else {
        return Ok(Vec::new());
    };
    let mut required = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "scope" {
            for scope in parse_scope(&value).map_err(ApiError::invalid)? {
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
