//! `/authenticate` (any method): the nginx `auth_request` target. The
//! service decides (a JWT session, or an API token); identity goes back in
//! headers. `?scope=a+b` also requires those scopes (`403
//! insufficient_scope`).

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ErrorBody;
use super::{ApiError, Response, bearer_token, caller, json_bytes_response, json_response};
use crate::service::{
    AccessClaims, ApiToken, Gate, Identity, Rejection, ServiceError, parse_scope,
};

/// The claims of an access token, as signed.
// `/oauth/verify` answers with this view, fields in alphabetical order as it
// always did. The gate writes the claims themselves, in their own order and
// with no copy on the hot path: the same fields, as a test checks.
#[derive(Serialize, ToSchema)]
pub(super) struct ClaimsBody<'a> {
    aud: &'a str,
    /// The OAuth client the token was issued to (RFC 9068 §2.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    client_id: Option<&'a str>,
    /// The account's email (password logins).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    email_verified: Option<bool>,
    /// Expiry, seconds since the epoch.
    exp: u64,
    /// Issued at, seconds since the epoch.
    iat: u64,
    iss: &'a str,
    /// The token's id, unique per token.
    jti: Uuid,
    /// Granted scopes, space-separated (OAuth clients).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    scope: Option<&'a str>,
    /// The session's id.
    sid: Uuid,
    /// The user's id; an OAuth client's id for its sessions.
    sub: &'a str,
}

impl<'a> From<&'a AccessClaims> for ClaimsBody<'a> {
    fn from(claims: &'a AccessClaims) -> Self {
        Self {
            aud: &claims.aud,
            client_id: claims.client_id.as_deref(),
            email: claims.email.as_deref(),
            email_verified: claims.email_verified,
            exp: claims.exp,
            iat: claims.iat,
            iss: &claims.iss,
            jti: claims.jti,
            scope: claims.scope.as_deref(),
            sid: claims.sid,
            sub: &claims.sub,
        }
    }
}

/// Who an API token is.
// Fields in alphabetical order: the order clients have always seen.
#[derive(Serialize, ToSchema)]
pub(super) struct ApiTokenIdentity<'a> {
    /// The token's name.
    name: &'a str,
    /// Its scopes, space-separated.
    scope: &'a str,
    /// `token:<name>`, as `X-User-Id` says it.
    sub: String,
    token_id: Uuid,
}

/// A session's claims, or who an API token is.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // the schema only: the answers are written as they are
pub(super) enum AuthenticateBody<'a> {
    Session(ClaimsBody<'a>),
    ApiToken(ApiTokenIdentity<'a>),
}

/// May the request pass? The nginx `auth_request` target.
///
/// Any method is answered the same way, since nginx's `auth_request`
/// forwards the client's (GET, HEAD and POST are listed here); the body is
/// ignored and `HEAD` gets none back. A valid bearer token is an access
/// token of a live session or an API token. Counts as activity: the
/// session's idle clock restarts. Besides the headers below, the
/// `authenticate.identity_headers` configured are sent (an email only when
/// verified).
#[utoipa::path(
    method(get, head, post),
    path = "/authenticate",
    operation_id = "authenticate",
    tag = "gate",
    params(("scope" = Option<String>, Query, description = "Scopes the token must also hold, space-separated (`+` in a query); may be repeated")),
    security(("bearer" = []), ("api_token" = [])),
    responses(
        (status = 200, description = "Valid: who it is, in headers (and in the body, but for `HEAD`)", body = AuthenticateBody,
            headers(
                ("X-User-Id" = String, description = "The user's `sub`; `client:<id>` for an OAuth client's session, `token:<name>` for an API token"),
                ("X-Session-Id" = Uuid, description = "The session's id (access tokens)"),
                ("X-Token-Id" = Uuid, description = "The API token's id (API tokens)"),
                ("X-Scope" = String, description = "The granted scopes, space-separated (may be empty)"),
            )),
        (status = 400, description = "A malformed `scope` parameter", body = ErrorBody),
        (status = 401, description = "No token; or an invalid, expired, tampered, revoked, rotated, logged-out or idle-expired one", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"tokengate\"`, with `error=\"invalid_token\"` when a token was given"))),
        (status = 403, description = "Valid, but without a scope `scope` requires (`insufficient_scope`)", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"tokengate\", error=\"insufficient_scope\", scope=\"…\"`"))),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "Session store (or, for an API token, the database) unavailable: fail closed", body = ErrorBody),
    )
)]
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
                &ApiTokenIdentity::new(token, &identity.scope()),
            ),
        }
    };
    let out = response.headers_mut();
    identity_headers(out, gate, &user, identity.verified_email());
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

/// The `authenticate.identity_headers` configured: the user's, and the
/// email ones only with a verified `email`. The cookie gate sends them too.
pub(super) fn identity_headers(
    out: &mut http::HeaderMap,
    gate: &Gate,
    user: &HeaderValue,
    verified_email: Option<&str>,
) {
    let email = verified_email.and_then(|email| HeaderValue::from_str(email).ok());
    for header in gate.identity_headers() {
        let value = if header.is_email() {
            email.as_ref()
        } else {
            Some(user)
        };
        if let Some(value) = value {
            out.insert(header.name(), value.clone());
        }
    }
}

impl<'a> ApiTokenIdentity<'a> {
    fn new(token: &'a ApiToken, scope: &'a str) -> Self {
        Self {
            name: &token.name,
            scope,
            sub: token.subject(),
            token_id: token.id,
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
    fn the_gate_answers_the_claims_the_document_describes() {
        let claims = AccessClaims {
            iss: "tokengate".into(),
            aud: "tokengate".into(),
            sub: "ada".into(),
            iat: 1,
            exp: 2,
            jti: Uuid::nil(),
            sid: Uuid::max(),
            scope: Some("read".into()),
            client_id: Some("web".into()),
            email: Some("ada@example.com".into()),
            email_verified: Some(true),
        };
        // Every field present: the gate writes the claims themselves.
        let written = serde_json::to_value(&claims).unwrap();
        let written: Vec<&String> = written.as_object().unwrap().keys().collect();
        let schema = serde_json::to_value(<ClaimsBody as utoipa::PartialSchema>::schema());
        let schema = schema.unwrap();
        let documented = schema["properties"].as_object().unwrap();
        assert_eq!(written, documented.keys().collect::<Vec<_>>());
        // `/oauth/verify` writes the view: the same JSON as the claims made a
        // `Value` (keys sorted), as it always answered.
        let view = serde_json::to_string(&ClaimsBody::from(&claims)).unwrap();
        assert_eq!(view, serde_json::to_value(&claims).unwrap().to_string());
    }

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
