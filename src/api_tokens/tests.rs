//! The validation and revocation rules against mocked stores: which store
//! is asked what, in which order, and what each answer leads to.

use mockall::predicate::{always, eq};

use super::*;
use crate::db::MockDurableStore;
use crate::store::MockSessionStore;

const NOW: Millis = 1_800_000_000_000;

/// Where the tokens come from.
const ADDR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

fn record(token_hash: &TokenHash) -> ApiTokenRecord {
    ApiTokenRecord {
        id: Uuid::now_v7(),
        name: "billing".into(),
        token_hash: token_hash.hex(),
        scopes: vec!["read".into(), "write".into()],
        created_at: NOW - DAY,
        expires_at: Some(NOW + DAY),
        last_used_at: None,
        revoked_at: None,
    }
}

fn cached(record: &ApiTokenRecord) -> CachedToken {
    CachedToken {
        id: record.id,
        name: record.name.clone(),
        scopes: record.scopes.join(" "),
        created_at: record.created_at,
        expires_at: record.expires_at,
    }
}

/// The `last_used_at` updates queued so far.
fn queued(tokens: &ApiTokens) -> Vec<(Uuid, Millis)> {
    let mut guard = tokens.queued.lock().unwrap();
    let receiver = guard.as_mut().unwrap();
    std::iter::from_fn(|| receiver.try_recv().ok()).collect()
}

fn cache_answering(hash: TokenHash, answer: CacheLookup) -> MockSessionStore {
    let mut cache = MockSessionStore::new();
    cache
        .expect_api_token_lookup()
        .withf(move |h, now, every| *h == hash && *now == NOW && *every == TOUCH_EVERY)
        .times(1)
        .return_once(move |_, _, _| Ok(answer));
    cache
}

/// [`cache_answering`] a miss, which counts against [`ADDR`]'s 60 a
/// minute and is within them.
fn cache_missing(hash: TokenHash) -> MockSessionStore {
    let mut cache = cache_answering(hash, CacheLookup::Miss);
    cache
        .expect_count_request()
        .withf(|key, limit, window, now| {
            key == "api_token_misses:192.0.2.7" && *limit == 60 && *window == 60_000 && *now == NOW
        })
        .times(1)
        .returning(|_, _, _, _| Ok(None));
    cache
}

#[tokio::test]
async fn a_malformed_token_costs_no_lookup() {
    let tokens = ApiTokens::default();
    let (db, cache) = (MockDurableStore::new(), MockSessionStore::new());
    for bad in ["", "tg_live_short", "tg_test_AAAA", "eyJ.e30.x"] {
        let refused = tokens.validate(&db, &cache, bad, ADDR, NOW).await;
        assert!(matches!(
            refused,
            Err(ApiTokenError::Invalid(Rejection::Malformed))
        ));
    }
}

#[tokio::test]
async fn a_cache_hit_answers_without_the_database() {
    let (token, hash) = format::generate();
    let record = record(&hash);
    let tokens = ApiTokens::default();
    let db = MockDurableStore::new(); // any call would panic
    let live = CacheLookup::Live {
        token: cached(&record),
        touch: false,
    };
    let valid = tokens
        .validate(&db, &cache_answering(hash, live), &token, ADDR, NOW)
        .await
        .unwrap();
    assert_eq!(valid.id, record.id);
    assert_eq!(valid.scopes, ["read", "write"]);
    assert_eq!(valid.subject(), "token:billing");
    assert!(queued(&tokens).is_empty());

    // The lookup that got the touch mark queues the one database update.
    let touched = CacheLookup::Live {
        token: cached(&record),
        touch: true,
    };
    tokens
        .validate(&db, &cache_answering(hash, touched), &token, ADDR, NOW)
        .await
        .unwrap();
    assert_eq!(queued(&tokens), [(record.id, NOW)]);
}

#[tokio::test]
async fn cached_verdicts_and_expiry_are_final() {
    let (token, hash) = format::generate();
    let tokens = ApiTokens::default();
    let db = MockDurableStore::new();
    for why in [Rejection::Revoked, Rejection::Unknown, Rejection::Expired] {
        let cache = cache_answering(hash, CacheLookup::Dead(why));
        let refused = tokens.validate(&db, &cache, &token, ADDR, NOW).await;
        assert!(matches!(refused, Err(ApiTokenError::Invalid(r)) if r == why));
    }
    // A live entry past its expiry (the cache TTL is capped there anyway).
    let mut expired = cached(&record(&hash));
    expired.expires_at = Some(NOW);
    let cache = cache_answering(
        hash,
        CacheLookup::Live {
            token: expired,
            touch: true,
        },
    );
    let refused = tokens.validate(&db, &cache, &token, ADDR, NOW).await;
    assert!(matches!(
        refused,
        Err(ApiTokenError::Invalid(Rejection::Expired))
    ));
    assert!(
        queued(&tokens).is_empty(),
        "an expired token is not touched"
    );
}

#[tokio::test]
async fn a_miss_reads_the_database_and_fills_the_cache_only_if_empty() {
    let (token, hash) = format::generate();
    let stored = record(&hash);
    let tokens = ApiTokens::default();
    let mut db = MockDurableStore::new();
    let found = stored.clone();
    db.expect_api_token_by_hash()
        .with(eq(hash.hex()))
        .times(1)
        .return_once(move |_| Ok(Some(found)));
    let mut cache = cache_missing(hash);
    let expected = CacheEntry::Live {
        token: cached(&stored),
        used_at: Some(NOW), // never used: this use is recorded
    };
    cache
        .expect_cache_api_token()
        .withf(move |h, entry, ttl, overwrite| {
            *h == hash && *entry == expected && *ttl == CACHE_TTL && !overwrite
        })
        .times(1)
        .returning(|_, _, _, _| Ok(()));
    let valid = tokens
        .validate(&db, &cache, &token, ADDR, NOW)
        .await
        .unwrap();
    assert_eq!(valid.name, "billing");
    assert_eq!(valid.created_at, stored.created_at);
    assert_eq!(queued(&tokens), [(stored.id, NOW)]);
}

#[tokio::test]
async fn a_fill_lives_no_longer_than_the_token_and_keeps_a_recent_use() {
    let (token, hash) = format::generate();
    let mut stored = record(&hash);
    stored.expires_at = Some(NOW + 5_000);
    stored.last_used_at = Some(NOW - 1_000);
    let tokens = ApiTokens::default();
    let mut db = MockDurableStore::new();
    let found = stored.clone();
    db.expect_api_token_by_hash()
        .return_once(move |_| Ok(Some(found)));
    let mut cache = cache_missing(hash);
    let expected = CacheEntry::Live {
        token: cached(&stored),
        used_at: Some(NOW - 1_000),
    };
    cache
        .expect_cache_api_token()
        .withf(move |_, entry, ttl, _| *entry == expected && *ttl == 5_000)
        .times(1)
        .returning(|_, _, _, _| Ok(()));
    tokens
        .validate(&db, &cache, &token, ADDR, NOW)
        .await
        .unwrap();
    assert!(
        queued(&tokens).is_empty(),
        "used a second ago: not written again"
    );
}

#[tokio::test]
async fn dead_records_are_cached_dead() {
    let (token, hash) = format::generate();
    let mut revoked = record(&hash);
    revoked.revoked_at = Some(NOW - 1);
    let mut expired = record(&hash);
    expired.expires_at = Some(NOW - 1);
    for (found, why, ttl) in [
        (None, Rejection::Unknown, UNKNOWN_TTL),
        (Some(revoked), Rejection::Revoked, CACHE_TTL),
        (Some(expired), Rejection::Expired, CACHE_TTL),
    ] {
        let tokens = ApiTokens::default();
        let mut db = MockDurableStore::new();
        db.expect_api_token_by_hash()
            .return_once(move |_| Ok(found));
        let mut cache = cache_missing(hash);
        cache
            .expect_cache_api_token()
            .with(always(), eq(CacheEntry::Dead(why)), eq(ttl), eq(false))
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        let refused = tokens.validate(&db, &cache, &token, ADDR, NOW).await;
        assert!(matches!(refused, Err(ApiTokenError::Invalid(r)) if r == why));
        assert!(queued(&tokens).is_empty());
    }
}

#[tokio::test]
async fn outages_fail_closed() {
    let (token, hash) = format::generate();
    let tokens = ApiTokens::default();
    let mut cache = MockSessionStore::new();
    cache
        .expect_api_token_lookup()
        .returning(|_, _, _| Err(StoreError::Timeout));
    let refused = tokens
        .validate(&MockDurableStore::new(), &cache, &token, ADDR, NOW)
        .await;
    assert!(matches!(refused, Err(ApiTokenError::Store(_))));

    let mut db = MockDurableStore::new();
    db.expect_api_token_by_hash()
        .returning(|_| Err(DbError::Unavailable("down".into())));
    let refused = tokens
        .validate(&db, &cache_missing(hash), &token, ADDR, NOW)
        .await;
    assert!(matches!(refused, Err(ApiTokenError::Database(_))));

    // The count of misses is in the store too: no count, no read.
    let mut cache = cache_answering(hash, CacheLookup::Miss);
    cache
        .expect_count_request()
        .returning(|_, _, _, _| Err(StoreError::Timeout));
    let refused = tokens
        .validate(&MockDurableStore::new(), &cache, &token, ADDR, NOW)
        .await;
    assert!(matches!(refused, Err(ApiTokenError::Store(_))));
}

#[tokio::test]
async fn a_miss_past_the_address_limit_never_reads_the_database() {
    let (token, hash) = format::generate();
    let tokens = ApiTokens::default();
    let mut cache = cache_answering(hash, CacheLookup::Miss);
    cache
        .expect_count_request()
        .times(1)
        .returning(|_, _, _, _| Ok(Some(12_000)));
    let db = MockDurableStore::new(); // a read would panic
    let refused = tokens.validate(&db, &cache, &token, ADDR, NOW).await;
    assert!(matches!(
        refused,
        Err(ApiTokenError::Invalid(Rejection::Unknown))
    ));
    assert_eq!(tokens.counts().refused.get(), 1);
    assert_eq!(tokens.counts().reads.get(), 0);
    // Cached tokens are answered as ever: a hit counts nothing (the mock
    // has no count_request left to give).
    let (live, live_hash) = format::generate();
    let hit = CacheLookup::Live {
        token: cached(&record(&live_hash)),
        touch: false,
    };
    let valid = tokens
        .validate(&db, &cache_answering(live_hash, hit), &live, ADDR, NOW)
        .await;
    assert!(valid.is_ok());
}

#[tokio::test]
async fn without_a_limit_misses_are_not_counted() {
    let (token, hash) = format::generate();
    let tokens = ApiTokens::new(&ApiTokenSettings {
        misses_per_address: 0,
    });
    let cache = {
        let mut cache = cache_answering(hash, CacheLookup::Miss);
        cache
            .expect_cache_api_token()
            .returning(|_, _, _, _| Ok(()));
        cache
    };
    let mut db = MockDurableStore::new();
    db.expect_api_token_by_hash()
        .times(1)
        .return_once(|_| Ok(None));
    let refused = tokens.validate(&db, &cache, &token, ADDR, NOW).await;
    assert!(matches!(
        refused,
        Err(ApiTokenError::Invalid(Rejection::Unknown))
    ));
    assert_eq!(tokens.counts().reads.get(), 1);
}

#[test]
fn misses_count_per_ipv4_address_and_per_ipv6_64() {
    let key = |text: &str| misses_key(text.parse().unwrap());
    assert_eq!(key("192.0.2.7"), "api_token_misses:192.0.2.7");
    assert_eq!(key("::ffff:192.0.2.7"), "api_token_misses:192.0.2.7");
    assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
    assert_eq!(key("2001:db8:1:2::1"), "api_token_misses:2001:db8:1:2::/64");
    assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
}

/// A cache expecting the revocation tombstone of `hash`, answering `result`.
fn cache_taking_tombstone(hash: TokenHash, result: Result<(), StoreError>) -> MockSessionStore {
    let mut cache = MockSessionStore::new();
    cache
        .expect_cache_api_token()
        .withf(move |h, entry, ttl, overwrite| {
            *h == hash
                && *entry == CacheEntry::Dead(Rejection::Revoked)
                && *ttl == CACHE_TTL
                && *overwrite
        })
        .times(1)
        .return_once(move |_, _, _, _| result);
    cache
}

#[tokio::test]
async fn revocation_writes_the_database_then_a_tombstone_then_forgets_the_pending_clear() {
    let (_, hash) = format::generate();
    let mut revoked = record(&hash);
    revoked.revoked_at = Some(NOW);
    let id = revoked.id;
    let mut db = MockDurableStore::new();
    let answer = revoked.clone();
    let mut order = mockall::Sequence::new();
    db.expect_revoke_api_token()
        .with(eq(id), eq(NOW))
        .times(1)
        .in_sequence(&mut order)
        .return_once(move |_, _| Ok(Some(answer)));
    db.expect_cache_cleared()
        .with(eq(vec![hash.hex()]))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_| Ok(()));
    let cache = cache_taking_tombstone(hash, Ok(()));
    let done = revoke(&db, &cache, id, NOW).await.unwrap().unwrap();
    assert_eq!(done.record, revoked);
    assert_eq!(done.cache, CacheClear::Cleared);

    // Unknown id: nothing to tell the cache.
    let mut db = MockDurableStore::new();
    db.expect_revoke_api_token().returning(|_, _| Ok(None));
    let untouched = MockSessionStore::new();
    assert_eq!(revoke(&db, &untouched, id, NOW).await.unwrap(), None);
}

#[tokio::test]
async fn a_cache_that_cannot_be_told_leaves_the_clear_pending_and_the_revocation_done() {
    let (_, hash) = format::generate();
    let mut revoked = record(&hash);
    revoked.revoked_at = Some(NOW);
    let id = revoked.id;
    let mut db = MockDurableStore::new();
    let answer = revoked.clone();
    db.expect_revoke_api_token()
        .times(1)
        .return_once(move |_, _| Ok(Some(answer)));
    db.expect_cache_cleared().never();
    let cache = cache_taking_tombstone(hash, Err(StoreError::Timeout));
    let done = revoke(&db, &cache, id, NOW).await.unwrap().unwrap();
    assert_eq!(done.cache, CacheClear::Pending);
    let view = serde_json::to_value(RevokedView::new(&done, NOW)).unwrap();
    assert_eq!(view["cache"], "pending");
    assert_eq!(view["status"], "revoked");
}

#[tokio::test]
async fn pending_clears_are_retried_and_forgotten_only_once_the_cache_took_them() {
    let (_, first) = format::generate();
    let (_, second) = format::generate();
    let pending = vec![first.hex(), second.hex()];

    // The cache is down: the first tombstone fails, nothing is forgotten.
    let mut db = MockDurableStore::new();
    let rows = pending.clone();
    db.expect_pending_cache_clears()
        .returning(move |_| Ok(rows.clone()));
    db.expect_cache_cleared().never();
    let down = cache_taking_tombstone(first, Err(StoreError::Timeout));
    assert!(matches!(
        revocation::clear_pending(&db, &down).await,
        Err(ApiTokenError::Store(_))
    ));

    // It is back: both tombstones, then both rows go.
    let mut db = MockDurableStore::new();
    let rows = pending.clone();
    db.expect_pending_cache_clears()
        .return_once(move |_| Ok(rows));
    db.expect_cache_cleared()
        .with(eq(pending))
        .times(1)
        .returning(|_| Ok(()));
    let mut cache = MockSessionStore::new();
    cache
        .expect_cache_api_token()
        .withf(|_, entry, _, overwrite| {
            *entry == CacheEntry::Dead(Rejection::Revoked) && *overwrite
        })
        .times(2)
        .returning(|_, _, _, _| Ok(()));
    assert_eq!(revocation::clear_pending(&db, &cache).await.unwrap(), 2);

    // Nothing pending: nothing to do.
    let mut db = MockDurableStore::new();
    db.expect_pending_cache_clears()
        .return_once(|_| Ok(Vec::new()));
    db.expect_cache_cleared().never();
    let idle = MockSessionStore::new();
    assert_eq!(revocation::clear_pending(&db, &idle).await.unwrap(), 0);
}

#[tokio::test]
async fn created_tokens_are_stored_by_hash_only() {
    let mut db = MockDurableStore::new();
    let stored = std::sync::Arc::new(std::sync::Mutex::new(None));
    let keep = stored.clone();
    db.expect_create_api_token().times(1).returning(move |r| {
        *keep.lock().unwrap() = Some(r.clone());
        Ok(())
    });
    let new = NewApiToken {
        name: "  billing  ".into(),
        scopes: vec!["read".into(), "read".into(), "write".into()],
        ttl_days: Some(30),
    };
    let (token, record) = create(&db, new, NOW).await.unwrap();
    assert_eq!(Some(&record), stored.lock().unwrap().as_ref());
    assert_eq!(
        format::parse(&token).map(|h| h.hex()),
        Some(record.token_hash.clone())
    );
    assert!(!record.token_hash.contains(&token[format::PREFIX.len()..]));
    assert_eq!(record.name, "billing");
    assert_eq!(record.scopes, ["read", "write"]);
    assert_eq!(record.expires_at, Some(NOW + 30 * DAY));
    assert!(record.is_active(NOW));
}

#[test]
fn requests_for_new_tokens_are_checked() {
    let new = |name: &str, scopes: &[&str], ttl_days| NewApiToken {
        name: name.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ttl_days,
    };
    assert!(check(new("ci deploy", &[], None)).is_ok());
    assert!(
        check(new(
            &"n".repeat(MAX_NAME_CHARS),
            &["a:b"],
            Some(MAX_TTL_DAYS)
        ))
        .is_ok()
    );
    for (bad, why) in [
        (new("   ", &[], None), "1 to 100"),
        (new(&"n".repeat(MAX_NAME_CHARS + 1), &[], None), "1 to 100"),
        (new("caf\u{e9}", &[], None), "printable ASCII"),
        (new("a\nb", &[], None), "printable ASCII"),
        (new("ok", &["a b"], None), "not a scope"),
        (new("ok", &["a\"b"], None), "not a scope"),
        (new("ok", &[""], None), "not a scope"),
        (new("ok", &[], Some(0)), "ttl_days"),
        (new("ok", &[], Some(MAX_TTL_DAYS + 1)), "ttl_days"),
    ] {
        let error = check(bad.clone()).unwrap_err();
        assert!(error.contains(why), "{bad:?}: {error}");
    }
}

#[test]
fn status_follows_revocation_then_expiry() {
    let (_, hash) = format::generate();
    let mut r = record(&hash);
    assert_eq!(status(&r, NOW), "active");
    assert_eq!(status(&r, NOW + DAY), "expired");
    r.revoked_at = Some(NOW);
    assert_eq!(status(&r, NOW + DAY), "revoked");
    let view = TokenView::new(&r, NOW);
    assert_eq!(view.revoked_at.as_deref(), Some("2027-01-15T08:00:00Z"));
    let json = serde_json::to_string(&view).unwrap();
    assert!(!json.contains(&hash.hex()));
}
