//! What clients read before they call: the public keys
//! (`/.well-known/jwks.json`, RFC 7517) and the authorization server's
//! metadata (`/.well-known/oauth-authorization-server`, RFC 8414, SPEC §6).

use bytes::Bytes;
use http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;

use super::route::Route;
use super::{Response, public_base, public_json};
use crate::service::Gate;

/// A JSON Web Key Set (RFC 7517 §5): the public keys of every configured
/// asymmetric key; none with HS256 only.
// Written when the keys are loaded; this type only describes it.
#[derive(ToSchema)]
#[allow(dead_code)] // the schema only
pub(super) struct JwkSet {
    keys: Vec<Jwk>,
}

/// One public key (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2).
#[derive(ToSchema)]
#[allow(dead_code)] // the schema only
pub(super) struct Jwk {
    /// `OKP` (EdDSA), `EC` (ES256) or `RSA` (RS256).
    kty: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    use_: String,
    /// `EdDSA`, `ES256` or `RS256`.
    alg: String,
    /// Matches the `kid` header of the tokens the key signs.
    kid: String,
    /// The curve (`Ed25519`, `P-256`).
    #[schema(nullable = false)]
    crv: Option<String>,
    /// The public key (OKP) or its x coordinate (EC), base64url.
    #[schema(nullable = false)]
    x: Option<String>,
    /// The y coordinate (EC), base64url.
    #[schema(nullable = false)]
    y: Option<String>,
    /// The modulus (RSA), base64url.
    #[schema(nullable = false)]
    n: Option<String>,
    /// The exponent (RSA), base64url.
    #[schema(nullable = false)]
    e: Option<String>,
}

/// RFC 8414 §2 metadata.
// Fields in alphabetical order: the order clients have always seen.
#[derive(Serialize, ToSchema)]
pub(super) struct Metadata<'a> {
    grant_types_supported: &'static [&'static str],
    introspection_endpoint: String,
    introspection_endpoint_auth_methods_supported: &'static [&'static str],
    /// `auth.issuer`: the `iss` of every token.
    issuer: &'a str,
    jwks_uri: String,
    /// None: there is no authorization endpoint.
    response_types_supported: &'static [&'static str],
    revocation_endpoint: String,
    revocation_endpoint_auth_methods_supported: &'static [&'static str],
    /// Every scope some client may be granted.
    scopes_supported: Vec<String>,
    token_endpoint: String,
    token_endpoint_auth_methods_supported: &'static [&'static str],
}

/// How OAuth clients authenticate (RFC 6749 §2.3.1).
const AUTH_METHODS: &[&str] = &["client_secret_basic", "client_secret_post"];

/// The public keys tokens are verified with.
///
/// Cacheable for 5 minutes.
#[utoipa::path(
    method(get, head),
    path = "/.well-known/jwks.json",
    operation_id = "jwks",
    tag = "oauth",
    responses((status = 200, description = "The keys", body = JwkSet)),
)]
pub fn jwks(gate: &Gate) -> Response {
    public_json(gate.jwks())
}

/// Where the OAuth endpoints are and what they support.
///
/// The URLs are `oauth.public_url`'s, else those the request was addressed
/// to (its `X-Forwarded-Proto` and `X-Forwarded-Host`, or `Host`).
/// Cacheable for 5 minutes.
#[utoipa::path(
    method(get, head),
    path = "/.well-known/oauth-authorization-server",
    operation_id = "metadata",
    tag = "oauth",
    responses((status = 200, description = "RFC 8414 metadata", body = Metadata)),
)]
pub fn metadata(gate: &Gate, headers: &HeaderMap) -> Response {
    let request_base = public_base(headers);
    let base = gate.public_base(&request_base);
    let url = |route: Route| format!("{base}{}", route.name());
    let metadata = Metadata {
        grant_types_supported: &["client_credentials", "refresh_token"],
        introspection_endpoint: url(Route::Introspect),
        introspection_endpoint_auth_methods_supported: AUTH_METHODS,
        issuer: gate.issuer(),
        jwks_uri: url(Route::Jwks),
        response_types_supported: &[],
        revocation_endpoint: url(Route::Revoke),
        revocation_endpoint_auth_methods_supported: AUTH_METHODS,
        scopes_supported: gate.scopes_supported(),
        token_endpoint: url(Route::Token),
        token_endpoint_auth_methods_supported: AUTH_METHODS,
    };
    // Our own plain struct: serializing it cannot fail.
    let body = serde_json::to_vec(&metadata).unwrap_or_else(|_| b"{}".to_vec());
    public_json(Bytes::from(body))
}
