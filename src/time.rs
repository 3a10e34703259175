//! The one clock. The rules never read it: a transport (or a background
//! task) takes "now" here once per request and passes it down, so every rule
//! is testable without waiting, and every part of one request agrees on the
//! time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// Wall-clock time now.
pub fn now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

/// A duration in whole milliseconds (saturating).
pub fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `at` as RFC 3339 in UTC with milliseconds, as events say it.
pub fn rfc3339_millis(at: Millis) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at)).to_string()
}

/// `at` as RFC 3339 in UTC to the second, as the API-token records say it.
pub fn rfc3339_seconds(at: Millis) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(at)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_milliseconds_and_rfc3339() {
        assert_eq!(millis(Duration::from_secs(2)), 2_000);
        assert_eq!(millis(Duration::MAX), u64::MAX);
        assert_eq!(
            rfc3339_millis(1_800_000_000_123),
            "2027-01-15T08:00:00.123Z"
        );
        assert_eq!(rfc3339_seconds(1_800_000_000_123), "2027-01-15T08:00:00Z");
        assert!(now() > 1_700_000_000_000);
    }
}
