//! Browser sessions (SPEC §15) in a real browser: headless Chromium from
//! Debian, driven by Playwright scripts (`tests/browser/scenarios.mjs`), through
//! real nginx with the browser setup of `nginx/browser/` in front of two
//! replicas sharing one Redis. The site is reached as `http://localhost:<port>`,
//! which browsers treat as a secure context, so the `Secure`, `__Host-` cookie
//! works over plain HTTP on loopback.
//!
//! The Rust side starts the cluster, registers the users (through the trusted
//! login client, so their emails count as verified and reach the app), checks
//! what nginx and the gate answer at the HTTP level, then runs the scenarios and
//! fails with everything node printed if one failed. Screenshots of the pages
//! land in `target/browser-artifacts/` (paths printed).
//!
//! Without Chromium, node or playwright-core these tests skip, saying why, except
//! in CI, where they fail (`scripts/test` installs them).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use http::Method;
use http_body_util::Full;
use serde_json::{Value, json};

use crate::support::browser::{Browser, artifacts_dir};
use crate::support::client::{self, Reply, request};
use crate::support::cluster::{Cluster, ClusterOptions};
use crate::{BIN, EXCLUSIVE, post_json, start};

const WEB_SECRET: &str = "browser-test-web-client-secret-0123456789";
const PASSWORD: &str = "correct horse battery staple";

/// Two replicas, nginx with the browser site, the settings of nginx/browser/
/// nginx.conf's header (trusted proxy, TOTP key, identity headers) and a
/// trusted login client to register users with verified emails.
fn browser_options(dir: &Path) -> ClusterOptions {
    let key_file = dir.join("totp.key");
    let mut key = uuid::Uuid::new_v4().as_bytes().to_vec();
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    std::fs::write(
        &key_file,
        base64::engine::general_purpose::STANDARD.encode(&key),
    )
    .expect("write the TOTP key");
    let web_hash = tokengate::clients::hash_secret(WEB_SECRET.as_bytes()).expect("hash");
    let totp = format!("totp:\n  key_file: {}\n", key_file.display());
    let config = format!(
        "server:\n  trusted_proxies: [127.0.0.1]\n\
         cookie:\n  secure: true\n\
         {totp}\
         users:\n  registration: open\n\
         authenticate:\n  identity_headers: \
         [x-auth-request-user, x-auth-request-email, remote-user, remote-email]\n\
         login:\n  clients:\n    - id: web\n      secret_hash: '{web_hash}'\n"
    );
    let mut options = ClusterOptions::new(BIN).replicas(2).config(&config);
    options.nginx.workers = Some(2);
    options.nginx.browser = true;
    options
}

/// A directory for the TOTP key, removed when dropped.
struct KeyDir(PathBuf);

impl KeyDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("tokengate-browser-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the key dir");
        Self(dir)
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `http://localhost:<browser port>`: what the browser types.
fn base(cluster: &Cluster) -> String {
    format!("http://localhost:{}", cluster.nginx().browser_port())
}

fn browser_addr(cluster: &Cluster) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], cluster.nginx().browser_port()))
}

/// A JSON POST as the trusted login client `web`.
async fn as_web(addr: SocketAddr, path: &str, body: &Value) -> Reply {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("web:{WEB_SECRET}"));
    client::send(
        addr,
        request(Method::POST, path)
            .header("content-type", "application/json")
            .header("authorization", format!("Basic {basic}"))
            .body(client::json_body(body))
            .unwrap(),
    )
    .await
}

/// A user registered through the trusted login client (email verified), as
/// the scenarios get it: `{email, password, user_id}`.
async fn register(cluster: &Cluster, name: &str) -> Value {
    let email = format!("{name}-{}@example.com", uuid::Uuid::new_v4().simple());
    let body = json!({ "email": email, "password": PASSWORD, "email_verified": true });
    let reply = as_web(cluster.addr(), "/register", &body).await;
    assert_eq!(reply.status, 201, "register {email}: {reply:?}");
    json!({ "email": email, "password": PASSWORD, "user_id": reply.field("user_id") })
}

/// GET `path` of the browser site, as a browser at `http://localhost:<port>` asks.
async fn get(cluster: &Cluster, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut builder = request(Method::GET, path).header(
        "host",
        format!("localhost:{}", cluster.nginx().browser_port()),
    );
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    client::send(
        browser_addr(cluster),
        builder.body(Full::default()).unwrap(),
    )
    .await
}

/// `rd` of a sign-in URL, decoded; panics unless `location` is the site's sign-in page.
fn sign_in_rd(cluster: &Cluster, location: &str) -> String {
    let page = format!("{}/oauth2/sign_in?", base(cluster));
    let query = location
        .strip_prefix(&page)
        .unwrap_or_else(|| panic!("not the sign-in page {page}…: {location}"));
    let rd = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("rd="))
        .unwrap_or_else(|| panic!("no rd in {location}"));
    percent_encoding::percent_decode_str(&rd.replace('+', " "))
        .decode_utf8()
        .expect("rd is UTF-8")
        .into_owned()
}

/// What nginx and the gate answer before any browser is involved: the gate's
/// 401 with the sign-in URL (never a 3xx), nginx's 302 to it, and the Bearer
/// API on the same server.
async fn check_http(cluster: &Cluster) {
    let base = base(cluster);

    // nginx: the gate's 401 becomes a 302 to the sign-in page, rd = where the
    // browser was going.
    for path in [
        "/docs/page.html?x=1&y=two",
        "/app/orders",
        "/app/admin/report",
    ] {
        let reply = get(cluster, path, &[]).await;
        assert_eq!(reply.status, 302, "{path} without a session: {reply:?}");
        let location = reply.header("location").expect("Location");
        assert_eq!(
            sign_in_rd(cluster, location),
            format!("{base}{path}"),
            "{reply:?}"
        );
    }
    // A cookie that is no session's: the same.
    let reply = get(cluster, "/", &[("cookie", "__Host-tokengate=forged")]).await;
    assert_eq!(reply.status, 302, "a forged cookie: {reply:?}");

    // The gate itself, at a replica, as nginx calls it: 401 + Location, both
    // names; never a redirect status (nginx would make it a 500).
    let replica = SocketAddr::from(([127, 0, 0, 1], cluster.replica_port(0)));
    for gate in ["/oauth2/auth", "/api/authz/auth-request"] {
        let original = format!("{base}/app/x?y=1");
        let reply = client::send(
            replica,
            request(Method::GET, gate)
                .header("x-original-url", &original)
                .header("x-original-method", "GET")
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, 401, "{gate} without a cookie: {reply:?}");
        let location = reply
            .header("location")
            .expect("Location on the gate's 401");
        assert_eq!(sign_in_rd(cluster, location), original, "{gate}: {reply:?}");
    }

    // The Bearer API beside the browser pages, on the same server: JSON 401
    // (no redirect) without a token, the app with one.
    let reply = get(cluster, "/api/x", &[]).await;
    assert_eq!(
        reply.status, 401,
        "Bearer location without a token: {reply:?}"
    );
    assert_eq!(reply.error(), "unauthorized", "{reply:?}");
    let reply = as_web(
        browser_addr(cluster),
        "/login",
        &json!({ "user_id": "svc" }),
    )
    .await;
    assert_eq!(reply.status, 200, "/login on the browser server: {reply:?}");
    let access = reply.field("access");
    let reply = get(
        cluster,
        "/api/x",
        &[("authorization", &format!("Bearer {access}"))],
    )
    .await;
    assert_eq!(reply.status, 200, "Bearer location with a token: {reply:?}");
    assert_eq!(reply.json()["user_id"], "svc", "{reply:?}");
}

/// Runs `scenarios` in one node process; panics with its output if one failed.
fn run_scenarios(
    browser: &Browser,
    cluster: &Cluster,
    users: &Value,
    scenarios: &[&str],
    timeouts: &Value,
) {
    let artifacts = artifacts_dir();
    let env = [
        ("TG_BASE", base(cluster)),
        (
            "TG_ELSEWHERE_PORT",
            cluster.nginx().elsewhere_port().to_string(),
        ),
        ("TG_USERS", users.to_string()),
        ("TG_ARTIFACTS", artifacts.display().to_string()),
        ("TG_SCENARIOS", scenarios.join(",")),
        ("TG_TIMEOUTS", timeouts.to_string()),
    ];
    let result =
        tokio::task::block_in_place(|| browser.run("scenarios.mjs", &env, Duration::from_secs(90)));
    if let Err(output) = result {
        panic!(
            "browser scenarios failed (nginx: {}; replica logs in {}):\n{output}",
            cluster.nginx().error_log().trim(),
            cluster.dir().display()
        );
    }
}

/// Sign in and back to the page, the app's identity headers, userinfo, sign
/// out; "sign out this one / everywhere" across browsers and an API session;
/// open redirects and forged forms refused; TOTP enrolment and sign-in with a
/// computed code, and a location that demands it. Screenshots as artifacts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_through_nginx_and_its_session_follows_the_rules() {
    let _shared = EXCLUSIVE.read().await;
    let Some(browser) =
        Browser::find("a_browser_signs_in_through_nginx_and_its_session_follows_the_rules")
    else {
        return;
    };
    let keys = KeyDir::new();
    let mut cluster = start(browser_options(&keys.0));
    check_http(&cluster).await;

    let mut users = json!({});
    for name in ["ada", "multi", "carol", "tess"] {
        users[name] = register(&cluster, name).await;
    }
    // `multi` also has an API session (Bearer), which the sessions page lists
    // and "sign out everywhere" ends.
    let multi = &users["multi"];
    let reply = post_json(
        cluster.addr(),
        "/login",
        &json!({ "email": multi["email"], "password": PASSWORD }),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    users["multi"]["api_access"] = json!(reply.field("access"));
    users["multi"]["api_session_id"] = json!(reply.field("session_id"));

    let scenarios = [
        "sign_in_and_out",
        "sign_out_everywhere",
        "open_redirect",
        "csrf",
        "totp",
    ];
    run_scenarios(&browser, &cluster, &users, &scenarios, &json!({}));

    // Fail closed: with no replica to ask, the site is nginx's 503 page (for a
    // person: HTML), never the content and never a redirect loop.
    cluster.kill_replica(0);
    cluster.kill_replica(1);
    for path in ["/", "/app/x", "/oauth2/sign_in"] {
        let reply = get(&cluster, path, &[]).await;
        assert_eq!(reply.status, 503, "{path} with no replica: {reply:?}");
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{path}: {reply:?}"
        );
        assert_eq!(reply.header("retry-after"), Some("1"), "{path}: {reply:?}");
    }
}

/// `auth.auto_logout` ends a browser session nobody used (activity keeps it
/// alive) and `auth.max_session` ends one however active; either way the
/// browser is sent to sign in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_session_ends_when_idle_and_when_too_old() {
    let _shared = EXCLUSIVE.read().await;
    let Some(browser) = Browser::find("a_browser_session_ends_when_idle_and_when_too_old") else {
        return;
    };
    let keys = KeyDir::new();
    let options = browser_options(&keys.0)
        .env("TOKENGATE__AUTH__AUTO_LOGOUT", "4s")
        // No access token may outlive its session (a config rule).
        .env("TOKENGATE__AUTH__ACCESS_LIFETIME", "4s")
        .env("TOKENGATE__AUTH__MAX_SESSION", "8s");
    let cluster = start(options);
    let mut users = json!({});
    for name in ["idle", "max"] {
        users[name] = register(&cluster, name).await;
    }
    // touch_ms: the idle clock is written at most this often (auth.touch_interval,
    // auto_logout / 100 but at least 1 s), so it may lag that much.
    let timeouts = json!({ "auto_logout_ms": 4000, "touch_ms": 1000, "max_session_ms": 8000 });
    run_scenarios(
        &browser,
        &cluster,
        &users,
        &["idle", "max_session"],
        &timeouts,
    );
}
