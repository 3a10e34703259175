//! `tokengate client add|list|remove` (SPEC §7): clients kept in the
//! database, beside those in `config.yml`, managed against the database the
//! service uses. Replicas pick a change up within `database.clients_refresh`
//! (see [`crate::clients::stored`]).
//!
//! A new client gets a random secret, printed once; only its argon2id hash
//! is stored, so a lost secret means removing the client and adding it
//! again. An id the configuration already has for the same kind is refused:
//! the service would ignore the stored one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::Settings;
use crate::db::{ClientKind, DbError, DurableStore, StoredClient};
use crate::time::Millis;
use crate::tokens::scope::is_scope_token;

/// Random bytes of a new secret (256 bits; 43 base64url characters).
const SECRET_BYTES: usize = 32;

/// What `tokengate client` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAction {
    Add(NewClient),
    List,
    Remove { id: String },
}

/// A client to add, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClient {
    pub id: String,
    pub kind: ClientKind,
    /// OAuth only: the most it may ask for.
    pub scopes: Vec<String>,
    /// OAuth only.
    pub refresh_tokens: bool,
    /// OAuth only: token requests per minute; 0 = unlimited.
    pub rate_limit: u32,
}

/// Runs one `client` subcommand against the configured database (migrated
/// first). Of `settings`, only the database section is resolved and checked;
/// the configured clients are compared by id. Data goes to standard output,
/// remarks to standard error.
pub async fn run(settings: &Settings, action: ClientAction) -> Result<(), String> {
    let db = super::open_database(&settings.database).await?;
    match action {
        ClientAction::Add(client) => {
            let (id, kind) = (client.id.clone(), client.kind);
            let secret = add(&db, settings, client, now()).await?;
            println!("{secret}");
            eprintln!(
                "{} client {id:?} added; its secret is printed above, this once: it is not \
                 stored (only its argon2id hash is), so keep it now. Every replica accepts \
                 it within database.clients_refresh ({}).",
                kind.as_str(),
                humantime::format_duration(settings.database.clients_refresh)
            );
        }
        ClientAction::List => {
            let clients = db.clients().await.map_err(|e| e.to_string())?;
            print!("{}", table(&clients));
            for client in clients
                .iter()
                .filter(|c| configured(settings, c.kind, &c.id))
            {
                eprintln!(
                    "note: the configuration has {} client {:?} too; the service uses that one \
                     and ignores the database's",
                    client.kind.as_str(),
                    client.id
                );
            }
        }
        ClientAction::Remove { id } => {
            remove(&db, settings, &id).await?;
            eprintln!(
                "client {id:?} removed; every replica refuses it within \
                 database.clients_refresh ({})",
                humantime::format_duration(settings.database.clients_refresh)
            );
        }
    }
    Ok(())
}

/// Stores `client` with a new secret's hash; returns the secret.
pub async fn add(
    db: &impl DurableStore,
    settings: &Settings,
    client: NewClient,
    now: Millis,
) -> Result<String, String> {
    let NewClient {
        id,
        kind,
        scopes,
        refresh_tokens,
        rate_limit,
    } = client;
    if !crate::clients::is_client_id(&id) {
        return Err(format!(
            "client id {id:?}: must be non-empty and contain no ':' (HTTP Basic splits there)"
        ));
    }
    if kind == ClientKind::Login && (!scopes.is_empty() || refresh_tokens || rate_limit != 0) {
        return Err(
            "--scopes, --refresh-tokens and --rate-limit are for oauth clients only".into(),
        );
    }
    if let Some(bad) = scopes.iter().find(|s| !is_scope_token(s)) {
        return Err(format!(
            "{bad:?} is not a scope (printable ASCII, no space, quote or backslash)"
        ));
    }
    if configured(settings, kind, &id) {
        return Err(format!(
            "the configuration (config.yml) already has {} client {id:?}; choose another id \
             (the service would ignore a stored client with this one)",
            kind.as_str()
        ));
    }
    let mut scopes_once: Vec<String> = Vec::new();
    for scope in scopes {
        if !scopes_once.contains(&scope) {
            scopes_once.push(scope);
        }
    }
    let mut random = [0u8; SECRET_BYTES];
    rand::fill(&mut random);
    let secret = URL_SAFE_NO_PAD.encode(random);
    let secret_hash = crate::clients::hash_secret(secret.as_bytes())
        .map_err(|e| format!("cannot hash the new secret: {e}"))?;
    let stored = StoredClient {
        id: id.clone(),
        kind,
        secret_hash,
        scopes: scopes_once,
        refresh_tokens,
        rate_limit,
        created_at: now,
    };
    db.add_client(&stored).await.map_err(|e| match e {
        DbError::ClientExists => format!(
            "the database already has a client {id:?}; remove it first, or choose another id"
        ),
        other => other.to_string(),
    })?;
    Ok(secret)
}

/// Removes the stored client `id`; an error if there is none.
pub async fn remove(db: &impl DurableStore, settings: &Settings, id: &str) -> Result<(), String> {
    if db.remove_client(id).await.map_err(|e| e.to_string())? {
        return Ok(());
    }
    let hint = if configured(settings, ClientKind::Login, id)
        || configured(settings, ClientKind::OAuth, id)
    {
        " (the configuration has it: remove it from config.yml instead)"
    } else {
        ""
    };
    Err(format!("no client {id:?} in the database{hint}"))
}

/// The stored clients as a plain table: id, kind, scopes, created (UTC).
/// Never a secret or a hash.
pub fn table(clients: &[StoredClient]) -> String {
    let rows = clients.iter().map(|c| {
        [
            c.id.clone(),
            c.kind.as_str().to_owned(),
            super::or_dash(c.scopes.join(" ")),
            crate::time::rfc3339_seconds(c.created_at),
        ]
    });
    super::table(["ID", "KIND", "SCOPES", "CREATED"], rows)
}

/// Whether the configuration has a client of `kind` with this id.
fn configured(settings: &Settings, kind: ClientKind, id: &str) -> bool {
    match kind {
        ClientKind::Login => settings.login.clients.iter().any(|c| c.id == id),
        ClientKind::OAuth => settings.oauth.clients.iter().any(|c| c.id == id),
    }
}

pub(super) use crate::time::now;

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use argon2::PasswordVerifier;

    use super::*;
    use crate::config::{LoginClient, OAuthClient};
    use crate::db::MockDurableStore;

    const T0: Millis = 1_800_000_000_000;

    fn new(id: &str, kind: ClientKind, scopes: &[&str]) -> NewClient {
        NewClient {
            id: id.into(),
            kind,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            refresh_tokens: false,
            rate_limit: 0,
        }
    }

    /// A database that keeps what `add_client` is given.
    fn recording() -> (MockDurableStore, Arc<Mutex<Vec<StoredClient>>>) {
        let added = Arc::new(Mutex::new(Vec::new()));
        let mut db = MockDurableStore::new();
        let sink = added.clone();
        db.expect_add_client().returning(move |c| {
            sink.lock().unwrap().push(c.clone());
            Ok(())
        });
        (db, added)
    }

    #[tokio::test]
    async fn add_stores_only_the_hash_of_a_random_secret() {
        let (db, added) = recording();
        let mut client = new("billing", ClientKind::OAuth, &["read", "write", "read"]);
        client.refresh_tokens = true;
        client.rate_limit = 600;
        let secret = add(&db, &Settings::default(), client, T0).await.unwrap();
        assert_eq!(secret.len(), 43, "32 bytes, base64url without padding");
        assert!(URL_SAFE_NO_PAD.decode(&secret).is_ok());

        let stored = added.lock().unwrap().pop().unwrap();
        assert_eq!(
            (stored.id.as_str(), stored.kind, stored.refresh_tokens),
            ("billing", ClientKind::OAuth, true)
        );
        assert_eq!(stored.scopes, ["read", "write"], "each scope once");
        assert_eq!((stored.rate_limit, stored.created_at), (600, T0));
        assert!(!stored.secret_hash.contains(&secret));
        let hash = crate::clients::parse_secret_hash(&stored.secret_hash).unwrap();
        assert!(
            argon2::Argon2::default()
                .verify_password(secret.as_bytes(), &hash)
                .is_ok()
        );

        let again = add(
            &db,
            &Settings::default(),
            new("b", ClientKind::Login, &[]),
            T0,
        )
        .await
        .unwrap();
        assert_ne!(again, secret);
    }

    #[tokio::test]
    async fn add_refuses_what_the_service_could_not_use() {
        let mut settings = Settings::default();
        settings.login.clients.push(LoginClient {
            id: "web".into(),
            ..LoginClient::default()
        });
        settings.oauth.clients.push(OAuthClient {
            id: "billing".into(),
            secret_hash: String::new(),
            scopes: vec![],
            refresh_tokens: false,
            rate_limit: 0,
        });
        let mut db = MockDurableStore::new();
        db.expect_add_client().never();
        let with_limit = NewClient {
            rate_limit: 5,
            ..new("robot", ClientKind::Login, &[])
        };
        for (client, says) in [
            (new("", ClientKind::Login, &[]), "non-empty"),
            (new("a:b", ClientKind::OAuth, &[]), "':'"),
            (
                new("robot", ClientKind::Login, &["read"]),
                "oauth clients only",
            ),
            (with_limit, "oauth clients only"),
            (new("robot", ClientKind::OAuth, &["a\"b"]), "not a scope"),
            (
                new("web", ClientKind::Login, &[]),
                "already has login client \"web\"",
            ),
            (new("billing", ClientKind::OAuth, &[]), "config.yml"),
        ] {
            let error = add(&db, &settings, client.clone(), T0).await.unwrap_err();
            assert!(error.contains(says), "{client:?}: {error}");
        }
        // Another kind's id is another client.
        let (db, added) = recording();
        add(&db, &settings, new("web", ClientKind::OAuth, &[]), T0)
            .await
            .unwrap();
        assert_eq!(added.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_taken_id_is_a_clear_error() {
        let mut db = MockDurableStore::new();
        db.expect_add_client()
            .returning(|_| Err(DbError::ClientExists));
        let error = add(
            &db,
            &Settings::default(),
            new("billing", ClientKind::OAuth, &[]),
            T0,
        )
        .await
        .unwrap_err();
        assert!(
            error.contains("already has a client \"billing\""),
            "{error}"
        );
    }

    #[tokio::test]
    async fn removing_an_unknown_client_fails() {
        let mut db = MockDurableStore::new();
        db.expect_remove_client()
            .returning(|id| Ok(id == "billing"));
        let settings = Settings::default();
        assert!(remove(&db, &settings, "billing").await.is_ok());
        let error = remove(&db, &settings, "ghost").await.unwrap_err();
        assert_eq!(error, "no client \"ghost\" in the database");
    }

    #[test]
    fn the_table_shows_no_secrets() {
        let client = |id: &str, kind, scopes: &[&str]| StoredClient {
            id: id.into(),
            kind,
            secret_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            refresh_tokens: false,
            rate_limit: 0,
            created_at: 1_767_225_600_000,
        };
        let table = table(&[
            client("billing", ClientKind::OAuth, &["read", "write"]),
            client("web", ClientKind::Login, &[]),
        ]);
        assert_eq!(
            table,
            "ID       KIND   SCOPES      CREATED\n\
             billing  oauth  read write  2026-01-01T00:00:00Z\n\
             web      login  -           2026-01-01T00:00:00Z\n"
        );
        assert!(!table.contains("argon2"));
    }
}
