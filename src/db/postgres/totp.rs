//! TOTP records on PostgreSQL (see [`crate::db::totp`]).

use sqlx::postgres::PgPool;
use uuid::Uuid;

use crate::db::totp::{TotpRow, to_db_step};
use crate::db::{DbError, NewTotp, TotpRecord, to_db_millis};

pub(super) async fn totp(pool: &PgPool, user: Uuid) -> Result<Option<TotpRecord>, DbError> {
    let row: Option<TotpRow> =
        sqlx::query_as("SELECT secret, last_step FROM totp WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_optional(pool)
            .await?;
    Ok(row.map(TotpRecord::from))
}

pub(super) async fn enable_totp(pool: &PgPool, totp: &NewTotp) -> Result<bool, DbError> {
    let mut tx = pool.begin().await?;
    let user = totp.user.to_string();
    let inserted = sqlx::query(
        "INSERT INTO totp (user_id, secret, last_step, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(&user)
    .bind(&totp.secret)
    .bind(to_db_step(totp.last_step))
    .bind(to_db_millis(totp.created_at))
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false); // dropping `tx` rolls it back
    }
    for hash in &totp.recovery_hashes {
        sqlx::query("INSERT INTO totp_recovery (user_id, code_hash) VALUES ($1, $2)")
            .bind(&user)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn use_totp_step(pool: &PgPool, user: Uuid, step: u64) -> Result<bool, DbError> {
    let done = sqlx::query("UPDATE totp SET last_step = $1 WHERE user_id = $2 AND last_step < $3")
        .bind(to_db_step(step))
        .bind(user.to_string())
        .bind(to_db_step(step))
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn use_recovery_code(
    pool: &PgPool,
    user: Uuid,
    code_hash: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query("DELETE FROM totp_recovery WHERE user_id = $1 AND code_hash = $2")
        .bind(user.to_string())
        .bind(code_hash)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn disable_totp(pool: &PgPool, user: Uuid) -> Result<bool, DbError> {
    let user = user.to_string();
    let mut tx = pool.begin().await?;
    // The foreign key cascades too; said here so no setting decides it.
    sqlx::query("DELETE FROM totp_recovery WHERE user_id = $1")
        .bind(&user)
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM totp WHERE user_id = $1")
        .bind(&user)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}
