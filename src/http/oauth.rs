//! The OAuth 2.0 endpoints (SPEC §6): token (RFC 6749 §4.4, §6),
//! introspection (RFC 7662), revocation (RFC 7009) and a simple verify —
//! reading client credentials and parameters the OAuth ways, and answering
//! in the OAuth shapes; the use cases are the service's.

use http::header::{AUTHORIZATION, PRAGMA};
use http::{HeaderValue, Request, StatusCode};
use percent_encoding::percent_decode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::{self, Params};
use super::{ApiError, RequestBody, Response, caller, json_response};
use crate::service::{
    ClientCredentials, ClientError, Gate, Grant, Introspected, Issued, ServiceError, parse_basic,
};

/// `POST /oauth/token` (and `/token`).
pub async fn token(gate: &Gate, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let authorization = request.headers().get(AUTHORIZATION).cloned();
    let caller = caller(gate, &request);
    let params = body::read_params(request).await?;
    let credentials = client_credentials(authorization.as_ref(), &params)?;
    let grant = Grant {
        grant_type: params.get("grant_type")?,
        scope: params.get("scope")?,
        refresh_token: params.get("refresh_token")?,
        json: params.is_json,
    };
    let issued = gate.issue_token(credentials, grant, caller).await?;
    let mut response = json_response(StatusCode::OK, &token_body(issued));
    response
        .headers_mut()
        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The RFC 6749 §5.1 answer.
fn token_body(Issued { pair, show_refresh }: Issued) -> Value {
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
    gate: &Gate,
    request: Request<impl RequestBody>,
) -> Result<Response, ApiError> {
    let authorization = request.headers().get(AUTHORIZATION).cloned();
    let caller = caller(gate, &request);
    let params = body::read_params(request).await?;
    let credentials = client_credentials(authorization.as_ref(), &params)?;
    let token = params.require("token")?;
    let body = match gate.introspect(credentials, token, caller).await? {
        Introspected::Inactive => json!({"active": false}),
        Introspected::Access(claims) => {
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
        Introspected::Refresh {
            sid,
            subject,
            ends_at,
        } => {
            let mut body = json!({
                "active": true,
                "token_type": "refresh_token",
                "sub": subject.sub,
                "exp": ends_at / 1000,
                "iss": gate.issuer(),
                "sid": sid,
            });
            optional(&mut body, "scope", subject.scope);
            optional(&mut body, "client_id", subject.client);
            body
        }
        // RFC 7662 for an API token (SPEC §9): `sub` is `token:<name>`, `jti` its id.
        Introspected::ApiToken(token) => {
            let mut body = json!({
                "active": true,
                "token_type": "api_token",
                "sub": token.subject(),
                "jti": token.id,
                "scope": token.scopes.join(" "),
                "iat": token.created_at / 1000,
                "iss": gate.issuer(),
            });
            if let Some(end) = token.expires_at {
                body["exp"] = (end / 1000).into();
            }
            body
        }
    };
    Ok(json_response(StatusCode::OK, &body))
}

fn optional(body: &mut Value, key: &str, value: Option<String>) {
    if let Some(value) = value {
        body[key] = value.into();
    }
}

/// `POST /oauth/revoke` (RFC 7009): `200` whether or not the token was live.
pub async fn revoke(gate: &Gate, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let authorization = request.headers().get(AUTHORIZATION).cloned();
    let caller = caller(gate, &request);
    let params = body::read_params(request).await?;
    let credentials = client_credentials(authorization.as_ref(), &params)?;
    // token_type_hint only speeds up a search; both kinds are recognised anyway.
    gate.revoke(credentials, params.require("token")?, caller)
        .await?;
    Ok(json_response(StatusCode::OK, &json!({})))
}

#[derive(Deserialize)]
struct VerifyRequest {
    token: String,
}

/// `POST /oauth/verify {"token": …}`: the checks of `/authenticate`, as JSON.
pub async fn verify(gate: &Gate, request: Request<impl RequestBody>) -> Result<Response, ApiError> {
    let VerifyRequest { token } = body::parse(&body::read(request).await?)?;
    let body = match gate.verify(&token).await? {
        Some(claims) => json!({"valid": true, "claims": claims}),
        None => json!({"valid": false}),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// Client authentication at the OAuth endpoints (RFC 6749 §2.3.1): HTTP
/// Basic with form-encoded id and secret, or `client_id` + `client_secret`
/// in the body — one method, not both.
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
    let body_secret = params.get("client_secret")?;
    let body_id = params.get("client_id")?;
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
