//! SPEC §9: API tokens for services. Two replicas on a real Redis (the
//! shared cache) and a database (SQLite, or a real PostgreSQL where the
//! scenario is about the cluster), with the `tokengate token` CLI working on
//! the same database and Redis. A token made anywhere works on every
//! replica; a revocation holds on every replica within 1 s; expired, unknown
//! and malformed tokens are refused alike, also at the gate; only the admin
//! token manages tokens; `/health` names its components; a Redis restart
//! loses only the cache.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use serde_json::{Value, json};
use tokengate::config::{Secret, Settings};
use tokengate::db::{ApiTokenRecord, Database, DurableStore};
use tokengate::tokens::api as format;
use uuid::Uuid;

use crate::helpers::{Backend, Cluster, Db, Replica, SECRET, eventually};
use crate::support::client::{self, Reply, json_body, request};
use crate::support::postgres::PostgresServer;

const BIN: &str = env!("CARGO_BIN_EXE_tokengate");

/// The admin token of the test clusters (its argon2id hash is configured).
pub const ADMIN_TOKEN: &str = "integration-admin-token-0123456789abcdefghij";

/// What a revocation must take at most to hold on every replica (SPEC §9).
const EVERYWHERE_WITHIN: Duration = Duration::from_secs(1);

const INVALID_TOKEN: &str = r#"Bearer realm="tokengate", error="invalid_token""#;
const NO_TOKEN: &str = r#"Bearer realm="tokengate""#;

/// Argon2 is slow on purpose: hash the admin token once per test binary.
pub(crate) fn admin_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| tokengate::clients::hash_secret(ADMIN_TOKEN.as_bytes()).unwrap())
}

/// Replicas on Redis and `db`, with the admin token configured and no
/// lock-out after failed admin tokens (the throttle test sets its own).
pub(crate) async fn cluster(
    db: Db,
    replicas: usize,
    configure: impl FnOnce(&mut Settings),
) -> Cluster {
    Cluster::start_with(Backend::Redis, replicas, |s| {
        db.configure(s);
        s.admin.token_hash = admin_hash().to_owned();
        s.throttle.max_failures = 0;
        configure(s);
    })
    .await
}

/// The cluster's database, as another process opens it.
pub(crate) fn database(c: &Cluster) -> Database {
    Database::open(&c.settings.database).expect("open the cluster's database")
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Seconds since the epoch of an RFC 3339 time the service wrote.
fn seconds(rfc3339: &Value) -> u64 {
    let text = rfc3339
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {rfc3339}"));
    humantime::parse_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `method path` at `addr`, with `Authorization: Bearer token` when given
/// and a JSON body when given.
async fn call_at(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let mut builder = request(method, path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(body) => {
            builder = builder.header("content-type", "application/json");
            json_body(body)
        }
        None => Full::default(),
    };
    client::send(addr, builder.body(body).unwrap()).await
}

/// [`call_at`] the replica's public port.
async fn call(
    replica: &Replica,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    call_at(replica.addr, method, path, token, body).await
}

/// [`call_at`] the replica's admin listener, where `/admin/*` is served.
async fn operator(
    replica: &Replica,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    call_at(replica.admin_addr, method, path, token, body).await
}

/// An admin API call with the admin token.
async fn admin(replica: &Replica, method: Method, path: &str, body: Option<&Value>) -> Reply {
    operator(replica, method, path, Some(ADMIN_TOKEN), body).await
}

/// A token made with `POST /admin/tokens`.
pub(crate) struct Created {
    pub token: String,
    pub id: String,
    /// The `201` body.
    pub view: Value,
}

impl Created {
    fn hash(&self) -> String {
        format::parse(&self.token)
            .expect("a well-formed token")
            .hex()
    }
}

pub(crate) async fn create(replica: &Replica, body: Value) -> Created {
    let reply = admin(replica, Method::POST, "/admin/tokens", Some(&body)).await;
    assert_eq!(reply.status, 201, "{body}: {:?}", reply.body);
    let view = reply.json();
    Created {
        token: reply.field("token"),
        id: reply.field("id"),
        view,
    }
}

async fn show(replica: &Replica, id: &str) -> Value {
    let reply = admin(replica, Method::GET, &format!("/admin/tokens/{id}"), None).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.json()
}

pub(crate) async fn revoke(replica: &Replica, id: &str) -> Reply {
    admin(
        replica,
        Method::POST,
        &format!("/admin/tokens/{id}/revoke"),
        None,
    )
    .await
}

/// The ids `GET /admin/tokens{query}` lists, in order.
async fn listed(replica: &Replica, query: &str) -> Vec<String> {
    let reply = admin(replica, Method::GET, &format!("/admin/tokens{query}"), None).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.json()["tokens"]
        .as_array()
        .expect("a list of tokens")
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `POST /auth/validate`; asserts `200` (valid or not is in the body).
async fn validate(replica: &Replica, token: &str, required: &[&str]) -> Value {
    let reply = replica
        .post_json(
            "/auth/validate",
            &json!({"token": token, "required_scopes": required}),
        )
        .await;
    assert_eq!(reply.status, 200, "validate: {:?}", reply.body);
    reply.json()
}

/// Whether `/auth/validate` says valid.
pub(crate) async fn validates(replica: &Replica, token: &str) -> bool {
    let answer = validate(replica, token, &[]).await;
    match answer["valid"].as_bool() {
        Some(true) => true,
        Some(false) => {
            assert_eq!(answer, json!({"valid": false}), "says nothing more");
            false
        }
        None => panic!("no verdict: {answer}"),
    }
}

/// `/authenticate{query}` with the token as `Bearer`.
async fn gate(replica: &Replica, token: &str, query: &str) -> Reply {
    call(
        replica,
        Method::GET,
        &format!("/authenticate{query}"),
        Some(token),
        None,
    )
    .await
}

/// Whether `/authenticate` lets the token pass: `200`, or `401
/// invalid_token` with its challenge; anything else panics.
pub(crate) async fn passes(replica: &Replica, token: &str) -> bool {
    let reply = gate(replica, token, "").await;
    match reply.status.as_u16() {
        200 => true,
        401 => {
            assert_refused(&reply);
            false
        }
        other => panic!("authenticate answered {other}: {:?}", reply.body),
    }
}

/// `401 invalid_token` with `WWW-Authenticate: Bearer realm, error`.
fn assert_refused(reply: &Reply) {
    assert_eq!(reply.status, 401, "{:?}", reply.body);
    assert_eq!(reply.error(), "invalid_token");
    assert_eq!(reply.header("www-authenticate"), Some(INVALID_TOKEN));
}

/// Whether every replica refuses the token, at `/auth/validate` and at the gate.
pub(crate) async fn refused_everywhere(c: &Cluster, token: &str) -> bool {
    for replica in &c.replicas {
        if validates(replica, token).await || passes(replica, token).await {
            return false;
        }
    }
    true
}

/// Polls until every replica refuses `token`; asserts that took at most
/// [`EVERYWHERE_WITHIN`] from `since`.
async fn assert_refused_everywhere_within_a_second(c: &Cluster, token: &str, since: Instant) {
    let refused = eventually(EVERYWHERE_WITHIN, || refused_everywhere(c, token)).await;
    let took = since.elapsed();
    assert!(refused, "still accepted somewhere after {took:?}");
    assert!(
        took <= EVERYWHERE_WITHIN,
        "refused everywhere after {took:?}"
    );
}

/// The `tg:at:` cache key of a token.
pub(crate) fn cache_key(token: &str) -> String {
    format!("tg:at:{}", format::parse(token).expect("well formed").hex())
}

/// Runs the `tokengate` binary with the cluster's database, Redis and key.
pub(crate) async fn cli(c: &Cluster, args: &[&str]) -> (ExitStatus, String, String) {
    let output = tokio::process::Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TOKENGATE__DATABASE__URL", c.settings.database.url.expose())
        .env("TOKENGATE__CACHE__URL", c.settings.cache.url.expose())
        .env("TOKENGATE__AUTH__SECRET", SECRET)
        .env("TOKENGATE__LOGIN__OPEN", "true")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run tokengate");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `field: value` lines of the CLI's table mode.
pub(crate) fn fields(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// A record written straight into the database, as `api_tokens::create`
/// would; returns the token.
async fn insert(db: &Database, name: &str, scopes: &[&str], expires_at: Option<u64>) -> String {
    let (token, hash) = format::generate();
    let now = now_ms();
    let record = ApiTokenRecord {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        token_hash: hash.hex(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        created_at: now.saturating_sub(86_400_000),
        expires_at,
        last_used_at: None,
        revoked_at: None,
    };
    db.create_api_token(&record).await.expect("insert a token");
    token
}

// --- the scenarios ---------------------------------------------------------------

/// Real Redis, real PostgreSQL, two replicas and the CLI: a token the CLI
/// made is valid on both replicas; a revocation through the admin API on one
/// replica, or through the CLI, holds on both within 1 s, although both had
/// the token cached as live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_token_works_everywhere_and_a_revocation_holds_everywhere_within_a_second() {
    let c = cluster(Db::Postgres, 2, |_| {}).await;

    let (status, out, err) = cli(
        &c,
        &[
            "token", "create", "billing", "--scopes", "read", "write", "--ttl", "30",
        ],
    )
    .await;
    assert!(status.success(), "{err}");
    let token = out.lines().next().unwrap_or_default().to_owned();
    assert!(format::parse(&token).is_some(), "the token first: {out}");
    let hash = format::parse(&token).unwrap().hex();
    let created = fields(&out);
    let id = created["id"].clone();
    assert!(Uuid::parse_str(&id).is_ok(), "{out}");
    assert_eq!(created["name"], "billing");
    assert_eq!(created["scopes"], "read write");
    assert_eq!(created["status"], "active");
    assert_eq!(created["last used"], "never");
    assert!(!out[token.len()..].contains(&token) && !out.contains(&hash));
    assert!(!err.contains(&token) && err.contains(&id), "{err}");

    // A first: the token is cached; then B answers from that cache.
    let on_a = validate(c.a(), &token, &["read"]).await;
    assert_eq!(
        on_a,
        json!({"valid": true, "scopes": ["read", "write"], "token_id": id, "name": "billing"})
    );
    assert_eq!(c.redis().keys(&cache_key(&token)).len(), 1, "cached");
    assert_eq!(validate(c.b(), &token, &["write"]).await, on_a);
    let at_gate = gate(c.b(), &token, "").await;
    assert_eq!(at_gate.status, 200, "{:?}", at_gate.body);
    assert_eq!(at_gate.header("x-user-id"), Some("token:billing"));
    assert_eq!(at_gate.header("x-token-id"), Some(id.as_str()));
    assert_eq!(at_gate.header("x-scope"), Some("read write"));
    assert_eq!(at_gate.header("x-session-id"), None, "no session");
    assert_eq!(
        at_gate.json(),
        json!({"sub": "token:billing", "token_id": id, "name": "billing", "scope": "read write"})
    );
    assert!(passes(c.a(), &token).await);
    // Its use is written behind (then not again for a minute): wait for it,
    // so that every view below is of the same record.
    let used = eventually(Duration::from_secs(5), || async {
        !show(c.a(), &id).await["last_used_at"].is_null()
    })
    .await;
    assert!(used, "last_used_at is recorded in PostgreSQL");

    // The CLI shows it, never the token or its hash.
    let (status, table, err) = cli(&c, &["token", "list"]).await;
    assert!(status.success(), "{err}");
    assert!(table.starts_with("ID "), "{table}");
    let row = table.lines().find(|l| l.starts_with(&id)).expect(&table);
    assert!(row.contains("billing") && row.contains("read write") && row.contains("active"));
    let (status, listed_json, _) = cli(&c, &["token", "list", "--json"]).await;
    assert!(status.success());
    let listed_json: Value = serde_json::from_str(&listed_json).expect("JSON");
    assert_eq!(listed_json["tokens"][0]["id"], id.as_str(), "{listed_json}");
    let (status, info, _) = cli(&c, &["token", "info", &id]).await;
    assert!(status.success());
    assert_eq!(fields(&info)["status"], "active", "{info}");
    let (status, info_json, _) = cli(&c, &["token", "info", &id, "--json"]).await;
    assert!(status.success());
    let info_json: Value = serde_json::from_str(&info_json).expect("JSON");
    assert_eq!(
        info_json, listed_json["tokens"][0],
        "one view of the record"
    );
    assert_eq!(info_json["scopes"], json!(["read", "write"]));
    assert_eq!(
        seconds(&info_json["expires_at"]) - seconds(&info_json["created_at"]),
        30 * 86_400,
        "--ttl 30: thirty days"
    );
    assert_eq!(info_json, show(c.b(), &id).await, "the admin API agrees");
    for output in [
        &table,
        &listed_json.to_string(),
        &info,
        &info_json.to_string(),
    ] {
        assert!(
            !output.contains(&token) && !output.contains(&hash),
            "{output}"
        );
        assert!(!output.contains(&token[format::PREFIX.len()..]), "{output}");
    }

    // Revoked through the admin API of A: both replicas refuse it within 1 s.
    let revoked = revoke(c.a(), &id).await;
    let since = Instant::now();
    assert_eq!(revoked.status, 200, "{:?}", revoked.body);
    assert_eq!(revoked.json()["status"], "revoked");
    assert_eq!(
        revoked.json()["cache"],
        "cleared",
        "every replica refuses it now"
    );
    assert_refused_everywhere_within_a_second(&c, &token, since).await;
    assert_eq!(
        validate(c.b(), &token, &["read"]).await,
        json!({"valid": false})
    );
    let (status, info, _) = cli(&c, &["token", "info", &id]).await;
    assert!(status.success());
    assert_eq!(fields(&info)["status"], "revoked", "{info}");
    let (_, active, _) = cli(&c, &["token", "list"]).await;
    assert!(
        !active.contains(&id),
        "revoked tokens are not active: {active}"
    );
    let (_, all, _) = cli(&c, &["token", "list", "--all"]).await;
    let row = all.lines().find(|l| l.starts_with(&id)).expect(&all);
    assert!(row.contains("revoked"), "{all}");

    // Made and revoked by the CLI, while both replicas have it cached.
    let (status, out, err) = cli(&c, &["token", "create", "ci", "--json"]).await;
    assert!(status.success(), "{err}");
    assert_eq!(out.lines().count(), 1, "one JSON object: {out}");
    let made: Value = serde_json::from_str(&out).expect("JSON");
    let ci = made["token"].as_str().expect("the token").to_owned();
    let ci_id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["scopes"], json!([]));
    assert_eq!(made["expires_at"], Value::Null, "no --ttl: never expires");
    for replica in &c.replicas {
        assert!(validates(replica, &ci).await);
        assert!(passes(replica, &ci).await);
    }
    assert_eq!(c.redis().keys(&cache_key(&ci)).len(), 1, "cached");
    let (status, out, err) = cli(&c, &["token", "revoke", &ci_id]).await;
    let since = Instant::now();
    assert!(status.success(), "{err}");
    assert_eq!(fields(&out)["status"], "revoked", "{out}");
    assert_refused_everywhere_within_a_second(&c, &ci, since).await;
    // Once more: the same record, the first revocation time.
    let (status, again, err) = cli(&c, &["token", "revoke", &ci_id, "--json"]).await;
    assert!(status.success(), "{err}");
    let again: Value = serde_json::from_str(&again).expect("JSON");
    assert_eq!(again["revoked_at"], show(c.a(), &ci_id).await["revoked_at"]);
    assert_eq!(again["cache"], "cleared", "{again}");
    assert!(refused_everywhere(&c, &ci).await);
}

/// A token past its expiry is refused, including one that was cached live
/// a moment before: the cache entry lives no longer than the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_refused_even_when_cached_live_before() {
    let c = cluster(Db::Sqlite, 2, |_| {}).await;
    let db = database(&c);
    let expired = insert(&db, "old", &["read"], Some(now_ms() - 1_000)).await;
    for replica in &c.replicas {
        assert!(!validates(replica, &expired).await);
        assert!(!passes(replica, &expired).await);
    }

    let ends_at = now_ms() + 2_000;
    let soon = insert(&db, "soon", &["read"], Some(ends_at)).await;
    assert!(validates(c.a(), &soon).await, "valid until its expiry");
    let left = ends_at.saturating_sub(now_ms()) as i64;
    let ttl = c.redis().pttl(&cache_key(&soon));
    // The TTL is counted from the request's "now", the fill lands after the
    // database read: a few ms of slack on a busy machine (a hit checks the
    // expiry itself anyway, below). Without the cap it would be 10 minutes.
    assert!(
        ttl > 0 && ttl <= left + 100,
        "cached no longer than it lives: {ttl} ms of {left} ms"
    );
    assert!(passes(c.b(), &soon).await);
    // Refused everywhere once it expired, and never before.
    let refused = eventually(Duration::from_secs(4), || async {
        let answered_by = refused_everywhere(&c, &soon).await.then(now_ms);
        if let Some(at) = answered_by {
            assert!(at >= ends_at, "refused {} ms early", ends_at - at);
        }
        answered_by.is_some()
    })
    .await;
    assert!(refused, "an expired token is still accepted");

    let listed_all = listed(c.a(), "?all=true").await;
    assert_eq!(listed_all.len(), 2);
    assert!(listed(c.a(), "").await.is_empty(), "none is active");
    for id in listed_all {
        assert_eq!(show(c.b(), &id).await["status"], "expired");
    }
}

/// Unknown, cut, padded, mis-cased and otherwise near-miss tokens get the
/// same `401` at the gate and `{"valid": false}` from validate; hostile
/// bodies get a JSON `4xx`; the replicas carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_malformed_and_near_miss_tokens_are_refused_alike() {
    let c = cluster(Db::Sqlite, 2, |_| {}).await;
    let real = create(c.a(), json!({"name": "real", "scopes": ["read"]})).await;
    let token = real.token.as_str();
    let body = &token[format::PREFIX.len()..];
    let session = c.a().login(json!("someone")).await;
    let (unknown, _) = format::generate();
    let swap = |at: usize, with: char| {
        let mut chars: Vec<char> = token.chars().collect();
        chars[at] = with;
        chars.into_iter().collect::<String>()
    };
    let near_misses = [
        unknown.clone(),
        format!("tg_test_{body}"),
        format!("TG_LIVE_{body}"),
        format!("tg_live{body}"),
        format!("tg_live__{body}"),
        body.to_owned(),
        token[..token.len() - 1].to_owned(),
        format!("{token}A"),
        format!("{token}="),
        format!("{}=", &token[..token.len() - 1]),
        swap(12, '+'),
        swap(12, '/'),
        swap(12, '.'),
        swap(12, '*'),
        format!("{}é", &token[..token.len() - 1]),
        format!("{} {}", &token[..20], &token[20..]),
        // 43 characters hold 258 bits: this last one sets bits 32 bytes lack.
        format!("{}{}B", format::PREFIX, "A".repeat(42)),
        "tg_live_".to_owned(),
        "tg_".to_owned(),
        format!("tg_{}", session.access),
        "tg_eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiIxIn0.c2ln".to_owned(),
    ];
    for (n, bad) in near_misses.iter().enumerate() {
        let replica = &c.replicas[n % 2];
        let reply = gate(replica, bad, "").await;
        assert_refused(&reply);
        assert!(!validates(replica, bad).await, "{bad:?} validated");
    }
    // An invented token is remembered as unknown, briefly.
    let ttl = c.redis().pttl(&cache_key(&unknown));
    assert!(ttl > 0 && ttl <= 30_000, "unknown tokens cached {ttl} ms");
    assert!(
        !validates(c.b(), &unknown).await,
        "still unknown from the cache"
    );

    // No token at all: the plain challenge.
    for header in ["Bearer", "Bearer ", "Bearer    "] {
        let reply = c
            .a()
            .send(
                request(Method::GET, "/authenticate")
                    .header("authorization", header)
                    .body(Full::default())
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, 401, "{header:?}");
        assert_eq!(reply.error(), "invalid_token");
        assert_eq!(reply.header("www-authenticate"), Some(NO_TOKEN));
    }
    assert!(!validates(c.a(), "").await);
    // A session's access token is no API token, whatever /authenticate thinks of it.
    assert!(c.a().accepts(&session.access).await);
    assert!(!validates(c.b(), &session.access).await);

    // Hostile bodies at /auth/validate.
    let raw = |content_type: &'static str, body: &'static [u8]| {
        request(Method::POST, "/auth/validate")
            .header("content-type", content_type)
            .body(Full::new(Bytes::from_static(body)))
            .unwrap()
    };
    for body in [
        &b"{\"token\": "[..],
        b"not json",
        b"{}",
        b"{\"token\": 5}",
        b"{\"token\": null}",
        b"[\"tg_live_x\"]",
        b"\"tg_live_x\"",
        b"{\"token\": \"tg_live_x\", \"required_scopes\": \"read\"}",
        b"{\"token\": \"tg_live_x\", \"required_scopes\": [1]}",
    ] {
        let reply = c.b().send(raw("application/json", body)).await;
        assert_eq!(reply.status, 400, "{:?}", String::from_utf8_lossy(body));
        assert_eq!(reply.error(), "invalid_request");
    }
    let reply = c.b().send(raw("text/plain", b"{\"token\": \"x\"}")).await;
    assert_eq!(reply.status, 415);
    let huge = json!({"token": format!("tg_live_{}", "A".repeat(20_000))});
    assert_eq!(c.a().post_json("/auth/validate", &huge).await.status, 413);
    let wrong_method = c.a().get("/auth/validate").await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), Some("POST"));

    // The replicas are fine, and so is the real token.
    for replica in &c.replicas {
        assert_eq!(replica.get("/ping").await.status, 200);
        assert!(validates(replica, token).await);
        assert!(passes(replica, token).await);
    }
}

/// Only the admin token manages tokens: none, a wrong one, a near miss, an
/// API token or a session's access token are `401`, and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_takes_the_admin_token_and_nothing_else() {
    let c = cluster(Db::Sqlite, 2, |_| {}).await;
    let existing = create(c.a(), json!({"name": "existing", "scopes": ["admin"]})).await;
    let session = c.a().login(json!("root")).await;
    let endpoints = [
        (Method::GET, "/admin/tokens".to_owned()),
        (Method::POST, "/admin/tokens".to_owned()),
        (Method::GET, format!("/admin/tokens/{}", existing.id)),
        (
            Method::POST,
            format!("/admin/tokens/{}/revoke", existing.id),
        ),
    ];
    let new = json!({"name": "intruder", "scopes": ["admin"]});
    let mut upper = ADMIN_TOKEN.to_uppercase();
    upper.push('!');
    let wrong = [
        "not-the-admin-token".to_owned(),
        format!("{ADMIN_TOKEN}x"),
        ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1].to_owned(),
        upper,
        existing.token.clone(),
        session.access.clone(),
        admin_hash().to_owned(),
    ];
    for (n, (method, path)) in endpoints.iter().enumerate() {
        let replica = &c.replicas[n % 2];
        let body = (*method == Method::POST).then_some(&new);
        let none = operator(replica, method.clone(), path, None, body).await;
        assert_eq!(none.status, 401, "{method} {path} without a token");
        assert_eq!(none.error(), "invalid_token");
        assert_eq!(none.header("www-authenticate"), Some(NO_TOKEN));
        let basic = replica
            .send_admin(
                request(method.clone(), path.as_str())
                    .header(
                        "authorization",
                        format!("Basic {}", STANDARD.encode(format!("admin:{ADMIN_TOKEN}"))),
                    )
                    .body(Full::default())
                    .unwrap(),
            )
            .await;
        assert_eq!(basic.status, 401, "{method} {path} with Basic");
        for token in &wrong {
            let reply = operator(replica, method.clone(), path, Some(token), body).await;
            assert_eq!(reply.status, 401, "{method} {path} with {token:?}");
            assert_eq!(reply.error(), "invalid_token");
            assert_eq!(reply.header("www-authenticate"), Some(INVALID_TOKEN));
        }
    }
    // Nothing was created or revoked.
    assert_eq!(listed(c.b(), "?all=true").await, vec![existing.id.clone()]);
    assert_eq!(show(c.a(), &existing.id).await["status"], "active");
    assert!(validates(c.b(), &existing.token).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_configured_the_admin_api_is_off() {
    let c = cluster(Db::Sqlite, 2, |s| s.admin.token_hash.clear()).await;
    let token = insert(&database(&c), "made-elsewhere", &["read"], None).await;
    let id = Uuid::now_v7();
    let endpoints = [
        (Method::GET, "/admin/tokens".to_owned()),
        (Method::POST, "/admin/tokens".to_owned()),
        (Method::GET, format!("/admin/tokens/{id}")),
        (Method::POST, format!("/admin/tokens/{id}/revoke")),
    ];
    let body = json!({"name": "x"});
    for (method, path) in &endpoints {
        for presented in [None, Some(ADMIN_TOKEN), Some(token.as_str())] {
            let reply = operator(c.a(), method.clone(), path, presented, Some(&body)).await;
            assert_eq!(reply.status, 403, "{method} {path} {presented:?}");
            assert_eq!(reply.error(), "admin_disabled");
        }
    }
    // API tokens themselves still work.
    assert!(validates(c.b(), &token).await);
    assert!(passes(c.a(), &token).await);
}

/// `admin.token_file` (Docker secrets): the file's content, without its
/// trailing newline, is the admin token; a short one or both settings at
/// once stop start-up naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_file_holds_the_admin_token() {
    let dir = std::env::temp_dir().join(format!("tokengate-admin-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("admin_token");
    std::fs::write(&file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let c = cluster(Db::Sqlite, 2, |s| {
        s.admin.token_hash.clear();
        s.admin.token_file = Some(file.clone());
    })
    .await;
    let made = create(c.b(), json!({"name": "from-file"})).await;
    assert_eq!(listed(c.a(), "").await, vec![made.id.clone()]);
    let longer = format!("{ADMIN_TOKEN}x");
    for wrong in [&ADMIN_TOKEN[1..], longer.as_str(), "x"] {
        let reply = operator(c.a(), Method::GET, "/admin/tokens", Some(wrong), None).await;
        assert_eq!(reply.status, 401, "{wrong:?}");
    }

    let short = dir.join("short");
    std::fs::write(&short, "too-short-for-an-admin-token\n").unwrap();
    let with_file = |path: &std::path::Path, hash: &str| {
        let mut settings = Settings::default();
        settings.admin.token_file = Some(path.to_owned());
        settings.admin.token_hash = hash.to_owned();
        settings.resolved().map(drop).map_err(|e| e.to_string())
    };
    for (path, hash, expected) in [
        (short.as_path(), "", "at least 32 characters"),
        (file.as_path(), admin_hash(), "not both"),
        (dir.join("missing").as_path(), "", "cannot read"),
    ] {
        let error = with_file(path, hash).expect_err("refused");
        assert!(
            error.contains("admin.token_file") && error.contains(expected),
            "{error}"
        );
    }
    // The shape is the configuration's to check; the hash is parsed when
    // the admin token is built, and start-up stops naming the key.
    let mut bad_hash = Settings::default();
    bad_hash.admin.token_hash = "not-a-phc-string".into();
    bad_hash.database.url = tokengate::config::Secret::new("sqlite::memory:");
    let bad_hash = bad_hash.resolved().expect("the shape is fine");
    let error = tokengate::app::build(&bad_hash)
        .map(drop)
        .expect_err("refused")
        .to_string();
    assert!(error.contains("admin.token_hash"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Guessing the admin token is throttled per address, across replicas; the
/// admin who already got in is not locked out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_the_admin_token_is_throttled_on_every_replica() {
    let c = cluster(Db::Sqlite, 2, |s| s.throttle.max_failures = 3).await;
    assert!(listed(c.a(), "").await.is_empty());
    for n in 0..3 {
        let guess = format!("guess-{n}");
        let reply = operator(c.a(), Method::GET, "/admin/tokens", Some(&guess), None).await;
        assert_eq!(reply.status, 401, "guess {n}");
    }
    for replica in [c.a(), c.b()] {
        let reply = operator(replica, Method::GET, "/admin/tokens", Some("guess-3"), None).await;
        assert_eq!(reply.status, 429, "{:?}", reply.body);
        assert_eq!(reply.error(), "too_many_attempts");
        let retry: u64 = reply
            .header("retry-after")
            .and_then(|s| s.parse().ok())
            .expect("Retry-After seconds");
        assert!(retry >= 1, "{retry}");
    }
    let created = create(c.a(), json!({"name": "still-works"})).await;
    assert!(validates(c.b(), &created.token).await);
}

/// What `POST /admin/tokens` accepts, and the `400` for everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_token_checks_its_name_scopes_and_lifetime() {
    let c = cluster(Db::Sqlite, 1, |_| {}).await;
    let refused = [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "x".repeat(101)}),
        json!({"name": "café"}),
        json!({"name": "tab\there"}),
        json!({"name": "new\nline"}),
        json!({"name": "ok", "scopes": ["a b"]}),
        json!({"name": "ok", "scopes": ["a\"b"]}),
        json!({"name": "ok", "scopes": ["a\\b"]}),
        json!({"name": "ok", "scopes": [""]}),
        json!({"name": "ok", "scopes": ["lecture-é"]}),
        json!({"name": "ok", "scopes": "read"}),
        json!({"name": "ok", "scopes": [1]}),
        json!({"name": "ok", "ttl_days": 0}),
        json!({"name": "ok", "ttl_days": 36_501}),
        json!({"name": "ok", "ttl_days": -1}),
        json!({"name": "ok", "ttl_days": 1.5}),
        json!({"name": "ok", "ttl_days": "30"}),
        json!({"name": "ok", "admin": true}),
        json!({"scopes": ["read"]}),
        json!({"name": 5}),
        json!(["ok"]),
    ];
    for body in &refused {
        let reply = admin(c.a(), Method::POST, "/admin/tokens", Some(body)).await;
        assert_eq!(reply.status, 400, "{body}: {:?}", reply.body);
        assert_eq!(reply.error(), "invalid_request", "{body}");
        assert!(reply.json().get("token").is_none());
    }
    let raw = |content_type: &'static str, body: &'static str| {
        request(Method::POST, "/admin/tokens")
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .header("content-type", content_type)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    let malformed = c
        .a()
        .send_admin(raw("application/json", "{\"name\": "))
        .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.error(), "invalid_request");
    let empty = c.a().send_admin(raw("application/json", "")).await;
    assert_eq!(empty.status, 400);
    assert_eq!(empty.error(), "invalid_request");
    let form = c
        .a()
        .send_admin(raw("text/plain", "{\"name\": \"ok\"}"))
        .await;
    assert_eq!(form.status, 415);
    assert!(
        listed(c.a(), "?all=true").await.is_empty(),
        "nothing written"
    );

    // The limits themselves are fine.
    let before = now_ms() / 1000;
    let longest = create(c.a(), json!({"name": "n".repeat(100), "ttl_days": 36_500})).await;
    let view = &longest.view;
    assert_eq!(view["status"], "active");
    assert_eq!(view["last_used_at"], Value::Null);
    assert_eq!(view["revoked_at"], Value::Null);
    let created_at = seconds(&view["created_at"]);
    assert!((before..=now_ms() / 1000).contains(&created_at), "{view}");
    assert_eq!(
        seconds(&view["expires_at"]) - created_at,
        36_500 * 86_400,
        "a hundred years"
    );
    let day = create(c.a(), json!({"name": "day", "ttl_days": 1})).await;
    assert_eq!(
        seconds(&day.view["expires_at"]) - seconds(&day.view["created_at"]),
        86_400
    );
    let tidy = create(
        c.a(),
        json!({"name": "  padded name  ", "scopes": ["read", "write", "read", "a:b/c"]}),
    )
    .await;
    assert_eq!(tidy.view["name"], "padded name", "trimmed");
    assert_eq!(tidy.view["scopes"], json!(["read", "write", "a:b/c"]));
    assert_eq!(tidy.view["expires_at"], Value::Null);
    let bare = create(c.a(), json!({"name": "bare"})).await;
    assert_eq!(bare.view["scopes"], json!([]));
    for made in [&longest, &day, &tidy, &bare] {
        assert_eq!(made.token.len(), format::PREFIX.len() + 43);
        assert!(format::parse(&made.token).is_some());
        assert!(validates(c.a(), &made.token).await);
    }
    let tokens: BTreeSet<&str> = [&longest, &day, &tidy, &bare]
        .iter()
        .map(|m| m.token.as_str())
        .collect();
    assert_eq!(tokens.len(), 4, "every token is new");
    assert!(
        passes(c.a(), &tidy.token).await,
        "a name with a space passes the gate"
    );
    assert_eq!(
        gate(c.a(), &tidy.token, "").await.header("x-user-id"),
        Some("token:padded name")
    );
}

/// Listing (active or all), showing, idempotent revocation, `404` for
/// unknown or malformed ids and `405` with `Allow` for wrong methods. A view
/// never holds the token or its hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_shown_and_revoked_and_wrong_requests_are_answered() {
    let c = cluster(Db::Sqlite, 2, |_| {}).await;
    let first = create(c.a(), json!({"name": "first", "scopes": ["read"]})).await;
    let second = create(c.b(), json!({"name": "second", "ttl_days": 1})).await;
    let third = create(c.a(), json!({"name": "third"})).await;
    let all_ids = [first.id.clone(), second.id.clone(), third.id.clone()];

    let revoked = revoke(c.b(), &third.id).await;
    assert_eq!(revoked.status, 200);
    let revoked = revoked.json();
    assert_eq!(revoked["status"], "revoked");
    let revoked_at = seconds(&revoked["revoked_at"]);
    assert!(revoked_at >= seconds(&third.view["created_at"]));
    let again = revoke(c.a(), &third.id).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.json(),
        revoked,
        "idempotent: the first revocation stays"
    );

    assert_eq!(listed(c.a(), "").await, all_ids[..2]);
    assert_eq!(listed(c.b(), "?all=false").await, all_ids[..2]);
    assert_eq!(listed(c.a(), "?all=true").await, all_ids);
    assert_eq!(listed(c.b(), "?all=1").await, all_ids);

    let everything = admin(c.a(), Method::GET, "/admin/tokens?all=true", None).await;
    let text = String::from_utf8_lossy(&everything.body).into_owned();
    let keys: BTreeSet<&str> = [
        "id",
        "name",
        "scopes",
        "status",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    .into();
    for (view, made) in everything.json()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .zip([&first, &second, &third])
    {
        let fields: BTreeSet<&str> = view
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(fields, keys, "{view}");
        assert_eq!(*view, show(c.b(), &made.id).await);
        assert!(
            !text.contains(&made.token[format::PREFIX.len()..]),
            "{text}"
        );
        assert!(!text.contains(&made.hash()), "{text}");
    }
    assert_eq!(show(c.a(), &first.id).await["scopes"], json!(["read"]));
    assert!(!validates(c.a(), &third.token).await);
    assert!(validates(c.a(), &first.token).await);

    for path in [
        format!("/admin/tokens/{}", Uuid::now_v7()),
        format!("/admin/tokens/{}/revoke", Uuid::now_v7()),
        "/admin/tokens/not-a-uuid".to_owned(),
        "/admin/tokens/not-a-uuid/revoke".to_owned(),
        format!("/admin/tokens/{}x", first.id),
        format!("/admin/tokens/{}/other", first.id),
        format!("/admin/tokens/{}/revoke/again", first.id),
    ] {
        let method = if path.ends_with("/revoke") {
            Method::POST
        } else {
            Method::GET
        };
        let reply = admin(c.a(), method, &path, None).await;
        assert_eq!(reply.status, 404, "{path}: {:?}", reply.body);
        assert_eq!(reply.error(), "not_found");
    }
    let one = format!("/admin/tokens/{}", first.id);
    let revoke_path = format!("/admin/tokens/{}/revoke", first.id);
    for (method, path, allow) in [
        (Method::DELETE, "/admin/tokens", "GET, HEAD, POST"),
        (Method::PUT, "/admin/tokens", "GET, HEAD, POST"),
        (Method::POST, one.as_str(), "GET, HEAD"),
        (Method::DELETE, one.as_str(), "GET, HEAD"),
        (Method::GET, revoke_path.as_str(), "POST"),
        (Method::DELETE, revoke_path.as_str(), "POST"),
    ] {
        let reply = admin(c.b(), method.clone(), path, None).await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
    }
    assert!(
        validates(c.b(), &first.token).await,
        "no wrong call revoked it"
    );
}

/// A token with `read write` at the gate (`?scope=`) and at validate
/// (`required_scopes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_are_checked_at_the_gate_and_by_validate() {
    let c = cluster(Db::Sqlite, 2, |_| {}).await;
    let rw = create(c.a(), json!({"name": "rw", "scopes": ["read", "write"]})).await;
    let none = create(c.a(), json!({"name": "none"})).await;

    for query in [
        "",
        "?scope=read",
        "?scope=write",
        "?scope=read+write",
        "?scope=write%20read",
        "?scope=read&scope=write",
    ] {
        let reply = gate(c.b(), &rw.token, query).await;
        assert_eq!(reply.status, 200, "{query}: {:?}", reply.body);
        assert_eq!(reply.header("x-scope"), Some("read write"));
        assert_eq!(reply.header("x-token-id"), Some(rw.id.as_str()));
    }
    for (token, query) in [
        (&rw, "?scope=admin"),
        (&rw, "?scope=read+admin"),
        (&rw, "?scope=READ"),
        (&none, "?scope=read"),
    ] {
        let reply = gate(c.a(), &token.token, query).await;
        assert_eq!(reply.status, 403, "{query}: {:?}", reply.body);
        assert_eq!(reply.error(), "insufficient_scope");
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains(r#"error="insufficient_scope""#),
            "{challenge}"
        );
    }
    let plain = gate(c.a(), &none.token, "").await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("x-scope"), Some(""));
    let head = call(
        c.b(),
        Method::HEAD,
        "/authenticate?scope=read",
        Some(&rw.token),
        None,
    )
    .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-user-id"), Some("token:rw"));
    let post = call(c.b(), Method::POST, "/authenticate", Some(&rw.token), None).await;
    assert_eq!(post.status, 200, "any method, as nginx forwards it");

    let ok = json!({"valid": true, "scopes": ["read", "write"], "token_id": rw.id, "name": "rw"});
    for required in [&[][..], &["read"], &["write", "read"], &["read", "read"]] {
        assert_eq!(
            validate(c.b(), &rw.token, required).await,
            ok,
            "{required:?}"
        );
    }
    let lacking = json!({"valid": false, "error": "insufficient_scope"});
    for required in [&["admin"][..], &["read", "admin"], &["Read"]] {
        assert_eq!(
            validate(c.a(), &rw.token, required).await,
            lacking,
            "{required:?}"
        );
    }
    assert_eq!(validate(c.a(), &none.token, &["read"]).await, lacking);
    // Scopes do not save a dead token.
    assert_eq!(revoke(c.a(), &rw.id).await.status, 200);
    assert_eq!(
        validate(c.b(), &rw.token, &["admin"]).await,
        json!({"valid": false})
    );
    assert_refused(&gate(c.b(), &rw.token, "?scope=read").await);
}

/// `last_used_at` is written behind: it shows up in the admin API soon
/// after a use, on whichever replica the use was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_use_is_recorded_as_last_used() {
    let c = cluster(Db::Sqlite, 2, |_| {}).await;
    let made = create(c.a(), json!({"name": "used"})).await;
    let idle = create(c.a(), json!({"name": "idle"})).await;
    assert_eq!(show(c.a(), &made.id).await["last_used_at"], Value::Null);

    let before = now_ms() / 1000;
    assert!(passes(c.b(), &made.token).await);
    let recorded = eventually(Duration::from_secs(5), || async {
        !show(c.a(), &made.id).await["last_used_at"].is_null()
    })
    .await;
    assert!(recorded, "last_used_at never written");
    let used = seconds(&show(c.a(), &made.id).await["last_used_at"]);
    assert!((before..=now_ms() / 1000).contains(&used), "{used}");
    assert_eq!(show(c.b(), &idle.id).await["last_used_at"], Value::Null);
}

/// `POST /oauth/introspect` as the OAuth client `worker`.
async fn introspect(replica: &Replica, token: &str) -> Reply {
    let (id, secret) = crate::oauth::WORKER;
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .finish();
    let request = request(Method::POST, "/oauth/introspect")
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    replica.send(request).await
}

/// RFC 7662 introspection of API tokens, by an OAuth client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_describes_api_tokens() {
    let c = cluster(Db::Sqlite, 2, crate::oauth::with_clients).await;
    let lasting = create(
        c.a(),
        json!({"name": "lasting", "scopes": ["read", "write"]}),
    )
    .await;
    let month = create(c.a(), json!({"name": "month", "ttl_days": 30})).await;

    let live = introspect(c.b(), &lasting.token).await;
    assert_eq!(live.status, 200, "{:?}", live.body);
    assert_eq!(
        live.json(),
        json!({
            "active": true,
            "token_type": "api_token",
            "sub": "token:lasting",
            "jti": lasting.id,
            "scope": "read write",
            "iat": seconds(&lasting.view["created_at"]),
            "iss": "tokengate",
        })
    );
    let month_live = introspect(c.a(), &month.token).await.json();
    assert_eq!(month_live["active"], true);
    assert_eq!(month_live["exp"], seconds(&month.view["expires_at"]));

    assert_eq!(revoke(c.a(), &lasting.id).await.status, 200);
    let (unknown, _) = format::generate();
    for token in [lasting.token.as_str(), &unknown, "tg_test_x", "tg_"] {
        let dead = introspect(c.b(), token).await;
        assert_eq!(dead.status, 200);
        assert_eq!(dead.json(), json!({"active": false}), "{token}");
    }
}

/// `/health` names its components; Redis or the database down is `503`
/// naming which. While the database is down, a cached token still
/// validates (the hot path is Redis only), an uncached one is `503`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_the_failing_component() {
    let server = PostgresServer::start();
    let url = server.create_database();
    let mut c = cluster(Db::Sqlite, 1, |s| {
        s.database.url = Secret::new(url);
        s.database.timeout = Duration::from_millis(500);
    })
    .await;
    let health = c.a().get("/health").await;
    assert_eq!(health.status, 200, "{:?}", health.body);
    let body = health.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        body["components"],
        json!({"redis": "ok", "database": "ok", "events": "ok"})
    );
    let cached = create(c.a(), json!({"name": "cached"})).await;
    assert!(validates(c.a(), &cached.token).await);

    tokio::task::block_in_place(|| server.stop());
    let down = c.a().get("/health").await;
    assert_eq!(down.status, 503, "{:?}", down.body);
    let body = down.json();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["components"]["database"], "unavailable");
    assert_eq!(body["components"]["redis"], "ok");
    assert_eq!(down.header("retry-after"), Some("1"));
    assert!(validates(c.a(), &cached.token).await, "from the cache");
    let (uncached, _) = format::generate();
    let reply = c
        .a()
        .post_json("/auth/validate", &json!({"token": uncached}))
        .await;
    assert_eq!(reply.status, 503, "{:?}", reply.body);
    assert_eq!(gate(c.a(), &uncached, "").await.status, 503, "fail closed");
    assert_eq!(
        admin(c.a(), Method::GET, "/admin/tokens", None)
            .await
            .status,
        503
    );

    tokio::task::block_in_place(|| server.restart());
    let back = eventually(Duration::from_secs(10), || async {
        c.a().get("/health").await.status == 200
    })
    .await;
    assert!(back, "the database came back");

    c.redis_mut().kill();
    let down = c.a().get("/health").await;
    assert_eq!(down.status, 503);
    let body = down.json();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["components"]["redis"], "unavailable");
    assert_eq!(body["components"]["database"], "ok");
    let reply = c
        .a()
        .post_json("/auth/validate", &json!({"token": cached.token}))
        .await;
    assert_eq!(reply.status, 503, "fail closed: {:?}", reply.body);
    assert_eq!(gate(c.a(), &cached.token, "").await.status, 503);

    c.redis_mut().restart();
    let back = eventually(Duration::from_secs(10), || async {
        c.a().get("/health").await.status == 200
    })
    .await;
    assert!(back, "Redis came back");
    assert!(validates(c.a(), &cached.token).await);

    // The embedded store: no Redis, no event relay.
    let memory = Cluster::start(Backend::Memory, 1).await;
    let health = memory.a().get("/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(
        health.json()["components"],
        json!({"redis": "off", "database": "ok", "events": "off"})
    );
}

/// A Redis restart empties the cache: validation fills it again from the
/// database, which still knows every revocation — also one the cache never
/// heard of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_the_cache_but_no_revocation() {
    let mut c = cluster(Db::Sqlite, 2, |_| {}).await;
    let db = database(&c);
    let live = create(c.a(), json!({"name": "live"})).await;
    let revoked = create(c.a(), json!({"name": "revoked"})).await;
    let quietly = create(c.a(), json!({"name": "quietly"})).await;
    for made in [&live, &revoked, &quietly] {
        assert!(validates(c.a(), &made.token).await);
    }
    assert_eq!(revoke(c.a(), &revoked.id).await.status, 200);
    // Revoked in the database only: no tombstone reaches the cache.
    let id = Uuid::parse_str(&quietly.id).unwrap();
    assert!(db.revoke_api_token(id, now_ms()).await.unwrap().is_some());
    assert_eq!(c.redis().keys("tg:at:*").len(), 3);

    c.redis_mut().restart();
    assert!(c.redis().keys("tg:at:*").is_empty(), "an empty Redis");
    for replica in &c.replicas {
        let up = eventually(Duration::from_secs(10), || async {
            replica.get("/health").await.status == 200
        })
        .await;
        assert!(up, "{} reaches the new Redis", replica.addr);
    }
    for replica in [c.b(), c.a()] {
        assert!(validates(replica, &live.token).await);
        assert!(passes(replica, &live.token).await);
    }
    assert!(refused_everywhere(&c, &revoked.token).await);
    assert!(refused_everywhere(&c, &quietly.token).await);
    assert_eq!(c.redis().keys("tg:at:*").len(), 3, "filled again");
}

/// `X-User-Id: token:<name>` names an API token and nothing else: a
/// session must not reach the upstream under that identity, or a login
/// client that passes on user-chosen ids lets a user pass for a service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cannot_pass_for_an_api_token() {
    let c = cluster(Db::Sqlite, 1, |_| {}).await;
    let made = create(c.a(), json!({"name": "billing", "scopes": ["payments"]})).await;
    let machine = gate(c.a(), &made.token, "").await;
    assert_eq!(machine.header("x-user-id"), Some("token:billing"));

    let login = c
        .a()
        .post_json("/login", &json!({"user_id": "token:billing"}))
        .await;
    if login.status == 200 {
        let session = c.a().authenticate(&login.field("access")).await;
        assert_eq!(session.status, 200);
        assert_ne!(
            session.header("x-user-id"),
            Some("token:billing"),
            "a session reaches the upstream as the API token \"billing\""
        );
    } else {
        assert!(login.status.is_client_error(), "{:?}", login.body);
        assert_eq!(login.error(), "invalid_request");
    }
}
