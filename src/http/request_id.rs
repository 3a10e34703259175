//! Request ids: the one a proxy sent in `X-Request-Id` (nginx's
//! `$request_id`), or a new one. It names the request's tracing span — so
//! every log line of the request carries it — and goes back in the
//! response's `X-Request-Id`, so a client's report, nginx's log and ours
//! meet on one value.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderValue};

pub const HEADER: &str = "x-request-id";

/// Longest id honoured; longer ones are replaced, like malformed ones.
const MAX_LEN: usize = 128;

/// The request's id: the caller's if it is a plausible id (1–128 of
/// `A-Z a-z 0-9 - _ . :`, nothing a log line could be confused by), else a
/// new one (32 hex digits, as nginx makes them).
pub fn of(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(HEADER)
        .filter(|value| is_plausible(value.as_bytes()))
        .cloned()
        .unwrap_or_else(generate)
}

fn is_plausible(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

/// A new id: 16 hex digits chosen at random when the process starts, then
/// 16 of a counter. Unique across replicas and restarts without a system
/// call per request; ids name requests, they are not secrets.
fn generate() -> HeaderValue {
    static PREFIX: LazyLock<u64> = LazyLock::new(|| uuid::Uuid::new_v4().as_u64_pair().0);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = uuid::Uuid::from_u64_pair(*PREFIX, n);
    let mut buffer = uuid::Uuid::encode_buffer();
    // 32 hex digits are always a valid header value.
    HeaderValue::from_str(id.simple().encode_lower(&mut buffer))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(id: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_str(id).unwrap());
        headers
    }

    #[test]
    fn a_plausible_id_is_kept_and_anything_else_replaced() {
        for kept in ["f3a1c0de9b8a4e2f8c7d6b5a49382716", "req-1.2:3_x"] {
            assert_eq!(of(&with(kept)), kept);
        }
        for replaced in ["", "has space", "quote\"", "x".repeat(129).as_str()] {
            let id = of(&with(replaced));
            assert_ne!(id, replaced);
            assert_eq!(id.len(), 32);
        }
        let fresh = of(&HeaderMap::new());
        assert!(is_plausible(fresh.as_bytes()));
        assert_ne!(fresh, of(&HeaderMap::new()), "a new one each time");
    }
}
