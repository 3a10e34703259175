//! SPEC §15 on real Redis and two replicas, with a cookie jar of the test's
//! own (the real browser is tests/e2e/browser.rs): a browser signs in on
//! one replica and passes the cookie gate on the other; the gate is one
//! `EVALSHA` and sets no cookie; idle and `max_session` end a browser
//! session; a browser session is listed and ended with the user's token
//! sessions; `rd`, `X-Original-URL` from untrusted peers and cross-site
//! posts are refused.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use deadpool_redis::redis;
use http::{Method, StatusCode};
use http_body_util::Full;
use serde_json::json;
use tokengate::config::{IdentityHeader, Settings};

use crate::helpers::{Backend, Cluster, Pair, Replica, eventually};
use crate::support::client::{self, Reply, request};

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "correct horse battery";
const COOKIE: &str = "__Host-tokengate";

/// A browser, as far as the server can tell: a cookie jar.
#[derive(Default)]
struct Browser {
    cookies: HashMap<String, String>,
}

impl Browser {
    fn keep(&mut self, reply: &Reply) {
        for set in reply.headers.get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        pairs.join("; ")
    }

    async fn get(&mut self, replica: &Replica, path: &str) -> Reply {
        let request = request(Method::GET, path)
            .header("cookie", self.cookie_header())
            .body(Full::default())
            .unwrap();
        let reply = replica.send(request).await;
        self.keep(&reply);
        reply
    }

    /// Posts a form as a page of the same origin does.
    async fn post(&mut self, replica: &Replica, path: &str, fields: &[(&str, &str)]) -> Reply {
        self.post_from(replica, path, fields, "same-origin").await
    }

    async fn post_from(
        &mut self,
        replica: &Replica,
        path: &str,
        fields: &[(&str, &str)],
        site: &str,
    ) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = request(Method::POST, path)
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("sec-fetch-site", site)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let reply = replica.send(request).await;
        self.keep(&reply);
        reply
    }

    /// Signs in through the form, `rd` = `/app/`; returns the reply.
    async fn sign_in(&mut self, replica: &Replica, password: &str) -> Reply {
        let page = self.get(replica, "/oauth2/sign_in?rd=/app/").await;
        assert_eq!(page.status, 200);
        let token = csrf(&page);
        self.post(
            replica,
            "/oauth2/sign_in",
            &[
                ("email", EMAIL),
                ("password", password),
                ("csrf", &token),
                ("rd", "/app/"),
            ],
        )
        .await
    }

    async fn gate(&self, replica: &Replica) -> Reply {
        let request = request(Method::GET, "/oauth2/auth")
            .header("cookie", self.cookie_header())
            .header("x-original-url", "http://localhost:8080/app/?x=1")
            .body(Full::default())
            .unwrap();
        replica.send(request).await
    }
}

/// The CSRF token of the first form of a page.
fn csrf(page: &Reply) -> String {
    let html = String::from_utf8_lossy(&page.body);
    let start = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a csrf token")
        + 19;
    html[start..].split('"').next().unwrap().to_owned()
}

async fn cluster(configure: impl FnOnce(&mut Settings)) -> Cluster {
    let c = Cluster::start_with(Backend::Redis, 2, |s| {
        s.server.trusted_proxies = vec!["127.0.0.1".into()];
        s.authenticate.identity_headers = vec![IdentityHeader::XAuthRequestUser];
        configure(s);
    })
    .await;
    let reply = c
        .a()
        .post_json(
            "/register",
            &json!({ "email": EMAIL, "password": PASSWORD }),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signed_in_on_one_replica_passes_the_gate_on_the_other() {
    let c = cluster(|_| {}).await;
    let mut browser = Browser::default();
    let signed_in = browser.sign_in(c.a(), PASSWORD).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.header("location"), Some("/app/"));
    let set = signed_in.header("set-cookie").unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    let value = &browser.cookies[COOKIE];
    // base64url of sid, secret and the owner that names the session's key.
    assert!(value.len() > 64, "an opaque handle, not a JWT: {value}");
    assert!(!value.contains('.'));

    let gate = browser.gate(c.b()).await;
    assert_eq!(gate.status, 200);
    let user = gate.header("x-user-id").unwrap().to_owned();
    assert_eq!(gate.header("x-auth-request-user"), Some(user.as_str()));
    assert_eq!(gate.header("x-auth-request-amr"), Some("pwd"));
    assert!(gate.header("x-session-id").is_some());
    assert!(
        gate.header("set-cookie").is_none(),
        "no cookie on the hot path"
    );
    let info = browser.get(c.b(), "/oauth2/userinfo").await;
    assert_eq!(info.json()["user"], user.as_str());
    assert_eq!(info.json()["email"], EMAIL);

    // A Bearer session of the same user lists the browser's, and ending
    // every session from the API ends the browser's on every replica.
    let login = c
        .a()
        .post_json("/login", &json!({ "email": EMAIL, "password": PASSWORD }))
        .await;
    let pair = Pair::from_reply(&login);
    let list = client::with_bearer(c.b().addr, Method::GET, "/sessions", &pair.access).await;
    let ids: Vec<String> = list.json()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        ids.contains(&gate.header("x-session-id").unwrap().to_owned()),
        "{ids:?}"
    );
    let page = browser.get(c.a(), "/oauth2/sessions").await;
    let html = String::from_utf8_lossy(&page.body);
    assert_eq!(html.matches("<tr data-sid=").count(), 2, "{html}");
    assert!(
        html.contains(&pair.session_id),
        "the API session is on the page"
    );
    let all = client::send(
        c.a().addr,
        request(Method::POST, "/logout?all=true")
            .header("authorization", format!("Bearer {}", pair.access))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(all.json()["ended"], 2);
    let gate = browser.gate(c.a()).await;
    assert_eq!(gate.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_answers_401_with_where_to_sign_in_never_a_redirect() {
    let c = cluster(|_| {}).await;
    let browser = Browser::default();
    let gate = browser.gate(c.a()).await;
    assert_eq!(gate.status, 401);
    assert_eq!(
        gate.header("location"),
        Some(
            "http://localhost:8080/oauth2/sign_in?rd=http%3A%2F%2Flocalhost%3A8080%2Fapp%2F%3Fx%3D1"
        )
    );
    // nginx's way of saying it, without X-Original-URL; and the alias.
    let forwarded = request(Method::GET, "/api/authz/auth-request")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-uri", "/reports?q=1")
        .header("cookie", format!("{COOKIE}=not-a-handle"))
        .body(Full::default())
        .unwrap();
    let gate = c.a().send(forwarded).await;
    assert_eq!(gate.status, 401);
    assert_eq!(
        gate.header("location"),
        Some(
            "https://app.example.com/oauth2/sign_in?rd=https%3A%2F%2Fapp.example.com%2Freports%3Fq%3D1"
        )
    );
    // From a peer that is no trusted proxy the URL is not believed.
    let request = request(Method::GET, "/oauth2/auth")
        .header("x-original-url", "https://evil.example/")
        .body(Full::default())
        .unwrap();
    let untrusted =
        client::send_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), c.a().addr, request).await;
    assert_eq!(untrusted.status, 401);
    assert_eq!(untrusted.header("location"), Some("/oauth2/sign_in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_gate_is_one_evalsha() {
    let c = cluster(|_| {}).await;
    let mut browser = Browser::default();
    browser.sign_in(c.a(), PASSWORD).await;
    assert_eq!(browser.gate(c.b()).await.status, 200);
    let stats = |redis: &crate::support::redis::RedisServer| -> (u64, u64) {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut redis.connection())
            .unwrap();
        let calls = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:")))
                .and_then(|s| s.split(',').find_map(|kv| kv.strip_prefix("calls=")))
                .map_or(0, |n| n.parse().unwrap())
        };
        (
            calls("evalsha"),
            calls("get") + calls("hget") + calls("hgetall") + calls("eval"),
        )
    };
    let before = stats(c.redis());
    for _ in 0..10 {
        assert_eq!(browser.gate(c.b()).await.status, 200);
    }
    let after = stats(c.redis());
    assert_eq!(after.0 - before.0, 10, "one EVALSHA per gate request");
    assert_eq!(after.1, before.1, "and nothing else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_max_session_end_a_browser_session() {
    let c = cluster(|s| {
        s.auth.access_lifetime = Duration::from_secs(1);
        s.auth.auto_logout = Duration::from_secs(1);
        s.auth.max_session = Duration::from_secs(3);
        s.auth.touch_interval = Some(Duration::from_millis(100));
    })
    .await;
    // Idle: no request for a second and it is gone, on every replica.
    let mut idle = Browser::default();
    idle.sign_in(c.a(), PASSWORD).await;
    assert_eq!(idle.gate(c.b()).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(idle.gate(c.b()).await.status, 401);
    // Busy: activity keeps it alive past the idle time, not past max_session.
    let mut busy = Browser::default();
    busy.sign_in(c.a(), PASSWORD).await;
    let started = std::time::Instant::now();
    let ended = eventually(Duration::from_secs(5), || async {
        busy.gate(c.b()).await.status == 401
    })
    .await;
    assert!(ended, "max_session ended it");
    let lived = started.elapsed();
    assert!(
        lived > Duration::from_millis(2500),
        "alive while active: {lived:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_posts_and_open_redirects_are_refused() {
    let c = cluster(|s| s.cookie.redirect_domains = vec![".example.com".into()]).await;
    // rd off the allow list: the browser lands on `/`; on it: there.
    let mut browser = Browser::default();
    for (rd, lands) in [
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("https://app.example.com/x", "https://app.example.com/x"),
    ] {
        browser = Browser::default();
        let page = browser.get(c.a(), "/oauth2/sign_in").await;
        let token = csrf(&page);
        let reply = browser
            .post(
                c.a(),
                "/oauth2/sign_in",
                &[
                    ("email", EMAIL),
                    ("password", PASSWORD),
                    ("csrf", &token),
                    ("rd", rd),
                ],
            )
            .await;
        assert_eq!(reply.header("location"), Some(lands), "{rd}");
    }
    // A cross-site post with the right token, or a same-origin one with a
    // wrong token, changes nothing.
    let page = browser.get(c.a(), "/oauth2/sessions").await;
    let token = csrf(&page);
    let cross = browser
        .post_from(
            c.a(),
            "/oauth2/sessions",
            &[("csrf", &token), ("all", "1")],
            "cross-site",
        )
        .await;
    assert_eq!(cross.status, 403);
    let wrong = browser
        .post(c.a(), "/oauth2/sessions", &[("csrf", "x"), ("all", "1")])
        .await;
    assert_eq!(wrong.status, 403);
    let page = browser.get(c.a(), "/oauth2/sign_out").await;
    let sign_out_token = csrf(&page);
    let cross = browser
        .post_from(
            c.a(),
            "/oauth2/sign_out",
            &[("csrf", &sign_out_token)],
            "same-site",
        )
        .await;
    assert_eq!(cross.status, 403);
    assert_eq!(browser.gate(c.b()).await.status, 200, "still signed in");
    // The real thing works.
    let out = browser
        .post(c.a(), "/oauth2/sessions", &[("csrf", &token), ("all", "1")])
        .await;
    assert_eq!(out.status, 303);
    assert_eq!(browser.gate(c.b()).await.status, 401);
    // A sign-in form without its cookie's token is refused too.
    let mut stranger = Browser::default();
    let forged = stranger
        .post(
            c.a(),
            "/oauth2/sign_in",
            &[("email", EMAIL), ("password", PASSWORD), ("csrf", &token)],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert!(!stranger.cookies.contains_key(COOKIE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_and_hostile_input_get_a_page_and_no_session() {
    let c = cluster(|_| {}).await;
    let mut browser = Browser::default();
    let wrong = browser.sign_in(c.a(), "not the password").await;
    assert_eq!(wrong.status, 400);
    let html = String::from_utf8_lossy(&wrong.body);
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(html.contains("Wrong email, password or code."));
    assert!(!browser.cookies.contains_key(COOKIE));
    let csp = wrong.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    // What a user typed comes back escaped.
    let page = browser
        .get(c.a(), "/oauth2/sign_in?rd=%22%3E%3Cscript%3E")
        .await;
    let html = String::from_utf8_lossy(&page.body);
    assert!(!html.contains("\"><script>") && html.contains("&quot;&gt;&lt;script&gt;"));
    // Garbage cookies, methods and forms: clear answers, nothing stored.
    let keys_before: Vec<String> = redis::cmd("KEYS")
        .arg("tg:{u:*}:s:*")
        .query(&mut c.redis().connection())
        .unwrap();
    for value in ["", "x", &"A".repeat(64), &"é".repeat(40), &"A".repeat(5000)] {
        let garbage = request(Method::GET, "/oauth2/auth")
            .header("cookie", format!("{COOKIE}={value}"))
            .body(Full::default())
            .unwrap();
        assert_eq!(c.b().send(garbage).await.status, 401, "{value}");
    }
    let put = client::send(
        c.a().addr,
        request(Method::PUT, "/oauth2/sign_in")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(put.status, 405);
    let form = browser
        .post(c.a(), "/oauth2/sign_in", &[("email", "%00\u{0}")])
        .await;
    assert_eq!(form.status, 403);
    let keys_after: Vec<String> = redis::cmd("KEYS")
        .arg("tg:{u:*}:s:*")
        .query(&mut c.redis().connection())
        .unwrap();
    assert_eq!(keys_before.len(), keys_after.len());
    // ?require=otp refuses a password-only session with 403 (no loop back to sign-in).
    browser.sign_in(c.a(), PASSWORD).await;
    let require_otp = request(Method::GET, "/oauth2/auth?require=otp")
        .header("cookie", browser.cookie_header())
        .body(Full::default())
        .unwrap();
    let otp = c.b().send(require_otp).await;
    assert_eq!(otp.status, 403);
    assert_eq!(otp.error(), "second_factor_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_local_cache_the_cookie_gate_asks_redis_nothing_until_the_session_changes() {
    let c = cluster(|s| {
        s.auth.local_cache.enabled = true;
        // Touches are writes, which invalidate: keep them out of the way.
        s.auth.touch_interval = Some(Duration::from_secs(10));
    })
    .await;
    let up = eventually(Duration::from_secs(5), || async {
        crate::local_cache::tracking_clients(c.redis()).len() == 2
    })
    .await;
    assert!(up, "tracking connections up");
    let mut browser = Browser::default();
    browser.sign_in(c.a(), PASSWORD).await;
    // Learned once (tracking may switch on a moment after the name is set).
    let learned = eventually(Duration::from_secs(5), || async {
        browser.gate(c.b()).await.status == 200
            && c.b().metric("tokengate_local_cache_hits_total").await > 0.0
    })
    .await;
    assert!(learned, "the session is answered from memory");
    let evalsha = |redis: &crate::support::redis::RedisServer| -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut redis.connection())
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
            .and_then(|s| s.split(',').find_map(|kv| kv.strip_prefix("calls=")))
            .map_or(0, |n| n.parse().unwrap())
    };
    let before = evalsha(c.redis());
    for _ in 0..10 {
        let gate = browser.gate(c.b()).await;
        assert_eq!(gate.status, 200);
        assert_eq!(gate.header("x-auth-request-amr"), Some("pwd"));
        assert!(gate.header("x-user-id").is_some());
    }
    // Other replicas' background scripts may run meanwhile; ten requests
    // answered by Redis would be ten at least.
    assert!(evalsha(c.redis()) - before < 5, "answered from memory");
    // Signed out on the other replica: refused at once, however cached.
    let value = browser.cookies[COOKIE].clone();
    let page = browser.get(c.a(), "/oauth2/sign_out").await;
    let token = csrf(&page);
    let out = browser
        .post(c.a(), "/oauth2/sign_out", &[("csrf", &token)])
        .await;
    assert_eq!(out.status, 303);
    let stale = Browser {
        cookies: HashMap::from([(COOKIE.to_owned(), value)]),
    };
    let refused = eventually(Duration::from_secs(2), || async {
        stale.gate(c.b()).await.status == 401
    })
    .await;
    assert!(refused, "the invalidation reached the other replica");
}
