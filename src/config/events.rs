//! `events:` (SPEC §14): the log every event passes through (the Redis
//! stream `events.stream`) and the sinks that read it — Apache Kafka and
//! webhook endpoints. Plain data; `events` builds the sinks from it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::sentinel::nodes;
use super::{ConfigError, Secret, duration, non_empty, positive, read_secret_file};

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
    /// Webhook endpoints; none when empty.
    pub webhooks: Vec<WebhookSettings>,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            stream: "tg:events".into(),
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
