//! Durable records (SPEC §7, §9, §15): user accounts and their TOTP,
//! clients kept in the database, API tokens and the outbox of events,
//! behind the [`DurableStore`] trait with two implementations over sqlx —
//! [`sqlite::SqliteStore`] (embedded, one host) and
//! [`postgres::PostgresStore`] (any number of replicas).
//!
//! Sessions stay in the session store (Redis); nothing on the
//! `/authenticate` path reads this one. Each method is one transaction, so
//! a crash never leaves half a registration: the user row and its event are
//! written together or not at all, and the relay deletes an event only after
//! the sink took it. Every call has a deadline (`database.timeout`); past it,
//! or with the database unreachable, the answer is
//! [`DbError::Unavailable`], which the HTTP layer turns into `503`.

pub mod events;
pub mod postgres;
pub mod sqlite;
pub mod totp;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use uuid::Uuid;

use crate::config::DatabaseSettings;
use crate::time::Millis;
pub use totp::{NewTotp, TotpRecord};

/// An account about to be created. `email` is already normalized (trimmed,
/// ASCII lower case): the unique index compares it as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub id: Uuid,
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Whether a trusted client vouched for the email (SPEC §11).
    pub email_verified: bool,
    pub created_at: Millis,
}

/// What a password login needs of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserLogin {
    pub id: Uuid,
    pub password_hash: String,
    pub email_verified: bool,
}

/// One row of the outbox: an event not yet handed to the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Unique per event, so consumers can drop a redelivery.
    pub id: Uuid,
    /// e.g. `UserRegistered`.
    pub kind: String,
    /// Whom it is about (a user's id, `token:<name>`): the unit of order.
    /// Rows written before it existed have `""`.
    pub subject: String,
    /// The event's JSON body.
    pub payload: String,
    pub created_at: Millis,
}

/// Which endpoint a client kept in the database authenticates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// A trusted caller of `/login` and `/register` (HTTP Basic).
    Login,
    /// A machine client of `/oauth/token`.
    OAuth,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::OAuth => "oauth",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "login" => Some(Self::Login),
            "oauth" => Some(Self::OAuth),
            _ => None,
        }
    }
}

/// A client added with `tokengate client add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClient {
    pub id: String,
    pub kind: ClientKind,
    /// argon2id PHC string; the secret itself is shown once and never stored.
    pub secret_hash: String,
    /// OAuth only: the most it may ask for.
    pub scopes: Vec<String>,
    /// OAuth only: refresh tokens with `client_credentials`.
    pub refresh_tokens: bool,
    /// OAuth only: token requests per minute; 0 = unlimited.
    pub rate_limit: u32,
    pub created_at: Millis,
}

/// What the subject of every API token starts with, never mistaken for a
/// user id (`/login` refuses ids with this prefix; client ids have no `:`).
pub const TOKEN_SUBJECT_PREFIX: &str = "token:";

/// An API token as stored (SPEC §9): never the token, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: Uuid,
    pub name: String,
    /// Lower-case hex of the token's SHA-256: what a presented token is
    /// looked up by.
    pub token_hash: String,
    pub scopes: Vec<String>,
    pub created_at: Millis,
    /// `None`: never expires.
    pub expires_at: Option<Millis>,
    /// Written behind, at most once a minute per token.
    pub last_used_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

impl ApiTokenRecord {
    /// `token:<name>`: whom the token authenticates as (`X-User-Id`), and
    /// the subject of its events.
    pub fn subject(&self) -> String {
        format!("{TOKEN_SUBJECT_PREFIX}{}", self.name)
    }

    /// Neither revoked nor expired at `now`.
    pub fn is_active(&self, now: Millis) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|end| now < end)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("this email is already registered")]
    EmailTaken,
    #[error("a client with this id already exists")]
    ClientExists,
    #[error("an API token with this id or hash already exists")]
    TokenExists,
    #[error("database error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &error {
            E::Io(_)
            | E::Tls(_)
            | E::Protocol(_)
            | E::PoolTimedOut
            | E::PoolClosed
            | E::WorkerCrashed => Self::Unavailable(error.to_string()),
            E::Database(db) if is_transient(db.as_ref()) => Self::Unavailable(error.to_string()),
            _ => Self::Internal(error.to_string()),
        }
    }
}

/// Errors that mean "not now" rather than "never": SQLite's "database is
/// locked" (another writer held it past busy_timeout); Postgres' lost
/// connections (class 08), lack of resources such as too many connections
/// (53), and a server shutting down or still starting up (57P01–57P03).
fn is_transient(db: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = db.code() else {
        return false;
    };
    if db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        code.starts_with("08")
            || code.starts_with("53")
            || matches!(&*code, "57P01" | "57P02" | "57P03")
    } else {
        code == "5"
    }
}

impl From<sqlx::migrate::MigrateError> for DbError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        match error {
            sqlx::migrate::MigrateError::Execute(e) => e.into(),
            other => Self::Internal(format!("migrations: {other}")),
        }
    }
}

/// Whether a database error is a unique-constraint violation.
fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Where the relay hands events (a Redis stream today; a Kafka sink could
/// follow). Boxed future: the store takes it as `&dyn`.
pub trait EventSink: Send + Sync {
    fn publish<'a>(
        &'a self,
        events: &'a [OutboxEvent],
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;
}

#[derive(Debug, thiserror::Error)]
#[error("event sink: {0}")]
pub struct SinkError(pub String);

/// The durable records. Implementations map their driver's errors to
/// [`DbError`]; deadlines are [`Database`]'s job.
#[cfg_attr(test, mockall::automock)]
#[allow(async_fn_in_trait)] // used through concrete types, whose futures are Send
pub trait DurableStore: Send + Sync {
    /// Applies the migrations in `migrations/` not yet applied.
    async fn migrate(&self) -> Result<(), DbError>;

    async fn ping(&self) -> Result<(), DbError>;

    /// Inserts the user and its event in one transaction; `EmailTaken` if
    /// the (normalized) email exists, and then nothing is written.
    async fn create_user(&self, user: &NewUser, event: &OutboxEvent) -> Result<(), DbError>;

    /// The account with this normalized email.
    async fn user_by_email(&self, email: &str) -> Result<Option<UserLogin>, DbError>;

    /// Hands up to `limit` of the oldest outbox events to `sink` and deletes
    /// them once it accepted them, in one transaction: one relay at a time
    /// (another replica's, or a request's own round, waits for it), so
    /// events reach the sink in the outbox's order; a failed publish
    /// leaves them for the next try. Returns how many were delivered.
    async fn relay_events(&self, sink: &dyn EventSink, limit: u32) -> Result<usize, DbError>;

    /// Events in the outbox, not yet delivered.
    async fn pending_events(&self) -> Result<u64, DbError>;

    /// `ClientExists` if the id is taken.
    async fn add_client(&self, client: &StoredClient) -> Result<(), DbError>;

    /// Every stored client, by id.
    async fn clients(&self) -> Result<Vec<StoredClient>, DbError>;

    /// Whether a client with this id existed.
    async fn remove_client(&self, id: &str) -> Result<bool, DbError>;

    /// Inserts the token and, in the same transaction, its
    /// `ApiTokenCreated` event; `TokenExists` if the id or the hash is
    /// taken, and then nothing is written.
    async fn create_api_token(&self, token: &ApiTokenRecord) -> Result<(), DbError>;

    /// The token with this SHA-256 (hex), revoked and expired ones too.
    async fn api_token_by_hash(&self, hash: &str) -> Result<Option<ApiTokenRecord>, DbError>;

    async fn api_token(&self, id: Uuid) -> Result<Option<ApiTokenRecord>, DbError>;

    /// Tokens oldest first: only those active at `now`, or all.
    async fn api_tokens(&self, all: bool, now: Millis) -> Result<Vec<ApiTokenRecord>, DbError>;

    /// Marks the token revoked at `now` (an earlier revocation stays) and,
    /// in the same transaction, records that the cache must still learn it
    /// (a pending clear, until [`DurableStore::cache_cleared`]) and, if it
    /// was not revoked before, writes its `ApiTokenRevoked` event; `None`
    /// if there is no such token.
    async fn revoke_api_token(
        &self,
        id: Uuid,
        now: Millis,
    ) -> Result<Option<ApiTokenRecord>, DbError>;

    /// The hashes (hex) of up to `limit` revoked tokens whose cache entries
    /// may still say live, oldest revocation first.
    async fn pending_cache_clears(&self, limit: u32) -> Result<Vec<String>, DbError>;

    /// Forgets the pending clears of these hashes: the cache has their
    /// tombstones.
    async fn cache_cleared(&self, hashes: &[String]) -> Result<(), DbError>;

    /// Sets `last_used_at` to `now` unless it is already later.
    async fn touch_api_token(&self, id: Uuid, now: Millis) -> Result<(), DbError>;

    /// The account's TOTP, if it has one.
    async fn totp(&self, user: Uuid) -> Result<Option<TotpRecord>, DbError>;

    /// Stores an enrolment and its recovery codes in one transaction;
    /// `false`, and nothing written, if the account has TOTP already.
    async fn enable_totp(&self, totp: &NewTotp) -> Result<bool, DbError>;

    /// Moves the account's `last_step` to `step` if it is earlier: whether
    /// it did, i.e. whether a code of `step` is used now and for the first
    /// time (one statement, so two replicas never both accept it).
    async fn use_totp_step(&self, user: Uuid, step: u64) -> Result<bool, DbError>;

    /// Deletes the account's recovery code with this hash: whether there
    /// was one (so each is accepted once).
    async fn use_recovery_code(&self, user: Uuid, code_hash: &str) -> Result<bool, DbError>;

    /// Deletes the account's TOTP and recovery codes: whether it had TOTP.
    async fn disable_totp(&self, user: Uuid) -> Result<bool, DbError>;
}

/// The configured database, with a deadline on every call. An enum rather
/// than `dyn`: the trait has `async fn`s, and its callers are few.
pub struct Database {
    backend: Backend,
    timeout: Duration,
}

enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PostgresStore),
}

impl Database {
    /// Opens a pool without connecting yet (connections are made on first
    /// use), so start-up and the CLI share one path.
    pub fn open(settings: &DatabaseSettings) -> Result<Self, DbError> {
        let backend = if settings.is_postgres() {
            Backend::Postgres(postgres::PostgresStore::open(settings)?)
        } else {
            Backend::Sqlite(sqlite::SqliteStore::open(settings)?)
        };
        Ok(Self {
            backend,
            timeout: settings.timeout,
        })
    }

    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

macro_rules! dispatch {
    ($db:expr, $s:ident => $call:expr) => {
        match &$db.backend {
            Backend::Sqlite($s) => $db.deadline($call).await,
            Backend::Postgres($s) => $db.deadline($call).await,
        }
    };
}

impl Database {
    async fn deadline<T>(
        &self,
        call: impl Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| Err(DbError::Unavailable("timed out".into())))
    }
}

impl DurableStore for Database {
    /// No deadline: a first migration may take longer than one query.
    async fn migrate(&self) -> Result<(), DbError> {
        match &self.backend {
            Backend::Sqlite(s) => s.migrate().await,
            Backend::Postgres(s) => s.migrate().await,
        }
    }

    async fn ping(&self) -> Result<(), DbError> {
        dispatch!(self, s => s.ping())
    }

    async fn create_user(&self, user: &NewUser, event: &OutboxEvent) -> Result<(), DbError> {
        dispatch!(self, s => s.create_user(user, event))
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserLogin>, DbError> {
        dispatch!(self, s => s.user_by_email(email))
    }

    async fn relay_events(&self, sink: &dyn EventSink, limit: u32) -> Result<usize, DbError> {
        dispatch!(self, s => s.relay_events(sink, limit))
    }

    async fn pending_events(&self) -> Result<u64, DbError> {
        dispatch!(self, s => s.pending_events())
    }

    async fn add_client(&self, client: &StoredClient) -> Result<(), DbError> {
        dispatch!(self, s => s.add_client(client))
    }

    async fn clients(&self) -> Result<Vec<StoredClient>, DbError> {
        dispatch!(self, s => s.clients())
    }

    async fn remove_client(&self, id: &str) -> Result<bool, DbError> {
        dispatch!(self, s => s.remove_client(id))
    }

    async fn create_api_token(&self, token: &ApiTokenRecord) -> Result<(), DbError> {
        dispatch!(self, s => s.create_api_token(token))
    }

    async fn api_token_by_hash(&self, hash: &str) -> Result<Option<ApiTokenRecord>, DbError> {
        dispatch!(self, s => s.api_token_by_hash(hash))
    }

    async fn api_token(&self, id: Uuid) -> Result<Option<ApiTokenRecord>, DbError> {
        dispatch!(self, s => s.api_token(id))
    }

    async fn api_tokens(&self, all: bool, now: Millis) -> Result<Vec<ApiTokenRecord>, DbError> {
        dispatch!(self, s => s.api_tokens(all, now))
    }

    async fn revoke_api_token(
        &self,
        id: Uuid,
        now: Millis,
    ) -> Result<Option<ApiTokenRecord>, DbError> {
        dispatch!(self, s => s.revoke_api_token(id, now))
    }

    async fn pending_cache_clears(&self, limit: u32) -> Result<Vec<String>, DbError> {
        dispatch!(self, s => s.pending_cache_clears(limit))
    }

    async fn cache_cleared(&self, hashes: &[String]) -> Result<(), DbError> {
        dispatch!(self, s => s.cache_cleared(hashes))
    }

    async fn touch_api_token(&self, id: Uuid, now: Millis) -> Result<(), DbError> {
        dispatch!(self, s => s.touch_api_token(id, now))
    }

    async fn totp(&self, user: Uuid) -> Result<Option<TotpRecord>, DbError> {
        dispatch!(self, s => s.totp(user))
    }

    async fn enable_totp(&self, totp: &NewTotp) -> Result<bool, DbError> {
        dispatch!(self, s => s.enable_totp(totp))
    }

    async fn use_totp_step(&self, user: Uuid, step: u64) -> Result<bool, DbError> {
        dispatch!(self, s => s.use_totp_step(user, step))
    }

    async fn use_recovery_code(&self, user: Uuid, code_hash: &str) -> Result<bool, DbError> {
        dispatch!(self, s => s.use_recovery_code(user, code_hash))
    }

    async fn disable_totp(&self, user: Uuid) -> Result<bool, DbError> {
        dispatch!(self, s => s.disable_totp(user))
    }
}

/// Scopes as stored: one space-separated column.
fn join_scopes(scopes: &[String]) -> String {
    scopes.join(" ")
}

fn split_scopes(text: &str) -> Vec<String> {
    text.split_ascii_whitespace().map(str::to_owned).collect()
}

/// A user as a login reads it. The row types below are shared by both
/// backends (`FromRow` is generic over the driver), so a column is turned
/// into a field in one place.
#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    password_hash: String,
    email_verified: bool,
}

impl TryFrom<UserRow> for UserLogin {
    type Error = DbError;

    fn try_from(row: UserRow) -> Result<Self, DbError> {
        Ok(Self {
            id: parse_uuid(&row.id)?,
            password_hash: row.password_hash,
            email_verified: row.email_verified,
        })
    }
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    seq: i64,
    id: String,
    kind: String,
    subject: String,
    payload: String,
    created_at: i64,
}

impl TryFrom<OutboxRow> for OutboxEvent {
    type Error = DbError;

    fn try_from(row: OutboxRow) -> Result<Self, DbError> {
        Ok(Self {
            id: parse_uuid(&row.id)?,
            kind: row.kind,
            subject: row.subject,
            payload: row.payload,
            created_at: from_db_millis(row.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct ClientRow {
    id: String,
    kind: String,
    secret_hash: String,
    scopes: String,
    refresh_tokens: bool,
    rate_limit: i64,
    created_at: i64,
}

impl TryFrom<ClientRow> for StoredClient {
    type Error = DbError;

    fn try_from(row: ClientRow) -> Result<Self, DbError> {
        Ok(Self {
            kind: ClientKind::parse(&row.kind)
                .ok_or_else(|| DbError::Internal(format!("client kind {:?}", row.kind)))?,
            id: row.id,
            secret_hash: row.secret_hash,
            scopes: split_scopes(&row.scopes),
            refresh_tokens: row.refresh_tokens,
            // Not `unwrap_or(0)`: 0 means unlimited.
            rate_limit: u32::try_from(row.rate_limit)
                .map_err(|_| DbError::Internal(format!("client rate_limit {}", row.rate_limit)))?,
            created_at: from_db_millis(row.created_at),
        })
    }
}

/// The columns of `api_tokens`, in [`ApiTokenRow`]'s order; a macro so
/// that queries stay `&'static str` (`concat!`).
macro_rules! api_token_columns {
    () => {
        "id, name, token_hash, scopes, created_at, expires_at, last_used_at, revoked_at"
    };
}
use api_token_columns;

#[derive(sqlx::FromRow)]
struct ApiTokenRow {
    id: String,
    name: String,
    token_hash: String,
    scopes: String,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<ApiTokenRow> for ApiTokenRecord {
    type Error = DbError;

    fn try_from(row: ApiTokenRow) -> Result<Self, DbError> {
        Ok(Self {
            id: parse_uuid(&row.id)?,
            name: row.name,
            token_hash: row.token_hash,
            scopes: split_scopes(&row.scopes),
            created_at: from_db_millis(row.created_at),
            expires_at: row.expires_at.map(from_db_millis),
            last_used_at: row.last_used_at.map(from_db_millis),
            revoked_at: row.revoked_at.map(from_db_millis),
        })
    }
}

/// Reads a row's uuid column, stored as text.
fn parse_uuid(text: &str) -> Result<Uuid, DbError> {
    Uuid::parse_str(text).map_err(|e| DbError::Internal(format!("bad uuid {text:?}: {e}")))
}

/// Millis are stored as BIGINT (signed); times before 1970 or after 2262
/// do not occur.
fn to_db_millis(ms: Millis) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn from_db_millis(ms: i64) -> Millis {
    u64::try_from(ms).unwrap_or(0)
}
