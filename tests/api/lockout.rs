//! Nobody is locked out from elsewhere (SPEC §11): failed credentials count
//! per (identity, address) and per address, so guesses from one address never
//! make the right secret fail from another — on a replica that has never seen
//! the right secret either (a fresh start, a scale-up), where no remembered
//! secret shields it. Addresses are real: the attacker's connections come
//! from 127.0.0.2 and up, the honest caller's from 127.0.0.1.

use std::net::IpAddr;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use serde_json::json;
use tokengate::config::{LoginClient, OAuthClient, Settings};

use crate::helpers::{Backend, Cluster, Replica};
use crate::support::client::{Reply, json_body, request, send_from};

const WEB_SECRET: &str = "web-client-secret";
const BILLING_SECRET: &str = "billing-client-secret";
const PASSWORD: &str = "correct horse battery";

fn honest() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

/// The `n`th attacking address.
fn attacker(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, 2 + n])
}

fn hash(secret: &str) -> String {
    static HASHES: OnceLock<(String, String)> = OnceLock::new();
    let (web, billing) = HASHES.get_or_init(|| {
        let hash = |s: &str| tokengate::clients::hash_secret(s.as_bytes()).unwrap();
        (hash(WEB_SECRET), hash(BILLING_SECRET))
    });
    if secret == WEB_SECRET {
        web.clone()
    } else {
        billing.clone()
    }
}

/// A Redis cluster with the login client `web` and the OAuth client
/// `billing`, the SPEC's default limits, and `configure` on top.
async fn cluster(replicas: usize, configure: impl FnOnce(&mut Settings)) -> Cluster {
    Cluster::start_with(Backend::Redis, replicas, |s| {
        s.login.open = false;
        s.login.clients = vec![LoginClient {
            id: "web".into(),
            secret_hash: hash(WEB_SECRET),
            ..LoginClient::default()
        }];
        s.oauth.clients = vec![OAuthClient {
            id: "billing".into(),
            secret_hash: hash(BILLING_SECRET),
            scopes: vec!["read".into()],
            refresh_tokens: false,
            rate_limit: 0,
        }];
        configure(s);
    })
    .await
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// `/login {"user_id"}` as the login client `web` with `secret`, from `from`.
async fn client_login(replica: &Replica, from: IpAddr, secret: &str) -> Reply {
    let request = request(Method::POST, "/login")
        .header("content-type", "application/json")
        .header("authorization", basic("web", secret))
        .body(json_body(&json!({"user_id": "u-1"})))
        .unwrap();
    send_from(from, replica.addr, request).await
}

/// `client_credentials` as the OAuth client `billing` with `secret`.
async fn client_token(replica: &Replica, from: IpAddr, secret: &str) -> Reply {
    let request = request(Method::POST, "/oauth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", basic("billing", secret))
        .body(Full::new(Bytes::from_static(
            b"grant_type=client_credentials",
        )))
        .unwrap();
    send_from(from, replica.addr, request).await
}

async fn password_login(replica: &Replica, from: IpAddr, email: &str, password: &str) -> Reply {
    let request = request(Method::POST, "/login")
        .header("content-type", "application/json")
        .body(json_body(&json!({"email": email, "password": password})))
        .unwrap();
    send_from(from, replica.addr, request).await
}

fn assert_throttled(reply: &Reply) {
    assert_eq!(reply.status, 429, "{:?}", reply.body);
    assert_eq!(reply.error(), "too_many_attempts");
    assert!(reply.header("retry-after").is_some());
}

/// Sends `call` with wrong secrets until the attacker's address is refused;
/// asserts the refusal comes within `limit` + 1 tries.
async fn guess_until_throttled<F, Fut>(limit: usize, mut call: F)
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Reply>,
{
    for n in 0..limit {
        let reply = call(format!("guess-{n}")).await;
        assert_eq!(reply.status, 401, "guess {n}: {:?}", reply.body);
    }
    assert_throttled(&call("one more".into()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_for_a_login_client_never_lock_it_out_of_a_fresh_replica() {
    let mut c = cluster(1, |_| {}).await;
    let replica = c.a();
    guess_until_throttled(10, |guess| async move {
        client_login(replica, attacker(0), &guess).await
    })
    .await;
    // The right secret from the attacking address stays refused, unhashed...
    assert_throttled(&client_login(c.a(), attacker(0), WEB_SECRET).await);
    // ...while the honest backend gets through, on the replica that saw the
    // flood and on one started after it: neither has verified it before.
    assert_eq!(client_login(c.a(), honest(), WEB_SECRET).await.status, 200);
    let fresh = c.add_replica().await;
    let before = fresh.verifications().await;
    assert_eq!(client_login(fresh, honest(), WEB_SECRET).await.status, 200);
    assert_eq!(
        fresh.verifications().await,
        before + 1,
        "hashed, not throttled"
    );
    // Guesses from further addresses keep failing one by one: the client
    // has no total of its own that a distributed flood could fill.
    for n in 1..4 {
        let reply = client_login(fresh, attacker(n), "guess").await;
        assert_eq!(reply.status, 401, "{:?}", reply.body);
    }
}

/// A burst of concurrent guesses gets exactly the limit's worth of argon2
/// work: each is counted before it is hashed, not after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_guesses_from_one_address_costs_the_limit_in_hashes_and_no_more() {
    let c = cluster(2, |_| {}).await;
    let before = c.a().verifications().await + c.b().verifications().await;
    let guesses: Vec<String> = (0..60).map(|n| format!("guess-{n}")).collect();
    let burst = guesses.iter().enumerate().map(|(n, guess)| {
        let replica = if n % 2 == 0 { c.a() } else { c.b() };
        client_login(replica, attacker(0), guess)
    });
    let replies = futures_util::future::join_all(burst).await;
    let hashed = c.a().verifications().await + c.b().verifications().await - before;
    let refused = replies.iter().filter(|r| r.status == 401).count();
    assert_eq!((hashed, refused), (10, 10), "throttle.max_failures is 10");
    assert!(
        replies
            .iter()
            .all(|r| matches!(r.status.as_u16(), 401 | 429))
    );
    assert_eq!(client_login(c.b(), honest(), WEB_SECRET).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_for_an_oauth_client_never_lock_it_out_of_a_fresh_replica() {
    let mut c = cluster(1, |_| {}).await;
    let replica = c.a();
    guess_until_throttled(10, |guess| async move {
        client_token(replica, attacker(0), &guess).await
    })
    .await;
    let fresh = c.add_replica().await;
    let reply = client_token(fresh, honest(), BILLING_SECRET).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["scope"], "read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_at_the_admin_token_never_lock_the_operator_out_of_a_fresh_replica() {
    const ADMIN_TOKEN: &str = "an admin token of at least thirty-two characters";
    let mut c = cluster(1, |s| {
        s.admin.token_hash = tokengate::clients::hash_secret(ADMIN_TOKEN.as_bytes()).unwrap();
    })
    .await;
    let list = |replica: &Replica, from: IpAddr, token: &str| {
        let request = request(Method::GET, "/admin/tokens")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .unwrap();
        send_from(from, replica.admin_addr, request)
    };
    let replica = c.a();
    guess_until_throttled(10, |guess| list(replica, attacker(0), &guess)).await;
    let fresh = c.add_replica().await;
    let reply = list(fresh, honest(), ADMIN_TOKEN).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_guesses_many_ids_is_refused_for_all_of_them() {
    let c = cluster(2, |s| s.throttle.max_failures_per_address = 6).await;
    for n in 0..6 {
        // Unknown ids count for the address as the real one does.
        let id = if n == 0 {
            "web".to_owned()
        } else {
            format!("ghost-{n}")
        };
        let replica = if n % 2 == 0 { c.a() } else { c.b() };
        let request = request(Method::POST, "/login")
            .header("content-type", "application/json")
            .header("authorization", basic(&id, "guess"))
            .body(json_body(&json!({"user_id": "u-1"})))
            .unwrap();
        let reply = send_from(attacker(0), replica.addr, request).await;
        assert_eq!(reply.status, 401, "{:?}", reply.body);
    }
    assert_throttled(&client_login(c.b(), attacker(0), WEB_SECRET).await);
    assert_eq!(client_login(c.b(), honest(), WEB_SECRET).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_for_made_up_emails_never_lock_out_a_real_user_behind_the_same_address() {
    // No trusted proxies: every user behind one NAT (or a misconfigured
    // proxy) shares one address.
    let c = cluster(2, |_| {}).await;
    let created = c
        .a()
        .post_json(
            "/register",
            &json!({"email": "grace@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    for n in 0..20 {
        let email = format!("nobody-{n}@example.com");
        let reply = password_login(c.a(), honest(), &email, "guess").await;
        assert_eq!(reply.status, 401, "{:?}", reply.body);
    }
    let reply = password_login(c.b(), honest(), "grace@example.com", PASSWORD).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);

    // Five guesses at her password from one address close that pair only.
    for _ in 0..5 {
        let reply = password_login(c.b(), attacker(0), "grace@example.com", "guess").await;
        assert_eq!(reply.status, 401);
    }
    assert_throttled(&password_login(c.a(), attacker(0), "grace@example.com", PASSWORD).await);
    let reply = password_login(c.a(), honest(), "grace@example.com", PASSWORD).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distributed_attack_on_one_account_meets_its_total() {
    let c = cluster(2, |s| s.users.max_failures_per_account = 8).await;
    let created = c
        .a()
        .post_json(
            "/register",
            &json!({"email": "heidi@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(created.status, 201);
    for n in 0..8 {
        let replica = if n % 2 == 0 { c.a() } else { c.b() };
        let reply = password_login(replica, attacker(n), "heidi@example.com", "guess").await;
        assert_eq!(reply.status, 401, "{:?}", reply.body);
    }
    // Eight addresses, two guesses each at most: the account's total closes
    // it everywhere, the right password included, until the window ends.
    assert_throttled(&password_login(c.b(), honest(), "heidi@example.com", PASSWORD).await);
    // Other accounts are untouched.
    let other = password_login(c.b(), honest(), "ivan@example.com", "guess").await;
    assert_eq!(other.status, 401);
}
