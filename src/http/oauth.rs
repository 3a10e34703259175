//! The OAuth 2.0 endpoints (SPEC §6): token (RFC 6749 §4.4, §6),
//! introspection (RFC 7662), revocation (RFC 7009) and a simple verify —
//! reading client credentials and parameters the OAuth ways, and answering
//! in the OAuth shapes; the use cases are the service's.

use http::header::{AUTHORIZATION, PRAGMA};
use http::{HeaderValue, Request, StatusCode};
use percent_encoding::percent_decode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::authenticate::ClaimsBody;
use super::body::{self, Params};
use super::error::ErrorBody;
use super::sessions::Empty;
use super::{ApiError, RequestBody, Response, caller, json_response};
use crate::service::{
    ClientCredentials, ClientError, Gate, Grant, Introspected, Issued, ServiceError, parse_basic,
};

/// Client authentication in the body (RFC 6749 §2.3.1), instead of HTTP
/// Basic — never with it.
// Read before the rest of the request: see `client_credentials`.
#[derive(ToSchema)]
pub(super) struct ClientAuth<'a> {
    /// With `client_secret`; with Basic, the Basic id if given at all.
    #[schema(nullable = false)]
    client_id: Option<&'a str>,
    #[schema(nullable = false)]
    client_secret: Option<&'a str>,
}

impl<'a> ClientAuth<'a> {
    fn read(params: &'a Params) -> Result<Self, ServiceError> {
        Ok(Self {
            client_secret: params.get("client_secret")?,
            client_id: params.get("client_id")?,
        })
    }
}

/// The grant asked of the token endpoint (RFC 6749 §4.4.2, §6).
#[derive(ToSchema)]
pub(super) struct GrantParams<'a> {
    /// `client_credentials` or `refresh_token`; a JSON body without it means
    /// `client_credentials`.
    #[schema(nullable = false)]
    grant_type: Option<&'a str>,
    /// Space-separated; at most the client's scopes (all of them when absent).
    #[schema(nullable = false)]
    scope: Option<&'a str>,
    /// For `grant_type=refresh_token`.
    #[schema(nullable = false)]
    refresh_token: Option<&'a str>,
}

impl<'a> GrantParams<'a> {
    fn read(params: &'a Params) -> Result<Self, ServiceError> {
        Ok(Self {
            grant_type: params.get("grant_type")?,
            scope: params.get("scope")?,
            refresh_token: params.get("refresh_token")?,
        })
    }
}

/// The token to introspect (RFC 7662 §2.1) or revoke (RFC 7009 §2.1).
#[derive(ToSchema)]
pub(super) struct TokenParams<'a> {
    /// An access, refresh or API token.
    token: &'a str,
}

impl<'a> TokenParams<'a> {
    fn read(params: &'a Params) -> Result<Self, ServiceError> {
        Ok(Self {
            token: params.require("token")?,
        })
    }
}

/// What `/oauth/token` takes, form-encoded or as a JSON object of strings:
/// an empty value counts as absent, a repeated one is refused.
#[derive(ToSchema)]
#[allow(dead_code)] // the schema only: read as its parts, the client's first
pub(super) struct GrantForm<'a> {
    #[serde(flatten)]
    grant: GrantParams<'a>,
    #[serde(flatten)]
    client: ClientAuth<'a>,
}

/// What `/oauth/introspect` and `/oauth/revoke` take, form-encoded or as a
/// JSON object of strings.
#[derive(ToSchema)]
#[allow(dead_code)] // the schema only: read as its parts, the client's first
pub(super) struct TokenForm<'a> {
    #[serde(flatten)]
    token: TokenParams<'a>,
    /// Ignored: every kind of token is recognised anyway.
    #[schema(nullable = false)]
    token_type_hint: Option<&'a str>,
    #[serde(flatten)]
    client: ClientAuth<'a>,
}

/// The RFC 6749 §5.1 answer.
// Fields in alphabetical order: the order clients have always seen.
#[derive(Serialize, ToSchema)]
pub(super) struct TokenBody {
    /// A JWT (`typ: at+jwt`) for `Authorization: Bearer`.
    access_token: String,
    /// Seconds until the access token expires.
    expires_in: u64,
    /// For clients with `refresh_tokens: true`, and on refresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    refresh_token: Option<String>,
    /// The granted scopes, space-separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    scope: Option<String>,
    /// Always `Bearer`.
    token_type: &'static str,
}

impl From<Issued> for TokenBody {
    fn from(Issued { pair, show_refresh }: Issued) -> Self {
        Self {
            access_token: pair.access,
            expires_in: pair.expires_in,
            refresh_token: show_refresh.then_some(pair.refresh),
            scope: pair.scope,
            token_type: "Bearer",
        }
    }
}

/// RFC 7662 §2.2: `{"active": false}` for anything not live (revoked,
/// expired, unknown, garbage); a live token's claims otherwise.
// Fields in alphabetical order: the order clients have always seen.
#[derive(Serialize, Default, ToSchema)]
pub(super) struct IntrospectionBody {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    exp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    iat: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    iss: Option<String>,
    /// An access token's id; an API token's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    jti: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    sid: Option<Uuid>,
    /// An API token's is `token:<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    sub: Option<String>,
    /// `Bearer`, `refresh_token` or `api_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    token_type: Option<&'static str>,
}

impl IntrospectionBody {
    fn new(introspected: Introspected, issuer: &str) -> Self {
        match introspected {
            Introspected::Inactive => Self::default(),
            Introspected::Access(claims) => Self {
                active: true,
                aud: Some(claims.aud),
                client_id: claims.client_id,
                exp: Some(claims.exp),
                iat: Some(claims.iat),
                iss: Some(claims.iss),
                jti: Some(claims.jti),
                scope: claims.scope,
                sid: Some(claims.sid),
                sub: Some(claims.sub),
                token_type: Some("Bearer"),
            },
            Introspected::Refresh {
                sid,
                subject,
                ends_at,
            } => Self {
                active: true,
                client_id: subject.client,
                exp: Some(ends_at / 1000),
                iss: Some(issuer.to_owned()),
                scope: subject.scope,
                sid: Some(sid),
                sub: Some(subject.sub),
                token_type: Some("refresh_token"),
                ..Self::default()
            },
            // An API token (SPEC §9): `sub` is `token:<name>`, `jti` its id.
            Introspected::ApiToken(token) => Self {
                active: true,
                exp: token.expires_at.map(|end| end / 1000),
                iat: Some(token.created_at / 1000),
                iss: Some(issuer.to_owned()),
                jti: Some(token.id),
                scope: Some(token.scopes.join(" ")),
                sub: Some(token.subject()),
                token_type: Some("api_token"),
                ..Self::default()
            },
        }
    }
}

/// A token to check as `/authenticate` would.
#[derive(Deserialize, ToSchema)]
pub(super) struct VerifyRequest {
    token: String,
}

/// `{"valid": true, "claims": {…}}` or `{"valid": false}`.
#[derive(Serialize, ToSchema)]
pub(super) struct VerifyBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    claims: Option<ClaimsBody<'a>>,
    valid: bool,
}

/// Issues a token to an OAuth client (RFC 6749 §4.4, §6).
///
/// `client_credentials` issues an access token (and a refresh token to a
/// client with `refresh_tokens: true`); `refresh_token` rotates one exactly
/// as `/refresh` does. Also served at `POST /token`, an alias.
#[utoipa::path(
    post,
    path = "/oauth/token",
    operation_id = "token",
    tag = "oauth",
    request_body(content(
        (GrantForm = "application/x-www-form-urlencoded"),
        (GrantForm = "application/json"),
    )),
    security(("client_basic" = []), ()),
    responses(
        (status = 200, description = "Issued (RFC 6749 §5.1)", body = TokenBody,
            headers(("Pragma" = String, description = "`no-cache`"))),
        (status = 400, description = "RFC 6749 §5.2: `invalid_request`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`", body = ErrorBody),
        (status = 401, description = "Client authentication failed (`invalid_client`)", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"tokengate\", charset=\"UTF-8\"`"))),
        (status = 429, description = "Past the client's rate limit, or too many failed client checks", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "Session store unavailable", body = ErrorBody),
    )
)]
pub async fn token(gate: &Gate, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let authorization = request.headers().get(AUTHORIZATION).cloned();
    let caller = caller(gate, &request);
    let params = body::read_params(request).await?;
    let credentials = client_credentials(authorization.as_ref(), &params)?;
    let GrantParams {
        grant_type,
        scope,
        refresh_token,
    } = GrantParams::read(&params)?;
    let grant = Grant {
        grant_type,
        scope,
        refresh_token,
        json: params.is_json,
    };
    let issued = gate.issue_token(credentials, grant, caller).await?;
    let mut response = json_response(StatusCode::OK, &TokenBody::from(issued));
    response
        .headers_mut()
        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Introspects a token for an OAuth client (RFC 7662).
///
/// An access, refresh or API token.
#[utoipa::path(
    post,
    path = "/oauth/introspect",
    operation_id = "introspect",
    tag = "oauth",
    request_body(content(
        (TokenForm = "application/x-www-form-urlencoded"),
        (TokenForm = "application/json"),
    )),
    security(("client_basic" = []), ()),
    responses(
        (status = 200, description = "Live or not", body = IntrospectionBody),
        (status = 400, description = "No `token`, or a malformed request", body = ErrorBody),
        (status = 401, description = "Client authentication failed (`invalid_client`)", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"tokengate\", charset=\"UTF-8\"`"))),
        (status = 429, description = "Too many failed client checks", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "Session store or database unavailable", body = ErrorBody),
    )
)]
pub async fn introspect(
    gate: &Gate,
    request: Request<impl RequestBody>,
) -> Result<Response, ApiError> {
    let authorization = request.headers().get(AUTHORIZATION).cloned();
    let caller = caller(gate, &request);
    let params = body::read_params(request).await?;
    let credentials = client_credentials(authorization.as_ref(), &params)?;
    let TokenParams { token } = TokenParams::read(&params)?;
    let introspected = gate.introspect(credentials, token, caller).await?;
    let body = IntrospectionBody::new(introspected, gate.issuer());
    Ok(json_response(StatusCode::OK, &body))
}

/// Revokes a token issued to the client (RFC 7009).
///
/// Ends the token's session; `200` whether or not the token was live.
#[utoipa::path(
    post,
    path = "/oauth/revoke",
    operation_id = "revoke",
    tag = "oauth",
    request_body(content(
        (TokenForm = "application/x-www-form-urlencoded"),
        (TokenForm = "application/json"),
    )),
    security(("client_basic" = []), ()),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke", body = Empty),
        (status = 400, description = "No `token`, a malformed request, or a token of another client (`unauthorized_client`)", body = ErrorBody),
        (status = 401, description = "Client authentication failed (`invalid_client`)", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"tokengate\", charset=\"UTF-8\"`"))),
        (status = 429, description = "Too many failed client checks", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "Session store unavailable", body = ErrorBody),
    )
)]
pub async fn revoke(gate: &Gate, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let authorization = request.headers().get(AUTHORIZATION).cloned();
    let caller = caller(gate, &request);
    let params = body::read_params(request).await?;
    let credentials = client_credentials(authorization.as_ref(), &params)?;
    // token_type_hint only speeds up a search; both kinds are recognised anyway.
    let TokenParams { token } = TokenParams::read(&params)?;
    gate.revoke(credentials, token, caller).await?;
    Ok(json_response(StatusCode::OK, &Empty {}))
}

/// Verifies an access token.
///
/// The checks of `/authenticate`, answered as JSON, with no client
/// authentication.
#[utoipa::path(
    post,
    path = "/oauth/verify",
    operation_id = "verify",
    tag = "oauth",
    request_body(content = VerifyRequest),
    responses(
        (status = 200, description = "Valid (with the claims) or not", body = VerifyBody),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 503, description = "Session store unavailable", body = ErrorBody),
    )
)]
pub async fn verify(gate: &Gate, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let VerifyRequest { token } = body::parse(&body::read(request).await?)?;
    let claims = gate.verify(&token).await?;
    let body = VerifyBody {
        claims: claims.as_deref().map(ClaimsBody::from),
        valid: claims.is_some(),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// Client authentication at the OAuth endpoints (RFC 6749 §2.3.1): HTTP
/// Basic with form-encoded id and secret, or `client_id` + `client_secret`
/// in the body — one method, not both. Checked before the rest of the
/// request is read, as it always was.
fn client_credentials(
    authorization: Option<&HeaderValue>,
    params: &Params,
) -> Result<ClientCredentials, ApiError> {
    let invalid_client = |e| ApiError::Service(ServiceError::InvalidClient(e));
    let basic = match authorization.map(|value| parse_basic(value.as_bytes())) {
        None | Some(Err(ClientError::Missing)) => None,
        Some(Err(e)) => return Err(invalid_client(e)),
        Some(Ok((id, secret))) => Some((form_decode(id.as_bytes()), form_decode(&secret))),
    };
    let ClientAuth {
        client_id: body_id,
        client_secret: body_secret,
    } = ClientAuth::read(params)?;
    let (id, secret) = match (basic, body_secret) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "use one client authentication method: HTTP Basic or client_secret",
            ));
        }
        (Some((id, secret)), None) => {
            let id = String::from_utf8(id).map_err(|_| invalid_client(ClientError::Malformed))?;
            if body_id.is_some_and(|body_id| body_id != id) {
                return Err(ApiError::invalid(
                    "client_id differs from the Basic credentials",
                ));
            }
            (id, secret)
        }
        (None, Some(secret)) => {
            let id = body_id.ok_or_else(|| ApiError::invalid("client_secret without client_id"))?;
            (id.to_owned(), secret.as_bytes().to_vec())
        }
        (None, None) => return Err(invalid_client(ClientError::Missing)),
    };
    Ok(ClientCredentials { id, secret })
}

/// `application/x-www-form-urlencoded` decoding of one value (`+` is a space).
fn form_decode(raw: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&spaced).collect()
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
