//! [`DurableStore`] on PostgreSQL: any number of replicas share it.
//!
//! Replicas coordinate through the database alone. A relay round holds a
//! transaction-level advisory lock from its read to its commit: a relay in
//! another replica (or a request running a round of its own) waits for it
//! rather than passing it, so events leave in the outbox's order and none
//! twice, and a relay that dies mid-batch releases the lock with its
//! transaction.
//! Migrations run under sqlx's advisory lock (`pg_advisory_lock`, taken
//! before it even creates its own table), so replicas starting together
//! apply each migration once.

mod totp;

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::{
    ApiTokenRecord, ApiTokenRow, ClientRow, DbError, DurableStore, EventSink, NewTotp, NewUser,
    OutboxEvent, OutboxRow, StoredClient, TotpRecord, UserLogin, UserRow, events,
    is_unique_violation, join_scopes, to_db_millis,
};
use uuid::Uuid;

use super::api_token_columns;
use crate::config::DatabaseSettings;
use crate::time::Millis;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The relay's transaction-level advisory lock (`pg_advisory_xact_lock`):
/// a key of its own (`tgoutbox` in ASCII), apart from
/// sqlx's migration lock.
const RELAY_LOCK: i64 = 0x7467_6f75_7462_6f78;

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub fn open(settings: &DatabaseSettings) -> Result<Self, DbError> {
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.timeout)
            .connect_lazy(settings.url.expose())
            .map_err(|e| DbError::Internal(format!("database.url: {e}")))?;
        Ok(Self { pool })
    }
}

impl DurableStore for PostgresStore {
    async fn migrate(&self) -> Result<(), DbError> {
        // The advisory lock belongs to the session, and sqlx does not release
        // it when a migration fails: close that connection rather than hand
        // the lock back to the pool, where it would stall every other replica.
        let mut conn = self.pool.acquire().await?;
        let migrated = MIGRATOR.run(&mut *conn).await;
        if migrated.is_err() {
            conn.close_on_drop();
        }
        Ok(migrated?)
    }

    async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, user: &NewUser, event: &OutboxEvent) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, password_hash, email_verified, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user.id.to_string())
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(user.email_verified)
        .bind(to_db_millis(user.created_at))
        .execute(&mut *tx)
        .await;
        match inserted {
            // Dropping `tx` rolls it back.
            Err(e) if is_unique_violation(&e) => return Err(DbError::EmailTaken),
            other => other?,
        };
        insert_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserLogin>, DbError> {
        let row: Option<UserRow> =
            sqlx::query_as("SELECT id, password_hash, email_verified FROM users WHERE email = $1")
                .bind(email)
                .fetch_optional(&self.pool)
                .await?;
        row.map(UserLogin::try_from).transpose()
    }

    async fn relay_events(&self, sink: &dyn EventSink, limit: u32) -> Result<usize, DbError> {
        let mut tx = self.pool.begin().await?;
        // One relay at a time, until this transaction ends: the next one
        // (another replica's, or a request's own round) waits here, then
        // reads what is left — so no later row passes an earlier one, and
        // events reach the sink in the outbox's order per subject.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(RELAY_LOCK)
            .execute(&mut *tx)
            .await?;
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT seq, id, kind, subject, payload, created_at FROM outbox ORDER BY seq \
             LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Rows inserted meanwhile are not in this batch: delete exactly the
        // ones read above.
        let seqs: Vec<i64> = rows.iter().map(|row| row.seq).collect();
        let events = rows
            .into_iter()
            .map(OutboxEvent::try_from)
            .collect::<Result<Vec<_>, DbError>>()?;
        if let Err(e) = sink.publish(&events).await {
            // Release the lock now: the rollback of a dropped transaction runs
            // later, when the pool gets round to it, and until then every
            // relay waits. If even the rollback fails, the connection is
            // broken and its locks go with it; the sink's error is the news.
            let _ = tx.rollback().await;
            return Err(DbError::Unavailable(e.to_string()));
        }
        sqlx::query("DELETE FROM outbox WHERE seq = ANY($1)")
            .bind(&seqs)
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
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
        // Byte order whatever the database's collation, as SQLite sorts.
        let rows: Vec<ClientRow> = sqlx::query_as(
            "SELECT id, kind, secret_hash, scopes, refresh_tokens, \
             rate_limit, created_at FROM clients ORDER BY id COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(StoredClient::try_from).collect()
    }

    async fn remove_client(&self, id: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM clients WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_api_token(&self, token: &ApiTokenRecord) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(concat!(
            "INSERT INTO api_tokens (",
            api_token_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
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
            // Dropping `tx` rolls it back.
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
            " FROM api_tokens WHERE token_hash = $1"
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
            " FROM api_tokens WHERE id = $1"
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
            " FROM api_tokens WHERE $1 OR (revoked_at IS NULL AND (expires_at IS NULL \
             OR expires_at > $2)) ORDER BY created_at, id COLLATE \"C\""
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
        let mut tx = self.pool.begin().await?;
        // A concurrent revocation holds the row until it commits; this
        // UPDATE then finds it revoked and matches nothing.
        let newly: Option<ApiTokenRow> = sqlx::query_as(concat!(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
             RETURNING ",
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
                    " FROM api_tokens WHERE id = $1"
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
            "INSERT INTO api_token_cache_clears (token_hash, revoked_at) VALUES ($1, $2) \
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
            "SELECT token_hash FROM api_token_cache_clears ORDER BY revoked_at LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(hashes)
    }

    async fn cache_cleared(&self, hashes: &[String]) -> Result<(), DbError> {
        sqlx::query("DELETE FROM api_token_cache_clears WHERE token_hash = ANY($1)")
            .bind(hashes)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn touch_api_token(&self, id: Uuid, now: Millis) -> Result<(), DbError> {
        let now = to_db_millis(now);
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2 \
             AND (last_used_at IS NULL OR last_used_at < $3)",
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
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    event: &OutboxEvent,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO outbox (id, kind, subject, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
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
