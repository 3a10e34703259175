//! SPEC §11 "Revocation is not lost": an API-token revocation made while
//! Redis is down holds in the database at once, and reaches the Redis cache
//! once Redis is back — even when Redis comes back with the token still
//! cached live — because the database keeps the cache clear pending and
//! every replica retries it. Until then the admin API and the CLI say so.
//!
//! The outage is real: Redis saves its data (`SAVE`, the cached live
//! entries in it) and is killed, so nothing of the revocation can reach it;
//! it restarts on the same port from that dump, as a Redis with persistence
//! comes back after a crash.

use std::time::Duration;

use deadpool_redis::redis;
use serde_json::{Value, json};
use tokengate::config::Secret;
use tokengate::db::DurableStore;
use tokengate::tokens::api as format;
use uuid::Uuid;

use crate::api_tokens::{
    cache_key, cli, cluster, create, database, fields, now_ms, passes, refused_everywhere, revoke,
    validates,
};
use crate::helpers::{Backend, Cluster, Db, eventually};
use crate::support::redis::RedisServer;

/// How long a replica may take to clear what is pending once Redis is back
/// (it retries every second).
const CLEARED_WITHIN: Duration = Duration::from_secs(10);

fn hash(token: &str) -> String {
    format::parse(token).expect("a well-formed token").hex()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_made_while_redis_is_down_reaches_the_cache_once_it_is_back() {
    let dir = std::env::temp_dir().join(format!("tokengate-redis-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let persistent = RedisServer::start_with_args(None, &["--dir", &dir.display().to_string()]);
    let url = persistent.url();
    let mut c = cluster(Db::Postgres, 2, |s| s.cache.url = Secret::new(url)).await;
    c.redis = Some(persistent); // the cluster's own Redis goes unused
    let db = database(&c);

    let by_api = create(c.a(), json!({ "name": "by-api" })).await;
    let by_cli = create(c.a(), json!({ "name": "by-cli" })).await;
    // Revoked in the database only, its pending clear dropped: a revocation
    // the cache never hears of, as all were before they were retried.
    let unheard = create(c.a(), json!({ "name": "unheard" })).await;
    let bystander = create(c.a(), json!({ "name": "bystander" })).await;
    for made in [&by_api, &by_cli, &unheard, &bystander] {
        for replica in &c.replicas {
            assert!(validates(replica, &made.token).await);
        }
        assert_eq!(c.redis().keys(&cache_key(&made.token)).len(), 1);
    }
    let _: () = redis::cmd("SAVE")
        .query(&mut c.redis().connection())
        .expect("SAVE");
    c.redis_mut().kill();

    // The admin API: revoked, the cache clear pending.
    let reply = revoke(c.a(), &by_api.id).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["status"], "revoked", "{answer}");
    assert_eq!(answer["cache"], "pending", "{answer}");
    // The CLI: succeeds, and says so in words, or in JSON.
    let (status, out, err) = cli(&c, &["token", "revoke", &by_cli.id]).await;
    assert!(status.success(), "{err}");
    assert_eq!(fields(&out)["status"], "revoked", "{out}");
    assert!(err.contains("the cache clear is pending"), "{err}");
    let (status, out, err) = cli(&c, &["token", "revoke", &by_cli.id, "--json"]).await;
    assert!(status.success(), "{err}");
    let answer: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(answer["cache"], "pending", "{answer}");
    let id = Uuid::parse_str(&unheard.id).unwrap();
    assert!(db.revoke_api_token(id, now_ms()).await.unwrap().is_some());
    db.cache_cleared(&[hash(&unheard.token)]).await.unwrap();
    let mut pending = db.pending_cache_clears(10).await.unwrap();
    pending.sort();
    let mut expected = vec![hash(&by_api.token), hash(&by_cli.token)];
    expected.sort();
    assert_eq!(pending, expected, "both pending in the database");

    tokio::task::block_in_place(|| c.redis_mut().restart());
    // Redis is back with every entry as saved: the token whose revocation it
    // was never to hear of is still accepted, by both replicas.
    for replica in &c.replicas {
        let back = eventually(CLEARED_WITHIN, || async {
            replica.get("/health").await.status == 200
        })
        .await;
        assert!(back, "{} reaches Redis again", replica.addr);
        assert!(
            passes(replica, &unheard.token).await,
            "the live entry survived"
        );
    }
    // The pending ones are cleared and refused everywhere, and forgotten.
    for made in [&by_api, &by_cli] {
        let refused = eventually(CLEARED_WITHIN, || refused_everywhere(&c, &made.token)).await;
        assert!(refused, "{} is still accepted somewhere", made.view["name"]);
    }
    let forgotten = eventually(CLEARED_WITHIN, || async {
        db.pending_cache_clears(10).await.unwrap().is_empty()
    })
    .await;
    assert!(forgotten, "the pending clears are deleted once done");
    for replica in &c.replicas {
        assert!(passes(replica, &bystander.token).await);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The embedded store caches no API token: a revocation has nothing to
/// clear, answers `"cleared"` and leaves nothing pending, through the admin
/// API and through the CLI (without `cache.url`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_embedded_store_nothing_is_left_pending() {
    let c = Cluster::start_with(Backend::Memory, 1, |s| {
        s.admin.token_hash = crate::api_tokens::admin_hash().to_owned();
    })
    .await;
    let db = database(&c);
    let by_api = create(c.a(), json!({ "name": "by-api" })).await;
    let by_cli = create(c.a(), json!({ "name": "by-cli" })).await;
    assert!(validates(c.a(), &by_api.token).await);

    let reply = revoke(c.a(), &by_api.id).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["cache"], "cleared");
    let (status, out, err) = cli(&c, &["token", "revoke", &by_cli.id, "--json"]).await;
    assert!(status.success(), "{err}");
    let answer: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(answer["cache"], "cleared", "{answer}");
    assert!(err.contains("every replica refuses it now"), "{err}");
    assert!(db.pending_cache_clears(10).await.unwrap().is_empty());
    assert!(!validates(c.a(), &by_api.token).await);
    assert!(!validates(c.a(), &by_cli.token).await);
}
