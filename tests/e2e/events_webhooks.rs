//! Webhooks (SPEC §14) end to end: two replicas on one real Redis, nginx in
//! front, and endpoints that are `webhook_receiver.py` — a Python server
//! that checks every signature with the Standard Webhooks library from PyPI
//! (`standardwebhooks`), which no one here wrote. What a user does reaches
//! every endpoint, signed, in order and once per endpoint (events it did not
//! ask for left out); an endpoint that fails gets the event again after a
//! backoff; one that never answers delays only itself.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::cluster::Cluster;
use crate::support::redis::TestPki;
use crate::{EXCLUSIVE, eventually, logout, options, post_json, start};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PASSWORD: &str = "correct horse battery staple";

/// How soon an event must reach a healthy endpoint.
const PROMPTLY: Duration = Duration::from_secs(5);

fn python() -> PathBuf {
    crate::support::python::with("standardwebhooks", "the standardwebhooks library")
}

/// A directory of the test's own, removed when done.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("tokengate-webhooks-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        std::fs::write(dir.join("webhook_secret"), format!("{SECRET}\n")).expect("the secret");
        Self(dir)
    }

    pub(crate) fn secret_file(&self) -> PathBuf {
        self.0.join("webhook_secret")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One `webhook_receiver.py`, stopped when dropped.
pub(crate) struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Receiver {
    /// Starts one that records to `<dir>/<name>.jsonl`; `flags` as the
    /// script takes them (`--fail-first 1`, `--hang`).
    pub(crate) fn start(scratch: &Scratch, name: &str, flags: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/webhook_receiver.py");
        let out = scratch.0.join(format!("{name}.jsonl"));
        let mut child = Command::new(python())
            .arg(script)
            .arg("--secret-file")
            .arg(scratch.secret_file())
            .arg("--out")
            .arg(&out)
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start webhook_receiver.py");
        let stdout = child.stdout.take().expect("its stdout");
        let mut line = String::new();
        let read = tokio::task::block_in_place(|| BufReader::new(stdout).read_line(&mut line));
        let port = read
            .ok()
            .and_then(|_| line.trim().strip_prefix("listening on ")?.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            panic!("webhook_receiver.py did not say its port: {line:?}");
        };
        Self { child, port, out }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request it got so far, in order.
    pub(crate) fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The events about `subject` it accepted (answered 200), first
    /// delivery of each id, in order.
    fn accepted_about(&self, subject: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        let mut events = Vec::new();
        for request in self.requests() {
            let event = &request["event"];
            if request["answered"] == json!(200)
                && about(event, subject)
                && !seen.contains(&event["id"])
            {
                seen.push(event["id"].clone());
                events.push(event.clone());
            }
        }
        events
    }

    fn types_about(&self, subject: &str) -> Vec<String> {
        self.accepted_about(subject)
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Every request's signature was verified by `standardwebhooks`, and
    /// its `webhook-id` is the id of the event in its body.
    fn assert_all_verified(&self) {
        for request in self.requests() {
            assert_eq!(request["verified"], json!(true), "{request}");
            assert_eq!(request["webhook_id"], request["event"]["id"], "{request}");
        }
    }
}

/// Whether `event` is about `subject`: its `subject`, or for entries of
/// phase 2 that have none (UserRegistered), its data's `user_id`.
fn about(event: &Value, subject: &str) -> bool {
    match event["subject"].as_str() {
        Some("") | None => event["data"]["user_id"] == json!(subject),
        Some(named) => named == subject,
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `events.webhooks` with these `(url, events)`, all with the one secret.
fn config(scratch: &Scratch, hooks: &[(String, &str)]) -> String {
    let mut yaml = String::from("events:\n  webhooks:\n");
    for (url, events) in hooks {
        yaml.push_str(&format!(
            "    - url: \"{url}\"\n      events: {events}\n      secret_file: \"{}\"\n",
            scratch.secret_file().display()
        ));
    }
    yaml
}

/// Registers a new user through nginx; returns the email and the user's id.
async fn register(cluster: &Cluster) -> (String, String) {
    let email = format!("ada-{}@example.com", uuid::Uuid::new_v4().simple());
    let reply = post_json(
        cluster.addr(),
        "/register",
        &json!({ "email": email, "password": PASSWORD }),
    )
    .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    (email, reply.field("user_id"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_events_reach_every_endpoint_signed_in_order_and_only_those_it_asked_for() {
    let _shared = EXCLUSIVE.read().await;
    let scratch = Scratch::new();
    let all = Receiver::start(&scratch, "all", &[]);
    let ended = Receiver::start(&scratch, "ended", &[]);
    let hooks = [
        (all.url("/all"), r#"["*"]"#),
        (ended.url("/ended"), "[SessionEnded]"),
    ];
    let cluster = start(options().replicas(2).config(&config(&scratch, &hooks)));

    let (email, user_id) = register(&cluster).await;
    let reply = post_json(
        cluster.addr(),
        "/login",
        &json!({ "email": email, "password": PASSWORD }),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let session_id = reply.field("session_id");
    let reply = logout(cluster.addr(), &reply.field("access")).await;
    assert!(reply.status.is_success(), "{reply:?}");

    let expected = ["UserRegistered", "UserLoggedIn", "SessionEnded"];
    let arrived = eventually(PROMPTLY, || async {
        all.types_about(&user_id).len() >= expected.len() && !ended.types_about(&user_id).is_empty()
    })
    .await;
    assert!(
        arrived,
        "every endpoint gets its events: {:?} and {:?}",
        all.requests(),
        ended.requests()
    );
    assert_eq!(all.types_about(&user_id), expected, "{:?}", all.requests());
    all.assert_all_verified();

    let events = ended.accepted_about(&user_id);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"]["sid"], json!(session_id), "{events:?}");
    assert_eq!(events[0]["data"]["reason"], json!("logout"), "{events:?}");
    let same = all
        .accepted_about(&user_id)
        .into_iter()
        .find(|e| e["type"] == json!("SessionEnded"));
    assert_eq!(
        same.as_ref(),
        Some(&events[0]),
        "the same event, with the same id"
    );
    ended.assert_all_verified();
    for request in ended.requests() {
        assert_eq!(request["event"]["type"], json!("SessionEnded"), "{request}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_answered_500_gets_the_event_again_after_a_backoff() {
    let _shared = EXCLUSIVE.read().await;
    let scratch = Scratch::new();
    let flaky = Receiver::start(&scratch, "flaky", &["--fail-first", "1"]);
    let hooks = [(flaky.url("/hook"), r#"["*"]"#)];
    let cluster = start(options().replicas(2).config(&config(&scratch, &hooks)));

    let since = Instant::now();
    let (_, user) = register(&cluster).await;
    let retried = eventually(PROMPTLY, || async {
        flaky.types_about(&user) == ["UserRegistered"]
    })
    .await;
    assert!(
        retried,
        "the event arrives after a retry: {:?}",
        flaky.requests()
    );
    let took = since.elapsed();

    let requests = flaky.requests();
    assert_eq!(requests[0]["answered"], json!(500), "{requests:?}");
    let id = &requests[0]["webhook_id"];
    let again = requests
        .iter()
        .skip(1)
        .find(|r| r["webhook_id"] == *id)
        .expect("the failed event sent again");
    assert_eq!(again["answered"], json!(200), "{requests:?}");
    assert_eq!(again["event"], requests[0]["event"], "the same body");
    flaky.assert_all_verified();
    println!("delivered after one 500 in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_never_answers_delays_no_other() {
    let _shared = EXCLUSIVE.read().await;
    let scratch = Scratch::new();
    let stuck = Receiver::start(&scratch, "stuck", &["--hang"]);
    let healthy = Receiver::start(&scratch, "healthy", &[]);
    let hooks = [
        (stuck.url("/hook"), r#"["*"]"#),
        (healthy.url("/hook"), r#"["*"]"#),
    ];
    let cluster = start(options().replicas(2).config(&config(&scratch, &hooks)));

    let (_, first) = register(&cluster).await;
    let (_, second) = register(&cluster).await;

    let since = Instant::now();
    let arrived = eventually(PROMPTLY, || async {
        healthy.types_about(&first) == ["UserRegistered"]
            && healthy.types_about(&second) == ["UserRegistered"]
    })
    .await;
    assert!(arrived, "the healthy endpoint: {:?}", healthy.requests());
    healthy.assert_all_verified();
    let took = since.elapsed();

    // Meanwhile the stuck endpoint holds the first event: one request, not
    // answered, nothing after it.
    let held = eventually(Duration::from_secs(1), || async {
        !stuck.requests().is_empty()
    })
    .await;
    assert!(held, "the stuck endpoint was tried");
    let requests = stuck.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["answered"], Value::Null, "{requests:?}");
    assert!(about(&requests[0]["event"], &first), "{requests:?}");
    println!("the healthy endpoint had both events {took:?} after the second registration");
}

/// An `https://` endpoint is trusted through the system's CA certificates
/// (the native roots; here a test CA named by `SSL_CERT_FILE`, which they
/// honour), its name checked against the URL's host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_endpoint_is_trusted_through_the_systems_ca_certificates() {
    let _shared = EXCLUSIVE.read().await;
    let scratch = Scratch::new();
    let pki = TestPki::new();
    let (cert, key) = (pki.server_cert(), pki.server_key());
    let flags = [
        "--tls-cert",
        cert.to_str().expect("a UTF-8 path"),
        "--tls-key",
        key.to_str().expect("a UTF-8 path"),
    ];
    let secure = Receiver::start(&scratch, "secure", &flags);
    let url = format!("https://localhost:{}/hook", secure.port);
    let ca = pki.ca();
    let options = options()
        .replicas(2)
        .config(&config(&scratch, &[(url, r#"["*"]"#)]))
        .env("SSL_CERT_FILE", ca.to_str().expect("a UTF-8 path"));
    let cluster = start(options);

    let (_, user) = register(&cluster).await;
    let arrived = eventually(PROMPTLY, || async {
        secure.types_about(&user) == ["UserRegistered"]
    })
    .await;
    assert!(arrived, "over https: {:?}", secure.requests());
    secure.assert_all_verified();
}
