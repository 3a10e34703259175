//! [`DurableStore`] on SQLite: the embedded default, one file on one host.
//!
//! WAL mode lets readers run beside the one writer; a busy timeout makes a
//! second writer (another connection, or another replica on the same host)
//! wait instead of failing. The relay takes the write lock up front
//! (`BEGIN IMMEDIATE`): that lock is the single-writer guarantee that no two
//! relays hand out the same events at once. The file is private to the
//! service's user ([`files`]).

mod files;
mod totp;

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::{
    ApiTokenRecord, ApiTokenRow, ClientRow, DbError, DurableStore, EventSink, NewTotp, NewUser,
    OutboxEvent, OutboxRow, StoredClient, TotpRecord, UserLogin, UserRow, events,
    is_unique_violation, join_scopes, to_db_millis,
};
use uuid::Uuid;

use super::api_token_columns;
use crate::config::DatabaseSettings;
use crate::time::Millis;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens the pool (connecting on first use), after making the file
    /// private: created 0600 here when `mode=rwc` may create it.
    pub fn open(settings: &DatabaseSettings) -> Result<Self, DbError> {
        let url = settings.url.expose();
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| DbError::Internal(format!("database.url: {e}")))?;
        if let Some(create) = files::on_disk(url) {
            files::make_private(options.get_filename(), create).map_err(DbError::Internal)?;
        }
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(settings.timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.timeout)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }
}

impl DurableStore for SqliteStore {
    /// SQLite has no migration lock: replicas starting together on one
    /// file may race to apply the same migration. Each runs in its own
    /// transaction, so the loser only has to look again.
    async fn migrate(&self) -> Result<(), DbError> {
        let mut attempt = 0;
        loop {
            match MIGRATOR.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(_) if attempt < 3 => attempt += 1,
                Err(e) => return Err(e.into()),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
        }
    }

    async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, user: &NewUser, event: &OutboxEvent) -> Result<(), DbError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, password_hash, email_verified, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(user.id.to_string())
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(user.email_verified)
        .bind(to_db_millis(user.created_at))
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Err(DbError::EmailTaken),
            other => other?,
        };
        insert_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserLogin>, DbError> {
        let row: Option<UserRow> =
            sqlx::query_as("SELECT id, password_hash, email_verified FROM users WHERE email = ?")
                .bind(email)
                .fetch_optional(&self.pool)
                .await?;
        row.map(UserLogin::try_from).transpose()
    }

    async fn relay_events(&self, sink: &dyn EventSink, limit: u32) -> Result<usize, DbError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT seq, id, kind, subject, payload, created_at FROM outbox ORDER BY seq LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last().map(|row| row.seq) else {
            return Ok(0);
        };
        let events = rows
            .into_iter()
            .map(OutboxEvent::try_from)
            .collect::<Result<Vec<_>, DbError>>()?;
        sink.publish(&events)
            .await
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        // The write lock was held since the SELECT: these are exactly the
        // rows up to `last`.
        sqlx::query("DELETE FROM outbox WHERE seq <= ?")
            .bind(last)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(events.len())
    }

    async fn pending_events(&self) -> Result<u64, DbError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn add_client(&self, client: &StoredClient) -> Result<(), DbError> {
        let inserted = sqlx::query(
            "INSERT INTO clients (id, kind, secret_hash, scopes, refresh_tokens, rate_limit, \
             created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&client.id)
        .bind(client.kind.as_str())
        .bind(&client.secret_hash)
        .bind(join_scopes(&client.scopes))
        .bind(client.refresh_tokens)
        .bind(i64::from(client.rate_limit))
        .bind(to_db_millis(client.created_at))
        .execute(&self.pool)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => Err(DbError::ClientExists),
            other => other.map(drop).map_err(DbError::from),
        }
    }

    async fn clients(&self) -> Result<Vec<StoredClient>, DbError> {
        let rows: Vec<ClientRow> = sqlx::query_as(
            "SELECT id, kind, secret_hash, scopes, refresh_tokens, rate_limit, created_at \
             FROM clients ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(StoredClient::try_from).collect()
    }

    async fn remove_client(&self, id: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM clients WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_api_token(&self, token: &ApiTokenRecord) -> Result<(), DbError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let inserted = sqlx::query(concat!(
            "INSERT INTO api_tokens (",
            api_token_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(token.id.to_string())
        .bind(&token.name)
        .bind(&token.token_hash)
        .bind(join_scopes(&token.scopes))
        .bind(to_db_millis(token.created_at))
        .bind(token.expires_at.map(to_db_millis))
        .bind(token.last_used_at.map(to_db_millis))
        .bind(token.revoked_at.map(to_db_millis))
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Err(DbError::TokenExists),
            other => other?,
        };
        insert_event(&mut tx, &events::token_created(token)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn api_token_by_hash(&self, hash: &str) -> Result<Option<ApiTokenRecord>, DbError> {
        let row: Option<ApiTokenRow> = sqlx::query_as(concat!(
            "SELECT ",
            api_token_columns!(),
            " FROM api_tokens WHERE token_hash = ?"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(ApiTokenRecord::try_from).transpose()
    }

    async fn api_token(&self, id: Uuid) -> Result<Option<ApiTokenRecord>, DbError> {
        let row: Option<ApiTokenRow> = sqlx::query_as(concat!(
            "SELECT ",
            api_token_columns!(),
            " FROM api_tokens WHERE id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(ApiTokenRecord::try_from).transpose()
    }

    async fn api_tokens(&self, all: bool, now: Millis) -> Result<Vec<ApiTokenRecord>, DbError> {
        let rows: Vec<ApiTokenRow> = sqlx::query_as(concat!(
            "SELECT ",
            api_token_columns!(),
            " FROM api_tokens WHERE ? OR (revoked_at IS NULL AND (expires_at IS NULL \
             OR expires_at > ?)) ORDER BY created_at, id"
        ))
        .bind(all)
        .bind(to_db_millis(now))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(ApiTokenRecord::try_from).collect()
    }

    async fn revoke_api_token(
        &self,
        id: Uuid,
        now: Millis,
    ) -> Result<Option<ApiTokenRecord>, DbError> {
        // The write lock is held from here: nobody revokes it in between.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let newly: Option<ApiTokenRow> = sqlx::query_as(concat!(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING ",
            api_token_columns!()
        ))
        .bind(to_db_millis(now))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let record = match newly {
            Some(row) => {
                let record = ApiTokenRecord::try_from(row)?;
                insert_event(&mut tx, &events::token_revoked(&record, now)).await?;
                record
            }
            // Revoked before, or unknown: no event.
            None => {
                let before: Option<ApiTokenRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    api_token_columns!(),
                    " FROM api_tokens WHERE id = ?"
                ))
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = before else {
                    return Ok(None);
                };
                ApiTokenRecord::try_from(row)?
            }
        };
        sqlx::query(
            "INSERT INTO api_token_cache_clears (token_hash, revoked_at) VALUES (?, ?) \
             ON CONFLICT (token_hash) DO NOTHING",
        )
        .bind(&record.token_hash)
        .bind(to_db_millis(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(record))
    }

    async fn pending_cache_clears(&self, limit: u32) -> Result<Vec<String>, DbError> {
        let hashes = sqlx::query_scalar(
            "SELECT token_hash FROM api_token_cache_clears ORDER BY revoked_at LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(hashes)
    }

    async fn cache_cleared(&self, hashes: &[String]) -> Result<(), DbError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for hash in hashes {
            sqlx::query("DELETE FROM api_token_cache_clears WHERE token_hash = ?")
                .bind(hash)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn touch_api_token(&self, id: Uuid, now: Millis) -> Result<(), DbError> {
        let now = to_db_millis(now);
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = ? WHERE id = ? \
             AND (last_used_at IS NULL OR last_used_at < ?)",
        )
        .bind(now)
        .bind(id.to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn totp(&self, user: Uuid) -> Result<Option<TotpRecord>, DbError> {
        totp::totp(&self.pool, user).await
    }

    async fn enable_totp(&self, new: &NewTotp) -> Result<bool, DbError> {
        totp::enable_totp(&self.pool, new).await
    }

    async fn use_totp_step(&self, user: Uuid, step: u64) -> Result<bool, DbError> {
        totp::use_totp_step(&self.pool, user, step).await
    }

    async fn use_recovery_code(&self, user: Uuid, code_hash: &str) -> Result<bool, DbError> {
        totp::use_recovery_code(&self.pool, user, code_hash).await
    }

    async fn disable_totp(&self, user: Uuid) -> Result<bool, DbError> {
        totp::disable_totp(&self.pool, user).await
    }
}

/// Writes an event into the outbox, in the transaction of its cause.
async fn insert_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    event: &OutboxEvent,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO outbox (id, kind, subject, payload, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(event.id.to_string())
    .bind(&event.kind)
    .bind(&event.subject)
    .bind(&event.payload)
    .bind(to_db_millis(event.created_at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
