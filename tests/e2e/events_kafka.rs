//! Events to Apache Kafka (SPEC §14) end to end: two replicas on one real
//! Redis, nginx in front, and a real Kafka-protocol broker (`tansu`, see
//! `tests/support/tansu.rs`) read by a Kafka client no one here wrote
//! (kafka-python, through `tests/e2e/kafka_consumer.py`).
//!
//! Registration, login and logout reach the consumer with key = the user's
//! id and the event's id and type in headers; a broker killed during traffic
//! and started again (empty: memory storage) receives every event of the
//! outage, duplicates only with the same id; a missing topic is named in the
//! replicas' log, and its events arrive once it is created.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::events_webhooks::{Receiver, Scratch};
use crate::support::cluster::Cluster;
use crate::support::tansu::Tansu;
use crate::{EXCLUSIVE, logout, options, post_json, start};

const TOPIC: &str = "tokengate.events";
const PASSWORD: &str = "correct horse battery staple";

/// How long events may take to reach the consumer, the dispatcher's backoff
/// after an outage included.
const ARRIVE_WITHIN: Duration = Duration::from_secs(60);

/// One Kafka message as the consumer printed it.
#[derive(Debug, Clone)]
struct Message {
    key: Option<String>,
    headers: BTreeMap<String, String>,
    value: Value,
}

impl Message {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    fn kind(&self) -> &str {
        self.header("type")
    }

    fn subject(&self) -> &str {
        self.value["subject"].as_str().unwrap_or("")
    }

    /// The session an event is about, if any (`data.sid`).
    fn sid(&self) -> Option<&str> {
        self.value["data"]["sid"].as_str()
    }

    /// The account a `UserRegistered` made (`data.user_id`).
    fn registered(&self) -> Option<&str> {
        (self.kind() == "UserRegistered")
            .then(|| self.value["data"]["user_id"].as_str())
            .flatten()
    }
}

fn python() -> PathBuf {
    crate::support::python::with("kafka", "kafka-python")
}

/// Runs `kafka_consumer.py` off the async workers; its stdout.
async fn consumer(args: Vec<String>) -> Result<String, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/kafka_consumer.py");
    let python = python();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args(args)
            .output()
            .expect("run python")
    })
    .await
    .expect("the consumer ran");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "kafka_consumer.py: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

async fn create_topic(tansu: &Tansu) {
    let args = vec![tansu.brokers(), "create".into(), TOPIC.into()];
    if let Err(e) = consumer(args).await {
        panic!("create the topic: {e}");
    }
}

/// Everything on the topic, from the beginning, read for up to `seconds`.
async fn read_topic(tansu: &Tansu, seconds: f64) -> Result<Vec<Message>, String> {
    let args = vec![
        tansu.brokers(),
        "consume".into(),
        TOPIC.into(),
        "--seconds".into(),
        seconds.to_string(),
    ];
    let out = consumer(args).await?;
    Ok(out
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).expect("a JSON line");
            let value = line["value"].as_str().expect("a value");
            Message {
                key: line["key"].as_str().map(str::to_owned),
                headers: serde_json::from_value(line["headers"].clone()).expect("headers"),
                value: serde_json::from_str(value)
                    .unwrap_or_else(|e| panic!("the value is not JSON ({e}): {value}")),
            }
        })
        .collect())
}

/// Reads the topic until `done` holds for what is on it, for at most
/// [`ARRIVE_WITHIN`]; what was there.
async fn read_until(tansu: &Tansu, done: impl Fn(&[Message]) -> bool) -> Vec<Message> {
    let deadline = Instant::now() + ARRIVE_WITHIN;
    let mut last = Vec::new();
    let mut error = String::new();
    while Instant::now() < deadline {
        match read_topic(tansu, 1.5).await {
            Ok(messages) if done(&messages) => return messages,
            Ok(messages) => last = messages,
            Err(e) => error = e,
        }
    }
    panic!(
        "the events did not arrive within {ARRIVE_WITHIN:?}; on the topic: {:#?}\nlast error: {error}",
        last.iter()
            .map(|m| (m.kind(), m.subject(), m.sid()))
            .collect::<Vec<_>>()
    );
}

/// Kafka on `tansu`, and as many registrations from the test's one address
/// as it makes.
fn config(tansu: &Tansu) -> String {
    format!(
        "events:\n  kafka:\n    brokers: [\"{}\"]\n    topic: {TOPIC}\n    client_id: tokengate-e2e\n    delivery_timeout: 3s\n\
         users:\n  registrations_per_address: 0\n",
        tansu.brokers()
    )
}

/// Every message is a well-formed event: key = subject, headers id and type
/// = the envelope's, JSON content type.
fn assert_well_formed(messages: &[Message]) {
    for m in messages {
        let subject = Some(m.subject()).filter(|s| !s.is_empty());
        assert_eq!(m.key.as_deref(), subject, "key = subject: {m:?}");
        assert_eq!(m.value["id"], json!(m.header("id")), "id header: {m:?}");
        assert_eq!(m.value["type"], json!(m.kind()), "type header: {m:?}");
        assert_eq!(m.header("content-type"), "application/json", "{m:?}");
        assert!(
            uuid::Uuid::parse_str(m.header("id")).is_ok_and(|id| id.get_version_num() == 7),
            "the id is a uuid v7: {m:?}"
        );
    }
}

/// Copies of one event share its id and are the same event; no two ids
/// describe one session's end or one registration.
fn assert_duplicates_only_by_id(messages: &[Message]) {
    let mut by_id: BTreeMap<&str, &Value> = BTreeMap::new();
    let mut ends: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for m in messages {
        if let Some(first) = by_id.insert(m.header("id"), &m.value) {
            assert_eq!(first, &m.value, "copies of one id differ");
        }
        let what = match m.kind() {
            "SessionEnded" => m.sid().expect("SessionEnded names its sid"),
            "UserRegistered" => m.registered().expect("UserRegistered names its user"),
            _ => continue,
        };
        ends.entry((m.kind(), what))
            .or_default()
            .insert(m.header("id"));
    }
    for ((kind, what), ids) in ends {
        assert_eq!(ids.len(), 1, "{kind} {what} under several ids: {ids:?}");
    }
}

async fn register(cluster: &Cluster, email: &str) -> String {
    let body = json!({ "email": email, "password": PASSWORD });
    let reply = post_json(cluster.addr(), "/register", &body).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.field("user_id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_and_logout_reach_a_kafka_consumer() {
    let Some(tansu) = Tansu::start("register_login_and_logout_reach_a_kafka_consumer") else {
        return;
    };
    let _shared = EXCLUSIVE.read().await;
    create_topic(&tansu).await;
    let cluster = start(options().replicas(2).config(&config(&tansu)));

    let email = format!("kafka-{}@example.com", uuid::Uuid::new_v4().simple());
    let user = register(&cluster, &email).await;
    let body = json!({ "email": email, "password": PASSWORD });
    let reply = post_json(cluster.addr(), "/login", &body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let sid = reply.field("session_id");
    assert_eq!(
        logout(cluster.addr(), &reply.field("access")).await.status,
        200
    );

    let wanted = ["UserRegistered", "UserLoggedIn", "SessionEnded"];
    let messages = read_until(&tansu, |messages| {
        wanted.iter().all(|kind| {
            messages
                .iter()
                .any(|m| m.kind() == *kind && m.subject() == user)
        })
    })
    .await;
    assert_well_formed(&messages);
    assert_duplicates_only_by_id(&messages);
    let ours: Vec<&Message> = messages.iter().filter(|m| m.subject() == user).collect();
    let ended = ours
        .iter()
        .find(|m| m.kind() == "SessionEnded")
        .expect("SessionEnded");
    assert_eq!(ended.sid(), Some(sid.as_str()), "{ended:?}");
    assert_eq!(ended.value["data"]["reason"], json!("logout"), "{ended:?}");
    // In the order they happened (one key, one partition).
    let order: Vec<&str> = ours.iter().map(|m| m.kind()).collect();
    let position = |kind| order.iter().position(|k| *k == kind).expect(kind);
    assert!(
        position("UserRegistered") < position("UserLoggedIn")
            && position("UserLoggedIn") < position("SessionEnded"),
        "order: {order:?}"
    );
}

/// One user's visit: registers, logs in with the password, logs out; the
/// new user's id.
async fn visit(addr: std::net::SocketAddr) -> String {
    let email = format!("kafka-{}@example.com", uuid::Uuid::new_v4().simple());
    let body = json!({ "email": email, "password": PASSWORD });
    let reply = post_json(addr, "/register", &body).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let user = reply.field("user_id");
    let reply = post_json(addr, "/login", &body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(logout(addr, &reply.field("access")).await.status, 200);
    user
}

/// Every one of `users` has its `UserRegistered` on the topic.
fn registered_all<'a>(users: &'a BTreeSet<String>) -> impl Fn(&[Message]) -> bool + 'a {
    move |messages| {
        let seen: BTreeSet<&str> = messages.iter().filter_map(Message::registered).collect();
        users.iter().all(|u| seen.contains(u.as_str()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_a_broker_outage_all_arrive_once_it_is_back() {
    let Some(mut tansu) = Tansu::start("events_of_a_broker_outage_all_arrive_once_it_is_back")
    else {
        return;
    };
    let _shared = EXCLUSIVE.read().await;
    create_topic(&tansu).await;
    let cluster = start(options().replicas(2).config(&config(&tansu)));
    let addr = cluster.addr();

    // Traffic throughout: users register, log in and out; when each began.
    let stop = Arc::new(AtomicBool::new(false));
    let visits: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let traffic = tokio::spawn({
        let (stop, visits) = (stop.clone(), visits.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                let began = Instant::now();
                let user = visit(addr).await;
                visits.lock().expect("visits").push((began, user));
            }
        }
    });
    let count = |visits: &Arc<Mutex<Vec<(Instant, String)>>>| visits.lock().expect("visits").len();

    // Delivering: a first registration is on the topic.
    read_until(&tansu, |m| m.iter().any(|m| m.registered().is_some())).await;
    tansu.kill();
    let killed = Instant::now();
    let before = count(&visits);
    // Users come and go while the broker is away.
    assert!(
        crate::eventually(Duration::from_secs(60), || async {
            count(&visits) >= before + 5
        })
        .await,
        "traffic goes on without Kafka"
    );
    tansu.restart();
    create_topic(&tansu).await;
    // And a few more after.
    let back = count(&visits);
    assert!(
        crate::eventually(Duration::from_secs(60), || async {
            count(&visits) >= back + 3
        })
        .await,
        "traffic goes on"
    );
    stop.store(true, Ordering::Relaxed);
    traffic.await.expect("traffic without a failed request");

    // Every event of a visit begun after the kill is on the new broker (what
    // the old one held went with it: memory storage).
    let expected: BTreeSet<String> = visits
        .lock()
        .expect("visits")
        .iter()
        .filter(|(began, _)| *began > killed)
        .map(|(_, user)| user.clone())
        .collect();
    assert!(expected.len() >= 8, "{} visits", expected.len());
    let messages = read_until(&tansu, registered_all(&expected)).await;
    assert_well_formed(&messages);
    assert_duplicates_only_by_id(&messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_named_in_the_log_and_its_events_arrive_once_created() {
    let Some(tansu) =
        Tansu::start("a_missing_topic_is_named_in_the_log_and_its_events_arrive_once_created")
    else {
        return;
    };
    let _shared = EXCLUSIVE.read().await;
    // No topic: tokengate starts all the same, and serves.
    let cluster = start(options().replicas(2).config(&config(&tansu)));
    let user = visit(cluster.addr()).await;

    let said = |cluster: &Cluster| {
        (0..cluster.replica_count()).any(|i| {
            cluster.replica_log(i).lines().any(|line| {
                line.contains("does not exist")
                    && line.contains(TOPIC)
                    && line.contains("tokengate does not create topics")
            })
        })
    };
    assert!(
        crate::eventually(Duration::from_secs(30), || async { said(&cluster) }).await,
        "a replica says the topic is missing; replica 0 logged:\n{}",
        cluster.replica_log(0)
    );

    create_topic(&tansu).await;
    let users = BTreeSet::from([user]);
    let messages = read_until(&tansu, registered_all(&users)).await;
    assert_well_formed(&messages);
}

/// A webhook endpoint that never answers holds its own queue only: the same
/// events reach Kafka as promptly as without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_endpoint_that_never_answers_does_not_delay_kafka() {
    let Some(tansu) = Tansu::start("a_webhook_endpoint_that_never_answers_does_not_delay_kafka")
    else {
        return;
    };
    let _shared = EXCLUSIVE.read().await;
    create_topic(&tansu).await;
    let scratch = Scratch::new();
    let stuck = Receiver::start(&scratch, "stuck", &["--hang"]);
    let hook = format!(
        "  webhooks:\n    - url: \"{}\"\n      events: [\"*\"]\n      secret_file: \"{}\"\nusers:\n",
        stuck.url("/hook"),
        scratch.secret_file().display()
    );
    let cluster = start(
        options()
            .replicas(2)
            .config(&config(&tansu).replacen("users:\n", &hook, 1)),
    );

    let since = Instant::now();
    let mut users = BTreeSet::new();
    for i in 0..3 {
        users.insert(
            register(
                &cluster,
                &format!("hang-{i}-{}@example.com", uuid::Uuid::new_v4().simple()),
            )
            .await,
        );
    }
    read_until(&tansu, registered_all(&users)).await;
    let took = since.elapsed();
    // Behind the stuck endpoint, Kafka would wait out its 10 s timeout per try.
    assert!(
        took < Duration::from_secs(8),
        "Kafka had the events only after {took:?}"
    );
    let requests = stuck.requests();
    assert_eq!(
        requests.len(),
        1,
        "the stuck endpoint holds its first event: {requests:?}"
    );
    assert_eq!(requests[0]["answered"], Value::Null, "{requests:?}");
    println!("Kafka had all three events {took:?} after the first registration");
}
