//! `events:` (SPEC §14): the log every event passes through (the Redis
//! stream `events.stream`) and the sinks that read it — Apache Kafka and
//! webhook endpoints. Plain data; `events` builds the sinks from it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::sentinel::nodes;
use super::{ConfigError, Secret, duration, non_empty, positive, read_secret_file};

/// `events.stream` unless set.
pub const DEFAULT_STREAM: &str = "tg:events";
/// The hash tag of the feed's keys on a Redis Cluster (store/redis/feed.rs):
/// the events stream must carry it.
pub const FEED_TAG: &str = "{feed}";
/// `events.stream` on a Redis Cluster unless set.
pub const CLUSTER_STREAM: &str = "tg:{feed}:events";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventSettings {
    /// The Redis stream every event is appended to: the default sink, and
    /// the log the other sinks read.
    pub stream: String,
    /// Approximate cap of the stream (`XADD MAXLEN ~`); 0 = unbounded. It
    /// bounds what a sink that cannot deliver may fall behind: beyond it
    /// the oldest events are dropped for that sink (counted, and warned of
    /// well before).
    pub max_len: u64,
    /// How often the relay looks for events written by other replicas or
    /// left behind while Redis was down.
    #[serde(deserialize_with = "duration")]
    pub relay_interval: Duration,
    /// Apache Kafka; off when absent.
    pub kafka: Option<KafkaSettings>,
    /// Webhook endpoints; none when empty. A list, or (as an environment
    /// variable gives it) the list as one JSON string.
    #[serde(deserialize_with = "webhooks")]
    pub webhooks: Vec<WebhookSettings>,
}

fn webhooks<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<WebhookSettings>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Webhooks {
        List(Vec<WebhookSettings>),
        Json(String),
    }
    match Webhooks::deserialize(deserializer)? {
        Webhooks::List(hooks) => Ok(hooks),
        Webhooks::Json(text) if text.trim().is_empty() => Ok(Vec::new()),
        Webhooks::Json(text) => serde_json::from_str(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "not a JSON list of {{url, events, secret_file}} ({e})"
            ))
        }),
    }
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            stream: DEFAULT_STREAM.into(),
            max_len: 100_000,
            relay_interval: Duration::from_secs(1),
            kafka: None,
            webhooks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap servers, `host:port`: a list, or one comma-separated
    /// string (as an environment variable gives it).
    #[serde(deserialize_with = "nodes")]
    pub brokers: Vec<String>,
    /// The topic every event goes to; it must exist (tokengate does not
    /// create it).
    pub topic: String,
    pub client_id: String,
    /// How long the producer keeps trying one batch before the dispatcher
    /// backs off and tries it again (`delivery.timeout.ms`).
    #[serde(deserialize_with = "duration")]
    pub delivery_timeout: Duration,
    /// SASL authentication; none when absent.
    pub sasl: Option<KafkaSasl>,
    /// TLS to the brokers; plaintext when absent.
    pub tls: Option<KafkaTls>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: Vec::new(),
            topic: "tokengate.events".into(),
            client_id: "tokengate".into(),
            delivery_timeout: Duration::from_secs(30),
            sasl: None,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    pub username: String,
    pub password_file: PathBuf,
    /// `password_file`'s content.
    #[serde(skip)]
    pub password: Secret,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaTls {
    /// CA bundle the brokers' certificates must chain to; unset = the
    /// system's trust store.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, for brokers that ask for one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// `https://…`; `http://` only to a loopback address.
    pub url: String,
    /// Event types sent to it; `["*"]` (the default) = all.
    pub events: Vec<String>,
    /// File holding the Standard Webhooks secret, `whsec_` + base64.
    pub secret_file: PathBuf,
    /// `secret_file`'s content.
    #[serde(skip)]
    pub secret: Secret,
}

impl EventSettings {
    /// Reads the sinks' secret files.
    pub(super) fn read_files(&mut self) -> Result<(), ConfigError> {
        if let Some(sasl) = self.kafka.as_mut().and_then(|k| k.sasl.as_mut()) {
            sasl.password = Secret::new(read_secret_file(
                "events.kafka.sasl.password_file",
                &sasl.password_file,
            )?);
        }
        for (i, hook) in self.webhooks.iter_mut().enumerate() {
            let key = format!("events.webhooks[{i}].secret_file");
            if hook.secret_file.as_os_str().is_empty() {
                return Err(ConfigError::new(
                    key,
                    "is required (a file holding whsec_…)",
                ));
            }
            hook.secret = Secret::new(read_secret_file(&key, &hook.secret_file)?);
        }
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        non_empty("events.stream", &self.stream)?;
        positive("events.relay_interval", self.relay_interval)?;
        if let Some(kafka) = &self.kafka {
            if kafka.brokers.is_empty() {
                return Err(ConfigError::new(
                    "events.kafka.brokers",
                    "needs at least one broker, as host:port (e.g. [\"kafka-1:9092\"])",
                ));
            }
            non_empty("events.kafka.topic", &kafka.topic)?;
            non_empty("events.kafka.client_id", &kafka.client_id)?;
            positive("events.kafka.delivery_timeout", kafka.delivery_timeout)?;
        }
        for (i, hook) in self.webhooks.iter().enumerate() {
            non_empty(&format!("events.webhooks[{i}].url"), &hook.url)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;

    const BASE: &str = "auth:\n  secret: 0123456789abcdef0123456789abcdef\nlogin:\n  open: true\n";

    #[test]
    fn kafka_and_webhooks_come_from_the_file_or_the_environment() {
        let dir = std::env::temp_dir().join(format!("tg-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let secret = dir.join("hook");
        std::fs::write(&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").expect("write");
        let yaml = format!(
            "{BASE}events:\n  kafka:\n    brokers: [\"k1:9092\"]\n  webhooks:\n    - url: https://hooks.example.com/tg\n      secret_file: {}\n",
            secret.display()
        );
        let s = load(&yaml, &[]).expect("loads");
        let kafka = s.events.kafka.expect("kafka on");
        assert_eq!(kafka.brokers, ["k1:9092"]);
        assert_eq!(kafka.topic, "tokengate.events");
        assert_eq!(
            s.events.webhooks[0].secret.expose(),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        );

        let json = format!(
            r#"[{{"url": "http://127.0.0.1:9/h", "events": ["SessionEnded"], "secret_file": "{}"}}]"#,
            secret.display()
        );
        let s = load(
            BASE,
            &[
                ("TOKENGATE__EVENTS__KAFKA__BROKERS", "a:1, b:2"),
                ("TOKENGATE__EVENTS__WEBHOOKS", &json),
            ],
        )
        .expect("loads from the environment");
        assert_eq!(s.events.kafka.expect("kafka").brokers, ["a:1", "b:2"]);
        assert_eq!(s.events.webhooks[0].events, ["SessionEnded"]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_sink_without_what_it_needs_is_refused_by_key() {
        let no_brokers = load(&format!("{BASE}events:\n  kafka:\n    topic: t\n"), &[]);
        assert_eq!(no_brokers.expect_err("refused").key, "events.kafka.brokers");
        let no_secret = load(
            &format!("{BASE}events:\n  webhooks:\n    - url: https://h/x\n"),
            &[],
        );
        assert_eq!(
            no_secret.expect_err("refused").key,
            "events.webhooks[0].secret_file"
        );
    }
}
