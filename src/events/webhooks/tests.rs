use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::config::Secret;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn settings(url: &str, events: &[&str]) -> WebhookSettings {
    WebhookSettings {
        url: url.into(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        secret_file: PathBuf::from("/run/secrets/hook"),
        secret: Secret::new(SECRET),
    }
}

fn refused(url: &str) -> WebhookSetupError {
    WebhookSink::new(&settings(url, &[]), 2).unwrap_err()
}

#[test]
fn https_anywhere_and_http_only_to_loopback() {
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://127.3.2.1/hook",
        "http://localhost:9000/",
        "http://LOCALHOST/x",
        "http://[::1]:9000/hook",
    ] {
        assert!(WebhookSink::new(&settings(url, &[]), 0).is_ok(), "{url}");
    }
    for url in [
        "http://hooks.example.com/tokengate",
        "http://10.0.0.1/hook",
        "http://[::2]/hook",
        "http://localhost.example.com/hook",
    ] {
        let error = refused(url);
        assert_eq!(error.key, "events.webhooks[2].url", "{url}");
        assert!(error.message.contains("must be https://"), "{error}");
    }
    for url in [
        "ftp://hooks.example.com/",
        "hooks.example.com/hook",
        "",
        "https://",
    ] {
        assert_eq!(refused(url).key, "events.webhooks[2].url", "{url}");
    }
}

/// Where the machine has no CA certificates, building an https sink fails,
/// and says so under the URL's key.
#[test]
fn https_needs_ca_certificates() {
    match WebhookSink::new(&settings("https://hooks.example.com/tokengate", &[]), 0) {
        Ok(sink) => assert!(matches!(sink.client, Transport::Https(_))),
        Err(error) => {
            assert_eq!(error.key, "events.webhooks[0].url");
            assert!(error.message.contains("certificates"), "{error}");
        }
    }
}

#[test]
fn the_name_has_host_port_and_path_but_no_credentials_or_query() {
    let sink = WebhookSink::new(
        &settings("http://ops:s3cr%40t@127.0.0.1:8080/in/hook?token=abc", &[]),
        0,
    )
    .unwrap();
    assert_eq!(sink.name(), "webhook:127.0.0.1:8080/in/hook");
    assert_eq!(sink.uri, "http://127.0.0.1:8080/in/hook?token=abc");
    let expected = format!("Basic {}", STANDARD.encode("ops:s3cr@t"));
    assert_eq!(sink.authorization.as_ref().unwrap(), expected.as_str());
    assert!(!format!("{sink:?}").contains("s3cr"));

    let plain = WebhookSink::new(&settings("http://localhost", &[]), 0).unwrap();
    assert_eq!(plain.name(), "webhook:localhost/");
    assert!(plain.authorization.is_none());
}

#[test]
fn a_bad_secret_is_refused_without_being_shown() {
    let mut hook = settings("http://127.0.0.1/hook", &[]);
    for secret in [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_!!not-base64!!",
        "whsec_",
        "",
    ] {
        hook.secret = Secret::new(secret);
        let error = WebhookSink::new(&hook, 1).unwrap_err();
        assert_eq!(error.key, "events.webhooks[1].secret_file");
        assert!(error.message.contains("/run/secrets/hook"), "{error}");
        // (`whsec_` alone is named in the message as the expected prefix.)
        if secret.len() > "whsec_".len() {
            assert!(!error.to_string().contains(secret), "{error}");
        }
    }
}

#[test]
fn wants_all_types_or_the_listed_ones() {
    let url = "http://127.0.0.1/hook";
    for all in [&[][..], &["*"][..]] {
        let sink = WebhookSink::new(&settings(url, all), 0).unwrap();
        assert!(EVENT_TYPES.iter().all(|kind| sink.wants(kind)));
    }
    let some = WebhookSink::new(&settings(url, &["SessionEnded", "UserRegistered"]), 0).unwrap();
    assert!(some.wants("SessionEnded"));
    assert!(some.wants("UserRegistered"));
    assert!(!some.wants("UserLoggedIn"));
    assert!(!some.wants("LoginFailed"));
}

#[test]
fn unknown_event_types_are_refused_with_the_known_ones() {
    let url = "http://127.0.0.1/hook";
    let error = WebhookSink::new(&settings(url, &["SessionEnded", "UserLogin"]), 3).unwrap_err();
    assert_eq!(error.key, "events.webhooks[3].events");
    assert!(error.message.contains("`UserLogin`"), "{error}");
    for kind in EVENT_TYPES {
        assert!(error.message.contains(kind), "{error}");
    }
    let mixed = WebhookSink::new(&settings(url, &["*", "SessionEnded"]), 0).unwrap_err();
    assert_eq!(mixed.key, "events.webhooks[0].events");
}

#[test]
fn two_entries_for_one_endpoint_are_refused() {
    let hooks = [
        settings("http://127.0.0.1:9000/a", &[]),
        settings("http://127.0.0.1:9000/b", &[]),
        settings("http://127.0.0.1:9000/a?x=1", &["SessionEnded"]),
    ];
    assert_eq!(webhook_sinks(&hooks[..2]).unwrap().len(), 2);
    let error = webhook_sinks(&hooks).unwrap_err();
    assert_eq!(error.key, "events.webhooks[2].url");
    assert!(error.message.contains("events.webhooks[0]"), "{error}");
}

#[test]
fn backs_off_from_a_second_to_an_hour_for_over_a_day() {
    let sink = WebhookSink::new(&settings("http://127.0.0.1/hook", &[]), 0).unwrap();
    let backoff = sink.backoff();
    assert_eq!(backoff.delay(1), Duration::from_secs(1));
    assert_eq!(backoff.delay(2), Duration::from_secs(2));
    assert_eq!(backoff.delay(20), Duration::from_secs(3600));
    assert!(backoff.give_up_after.unwrap() >= Duration::from_secs(24 * 3600));
}

fn event(id: &str, kind: &str) -> LoggedEvent {
    LoggedEvent {
        entry: "1-0".into(),
        id: id.into(),
        kind: kind.into(),
        version: 1,
        subject: "user-1".into(),
        occurred_at: 1_800_000_000_000,
        data: r#"{"sub":"user-1"}"#.into(),
    }
}

/// One request as the test server read it.
struct Received {
    head: String,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.head
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name).then(|| value.trim())
            })
            .unwrap_or_default()
    }
}

/// A server on loopback answering each request with the next status, one
/// request per connection; returns its URL and what it received.
async fn server(statuses: Vec<u16>) -> (String, tokio::task::JoinHandle<Vec<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut received = Vec::new();
        for status in statuses {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            let (head, body) = loop {
                let n = socket.read(&mut buf).await.unwrap();
                data.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&data).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let head = text[..end].to_owned();
                    let length: usize = Received {
                        head: head.clone(),
                        body: Vec::new(),
                    }
                    .header("content-length")
                    .parse()
                    .unwrap();
                    if data.len() >= end + 4 + length {
                        break (head, data[end + 4..end + 4 + length].to_vec());
                    }
                }
            };
            let reply =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            socket.write_all(reply.as_bytes()).await.unwrap();
            received.push(Received { head, body });
        }
        received
    });
    (url, task)
}

#[tokio::test]
async fn delivers_signed_envelopes_in_order() {
    let (url, server) = server(vec![200, 204]).await;
    let sink = WebhookSink::new(&settings(&url, &[]), 0).unwrap();
    let events = [event("ev-1", "UserLoggedIn"), event("ev-2", "SessionEnded")];
    let before = crate::time::now() / 1000;
    let delivered = sink.deliver(&events).await;
    assert_eq!(delivered.count, 2);
    assert!(delivered.error.is_none());

    let received = server.await.unwrap();
    let signer = Signer::from_secret(SECRET).unwrap();
    for (request, event) in received.iter().zip(&events) {
        assert!(
            request.head.starts_with("POST /hook HTTP/1.1"),
            "{}",
            request.head
        );
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(request.header("webhook-id"), event.id);
        assert_eq!(request.body, event.envelope().as_bytes());
        let timestamp: u64 = request.header("webhook-timestamp").parse().unwrap();
        assert!(timestamp >= before && timestamp <= crate::time::now() / 1000 + 1);
        assert_eq!(
            request.header("webhook-signature"),
            signer.sign(&event.id, timestamp, &request.body)
        );
    }
}

#[tokio::test]
async fn stops_at_the_first_failure() {
    let (url, server) = server(vec![200, 500]).await;
    let sink = WebhookSink::new(&settings(&url, &[]), 0).unwrap();
    let events = [
        event("ev-1", "UserLoggedIn"),
        event("ev-2", "SessionEnded"),
        event("ev-3", "SessionEnded"),
    ];
    let delivered = sink.deliver(&events).await;
    assert_eq!(delivered.count, 1);
    let error = delivered.error.unwrap().to_string();
    assert!(error.contains(sink.name()), "{error}");
    assert!(error.contains("ev-2") && error.contains("500"), "{error}");
    assert!(!error.contains(SECRET), "{error}");
    assert_eq!(server.await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_endpoint_that_is_not_listening_fails_the_delivery() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let sink = WebhookSink::new(&settings(&url, &[]), 0).unwrap();
    let delivered = sink.deliver(&[event("ev-1", "UserLoggedIn")]).await;
    assert_eq!(delivered.count, 0);
    let error = delivered.error.unwrap().to_string();
    assert!(error.contains("request failed"), "{error}");
}

#[tokio::test]
async fn an_endpoint_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    // Accepts, reads, never answers.
    let _server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        while socket.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    });
    let mut sink = WebhookSink::new(&settings(&url, &[]), 0).unwrap();
    sink.timeout = Duration::from_millis(200);
    let delivered = sink.deliver(&[event("ev-1", "UserLoggedIn")]).await;
    assert_eq!(delivered.count, 0);
    let error = delivered.error.unwrap().to_string();
    assert!(error.contains("no answer within 200ms"), "{error}");
}

#[tokio::test]
async fn events_it_does_not_want_count_as_delivered_unsent() {
    let (url, server) = server(vec![200]).await;
    let sink = WebhookSink::new(&settings(&url, &["SessionEnded"]), 0).unwrap();
    let events = [event("ev-1", "UserLoggedIn"), event("ev-2", "SessionEnded")];
    let delivered = sink.deliver(&events).await;
    assert_eq!(delivered.count, 2);
    let received = server.await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].header("webhook-id"), "ev-2");
}
