//! The oracle shared by the fuzz targets (`fuzz_targets/`) and the property
//! tests (`tests/properties.rs` includes this file): one statement of what
//! tokengate may answer to hostile input, so a fuzzer and proptest hold the
//! parsers to the same rules.
//!
//! The parsers private to `http` (the Bearer header, the JSON and form body
//! readers) are reached the way production reaches them: through
//! `tokengate::http::handle` on a `Gate` built once on the in-memory store.
//! The checks are invariants of the SPEC (§2, §6), not "did not panic":
//! the statuses an input may get, the JSON error shape, that random input
//! never authenticates, and that what does succeed is exactly what was asked.
//!
//! The refresh-token wire format is rebuilt here independently (HMAC keys,
//! layout, base64url) so the decoder is checked against its documented
//! format, not against itself.

// Each target uses part of the oracle; the property tests use all of it.
#![allow(dead_code)]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokengate::config::{OAuthClient, Secret, Settings};
use tokengate::service::Gate;
use tokengate::tokens::RefreshTokens;

/// The server secret of the harness (≥ 32 bytes).
pub const SECRET: &str = "fuzzing-secret-0123456789abcdef-0123456789";
/// The one OAuth client: its secret verifies once with argon2id, then from
/// the cache, so requests carrying it stay cheap.
pub const CLIENT_ID: &str = "fuzz";
pub const CLIENT_SECRET: &str = "fuzz-secret";
pub const CLIENT_SCOPES: [&str; 2] = ["read", "write"];
/// SPEC §2: the largest body read.
pub const BODY_LIMIT: usize = 16 * 1024;

// ---------------------------------------------------------------------------
// The refresh-token wire format, rebuilt from its documentation
// (src/tokens/refresh.rs): base64url(sid 16 ‖ generation 4 BE ‖ secret 32 ‖
// tag 16), tag = HMAC-SHA256(tag key, the rest)[..16], keys derived from the
// root secret by HMAC over fixed labels.

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn tag_key(root: &[u8]) -> [u8; 32] {
    hmac(root, &[b"tokengate/refresh-token/tag/v1"])
}

fn successor_key(root: &[u8]) -> [u8; 32] {
    hmac(root, &[b"tokengate/refresh-token/successor/v1"])
}

/// The fields of a refresh token, as the harness builds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireToken {
    pub sid: [u8; 16],
    pub generation: u32,
    pub secret: [u8; 32],
    /// Whose session (1 to 512 bytes of UTF-8).
    pub owner: String,
}

impl WireToken {
    /// Reads the fields from (at least) 53 bytes of input, the owner from
    /// the rest; `None` if shorter, or the rest is no owner.
    pub fn from_bytes(data: &[u8]) -> Option<Self> {
        let owner = std::str::from_utf8(data.get(52..)?).ok()?;
        if owner.is_empty() || owner.len() > 512 {
            return None;
        }
        Some(Self {
            sid: data.get(..16)?.try_into().ok()?,
            generation: u32::from_be_bytes(data.get(16..20)?.try_into().ok()?),
            secret: data.get(20..52)?.try_into().ok()?,
            owner: owner.to_owned(),
        })
    }

    /// The token text a server with `root` would hand out.
    pub fn encode(&self, root: &[u8]) -> String {
        let mut raw = Vec::with_capacity(68 + self.owner.len());
        raw.extend_from_slice(&self.sid);
        raw.extend_from_slice(&self.generation.to_be_bytes());
        raw.extend_from_slice(&self.secret);
        raw.extend_from_slice(self.owner.as_bytes());
        let tag = hmac(&tag_key(root), &[&raw]);
        raw.extend_from_slice(&tag[..16]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The documented successor: same sid, next generation, derived secret.
    pub fn successor(&self, root: &[u8]) -> Option<Self> {
        Some(Self {
            owner: self.owner.clone(),
            sid: self.sid,
            generation: self.generation.checked_add(1)?,
            secret: hmac(
                &successor_key(root),
                &[&self.sid, &self.generation.to_be_bytes(), &self.secret],
            ),
        })
    }

    /// What the store keeps: SHA-256 of the secret, first 128 bits.
    pub fn secret_hash(&self) -> [u8; 16] {
        Sha256::digest(self.secret)[..16]
            .try_into()
            .expect("16 bytes")
    }
}

/// Checks `RefreshTokens::decode` and friends on one token the harness
/// minted itself: accepted, fields intact, canonical (re-encodes to the very
/// same text), and its successor is the documented one.
pub fn check_minted(tokens: &RefreshTokens, root: &[u8], wire: WireToken) -> String {
    let text = wire.encode(root);
    let decoded = tokens
        .decode(&text)
        .unwrap_or_else(|| panic!("a correctly minted token is refused: {text}"));
    assert_eq!(decoded.sid.as_bytes(), &wire.sid);
    assert_eq!(decoded.generation, wire.generation);
    assert_eq!(decoded.owner, wire.owner);
    assert_eq!(decoded.secret_hash(), wire.secret_hash());
    assert_eq!(
        tokens.encode(&decoded),
        text,
        "decode∘encode is not the identity"
    );
    match (tokens.successor(&decoded), wire.successor(root)) {
        (None, None) => {}
        (Some(next), Some(expected)) => {
            let next_text = tokens.encode(&next);
            assert_eq!(
                next_text,
                expected.encode(root),
                "successor differs from its definition"
            );
            assert_eq!(tokens.decode(&next_text), Some(next));
        }
        (got, expected) => panic!("successor {got:?}, expected {expected:?}"),
    }
    text
}

/// Checks the decoder on any text: it accepts only what it would itself
/// have written (so one token has one spelling).
pub fn check_decode(tokens: &RefreshTokens, text: &str) {
    if let Some(token) = tokens.decode(text) {
        assert_eq!(
            tokens.encode(&token),
            text,
            "accepted a non-canonical token"
        );
    }
}

/// Applies edit operations read from `ops` (three bytes each: kind,
/// position, byte) to `text`: replace, insert, delete, truncate, append.
pub fn mutate(text: &[u8], ops: &[u8]) -> Vec<u8> {
    let mut out = text.to_vec();
    for op in ops.chunks_exact(3) {
        let (kind, byte) = (op[0] % 5, op[2]);
        let at = |len: usize| {
            if len == 0 {
                0
            } else {
                usize::from(op[1]) % len
            }
        };
        match kind {
            0 if !out.is_empty() => {
                let i = at(out.len());
                out[i] = byte;
            }
            1 => {
                let i = at(out.len() + 1);
                out.insert(i, byte);
            }
            2 if !out.is_empty() => {
                let i = at(out.len());
                out.remove(i);
            }
            3 => out.truncate(at(out.len() + 1)),
            _ => out.push(byte),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The router, built once.

pub struct Harness {
    runtime: tokio::runtime::Runtime,
    pub app: Gate,
    pub refresh_tokens: RefreshTokens,
    /// An access token of a live session, for mutation.
    pub access: String,
    pub access_jti: String,
}

/// One answer, body collected.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} body is not JSON ({e}): {:?}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Fails unless the status is one of `allowed`; returns self for chaining.
    pub fn expect_status(&self, allowed: &[u16], what: &str) -> &Self {
        assert!(
            allowed.contains(&self.status),
            "{what}: status {} not in {allowed:?}; body {:?}",
            self.status,
            self.body
        );
        self
    }
}

pub static HARNESS: LazyLock<Harness> = LazyLock::new(Harness::new);

impl Harness {
    fn new() -> Self {
        let mut settings = Settings::default();
        settings.auth.secret = Secret::new(SECRET);
        settings.oauth.clients = vec![OAuthClient {
            id: CLIENT_ID.into(),
            secret_hash: tokengate::clients::hash_secret(CLIENT_SECRET.as_bytes()).expect("hash"),
            scopes: CLIENT_SCOPES.iter().map(|s| s.to_string()).collect(),
            refresh_tokens: true,
            rate_limit: 0,
        }];
        // One in-memory database per harness (sqlx names each uniquely).
        settings.database.url = Secret::new("sqlite::memory:");
        settings.database.max_connections = 1;
        let settings = settings.resolved().expect("valid harness settings");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // The database pool starts its upkeep task on the runtime it is built in.
        let app = runtime.block_on(async {
            let app = tokengate::app::build(&settings).expect("build app");
            app.migrate().await.expect("migrations");
            // The embedded store without login clients: /login is open.
            app.load_clients().await.expect("clients");
            app
        });
        let mut harness = Self {
            runtime,
            app,
            refresh_tokens: RefreshTokens::new(SECRET.as_bytes()),
            access: String::new(),
            access_jti: String::new(),
        };
        let login = harness.send(post(
            "/login",
            Some("application/json"),
            br#"{"user_id":"fuzz"}"#,
        ));
        assert_eq!(login.status, 200, "harness login: {:?}", login.body);
        harness.access = login.json()["access"].as_str().expect("access").to_owned();
        let claims = harness.send(bearer(Method::GET, "/authenticate", &harness.access));
        assert_eq!(claims.status, 200);
        harness.access_jti = claims.json()["jti"].as_str().expect("jti").to_owned();
        // Verify the client secret once, so later requests hit the cache.
        let token = harness.send(with_basic(
            post(
                "/oauth/token",
                Some("application/x-www-form-urlencoded"),
                b"grant_type=client_credentials",
            ),
            CLIENT_ID,
            CLIENT_SECRET,
        ));
        assert_eq!(token.status, 200, "harness client: {:?}", token.body);
        harness.revoke(&token.json()["access_token"]);
        harness
    }

    /// Runs one request through the production router.
    pub fn send(&self, request: Request<Full<Bytes>>) -> Reply {
        self.runtime.block_on(async {
            let response =
                tokengate::http::handle(&self.app, tokengate::http::Listener::Public, request)
                    .await;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.expect("infallible").to_bytes();
            let reply = Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            };
            check_shape(&reply);
            reply
        })
    }

    /// Ends the session of a token we were given, keeping memory flat.
    pub fn revoke(&self, token: &Value) {
        let token = token.as_str().expect("token string");
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .finish();
        let reply = self.send(with_basic(
            post(
                "/oauth/revoke",
                Some("application/x-www-form-urlencoded"),
                body.as_bytes(),
            ),
            CLIENT_ID,
            CLIENT_SECRET,
        ));
        assert_eq!(reply.status, 200, "revoke: {:?}", reply.body);
    }

    /// `/authenticate` with `access`; the JSON claims when it passes.
    pub fn authenticate(&self, access: &str) -> Option<Reply> {
        let reply = self.send(bearer(Method::GET, "/authenticate", access));
        reply.expect_status(&[200, 401], "authenticate");
        (reply.status == 200).then_some(reply)
    }
}

/// The SPEC's error shape for every status ≥ 400, and the code that belongs
/// to the status. Our memory store never fails and the harness client has no
/// rate limit, so 429, 500 and 503 never happen here.
pub fn check_shape(reply: &Reply) {
    assert!(
        ![429, 500, 503].contains(&reply.status),
        "status {} on the memory store: {:?}",
        reply.status,
        reply.body
    );
    if reply.status < 400 {
        return;
    }
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    let object = body.as_object().expect("error body is an object");
    assert_eq!(
        object.len(),
        2,
        "error body has exactly error and error_description: {body}"
    );
    let code = object["error"].as_str().expect("error is a string");
    assert!(object["error_description"].is_string(), "{body}");
    let allowed: &[&str] = match reply.status {
        400 => &[
            "invalid_request",
            "invalid_grant",
            "unauthorized_client",
            "unsupported_grant_type",
            "invalid_scope",
        ],
        401 => &["invalid_token", "invalid_grant", "invalid_client"],
        403 => &["insufficient_scope"],
        404 => &["not_found"],
        405 => &["method_not_allowed"],
        413 => &["payload_too_large"],
        415 => &["unsupported_media_type"],
        other => panic!("unexpected status {other}: {body}"),
    };
    assert!(
        allowed.contains(&code),
        "{} with error {code}",
        reply.status
    );
    match code {
        "invalid_token" => {
            let challenge = reply
                .header("www-authenticate")
                .expect("401 invalid_token challenge");
            assert!(
                challenge.starts_with(r#"Bearer realm="tokengate""#),
                "{challenge}"
            );
        }
        "invalid_client" => {
            let challenge = reply
                .header("www-authenticate")
                .expect("invalid_client challenge");
            assert!(challenge.starts_with("Basic "), "{challenge}");
        }
        "method_not_allowed" => assert!(reply.header("allow").is_some()),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Requests.

pub fn post(path: &str, content_type: Option<&str>, body: &[u8]) -> Request<Full<Bytes>> {
    let mut request = Request::post(path)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    if let Some(content_type) = content_type {
        request.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("content type"),
        );
    }
    request
}

/// A request with arbitrary header bytes; `None` when they cannot be a
/// header value at all (hyper would have refused the request before us).
pub fn with_header(
    mut request: Request<Full<Bytes>>,
    name: http::HeaderName,
    value: &[u8],
) -> Option<Request<Full<Bytes>>> {
    let value = HeaderValue::from_bytes(value).ok()?;
    request.headers_mut().insert(name, value);
    Some(request)
}

pub fn with_basic(request: Request<Full<Bytes>>, id: &str, secret: &str) -> Request<Full<Bytes>> {
    let header = basic_header(id.as_bytes(), secret.as_bytes());
    with_header(request, AUTHORIZATION, &header).expect("base64 is a header value")
}

pub fn bearer(method: Method, path: &str, token: &str) -> Request<Full<Bytes>> {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Full::default())
        .expect("request");
    with_header(request, AUTHORIZATION, format!("Bearer {token}").as_bytes())
        .expect("token is a header value")
}

pub fn basic_header(id: &[u8], secret: &[u8]) -> Vec<u8> {
    let mut credentials = id.to_vec();
    credentials.push(b':');
    credentials.extend_from_slice(secret);
    format!("Basic {}", STANDARD.encode(credentials)).into_bytes()
}

/// The methods a fuzz byte picks from (nginx forwards any to /authenticate).
pub fn method(byte: u8) -> Method {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
    ][usize::from(byte) % 7]
        .clone()
}

/// Content types a fuzz byte picks from; `None`: the fuzz input's own bytes
/// (or no header, if they are not a header value).
pub fn content_type(byte: u8) -> Option<Option<&'static str>> {
    match byte % 8 {
        0 => Some(None),
        1 => Some(Some("application/json")),
        2 => Some(Some("application/json; charset=utf-8")),
        3 => Some(Some("application/x-www-form-urlencoded")),
        4 => Some(Some("text/plain")),
        5 => Some(Some("application/merge-patch+json")),
        6 => Some(Some("multipart/form-data; boundary=x")),
        _ => None,
    }
}

/// What SPEC §2 calls a JSON content type: `application/json` or
/// `application/*+json`, case-insensitive, parameters after `;` ignored.
pub fn is_json(content_type: &[u8]) -> bool {
    media_type(content_type).is_some_and(|t| {
        t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
    })
}

pub fn is_form(content_type: &[u8]) -> bool {
    media_type(content_type).is_some_and(|t| t == "application/x-www-form-urlencoded")
}

fn media_type(content_type: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(content_type).ok()?;
    let essence = text.split(';').next()?.trim();
    Some(essence.to_ascii_lowercase())
}

/// The request's `Content-Type` bytes, if any.
pub fn content_type_of(request: &Request<Full<Bytes>>) -> Option<Vec<u8>> {
    request
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.as_bytes().to_vec())
}

/// Whether the request declares more body than the limit.
pub fn declares_too_much(request: &Request<Full<Bytes>>) -> bool {
    request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > BODY_LIMIT as u64)
}

// ---------------------------------------------------------------------------
// Endpoint invariants.

/// `/authenticate` and `/logout` with an arbitrary `Authorization` value and
/// no body: always `401`, never a pass. The challenge names `invalid_token`
/// exactly when a Bearer token was given (or the header is not text).
pub fn check_bearer_garbage(harness: &Harness, method: Method, path: &str, header: &[u8]) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Full::default())
        .expect("request");
    let Some(request) = with_header(request, AUTHORIZATION, header) else {
        return;
    };
    let reply = harness.send(request);
    reply.expect_status(&[401], "garbage Authorization");
    let challenge = reply.header("www-authenticate").map(str::to_owned);
    let gave_token = match std::str::from_utf8(header) {
        Ok(text) if text.is_ascii() => {
            text.trim().split_once(' ').is_some_and(|(scheme, token)| {
                scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()
            })
        }
        // Not visible ASCII: refused as a malformed token.
        _ => true,
    };
    let invalid = challenge
        .as_deref()
        .is_some_and(|c| c.contains(r#"error="invalid_token""#));
    if path == "/authenticate" {
        assert_eq!(
            invalid, gave_token,
            "challenge {challenge:?} for {header:?}"
        );
    } else if gave_token {
        assert!(invalid, "logout with a bad bearer token: {challenge:?}");
    }
}

/// `/authenticate` with the harness's live access token after `ops` edits:
/// it passes only if the signed part is untouched, and then it is the same
/// token (same `jti`).
pub fn check_mutated_access(harness: &Harness, ops: &[u8]) {
    let mutated = mutate(harness.access.as_bytes(), ops);
    let mut header = b"Bearer ".to_vec();
    header.extend_from_slice(&mutated);
    let request = Request::get("/authenticate")
        .body(Full::default())
        .expect("request");
    let Some(request) = with_header(request, AUTHORIZATION, &header) else {
        return;
    };
    let reply = harness.send(request);
    reply.expect_status(&[200, 401], "mutated access token");
    if reply.status == 200 {
        // HS256 signs `header.payload`: that part must be the original's.
        let token = String::from_utf8_lossy(&mutated).trim().to_owned();
        let signing_input = |t: &str| t.rsplit_once('.').map(|(signed, _)| signed.to_owned());
        assert_eq!(
            signing_input(&token),
            signing_input(&harness.access),
            "a changed token passed: {token:?}"
        );
        assert_eq!(reply.json()["jti"], harness.access_jti.as_str());
    }
}

/// A JSON endpoint with an arbitrary content type and body: only the
/// statuses SPEC §2 allows, 415 exactly for non-JSON types, 413 exactly for
/// oversized bodies, and a success only where the body really asked for it.
/// Returns the status.
pub fn check_json_endpoint(harness: &Harness, path: &str, request: Request<Full<Bytes>>) -> u16 {
    let content_type = content_type_of(&request);
    let too_much = declares_too_much(&request);
    let body = request.body().clone();
    let body = harness
        .runtime
        .block_on(body.collect())
        .expect("infallible")
        .to_bytes();
    let reply = harness.send(request);
    let wrong_type = content_type.as_deref().is_some_and(|t| !is_json(t));
    assert_eq!(
        reply.status == 415,
        wrong_type,
        "415 iff not JSON ({content_type:?})"
    );
    if !wrong_type {
        assert_eq!(
            reply.status == 413,
            too_much || body.len() > BODY_LIMIT,
            "413 iff over the limit ({} bytes)",
            body.len()
        );
    }
    match path {
        "/login" => {
            reply.expect_status(&[200, 400, 413, 415], path);
            if reply.status == 200 {
                check_login(harness, &body, &reply);
            }
        }
        "/refresh" => {
            reply.expect_status(&[400, 401, 413, 415], path);
        }
        "/logout" => {
            reply.expect_status(&[400, 401, 413, 415], path);
        }
        "/oauth/verify" => {
            reply.expect_status(&[200, 400, 413, 415], path);
            if reply.status == 200 {
                assert_eq!(reply.json(), serde_json::json!({"valid": false}));
            }
        }
        other => panic!("not a JSON endpoint: {other}"),
    }
    if reply.status == 400 {
        assert_eq!(reply.json()["error"], "invalid_request", "{path}");
    }
    reply.status
}

/// A `/login` that succeeded: the body was an object with a valid `user_id`,
/// and the pair works — the access token authenticates as that user, the
/// refresh token is ours and names the same session. Then it is logged out.
fn check_login(harness: &Harness, body: &[u8], reply: &Reply) {
    // RFC 8259: JSON text is UTF-8, in every field, kept or ignored. (An
    // escaped lone surrogate is grammatical JSON; `Value` would refuse it, a
    // struct that skips the field does not, so read it as the server does.)
    #[derive(serde::Deserialize)]
    struct LoginBody {
        user_id: Value,
    }
    let text = std::str::from_utf8(body).expect("200 for a body that is not UTF-8");
    let request: LoginBody = serde_json::from_str(text).expect("200 for a body that is not JSON");
    let sub = match &request.user_id {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        other => panic!("200 for user_id {other}"),
    };
    assert!(
        !sub.is_empty() && sub.len() <= 255 && !sub.chars().any(char::is_control),
        "200 for user_id {sub:?}"
    );
    let pair = reply.json();
    let access = pair["access"].as_str().expect("access");
    let passed = harness
        .authenticate(access)
        .expect("a fresh access token passes");
    // UTF-8 ids travel as raw header bytes (obs-text), not visible ASCII.
    let user = passed.headers.get("x-user-id").map(|v| v.as_bytes());
    assert_eq!(user, Some(sub.as_bytes()));
    let session = pair["session_id"].as_str().expect("session_id");
    assert_eq!(passed.header("x-session-id"), Some(session));
    let refresh = harness
        .refresh_tokens
        .decode(pair["refresh"].as_str().expect("refresh"))
        .expect("the refresh token is one of ours");
    assert_eq!(refresh.sid.to_string(), session);
    assert_eq!(refresh.generation, 0);
    let logout = harness.send(bearer(Method::POST, "/logout", access));
    assert_eq!(logout.status, 200);
    assert!(
        harness.authenticate(access).is_none(),
        "logged out, still passes"
    );
}

/// How the caller authenticated in a form-endpoint case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    /// Basic with the harness client's real credentials.
    Good,
    /// Basic with the real id and a wrong secret (pays argon2id: used rarely).
    WrongSecret,
    /// The fuzz input's own bytes as the `Authorization` value.
    Raw,
}

/// An OAuth endpoint (`/oauth/token`, `/oauth/introspect`, `/oauth/revoke`)
/// with arbitrary parameters: only the statuses SPEC §6 allows, 415 exactly
/// for types that are neither form nor JSON, and a success only for an
/// authenticated client; a minted token is exactly what was granted.
pub fn check_form_endpoint(
    harness: &Harness,
    path: &str,
    auth: Auth,
    request: Request<Full<Bytes>>,
) {
    let content_type = content_type_of(&request);
    let too_much = declares_too_much(&request);
    let raw_auth = request
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let body = harness
        .runtime
        .block_on(request.body().clone().collect())
        .expect("infallible")
        .to_bytes();
    let reply = harness.send(request);
    let wrong_type = content_type
        .as_deref()
        .is_some_and(|t| !is_json(t) && !is_form(t));
    assert_eq!(
        reply.status == 415,
        wrong_type,
        "415 iff neither form nor JSON ({content_type:?})"
    );
    if !wrong_type {
        assert_eq!(
            reply.status == 413,
            too_much || body.len() > BODY_LIMIT,
            "413 iff over the limit"
        );
    }
    reply.expect_status(&[200, 400, 401, 413, 415], path);
    if reply.status == 401 {
        assert_eq!(reply.json()["error"], "invalid_client", "{path}");
    }
    if reply.status != 200 {
        return;
    }
    let json_body = content_type.as_deref().is_some_and(is_json);
    let params = params_of(&body, json_body);
    let secret_in_body = params
        .iter()
        .any(|(k, v)| k == "client_secret" && v == CLIENT_SECRET);
    let basic_ok = match auth {
        Auth::Good => true,
        Auth::Raw => raw_auth
            .as_deref()
            .and_then(|h| tokengate::clients::parse_basic(h).ok())
            .is_some_and(|(_, secret)| form_decode(&secret) == CLIENT_SECRET.as_bytes()),
        Auth::None | Auth::WrongSecret => false,
    };
    assert!(
        basic_ok || secret_in_body,
        "{path} answered 200 to an unauthenticated caller"
    );
    let answer = reply.json();
    match path {
        "/oauth/introspect" => assert_eq!(answer, serde_json::json!({"active": false})),
        "/oauth/revoke" => assert_eq!(answer, serde_json::json!({})),
        "/oauth/token" => check_granted(harness, &params, &answer),
        other => panic!("not an OAuth endpoint: {other}"),
    }
}

/// A token answer: only `client_credentials` can succeed with fuzz input;
/// the scope is within the client's, the access token authenticates as the
/// client with that scope, the refresh token is ours. Then it is revoked.
fn check_granted(harness: &Harness, params: &[(String, String)], answer: &Value) {
    let grant: Vec<&str> = params
        .iter()
        .filter(|(k, v)| k == "grant_type" && !v.is_empty())
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        grant.is_empty() || grant == ["client_credentials"],
        "granted for grant_type {grant:?}"
    );
    assert_eq!(answer["token_type"], "Bearer");
    let scope = answer["scope"].as_str().unwrap_or("");
    assert!(
        scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .all(|s| CLIENT_SCOPES.contains(&s)),
        "granted scope {scope:?} beyond the client's"
    );
    let access = answer["access_token"].as_str().expect("access_token");
    let passed = harness
        .authenticate(access)
        .expect("a granted token passes");
    // The gate names a client's session `client:<id>` (SPEC §11).
    let owner = format!("{}{CLIENT_ID}", tokengate::tokens::CLIENT_PREFIX);
    assert_eq!(passed.header("x-user-id"), Some(owner.as_str()));
    assert_eq!(passed.header("x-scope").unwrap_or(""), scope);
    let refresh = answer["refresh_token"]
        .as_str()
        .expect("refresh_token for this client");
    assert!(harness.refresh_tokens.decode(refresh).is_some());
    harness.revoke(&answer["access_token"]);
    assert!(
        harness.authenticate(access).is_none(),
        "revoked, still passes"
    );
}

/// The parameters as RFC 6749 reads them (form) or SPEC §6 (JSON strings);
/// empty when the body is not such an object.
fn params_of(body: &[u8], json: bool) -> Vec<(String, String)> {
    if json {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned())))
                .collect(),
            _ => Vec::new(),
        }
    } else {
        form_urlencoded::parse(body).into_owned().collect()
    }
}

/// `application/x-www-form-urlencoded` decoding of a Basic field (RFC 6749 §2.3.1).
pub fn form_decode(raw: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&spaced).collect()
}

/// `parse_basic` on arbitrary bytes: a result only for a `Basic` header whose
/// payload is canonical base64 of `id:secret`, with `id` free of `:` and
/// UTF-8; and the credentials re-encode to a header that parses the same.
pub fn check_parse_basic(header: &[u8]) {
    use tokengate::clients::{ClientError, parse_basic};
    match parse_basic(header) {
        Ok((id, secret)) => {
            assert!(!id.contains(':'), "id {id:?} holds a colon");
            let text = std::str::from_utf8(header).expect("accepted non-UTF-8");
            let (scheme, payload) = text
                .trim()
                .split_once(' ')
                .expect("accepted without a space");
            assert!(
                scheme.eq_ignore_ascii_case("basic"),
                "accepted scheme {scheme:?}"
            );
            let decoded = STANDARD
                .decode(payload.trim())
                .expect("accepted bad base64");
            let mut expected = id.clone().into_bytes();
            expected.push(b':');
            expected.extend_from_slice(&secret);
            assert_eq!(decoded, expected);
            let again = parse_basic(&basic_header(id.as_bytes(), &secret));
            assert_eq!(again.ok(), Some((id, secret)));
        }
        Err(ClientError::Missing) => {
            // Another scheme: the text has a scheme that is not Basic.
            let text = std::str::from_utf8(header).expect("Missing for non-UTF-8");
            let scheme = text.trim().split_once(' ').map(|(s, _)| s);
            assert!(scheme.is_some_and(|s| !s.eq_ignore_ascii_case("basic")));
        }
        Err(ClientError::Malformed) => {}
        Err(other) => panic!("parse_basic gave {other:?}"),
    }
}

/// `parse_basic` on the header built from `id` (no `:`) and any secret
/// bytes: exactly those credentials come back, whatever the scheme's case
/// and surrounding spaces.
pub fn check_basic_round_trip(id: &str, secret: &[u8], scheme: &str, pad: usize) {
    assert!(!id.contains(':'));
    let mut header = " ".repeat(pad % 3).into_bytes();
    header.extend_from_slice(scheme.as_bytes());
    header.push(b' ');
    let mut credentials = id.as_bytes().to_vec();
    credentials.push(b':');
    credentials.extend_from_slice(secret);
    header.extend_from_slice(STANDARD.encode(credentials).as_bytes());
    header.extend_from_slice(" ".repeat(pad / 3 % 3).as_bytes());
    assert_eq!(
        tokengate::clients::parse_basic(&header).ok(),
        Some((id.to_owned(), secret.to_vec())),
        "{header:?}"
    );
}
