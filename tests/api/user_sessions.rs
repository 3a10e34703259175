//! A user's sessions as a whole (sessions per user): listing them from
//! either replica, ending one, ending all of them everywhere, and the same
//! for an operator — on both stores, and on Redis without leaving an index
//! behind.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use serde_json::{Value, json};
use tokengate::config::{LoginClient, Settings};

use crate::helpers::{Backend, Cluster, Pair, Replica};
use crate::support::client::{self, Reply};
use crate::{on_both_stores, on_redis_cluster};

const ADMIN_TOKEN: &str = "admin-token-for-the-user-sessions-tests";

fn with_admin(s: &mut Settings) {
    s.admin.token_hash = tokengate::clients::hash_secret(ADMIN_TOKEN.as_bytes()).unwrap();
}

async fn bearer(replica: &Replica, method: Method, path: &str, token: &str) -> Reply {
    client::with_bearer(replica.addr, method, path, token).await
}

/// [`bearer`] on the replica's admin listener.
async fn operator(replica: &Replica, method: Method, path: &str, token: &str) -> Reply {
    client::with_bearer(replica.admin_addr, method, path, token).await
}

/// The session ids `GET /sessions` lists, and which one is marked current.
async fn listed(replica: &Replica, access: &str) -> (Vec<String>, Option<String>) {
    let reply = bearer(replica, Method::GET, "/sessions", access).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let body = reply.json();
    let sessions = body["sessions"].as_array().unwrap().clone();
    let ids = sessions
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_owned())
        .collect();
    let current: Vec<String> = sessions
        .iter()
        .filter(|s| s["current"] == true)
        .map(|s| s["session_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(current.len() <= 1, "{body}");
    (ids, current.into_iter().next())
}

fn sid(pair: &Pair) -> String {
    pair.claims()["sid"].as_str().unwrap().to_owned()
}

async fn listing_shows_sessions_made_on_either_replica(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let first = c.a().login(json!("ada")).await;
    let second = c.b().login(json!("ada")).await;
    let other_user = c.a().login(json!("bob")).await;

    for (replica, pair) in [(c.a(), &first), (c.b(), &second)] {
        let (ids, current) = listed(replica, &pair.access).await;
        assert_eq!(ids, [sid(&first), sid(&second)], "oldest first, only ada's");
        assert_eq!(current, Some(sid(pair)));
    }
    let reply = bearer(c.b(), Method::GET, "/sessions", &first.access).await;
    let session = &reply.json()["sessions"][0];
    let created = session["created_at"].as_u64().unwrap();
    assert!(session["last_active"].as_u64().unwrap() >= created);
    assert_eq!(session["client_id"], Value::Null);
    assert_eq!(
        listed(c.a(), &other_user.access).await.0,
        [sid(&other_user)]
    );

    // A rotated-away or missing token lists nothing.
    let rotated = Pair::from_reply(&c.a().refresh(&first.refresh).await);
    assert_eq!(
        bearer(c.a(), Method::GET, "/sessions", &first.access)
            .await
            .status,
        401
    );
    assert_eq!(c.a().get("/sessions").await.status, 401);
    assert_eq!(listed(c.b(), &rotated.access).await.0.len(), 2);
}

async fn logout_everywhere_ends_every_session_of_the_user_only(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let on_a = c.a().login(json!("ada")).await;
    let on_b = c.b().login(json!("ada")).await;
    let third = c.b().login(json!("ada")).await;
    let bob = c.a().login(json!("bob")).await;

    let reply = bearer(c.a(), Method::POST, "/logout?all=true", &on_a.access).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json(), json!({"ended": 3}));
    for pair in [&on_a, &on_b, &third] {
        assert!(!c.b().accepts(&pair.access).await);
        assert!(!c.a().accepts(&pair.access).await);
        assert_eq!(c.a().refresh(&pair.refresh).await.status, 401);
    }
    assert!(
        c.b().accepts(&bob.access).await,
        "another user's session lives"
    );

    // The body form, with a refresh token; a used-up token cannot do it.
    let first = c.a().login(json!("bob")).await;
    let next = Pair::from_reply(&c.a().refresh(&first.refresh).await);
    let stale = c
        .b()
        .post_json("/logout", &json!({"refresh": first.refresh, "all": true}))
        .await;
    assert_eq!(stale.status, 401);
    assert!(c.a().accepts(&next.access).await);
    let reply = c
        .b()
        .post_json("/logout", &json!({"refresh": next.refresh, "all": true}))
        .await;
    assert_eq!(reply.json(), json!({"ended": 2}));
    assert!(!c.a().accepts(&bob.access).await);
    assert!(!c.a().accepts(&next.access).await);

    // The access token of an ended session cannot end anything more.
    let again = bearer(c.a(), Method::POST, "/logout?all=true", &on_a.access).await;
    assert_eq!(again.status, 401);
    // Plain logout stays as it was: any signed token, idempotent, `{}`.
    assert_eq!(c.a().logout(&on_a.access).await.json(), json!({}));
}

async fn one_session_is_ended_by_its_user_only(backend: Backend) {
    let c = Cluster::start(backend, 2).await;
    let phone = c.a().login(json!("ada")).await;
    let laptop = c.b().login(json!("ada")).await;
    let bob = c.a().login(json!("bob")).await;

    let path = format!("/sessions/{}", sid(&phone));
    // Not bob's to end: the same answer as for no session at all.
    let refused = bearer(c.b(), Method::DELETE, &path, &bob.access).await;
    assert_eq!(refused.status, 404);
    assert_eq!(refused.json()["error"], "not_found");
    assert!(c.a().accepts(&phone.access).await);

    let ended = bearer(c.b(), Method::DELETE, &path, &laptop.access).await;
    assert_eq!(ended.status, 200);
    assert!(!c.a().accepts(&phone.access).await);
    assert!(c.a().accepts(&laptop.access).await);
    assert_eq!(listed(c.a(), &laptop.access).await.0, [sid(&laptop)]);

    for bad in [path.as_str(), "/sessions/not-a-uuid"] {
        assert_eq!(
            bearer(c.a(), Method::DELETE, bad, &laptop.access)
                .await
                .status,
            404
        );
    }
    let wrong_method = bearer(c.a(), Method::GET, &path, &laptop.access).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), Some("DELETE"));
}

async fn operators_list_and_end_a_users_sessions(backend: Backend) {
    let web = "integration-web-client-secret-0123456789";
    let c = Cluster::start_with(backend, 2, |s| {
        with_admin(s);
        s.login.clients = vec![LoginClient {
            id: "web".into(),
            secret_hash: tokengate::clients::hash_secret(web.as_bytes()).unwrap(),
            ..LoginClient::default()
        }];
    })
    .await;
    let basic = format!("Basic {}", STANDARD.encode(format!("web:{web}")));
    let login = |replica: &Replica, user: &str| {
        let request = client::request(Method::POST, "/login")
            .header("authorization", basic.clone())
            .header("content-type", "application/json")
            .body(client::json_body(&json!({ "user_id": user })))
            .unwrap();
        let addr = replica.addr;
        async move { Pair::from_reply(&client::send(addr, request).await) }
    };
    let first = login(c.a(), "user@example.com").await;
    let second = login(c.b(), "user@example.com").await;

    // `{sub}` is percent-decoded.
    let path = "/admin/users/user%40example.com/sessions";
    let reply = operator(c.b(), Method::GET, path, ADMIN_TOKEN).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let ids: Vec<String> = reply.json()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, [sid(&first), sid(&second)]);

    for refused in ["wrong-admin-token", first.access.as_str()] {
        assert_eq!(
            operator(c.a(), Method::GET, path, refused).await.status,
            401
        );
    }
    assert_eq!(c.a().get_admin(path).await.status, 401);

    // The login client (HTTP Basic) may end them, as the admin token may.
    let logout = client::request(Method::POST, "/admin/users/user%40example.com/logout")
        .header("authorization", basic.clone())
        .body(http_body_util::Full::default())
        .unwrap();
    let reply = c.a().send_admin(logout).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json(), json!({"ended": 2}));
    assert!(!c.b().accepts(&first.access).await);
    assert!(!c.b().accepts(&second.access).await);
    let none = operator(c.a(), Method::GET, path, ADMIN_TOKEN).await;
    assert_eq!(none.json(), json!({"sessions": []}));
}

on_both_stores!(
    listing_shows_sessions_made_on_either_replica,
    logout_everywhere_ends_every_session_of_the_user_only,
    one_session_is_ended_by_its_user_only,
    operators_list_and_end_a_users_sessions,
);

on_redis_cluster!(
    listing_shows_sessions_made_on_either_replica,
    logout_everywhere_ends_every_session_of_the_user_only,
    one_session_is_ended_by_its_user_only,
);

/// Logins racing on both replicas, then logout everywhere: no session
/// survives, and Redis keeps nothing for the user — no index, no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_then_logout_everywhere_leave_nothing() {
    let c = Cluster::start(Backend::Redis, 2).await;
    let logins = (0..16).map(|i| c.replicas[i % 2].login(json!("ada")));
    let pairs = futures_util::future::join_all(logins).await;
    let index = c.redis().keys("tg:{u:*}:idx");
    assert_eq!(index, ["tg:{u:ada}:idx"]);
    let ttl = c.redis().pttl("tg:{u:ada}:idx");
    let refresh_lifetime = c.settings.auth.refresh_lifetime.as_millis() as i64;
    assert!(ttl > 0 && ttl <= refresh_lifetime, "index TTL {ttl}");
    assert_eq!(listed(c.b(), &pairs[3].access).await.0.len(), 16);

    let reply = bearer(c.b(), Method::POST, "/logout", &pairs[0].access).await;
    assert_eq!(reply.json(), json!({}), "without all: one session");
    let all = client::request(Method::POST, "/logout")
        .header("authorization", format!("Bearer {}", pairs[1].access))
        .header("content-type", "application/json")
        .body(client::json_body(&json!({"all": true})))
        .unwrap();
    let reply = client::send(c.a().addr, all).await;
    assert_eq!(reply.json(), json!({"ended": 15}));
    for pair in &pairs {
        assert!(!c.a().accepts(&pair.access).await);
    }
    let mut left = c.redis().keys("*");
    left.sort();
    assert_eq!(
        left,
        ["tg:events", "tg:{feed}:ended", "tg:{feed}:epoch"],
        "only the revocation feed's and the events"
    );
}

/// Ended sessions leave the index as logins and listings pass by, so it
/// stays near the number of live sessions; it expires with the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_forgets_sessions_that_ended_by_themselves() {
    let idle = Duration::from_secs(1);
    let c = Cluster::start_with(Backend::Redis, 1, |s| s.auth.auto_logout = idle).await;
    let old = c.a().login(json!("ada")).await;
    let mut redis = c.redis().connection();
    let members = |redis: &mut deadpool_redis::redis::Connection| -> u64 {
        deadpool_redis::redis::cmd("ZCARD")
            .arg("tg:{u:ada}:idx")
            .query(redis)
            .unwrap()
    };
    assert_eq!(members(&mut redis), 1);
    assert!(
        crate::helpers::eventually(Duration::from_secs(5), || async {
            c.redis().keys("tg:{u:*}:s:*").is_empty()
        })
        .await,
        "the idle session expires"
    );
    let new = c.a().login(json!("ada")).await;
    assert_eq!(members(&mut redis), 1, "the login dropped the ended one");
    assert_eq!(listed(c.a(), &new.access).await.0, [sid(&new)]);
    assert!(!c.a().accepts(&old.access).await);
}
