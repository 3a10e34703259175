//! [`DurableStore`] on PostgreSQL: any number of replicas share it.

use sqlx::postgres::PgPool;

use super::{DbError, DurableStore, EventSink, NewUser, OutboxEvent, StoredClient, UserLogin};
use crate::config::DatabaseSettings;

pub struct PostgresStore {
    #[allow(dead_code)]
    pool: PgPool,
}

impl PostgresStore {
    pub fn open(settings: &DatabaseSettings) -> Result<Self, DbError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.timeout)
            .connect_lazy(settings.url.expose())
            .map_err(|e| DbError::Internal(format!("database.url: {e}")))?;
        Ok(Self { pool })
    }
}

impl DurableStore for PostgresStore {
    async fn migrate(&self) -> Result<(), DbError> {
        todo!()
    }
    async fn ping(&self) -> Result<(), DbError> {
        todo!()
    }
    async fn create_user(&self, _user: &NewUser, _event: &OutboxEvent) -> Result<(), DbError> {
        todo!()
    }
    async fn user_by_email(&self, _email: &str) -> Result<Option<UserLogin>, DbError> {
        todo!()
    }
    async fn relay_events(&self, _sink: &dyn EventSink, _limit: u32) -> Result<usize, DbError> {
        todo!()
    }
    async fn pending_events(&self) -> Result<u64, DbError> {
        todo!()
    }
    async fn add_client(&self, _client: &StoredClient) -> Result<(), DbError> {
        todo!()
    }
    async fn clients(&self) -> Result<Vec<StoredClient>, DbError> {
        todo!()
    }
    async fn remove_client(&self, _id: &str) -> Result<bool, DbError> {
        todo!()
    }
}
