//! SPEC §11 "Bounded state per caller": an address sending unknown API
//! tokens costs at most `api_tokens.misses_per_address` (60 a minute)
//! database reads; beyond, its unknown tokens are refused alike (`401
//! invalid_token` at the gate, `{"valid": false}` at `/auth/validate`)
//! without a read, on every replica, since the count is in Redis. Cached
//! tokens, live or dead, are answered as ever, and another address keeps
//! its reads. The reads are counted by each replica's
//! `tokengate_api_token_database_reads_total`.

use std::net::{IpAddr, Ipv4Addr};

use http::Method;
use serde_json::{Value, json};
use tokengate::tokens::api as format;

use crate::api_tokens::{cluster, create, passes, validates};
use crate::helpers::{Backend, Cluster, Db, Replica};
use crate::support::client::{json_body, request, send_from};

/// Another client than the tests' usual 127.0.0.1.
const ELSEWHERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

const READS: &str = "tokengate_api_token_database_reads_total";
const REFUSED: &str = "tokengate_api_token_misses_refused_total";

/// A counter summed over the replicas.
async fn total(c: &Cluster, name: &str) -> f64 {
    let mut sum = 0.0;
    for replica in &c.replicas {
        sum += replica.metric(name).await;
    }
    sum
}

/// A well-formed token nobody issued.
fn unknown() -> String {
    format::generate().0
}

/// `POST /auth/validate` from `from`: whether it says valid.
async fn validates_from(replica: &Replica, from: IpAddr, token: &str) -> bool {
    let body = json!({ "token": token });
    let post = request(Method::POST, "/auth/validate")
        .header("content-type", "application/json")
        .body(json_body(&body))
        .unwrap();
    let reply = send_from(from, replica.addr, post).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let answer: Value = reply.json();
    answer["valid"]
        .as_bool()
        .unwrap_or_else(|| panic!("{answer}"))
}

/// Real Redis, two replicas: 60 unknown tokens from one address are 60
/// reads; the next ones, at either replica and either endpoint, are none.
/// A real token not cached yet is refused from there too (nothing tells it
/// from an unknown one without a read), but not from another address, whose
/// use caches it; then it passes from the first address as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_sending_unknown_api_tokens_gets_60_reads_a_minute_and_no_one_else_pays() {
    let c = cluster(Db::Sqlite, 2, |_| {}).await;
    let real = create(c.a(), json!({ "name": "billing" })).await;
    assert_eq!(total(&c, READS).await, 0.0, "creation reads nothing");

    for i in 0..60 {
        let replica = &c.replicas[i % 2];
        if i % 3 == 0 {
            assert!(!passes(replica, &unknown()).await);
        } else {
            assert!(!validates(replica, &unknown()).await);
        }
    }
    assert_eq!(total(&c, READS).await, 60.0, "one read per unknown token");
    assert_eq!(total(&c, REFUSED).await, 0.0);

    // The 61st and beyond: the same answers, no read, on either replica.
    for replica in &c.replicas {
        assert!(!validates(replica, &unknown()).await);
        assert!(!passes(replica, &unknown()).await);
    }
    assert!(!validates(c.a(), &real.token).await, "uncached, unread");
    assert_eq!(total(&c, READS).await, 60.0, "no read past the limit");
    assert_eq!(total(&c, REFUSED).await, 5.0);

    // Another address still gets its reads: the real token validates (and
    // is cached), an unknown one is read and refused.
    assert!(validates_from(c.b(), ELSEWHERE, &real.token).await);
    assert!(!validates_from(c.a(), ELSEWHERE, &unknown()).await);
    assert_eq!(total(&c, READS).await, 62.0);

    // Cached now: the flooding address passes with it on every replica, at
    // the gate too, still without a read.
    for replica in &c.replicas {
        assert!(validates(replica, &real.token).await);
        assert!(passes(replica, &real.token).await);
    }
    assert_eq!(total(&c, READS).await, 62.0);
}

/// The embedded store applies the same rule, counting in memory; with
/// `misses_per_address: 0` nothing is counted, every miss is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_bounds_reads_per_address_too_unless_the_limit_is_0() {
    let limited = Cluster::start_with(Backend::Memory, 2, |s| {
        s.api_tokens.misses_per_address = 3;
    })
    .await;
    for replica in [limited.a(), limited.b(), limited.a()] {
        assert!(!validates(replica, &unknown()).await);
    }
    assert_eq!(total(&limited, READS).await, 3.0);
    assert!(!validates(limited.b(), &unknown()).await);
    assert!(!passes(limited.a(), &unknown()).await);
    assert_eq!(total(&limited, READS).await, 3.0, "no read past 3");
    assert_eq!(total(&limited, REFUSED).await, 2.0);
    assert!(!validates_from(limited.b(), ELSEWHERE, &unknown()).await);
    assert_eq!(total(&limited, READS).await, 4.0, "another address reads");

    let unlimited = Cluster::start_with(Backend::Memory, 1, |s| {
        s.api_tokens.misses_per_address = 0;
    })
    .await;
    for _ in 0..70 {
        assert!(!validates(unlimited.a(), &unknown()).await);
    }
    assert_eq!(total(&unlimited, READS).await, 70.0);
    assert_eq!(total(&unlimited, REFUSED).await, 0.0);
}
