//! Reading the scripts' array replies into the store's types.

use deadpool_redis::redis::{FromRedisValue, Value};
use uuid::Uuid;

use crate::store::{
    CacheLookup, CachedToken, Rotation, RotationOutcome, SessionInfo, StoreError, Subject,
    Successor,
};
use crate::tokens::Rejection;

/// A script's array reply, read field by field.
pub(super) struct Reply<'a>(pub(super) &'a [Value]);

impl Reply<'_> {
    pub(super) fn get<T: FromRedisValue>(&self, i: usize) -> Result<T, StoreError> {
        self.0
            .get(i)
            .and_then(|v| T::from_redis_value_ref(v).ok())
            .ok_or_else(|| StoreError::Protocol(format!("script replied {:?}", self.0)))
    }

    pub(super) fn code(&self) -> Result<i64, StoreError> {
        self.get(0)
    }

    /// `sub, client, scope` from position `at`, the email and whether it
    /// is verified from `email`; empty strings mean none.
    pub(super) fn subject(&self, at: usize, email: usize) -> Result<Subject, StoreError> {
        let optional = |s: String| (!s.is_empty()).then_some(s);
        Ok(Subject {
            sub: self.get(at)?,
            client: optional(self.get(at + 1)?),
            scope: optional(self.get(at + 2)?),
            email: optional(self.get(email)?),
            email_verified: self.get::<String>(email + 1)? == "1",
        })
    }
}

/// `sessions.lua`'s reply: five fields per session.
pub(super) fn sessions(reply: &[Value]) -> Result<Vec<SessionInfo>, StoreError> {
    let reply = Reply(reply);
    (0..reply.0.len() / 5)
        .map(|i| {
            let sid: String = reply.get(5 * i)?;
            let client: String = reply.get(5 * i + 3)?;
            let browser: String = reply.get(5 * i + 4)?;
            Ok(SessionInfo {
                sid: Uuid::parse_str(&sid)
                    .map_err(|_| StoreError::Protocol(format!("index member {sid:?}")))?,
                created_at: reply.get(5 * i + 1)?,
                last_active: reply.get(5 * i + 2)?,
                client: (!client.is_empty()).then_some(client),
                browser: !browser.is_empty(),
            })
        })
        .collect()
}

pub(super) fn parse_api_token(reply: &[Value]) -> Result<CacheLookup, StoreError> {
    let reply = Reply(reply);
    Ok(match reply.code()? {
        0 => CacheLookup::Miss,
        1 => {
            let why: String = reply.get(1)?;
            CacheLookup::Dead(match why.as_str() {
                "unknown" => Rejection::Unknown,
                "expired" => Rejection::Expired,
                _ => Rejection::Revoked,
            })
        }
        2 => {
            let id: String = reply.get(1)?;
            let expires: String = reply.get(5)?;
            let bad = |what: &str| StoreError::Protocol(format!("cached API token {what}"));
            CacheLookup::Live {
                token: CachedToken {
                    id: Uuid::parse_str(&id).map_err(|_| bad("id"))?,
                    name: reply.get(2)?,
                    scopes: reply.get(3)?,
                    created_at: reply.get(4)?,
                    expires_at: match expires.as_str() {
                        "" => None,
                        ms => Some(ms.parse().map_err(|_| bad("expiry"))?),
                    },
                },
                touch: reply.get::<i64>(6)? == 1,
            }
        }
        other => return Err(StoreError::Protocol(format!("api_token replied {other}"))),
    })
}

pub(super) fn parse_rotation(reply: &[Value], r: &Rotation) -> Result<RotationOutcome, StoreError> {
    let reply = Reply(reply);
    let successor = |access_jti, issued_at, email| -> Result<Successor, StoreError> {
        let subject = reply.subject(1, email)?;
        let scope: String = reply.get(3)?;
        Ok(Successor {
            subject,
            scope: (!scope.is_empty()).then_some(scope),
            access_jti,
            issued_at,
            ends_at: reply.get(4)?,
        })
    };
    Ok(match reply.code()? {
        0 => RotationOutcome::Unknown,
        1 => RotationOutcome::Rotated(successor(r.successor_jti, r.now, 5)?),
        2 => {
            let jti: Vec<u8> = reply.get(5)?;
            let jti = Uuid::from_slice(&jti)
                .map_err(|_| StoreError::Protocol("stored jti is not 16 bytes".into()))?;
            RotationOutcome::Replayed(successor(jti, reply.get(6)?, 7)?)
        }
        3 => RotationOutcome::Reused,
        4 => RotationOutcome::NotGranted,
        other => return Err(StoreError::Protocol(format!("rotate replied {other}"))),
    })
}
