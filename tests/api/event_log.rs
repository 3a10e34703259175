//! SPEC §14, the events the database commits: `UserRegistered`,
//! `ApiTokenCreated` and `ApiTokenRevoked` are in the log (`tg:events`)
//! when the request that caused them answers — the background relay is
//! slowed to an hour here, so only the request's own round can have put
//! them there — about the right subject, and every one matches its JSON
//! Schema in `docs/events/`.
//!
//! The schemas are checked by a small hand-written validator of the
//! draft 2020-12 keywords they use (below), not a JSON Schema crate: one
//! would add some thirty crates to the build for six flat schemas. It
//! refuses a schema with any keyword it does not know, so a schema cannot
//! outgrow it unnoticed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use deadpool_redis::redis;
use http::Method;
use serde_json::{Value, json};
use tokengate::store::event_log::LoggedEvent;

use crate::api_tokens::{ADMIN_TOKEN, cluster};
use crate::helpers::{Cluster, Db};
use crate::on_both_databases;
use crate::support::client::{self, json_body, request};

on_both_databases!(
    api_token_events_are_in_the_log_when_the_admin_api_answers,
    a_registration_is_in_the_log_when_register_answers,
);

/// Every event type, by its schema file's name.
const TYPES: [&str; 6] = [
    "UserRegistered",
    "UserLoggedIn",
    "LoginFailed",
    "SessionEnded",
    "ApiTokenCreated",
    "ApiTokenRevoked",
];

fn schema(kind: &str) -> Value {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "docs",
        "events",
        &format!("{kind}.schema.json"),
    ]
    .iter()
    .collect();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The log as every sink reads it: each entry's envelope, oldest first.
fn logged(c: &Cluster) -> Vec<Value> {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("tg:events")
        .arg("-")
        .arg("+")
        .query(&mut c.redis().connection())
        .unwrap_or_default();
    entries
        .into_iter()
        .map(|(entry, fields)| {
            let fields = fields.iter().map(|(k, v)| (k.as_str(), v.clone()));
            let event = LoggedEvent::from_fields(entry, fields).expect("an event entry");
            serde_json::from_str(&event.envelope()).expect("the envelope is JSON")
        })
        .collect()
}

/// Checks `event` against its type's schema; panics naming what is wrong.
fn assert_valid(event: &Value) {
    let kind = event["type"].as_str().expect("a type");
    let errors = check(&schema(kind), event, "");
    assert!(errors.is_empty(), "{kind}: {errors:?}\n{event:#}");
}

async fn admin(c: &Cluster, method: Method, path: &str, body: Option<Value>) -> client::Reply {
    let mut builder =
        request(method, path).header("authorization", format!("Bearer {ADMIN_TOKEN}"));
    let body = match body {
        Some(body) => {
            builder = builder.header("content-type", "application/json");
            json_body(&body)
        }
        None => Default::default(),
    };
    client::send(c.a().admin_addr, builder.body(body).unwrap()).await
}

const AN_HOUR: Duration = Duration::from_secs(3600);

async fn api_token_events_are_in_the_log_when_the_admin_api_answers(db: Db) {
    let c = cluster(db, 1, |s| s.events.relay_interval = AN_HOUR).await;
    let body = json!({"name": "billing", "scopes": ["read", "write"], "ttl_days": 30});
    let created = admin(&c, Method::POST, "/admin/tokens", Some(body)).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.field("id");

    let log = logged(&c);
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0]["type"], "ApiTokenCreated");
    assert_eq!(log[0]["subject"], "token:billing");
    assert_eq!(log[0]["data"]["token_id"], id.as_str());
    assert_eq!(log[0]["data"]["scopes"], json!(["read", "write"]));
    assert!(log[0]["data"]["expires_at"].is_string());
    let token = created.field("token");
    assert!(!log[0].to_string().contains(&token), "never the token");

    let path = format!("/admin/tokens/{id}/revoke");
    assert_eq!(admin(&c, Method::POST, &path, None).await.status, 200);
    let log = logged(&c);
    assert_eq!(log.len(), 2, "{log:#?}");
    assert_eq!(log[1]["type"], "ApiTokenRevoked");
    assert_eq!(log[1]["subject"], "token:billing");
    assert_eq!(log[1]["data"]["token_id"], id.as_str());

    // Revoked again: the same answer, no second event.
    assert_eq!(admin(&c, Method::POST, &path, None).await.status, 200);
    assert_eq!(logged(&c).len(), 2);
    for event in &logged(&c) {
        assert_valid(event);
    }
}

async fn a_registration_is_in_the_log_when_register_answers(db: Db) {
    let c = cluster(db, 2, |s| s.events.relay_interval = AN_HOUR).await;
    let reply = c
        .b()
        .post_json(
            "/register",
            &json!({"email": " Eve@Example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let user_id = reply.field("user_id");

    let log = logged(&c);
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0]["type"], "UserRegistered");
    assert_eq!(log[0]["subject"], user_id.as_str());
    assert_eq!(log[0]["data"]["email"], "eve@example.com");
    assert_valid(&log[0]);
}

/// One example of each type, as docs/events.md shows them: each matches
/// its schema, and each schema refuses what breaks its contract.
#[test]
fn the_schemas_take_their_examples_and_refuse_broken_events() {
    let examples = examples();
    for kind in TYPES {
        let example = &examples[kind];
        assert_valid(example);
        let schema = schema(kind);
        for broken in breakages(example) {
            assert!(
                !check(&schema, &broken, "").is_empty(),
                "{kind} took {broken:#}"
            );
        }
    }
    let mut ended = examples["SessionEnded"].clone();
    ended["data"]["reason"] = json!("expired");
    assert!(!check(&schema("SessionEnded"), &ended, "").is_empty());
    let mut failed = examples["LoginFailed"].clone();
    failed["data"]["reason"] = json!("bad_luck");
    assert!(!check(&schema("LoginFailed"), &failed, "").is_empty());
}

/// Copies of `event` that no schema may take.
fn breakages(event: &Value) -> Vec<Value> {
    let mut broken = Vec::new();
    for field in ["id", "subject", "data", "occurred_at"] {
        let mut without = event.clone();
        without.as_object_mut().unwrap().remove(field);
        broken.push(without);
    }
    let mut v4 = event.clone();
    v4["id"] = json!("6f1c5c1e-3c1a-4e3b-9d7e-2b8f1e0c9a11");
    broken.push(v4);
    let mut version = event.clone();
    version["version"] = json!(2);
    broken.push(version);
    let mut time = event.clone();
    time["occurred_at"] = json!("yesterday");
    broken.push(time);
    let mut other = event.clone();
    other["type"] = json!("SomethingElse");
    broken.push(other);
    broken
}

fn examples() -> BTreeMap<&'static str, Value> {
    let envelope = |kind: &str, subject: &str, data: Value| {
        json!({
            "id": "01950e2c-8c3a-7b6e-9f0a-3c2d1e4f5a6b",
            "type": kind,
            "version": 1,
            "occurred_at": "2026-12-02T19:10:00.123Z",
            "subject": subject,
            "data": data,
        })
    };
    let user = "7d0c2b7e-5a3f-4c1e-9b8a-0f6e5d4c3b2a";
    let sid = "01950e2c-8c3b-7000-8000-000000000001";
    let token = "01950e2c-8c3c-7000-8000-000000000002";
    BTreeMap::from([
        (
            "UserRegistered",
            envelope(
                "UserRegistered",
                user,
                json!({"user_id": user, "email": "alice@example.com",
                       "registered_at": "2026-12-02T19:10:00.123Z"}),
            ),
        ),
        (
            "UserLoggedIn",
            envelope(
                "UserLoggedIn",
                user,
                json!({"sid": sid, "client_id": "frontend", "scope": null}),
            ),
        ),
        (
            "LoginFailed",
            envelope(
                "LoginFailed",
                "alice@example.com",
                json!({"email": "alice@example.com", "reason": "wrong_password",
                       "address": "192.0.2.7"}),
            ),
        ),
        (
            "SessionEnded",
            envelope(
                "SessionEnded",
                user,
                json!({"sid": sid, "sub": user, "reason": "evicted"}),
            ),
        ),
        (
            "ApiTokenCreated",
            envelope(
                "ApiTokenCreated",
                "token:billing",
                json!({"token_id": token, "name": "billing", "scopes": ["read"],
                       "expires_at": null, "created_at": "2026-12-02T19:10:00.123Z"}),
            ),
        ),
        (
            "ApiTokenRevoked",
            envelope(
                "ApiTokenRevoked",
                "token:billing",
                json!({"token_id": token, "name": "billing",
                       "revoked_at": "2026-12-02T19:10:00.123Z"}),
            ),
        ),
    ])
}

/// The draft 2020-12 keywords [`check`] knows; annotations are skipped.
const ASSERTIONS: &[&str] = &[
    "type",
    "const",
    "enum",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "uniqueItems",
    "anyOf",
    "pattern",
    "minLength",
    "maxLength",
];
const ANNOTATIONS: &[&str] = &["$schema", "$id", "title", "description", "format"];

/// What is wrong with `value` against `schema`, by JSON pointer; empty if
/// nothing. Panics on a keyword it does not know.
fn check(schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = schema.as_object().expect("a schema is an object");
    let mut errors = Vec::new();
    let mut nested = Vec::new();
    let mut fail = |what: String| errors.push(format!("{at}: {what}"));
    for (keyword, rule) in schema {
        let keyword = keyword.as_str();
        assert!(
            ASSERTIONS.contains(&keyword) || ANNOTATIONS.contains(&keyword),
            "the checker does not know {keyword:?}"
        );
        match keyword {
            "type" => {
                let types: Vec<&str> = match rule {
                    Value::String(one) => vec![one.as_str()],
                    many => many
                        .as_array()
                        .unwrap()
                        .iter()
                        .flat_map(Value::as_str)
                        .collect(),
                };
                if !types.iter().any(|t| is_type(value, t)) {
                    fail(format!("not {types:?}: {value}"));
                }
            }
            "const" if value != rule => fail(format!("not {rule}: {value}")),
            "enum" if !rule.as_array().unwrap().contains(value) => {
                fail(format!("not one of {rule}: {value}"));
            }
            "required" => {
                for name in rule.as_array().unwrap().iter().flat_map(Value::as_str) {
                    if value.is_object() && value.get(name).is_none() {
                        fail(format!("{name} is missing"));
                    }
                }
            }
            "properties" => {
                if let Some(object) = value.as_object() {
                    for (name, sub) in rule.as_object().unwrap() {
                        if let Some(field) = object.get(name) {
                            nested.extend(check(sub, field, &format!("{at}/{name}")));
                        }
                    }
                }
            }
            "additionalProperties" => {
                let known = schema.get("properties").and_then(Value::as_object);
                if let (Some(false), Some(object)) = (rule.as_bool(), value.as_object()) {
                    for name in object.keys() {
                        if !known.is_some_and(|k| k.contains_key(name)) {
                            fail(format!("{name} is not allowed"));
                        }
                    }
                }
            }
            "items" => {
                for (n, item) in value.as_array().into_iter().flatten().enumerate() {
                    nested.extend(check(rule, item, &format!("{at}/{n}")));
                }
            }
            "uniqueItems" => {
                if let (Some(true), Some(items)) = (rule.as_bool(), value.as_array())
                    && items
                        .iter()
                        .enumerate()
                        .any(|(n, a)| items[..n].contains(a))
                {
                    fail("items repeat".into());
                }
            }
            "anyOf" => {
                let options = rule.as_array().unwrap();
                if !options.iter().any(|o| check(o, value, at).is_empty()) {
                    fail(format!("matches none of anyOf: {value}"));
                }
            }
            "pattern" => {
                let pattern = regex::Regex::new(rule.as_str().unwrap()).unwrap();
                if let Some(text) = value.as_str()
                    && !pattern.is_match(text)
                {
                    fail(format!("{text:?} does not match {pattern}"));
                }
            }
            "minLength" | "maxLength" => {
                let limit = rule.as_u64().unwrap() as usize;
                if let Some(text) = value.as_str() {
                    let chars = text.chars().count();
                    let ok = if keyword == "minLength" {
                        chars >= limit
                    } else {
                        chars <= limit
                    };
                    if !ok {
                        fail(format!("{keyword} {limit}: {text:?}"));
                    }
                }
            }
            _ => {}
        }
    }
    errors.extend(nested);
    errors
}

fn is_type(value: &Value, kind: &str) -> bool {
    match kind {
        "string" => value.is_string(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        other => panic!("unknown type {other:?}"),
    }
}
