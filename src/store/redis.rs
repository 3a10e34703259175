//! The shared store: one Redis hash per session, one Lua script per
//! operation, one round trip per request.
//!
//! Key `tg:s:<sid>`; fields `s` sub, `a` current access jti (16 raw bytes),
//! `r` refresh-secret hash (16 raw bytes), `g` generation, `t` last rotation
//! (ms), `e` end of the refresh lifetime (ms). Short field names and raw bytes
//! keep the hash in Redis's compact listpack encoding.
//!
//! Scripts run with `EVALSHA`; `redis::Script` reloads them after `NOSCRIPT`,
//! so a restarted Redis needs nothing from us. Every operation has one
//! deadline covering pool wait and command; a connection that failed or timed
//! out is dropped rather than returned to the pool, and deadpool checks idle
//! ones with `PING` before reuse — so after an outage replicas recover by
//! themselves.

use std::future::Future;
use std::time::Duration;

use deadpool_redis::redis::{self, FromRedisValue, Script, Value};
use deadpool_redis::{Config, Connection, Pool, PoolConfig, Runtime, Timeouts};
use uuid::Uuid;

use super::{Millis, NewSession, Rotation, RotationOutcome, SessionStore, StoreError, Timing};

const KEY_PREFIX: &str = "tg:s:";

pub struct RedisStore {
    pool: Pool,
    timeout: Duration,
    timing: Timing,
    login: Script,
    authenticate: Script,
    rotate: Script,
}

impl RedisStore {
    /// Builds the pool; connects lazily, so a replica starts even while Redis
    /// is still coming up (requests fail closed until it is there).
    pub fn new(
        url: &str,
        pool_size: usize,
        timeout: Duration,
        timing: Timing,
    ) -> Result<Self, StoreError> {
        let mut config = Config::from_url(url);
        let mut pool = PoolConfig::new(pool_size);
        pool.timeouts = Timeouts {
            wait: Some(timeout),
            create: Some(timeout),
            recycle: Some(timeout),
        };
        config.pool = Some(pool);
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self {
            pool,
            timeout,
            timing,
            login: Script::new(include_str!("scripts/login.lua")),
            authenticate: Script::new(include_str!("scripts/authenticate.lua")),
            rotate: Script::new(include_str!("scripts/rotate.lua")),
        })
    }

    /// Runs `op` on a pooled connection within the deadline.
    async fn with_connection<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = (Connection, redis::RedisResult<T>)>,
    {
        let attempt = async {
            let conn = self
                .pool
                .get()
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            let (conn, result) = op(conn).await;
            match result {
                Ok(value) => Ok(value),
                Err(e) => {
                    // Never hand a connection in an unknown state to the next request.
                    drop(Connection::take(conn));
                    Err(StoreError::Unavailable(e.to_string()))
                }
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| StoreError::Timeout)?
    }

    /// Invokes a script with one key and the given arguments.
    async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        sid: Uuid,
        args: Vec<Vec<u8>>,
    ) -> Result<T, StoreError> {
        let mut invocation = script.key(session_key(sid));
        for arg in args {
            invocation.arg(arg);
        }
        self.with_connection(|mut conn| async move {
            let result = invocation.invoke_async(&mut conn).await;
            (conn, result)
        })
        .await
    }
}

pub fn session_key(sid: Uuid) -> String {
    let mut key = String::with_capacity(KEY_PREFIX.len() + 36);
    key.push_str(KEY_PREFIX);
    key.push_str(sid.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
    key
}

fn num(n: u64) -> Vec<u8> {
    n.to_string().into_bytes()
}

impl SessionStore for RedisStore {
    async fn create(&self, s: &NewSession) -> Result<(), StoreError> {
        let ends_at = s.now + self.timing.refresh_lifetime;
        let args = vec![
            s.sub.as_bytes().to_vec(),
            s.access_jti.as_bytes().to_vec(),
            s.refresh_hash.to_vec(),
            num(ends_at),
            num(self.timing.ttl(ends_at, s.now)),
        ];
        let _: i64 = self.eval(&self.login, s.sid, args).await?;
        Ok(())
    }

    async fn authenticate(&self, sid: Uuid, jti: Uuid, now: Millis) -> Result<bool, StoreError> {
        let args = vec![jti.as_bytes().to_vec(), num(now), num(self.timing.idle)];
        let current: i64 = self.eval(&self.authenticate, sid, args).await?;
        Ok(current == 1)
    }

    async fn rotate(&self, r: &Rotation) -> Result<RotationOutcome, StoreError> {
        let args = vec![
            num(u64::from(r.presented_generation)),
            r.presented_hash.to_vec(),
            r.successor_hash.to_vec(),
            r.successor_jti.as_bytes().to_vec(),
            num(r.now),
            num(self.timing.grace),
            num(self.timing.idle),
            num(self.timing.refresh_lifetime),
        ];
        let reply: Vec<Value> = self.eval(&self.rotate, r.sid, args).await?;
        parse_rotation(&reply)
    }

    async fn end(&self, sid: Uuid) -> Result<(), StoreError> {
        let key = session_key(sid);
        self.with_connection(|mut conn| async move {
            let result = redis::cmd("DEL")
                .arg(key)
                .query_async::<i64>(&mut conn)
                .await;
            (conn, result)
        })
        .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with_connection(|mut conn| async move {
            let result = redis::cmd("PING").query_async::<String>(&mut conn).await;
            (conn, result)
        })
        .await?;
        Ok(())
    }
}

fn parse_rotation(reply: &[Value]) -> Result<RotationOutcome, StoreError> {
    let bad = || StoreError::Protocol(format!("rotate script replied {reply:?}"));
    let code: i64 = reply
        .first()
        .and_then(|v| i64::from_redis_value_ref(v).ok())
        .ok_or_else(bad)?;
    let sub = || {
        reply
            .get(1)
            .and_then(|v| String::from_redis_value_ref(v).ok())
            .ok_or_else(bad)
    };
    Ok(match code {
        0 => RotationOutcome::Unknown,
        1 => RotationOutcome::Rotated { sub: sub()? },
        2 => {
            let jti = reply
                .get(2)
                .and_then(|v| Vec::<u8>::from_redis_value_ref(v).ok())
                .and_then(|bytes| Uuid::from_slice(&bytes).ok())
                .ok_or_else(bad)?;
            let rotated_at = reply
                .get(3)
                .and_then(|v| u64::from_redis_value_ref(v).ok())
                .ok_or_else(bad)?;
            RotationOutcome::Replayed {
                sub: sub()?,
                access_jti: jti,
                rotated_at,
            }
        }
        3 => RotationOutcome::Reused,
        _ => return Err(bad()),
    })
}
