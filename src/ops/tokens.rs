//! `tokengate token create|list|info|revoke` (SPEC §9): API tokens managed
//! against the database the service uses, as the admin API does. A table by
//! default, `--json` (the admin API's shapes) for scripts; data on standard
//! output, remarks on standard error.
//!
//! `revoke` also writes the revocation into the cache of `cache.url`, so
//! every replica refuses the token at once. If Redis cannot be reached the
//! revocation still holds in the database and the command succeeds, saying
//! the cache clear is pending (`"cache": "pending"` with `--json`): the
//! running replicas retry it until Redis takes it, and until then one that
//! has the token cached live may still accept it.

use serde_json::json;
use uuid::Uuid;

use super::clients::now;
use crate::api_tokens::{self, CacheClear, NewApiToken, RevokedView, TokenView};
use crate::config::Settings;
use crate::db::{ApiTokenRecord, Database, DurableStore};
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::{Store, Timing};

/// What `tokengate token` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAction {
    Create(NewApiToken),
    List { all: bool },
    Info { id: String },
    Revoke { id: String },
}

/// Runs one `token` subcommand against the configured database (migrated
/// first). Of `settings`, only the database section is resolved and checked,
/// and for `revoke` the cache section too.
pub async fn run(settings: &Settings, action: TokenAction, json: bool) -> Result<(), String> {
    let now = now();
    let database = || super::open_database(&settings.database);
    match action {
        TokenAction::Create(new) => create(&database().await?, new, now, json).await,
        TokenAction::List { all } => list(&database().await?, all, now, json).await,
        TokenAction::Info { id } => {
            let db = database().await?;
            let record = db
                .api_token(parse_id(&id)?)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| no_such(&id))?;
            show(&record, now, json)
        }
        TokenAction::Revoke { id } => {
            // Checked before the database is touched.
            let cache = cache(settings)?;
            revoke(&database().await?, &cache, &id, now, json).await
        }
    }
}

async fn create(db: &Database, new: NewApiToken, now: u64, json: bool) -> Result<(), String> {
    let (token, record) = api_tokens::create(db, new, now)
        .await
        .map_err(|e| e.to_string())?;
    if json {
        let mut body = view_json(&record, now)?;
        body["token"] = token.into();
        println!("{body}");
    } else {
        println!("{token}");
        print!("{}", details(&record, now));
    }
    eprintln!(
        "API token {:?} created (id {}); the token is printed above, this once: only \
         its SHA-256 is stored, so keep it now.",
        record.name, record.id
    );
    Ok(())
}

async fn list(db: &Database, all: bool, now: u64, json: bool) -> Result<(), String> {
    let records = db.api_tokens(all, now).await.map_err(|e| e.to_string())?;
    if json {
        let tokens: Vec<TokenView> = records.iter().map(|r| TokenView::new(r, now)).collect();
        println!("{}", json!({ "tokens": tokens }));
    } else {
        print!("{}", table(&records, now));
    }
    Ok(())
}

async fn revoke(
    db: &Database,
    cache: &Store,
    id: &str,
    now: u64,
    json: bool,
) -> Result<(), String> {
    let revoked = api_tokens::revoke(db, cache, parse_id(id)?, now)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| no_such(id))?;
    if json {
        let view =
            serde_json::to_value(RevokedView::new(&revoked, now)).map_err(|e| e.to_string())?;
        println!("{view}");
    } else {
        print!("{}", details(&revoked.record, now));
    }
    let record = &revoked.record;
    match revoked.cache {
        CacheClear::Cleared => eprintln!(
            "API token {:?} (id {}) revoked: every replica refuses it now",
            record.name, record.id
        ),
        CacheClear::Pending => eprintln!(
            "API token {:?} (id {}) is revoked in the database, but the cache \
             (cache.url) could not be told yet: the cache clear is pending. The running \
             replicas retry it every second until Redis takes it; until then a replica \
             that has the token cached may still accept it.",
            record.name, record.id
        ),
    }
    Ok(())
}

/// The cache a revocation must reach: Redis when `cache.url` is set; the
/// embedded store caches nothing.
fn cache(settings: &Settings) -> Result<Store, String> {
    let timing = Timing::from_auth(&settings.auth);
    if !settings.uses_redis() {
        return Ok(Store::Memory(MemoryStore::new(timing)));
    }
    let cache = settings
        .cache
        .clone()
        .resolved()
        .map_err(|e| e.to_string())?;
    RedisStore::new(&cache, timing)
        .map(Store::Redis)
        .map_err(|e| e.to_string())
}

fn parse_id(id: &str) -> Result<Uuid, String> {
    Uuid::try_parse(id).map_err(|_| no_such(id))
}

fn no_such(id: &str) -> String {
    format!("no API token {id:?} in the database (see `tokengate token list --all`)")
}

fn view_json(record: &ApiTokenRecord, now: u64) -> Result<serde_json::Value, String> {
    serde_json::to_value(TokenView::new(record, now)).map_err(|e| e.to_string())
}

fn show(record: &ApiTokenRecord, now: u64, json: bool) -> Result<(), String> {
    if json {
        println!("{}", view_json(record, now)?);
    } else {
        print!("{}", details(record, now));
    }
    Ok(())
}

/// One token, a field per line. Never the token or its hash.
pub fn details(record: &ApiTokenRecord, now: u64) -> String {
    let view = TokenView::new(record, now);
    let fields = [
        ["id".into(), view.id.to_string()],
        ["name".into(), view.name],
        ["scopes".into(), super::or_dash(view.scopes.join(" "))],
        ["status".into(), view.status.into()],
        ["created".into(), view.created_at],
        ["expires".into(), never(view.expires_at)],
        ["last used".into(), never(view.last_used_at)],
        [
            "revoked".into(),
            super::or_dash(view.revoked_at.unwrap_or_default()),
        ],
    ];
    let width = fields.iter().map(|[k, _]| k.len()).max().unwrap_or(0) + 1;
    fields
        .iter()
        .map(|[key, value]| format!("{:width$} {value}\n", format!("{key}:")))
        .collect()
}

/// A time that may not have come (expiry, last use).
fn never(time: Option<String>) -> String {
    time.unwrap_or_else(|| "never".into())
}

/// Tokens as a table: id, name, scopes, status, created, expires, last used.
pub fn table(records: &[ApiTokenRecord], now: u64) -> String {
    let rows = records.iter().map(|r| {
        let view = TokenView::new(r, now);
        [
            view.id.to_string(),
            view.name,
            super::or_dash(view.scopes.join(" ")),
            view.status.into(),
            view.created_at,
            never(view.expires_at),
            never(view.last_used_at),
        ]
    });
    super::table(
        [
            "ID",
            "NAME",
            "SCOPES",
            "STATUS",
            "CREATED",
            "EXPIRES",
            "LAST USED",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn record(name: &str, scopes: &[&str], revoked: bool) -> ApiTokenRecord {
        ApiTokenRecord {
            id: Uuid::nil(),
            name: name.into(),
            token_hash: "ab".repeat(32),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            created_at: T0,
            expires_at: Some(T0 + 86_400_000),
            last_used_at: None,
            revoked_at: revoked.then_some(T0 + 1_000),
        }
    }

    #[test]
    fn tables_show_status_and_never_the_hash() {
        let out = table(
            &[
                record("billing", &["read", "write"], false),
                record("ci", &[], true),
            ],
            T0,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID"));
        assert!(lines[1].contains("billing") && lines[1].contains("read write"));
        assert!(lines[1].contains("active") && lines[1].contains("2026-01-02T00:00:00Z"));
        assert!(lines[2].contains("revoked") && lines[2].contains(" - "));
        assert!(!out.contains(&"ab".repeat(32)));
        // A day later the first one has expired.
        assert!(table(&[record("b", &[], false)], T0 + 86_400_000).contains("expired"));
    }

    #[test]
    fn details_name_every_field() {
        let out = details(&record("billing", &["read"], true), T0);
        for expected in [
            "id:        00000000-0000-0000-0000-000000000000",
            "name:      billing",
            "status:    revoked",
            "last used: never",
            "revoked:   2026-01-01T00:00:01Z",
        ] {
            assert!(out.contains(expected), "{expected:?} in\n{out}");
        }
    }
}
