//! `auth.local_cache` and `auth.touch_interval` (SPEC §10): answering
//! `/authenticate` from memory, opt-in. Off (the default) keeps SPEC §3
//! exactly: nothing here is read and no connection is opened.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{AuthSettings, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalCacheSettings {
    /// Answer `/authenticate` from memory while Redis's invalidation
    /// channel is up (needs Redis: `cache.url` or `cache.sentinel`).
    pub enabled: bool,
    /// Sessions remembered per replica; when full, new sessions are
    /// answered by Redis as without the cache.
    pub max_entries: usize,
    /// Not a setting (no file or variable can set it): a replica that
    /// ignores Redis's invalidations, so that a test can show the stale
    /// accept the real cache must never make (a mutation check).
    #[doc(hidden)]
    #[serde(skip)]
    pub ignore_invalidations: bool,
}

impl Default for LocalCacheSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            max_entries: 100_000,
            ignore_invalidations: false,
        }
    }
}

/// How often a replica writes behind the idle clock of the sessions it
/// answered from memory: `auth.touch_interval`, else `auth.auto_logout / 100`
/// but at least 1 s — the idle clock is then late by at most 1% of itself.
pub fn touch_interval(auth: &AuthSettings) -> Duration {
    auth.touch_interval
        .unwrap_or_else(|| (auth.auto_logout / 100).max(Duration::from_secs(1)))
}

/// Checks what serde cannot; `timeout` is `cache.timeout`.
pub(super) fn validate(auth: &AuthSettings, timeout: Duration) -> Result<(), ConfigError> {
    if auth.touch_interval.is_some_and(|t| t.is_zero()) {
        return Err(ConfigError::new(
            "auth.touch_interval",
            "must be longer than 0s",
        ));
    }
    if auth.local_cache.enabled {
        if auth.local_cache.max_entries == 0 {
            return Err(ConfigError::new(
                "auth.local_cache.max_entries",
                "must be at least 1",
            ));
        }
        // A hit needs the session's idle deadline further away than one
        // touch interval plus the touch's own deadline (the touch must land
        // before Redis expires it); with less than half of auto_logout left
        // for answering from memory the cache would mostly ask Redis.
        if (touch_interval(auth) + timeout) * 2 >= auth.auto_logout {
            return Err(ConfigError::new(
                "auth.touch_interval",
                "with auth.local_cache.enabled, twice auth.touch_interval + cache.timeout \
                 must be less than auth.auto_logout",
            ));
        }
    }
    Ok(())
}

/// `auth.touch_interval`: a duration such as `30s`, or absent.
pub(super) fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    super::duration(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;
    use super::*;

    #[test]
    fn local_cache_is_off_by_default_and_touches_at_one_percent_of_auto_logout() {
        let s = load("", &[]).unwrap();
        assert!(!s.auth.local_cache.enabled);
        assert_eq!(s.auth.local_cache.max_entries, 100_000);
        assert_eq!(s.auth.touch_interval, None);
        assert_eq!(touch_interval(&s.auth), Duration::from_secs(864));
        let short = load("auth:\n  auto_logout: 10s\n", &[]).unwrap();
        assert_eq!(touch_interval(&short.auth), Duration::from_secs(1));
    }

    #[test]
    fn local_cache_settings_are_read_and_checked() {
        let s = load(
            "auth:\n  touch_interval: 5s\n  local_cache:\n    enabled: true\n    max_entries: 10\n",
            &[],
        )
        .unwrap();
        assert!(s.auth.local_cache.enabled);
        assert_eq!(s.auth.local_cache.max_entries, 10);
        assert_eq!(touch_interval(&s.auth), Duration::from_secs(5));
        let empty = load(
            "auth:\n  local_cache:\n    enabled: true\n    max_entries: 0\n",
            &[],
        );
        assert!(empty.unwrap_err().to_string().contains("max_entries"));
        let slow = load(
            "auth:\n  auto_logout: 10s\n  touch_interval: 4s\n  local_cache:\n    enabled: true\n",
            &[],
        );
        assert!(
            slow.unwrap_err()
                .to_string()
                .contains("auth.touch_interval")
        );
        let hidden = load(
            "auth:\n  local_cache:\n    ignore_invalidations: true\n",
            &[],
        );
        assert!(hidden.is_err(), "the mutation switch is no setting");
    }
}
