//! Appending to a Redis stream: the events relay's sink.

use deadpool_redis::redis;

use super::{RedisStore, Repeat};
use crate::store::StoreError;

impl RedisStore {
    /// Appends entries to a stream, all or none (`MULTI`/`EXEC`), each
    /// `XADD stream [MAXLEN ~ max_len] * field value …`; `max_len` 0 =
    /// unbounded. A retry after a dropped connection may append a batch twice:
    /// streams are delivered at least once, and entries carry their own ids.
    pub async fn append_to_stream(
        &self,
        stream: &str,
        max_len: u64,
        entries: &[Vec<(&str, &str)>],
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for fields in entries {
            let cmd = pipe.cmd("XADD").arg(stream);
            if max_len > 0 {
                cmd.arg("MAXLEN").arg("~").arg(max_len);
            }
            cmd.arg("*");
            for (field, value) in fields {
                cmd.arg(*field).arg(*value);
            }
            cmd.ignore();
        }
        self.with_connection(Repeat::Safe, |mut conn| {
            let pipe = pipe.clone();
            async move { pipe.query_async::<()>(&mut conn).await }
        })
        .await
    }
}
