//! The Apache Kafka sink (SPEC §14): every event to one topic, key = the
//! event's subject (so a subject's events share a partition and keep their
//! order), headers `id` (the event's uuid, for deduplication), `type` and
//! `content-type: application/json`, value = the event's JSON envelope.
//!
//! **Why rdkafka.** It wraps librdkafka, the reference C client behind
//! Confluent's clients for most languages: an *idempotent* producer (the
//! broker drops a retried batch it already wrote, so the producer's own
//! retries add no duplicates and keep the order in a partition), SASL
//! (PLAIN, SCRAM) and TLS, years of production use against every broker
//! version. The pure-Rust alternative, rskafka, has no idempotent producer
//! (nor SASL SCRAM), and kafka-rust is unmaintained.
//!
//! **What its build needs.** librdkafka is compiled from source and linked
//! statically, with a vendored OpenSSL and a static zlib
//! (`ssl-vendored`, `libz-static`): a C compiler, `make` and `perl` (for
//! OpenSSL's configure), all in `rust:bookworm`; the runtime image needs
//! nothing more. The first build takes about three minutes on two cores.
//!
//! **At least once.** The dispatcher (`dispatch.rs`) hands [`KafkaSink::deliver`]
//! events in log order and acknowledges only the prefix the brokers
//! acknowledged (`acks=all`); the rest stays in the log and is handed over
//! again after a backoff, however long Kafka is away. A redelivered event
//! carries the same `id` header.
//!
//! **Topics.** tokengate never creates its topic (`allow.auto.create.topics`
//! is off): it checks it once at start and says clearly, at start and in
//! every failed delivery, when it is missing. Neither a missing topic nor a
//! broker that is down stops tokengate from starting.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::config::KafkaSettings;
use crate::store::event_log::LoggedEvent;

use super::sink::{Backoff, BoxFuture, Delivered, DeliveryError, Sink};

/// How long the start-up check, and the check after a timed-out delivery,
/// wait for the brokers' metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Configuration values that are secrets: never in logs or `Debug` output.
const SECRET_KEYS: [&str; 2] = ["sasl.password", "ssl.key.password"];

/// Why the sink could not be built: the settings, not the brokers (which
/// may be down at start; that is not an error).
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("events.kafka.{key}: {message}")]
    Settings { key: &'static str, message: String },
    #[error("events.kafka: the Kafka client refused its configuration: {0}")]
    Client(String),
}

/// The producer's configuration, as librdkafka's key/value pairs.
/// `Debug` hides the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct ProducerConfig(Vec<(&'static str, String)>);

impl ProducerConfig {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn pairs(&self) -> &[(&'static str, String)] {
        &self.0
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in &self.0 {
            config.set(*key, value.as_str());
        }
        config
    }
}

impl fmt::Debug for ProducerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.0 {
            if SECRET_KEYS.contains(key) {
                map.entry(key, &"[redacted]");
            } else {
                map.entry(key, value);
            }
        }
        map.finish()
    }
}

/// The settings as librdkafka configuration: a pure function, so that the
/// mapping is tested without a broker.
pub fn producer_config(settings: &KafkaSettings) -> Result<ProducerConfig, KafkaSetupError> {
    let bad = |key, message: &str| KafkaSetupError::Settings {
        key,
        message: message.into(),
    };
    if settings.brokers.is_empty() {
        return Err(bad("brokers", "needs at least one broker, as host:port"));
    }
    let millis = u64::try_from(settings.delivery_timeout.as_millis())
        .ok()
        .filter(|ms| (1..=i32::MAX as u64).contains(ms))
        .ok_or_else(|| bad("delivery_timeout", "must be between 1 ms and 24 days"))?;
    let mut pairs: Vec<(&'static str, String)> = vec![
        ("bootstrap.servers", settings.brokers.join(",")),
        ("client.id", settings.client_id.clone()),
        // The broker deduplicates the producer's retries and keeps their
        // order; implies acks=all and bounded in-flight requests.
        ("enable.idempotence", "true".into()),
        ("acks", "all".into()),
        // How long one event may take, retries included, before its
        // delivery fails and the dispatcher backs off (`delivery.timeout.ms`
        // is an alias of this key).
        ("message.timeout.ms", millis.to_string()),
        // A missing topic fails a delivery soon (and says so) instead of
        // holding it for the whole delivery timeout.
        (
            "topic.metadata.propagation.max.ms",
            millis.min(10_000).to_string(),
        ),
        // tokengate does not create topics, even on brokers that would.
        ("allow.auto.create.topics", "false".into()),
        // Keys land on the partitions the Java client would pick for them.
        ("partitioner", "murmur2_random".into()),
        // Brokers close idle connections; that is not news.
        ("log.connection.close", "false".into()),
    ];
    let tls = settings.tls.is_some();
    let protocol = match (&settings.sasl, tls) {
        (Some(_), true) => "SASL_SSL",
        (Some(_), false) => "SASL_PLAINTEXT",
        (None, true) => "SSL",
        (None, false) => "PLAINTEXT",
    };
    pairs.push(("security.protocol", protocol.into()));
    if let Some(sasl) = &settings.sasl {
        let mechanism = sasl.mechanism.to_ascii_uppercase();
        if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mechanism.as_str()) {
            return Err(bad(
                "sasl.mechanism",
                "must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
            ));
        }
        if sasl.username.is_empty() {
            return Err(bad("sasl.username", "is required with sasl"));
        }
        if sasl.password.is_empty() {
            return Err(bad(
                "sasl.password_file",
                "is required with sasl (a file holding the password)",
            ));
        }
        pairs.push(("sasl.mechanism", mechanism));
        pairs.push(("sasl.username", sasl.username.clone()));
        pairs.push(("sasl.password", sasl.password.expose().to_owned()));
    }
    if let Some(tls) = &settings.tls {
        let path = |key: &'static str, file: &std::path::Path| {
            file.to_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(key, "must be a UTF-8 path"))
        };
        // Without a CA file, the system's trust store: librdkafka probes
        // the usual places (the OpenSSL built in has no directory of its
        // own on the runtime image).
        let ca = match &tls.ca_file {
            Some(file) => path("tls.ca_file", file)?,
            None => "probe".into(),
        };
        pairs.push(("ssl.ca.location", ca));
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                pairs.push(("ssl.certificate.location", path("tls.cert_file", cert)?));
                pairs.push(("ssl.key.location", path("tls.key_file", key)?));
            }
            (None, None) => {}
            (Some(_), None) => return Err(bad("tls.key_file", "is required with tls.cert_file")),
            (None, Some(_)) => return Err(bad("tls.cert_file", "is required with tls.key_file")),
        }
    }
    Ok(ProducerConfig(pairs))
}

/// librdkafka's logs and errors, to tracing.
struct Context;

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                tracing::warn!(facility, "kafka: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility, "kafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility, "kafka: {message}"),
        }
    }

    /// Brokers that cannot be reached: the dispatcher says so once per
    /// outage, from the failed delivery; librdkafka says it on every retry.
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, "kafka: {reason}");
    }
}

type Client = FutureProducer<Context>;

/// Delivers events to one Kafka topic.
pub struct KafkaSink {
    topic: String,
    /// For messages: `host:port,host:port`.
    brokers: String,
    config: ProducerConfig,
    /// Replaced when librdkafka reports a fatal error (the idempotent
    /// producer's state went wrong); a new one starts a new sequence.
    producer: RwLock<Arc<Client>>,
}

impl fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What the brokers' metadata said about the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicCheck {
    Exists {
        partitions: usize,
    },
    Missing,
    /// The brokers did not answer (down, or unreachable): unknown.
    Unknown(String),
}

impl KafkaSink {
    /// Builds the producer; no broker is contacted yet. Within a tokio
    /// runtime, also starts the check of the topic (see [`Self::check_topic`]),
    /// which only warns.
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaSetupError> {
        if settings.topic.is_empty() {
            return Err(KafkaSetupError::Settings {
                key: "topic",
                message: "is required".into(),
            });
        }
        let config = producer_config(settings)?;
        let producer = create(&config)?;
        let sink = Self {
            topic: settings.topic.clone(),
            brokers: settings.brokers.join(","),
            config,
            producer: RwLock::new(Arc::new(producer)),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            let producer = sink.producer();
            let (topic, brokers) = (sink.topic.clone(), sink.brokers.clone());
            tokio::spawn(async move {
                match check_topic(producer, topic.clone()).await {
                    TopicCheck::Exists { partitions } => {
                        tracing::info!(%topic, %brokers, partitions, "kafka: the events topic exists")
                    }
                    TopicCheck::Missing => {
                        tracing::warn!("{}", missing_topic(&topic, &brokers))
                    }
                    TopicCheck::Unknown(error) => tracing::warn!(
                        %topic, %brokers, %error,
                        "kafka: cannot reach the brokers to check the events topic; events wait in the log until they answer"
                    ),
                }
            });
        }
        Ok(sink)
    }

    /// Whether the topic exists, by the brokers' metadata (blocking work on
    /// tokio's blocking pool, at most a few seconds).
    pub async fn check_topic(&self) -> TopicCheck {
        check_topic(self.producer(), self.topic.clone()).await
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn producer(&self) -> Arc<Client> {
        match self.producer.read() {
            Ok(producer) => producer.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces `failed` by a new producer (a new producer id, sequences
    /// from zero), unless another delivery did already.
    fn renew(&self, failed: &Arc<Client>, why: &str) {
        let mut current = match self.producer.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !Arc::ptr_eq(&current, failed) {
            return;
        }
        match create(&self.config) {
            Ok(producer) => {
                tracing::warn!(topic = %self.topic, "kafka: {why}; starting a new producer");
                *current = Arc::new(producer);
            }
            Err(error) => {
                tracing::warn!(%error, "kafka: {why}, and a new producer cannot be made")
            }
        }
    }

    async fn deliver_batch(&self, events: &[LoggedEvent]) -> Delivered {
        let producer = self.producer();
        let mut pending: Vec<DeliveryFuture> = Vec::with_capacity(events.len());
        let mut refused = None;
        for event in events {
            let payload = event.envelope();
            let headers = OwnedHeaders::new_with_capacity(3)
                .insert(Header {
                    key: "id",
                    value: Some(event.id.as_str()),
                })
                .insert(Header {
                    key: "type",
                    value: Some(event.kind.as_str()),
                })
                .insert(Header {
                    key: "content-type",
                    value: Some("application/json"),
                });
            let mut record = FutureRecord::<str, str>::to(&self.topic)
                .payload(&payload)
                .headers(headers);
            // Events of phase 2 may have no subject: no key, any partition.
            if !event.subject.is_empty() {
                record = record.key(&event.subject);
            }
            match producer.send_result(record) {
                Ok(future) => pending.push(future),
                Err((error, _)) => {
                    // Usually a full local queue: what was queued goes on,
                    // the rest comes back after the backoff.
                    refused = Some(error);
                    break;
                }
            }
        }
        let mut count = 0;
        let mut error = None;
        for future in pending {
            match future.await {
                Ok(Ok(_)) if error.is_none() => count += 1,
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    if error.is_none() {
                        error = Some(e);
                    }
                }
                Err(_canceled) => {
                    if error.is_none() {
                        error = Some(KafkaError::Canceled);
                    }
                }
            }
        }
        let error = error.or(refused);
        let Some(error) = error else {
            return Delivered { count, error: None };
        };
        let code = error.rdkafka_error_code();
        // A timeout may hide a missing topic the client kept waiting for,
        // or a producer stuck while brokers answer.
        let topic = if code == Some(RDKafkaErrorCode::MessageTimedOut) {
            Some(check_topic(producer.clone(), self.topic.clone()).await)
        } else {
            None
        };
        if let Some((code, reason)) = producer.client().fatal_error() {
            self.renew(
                &producer,
                &format!("the producer failed for good ({code}: {reason})"),
            );
        } else if matches!(topic, Some(TopicCheck::Exists { .. })) {
            // The idempotent producer can stay stuck after a broker lost its
            // state (e.g. a cluster rebuilt empty, or tansu restarted): it
            // bumps its epoch and is refused, forever. A new one is not.
            self.renew(
                &producer,
                "the brokers answer and the topic exists, yet nothing was delivered within the delivery timeout",
            );
        }
        let message = if code.is_some_and(is_missing_topic) || topic == Some(TopicCheck::Missing) {
            missing_topic(&self.topic, &self.brokers)
        } else {
            format!(
                "Kafka: cannot deliver to topic \"{}\" on {}: {error}",
                self.topic, self.brokers
            )
        };
        Delivered {
            count,
            error: Some(DeliveryError(message)),
        }
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        "kafka"
    }

    /// Events wait in the log while Kafka is away; never given up on.
    fn backoff(&self) -> Backoff {
        Backoff {
            first: Duration::from_millis(500),
            max: Duration::from_secs(30),
            give_up_after: None,
        }
    }

    fn deliver<'a>(&'a self, events: &'a [LoggedEvent]) -> BoxFuture<'a, Delivered> {
        Box::pin(self.deliver_batch(events))
    }
}

fn create(config: &ProducerConfig) -> Result<Client, KafkaSetupError> {
    config
        .client_config()
        .create_with_context(Context)
        .map_err(|e| KafkaSetupError::Client(e.to_string()))
}

/// The message for a missing topic, at start and in every failed delivery.
pub fn missing_topic(topic: &str, brokers: &str) -> String {
    format!(
        "Kafka topic \"{topic}\" does not exist on {brokers}; create it (tokengate does not create topics)"
    )
}

fn is_missing_topic(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition
    )
}

async fn check_topic(producer: Arc<Client>, topic: String) -> TopicCheck {
    let asked = tokio::task::spawn_blocking(move || {
        let metadata = producer
            .client()
            .fetch_metadata(Some(&topic), METADATA_TIMEOUT)
            .map_err(|e| e.to_string())?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        Ok(match found {
            None => TopicCheck::Missing,
            Some(t) => match t.error() {
                Some(code) if is_missing_topic(code.into()) => TopicCheck::Missing,
                Some(code) => TopicCheck::Unknown(RDKafkaErrorCode::from(code).to_string()),
                None if t.partitions().is_empty() => TopicCheck::Missing,
                None => TopicCheck::Exists {
                    partitions: t.partitions().len(),
                },
            },
        })
    })
    .await;
    match asked {
        Ok(Ok(check)) => check,
        Ok(Err(error)) => TopicCheck::Unknown(error),
        Err(join) => TopicCheck::Unknown(join.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KafkaSasl, KafkaTls, Secret};

    fn settings() -> KafkaSettings {
        KafkaSettings {
            brokers: vec!["kafka-1:9092".into(), "kafka-2:9092".into()],
            topic: "tokengate.events".into(),
            client_id: "tokengate-test".into(),
            delivery_timeout: Duration::from_secs(30),
            sasl: None,
            tls: None,
        }
    }

    fn sasl() -> KafkaSasl {
        KafkaSasl {
            mechanism: "scram-sha-512".into(),
            username: "tokengate".into(),
            password_file: "/run/secrets/kafka".into(),
            password: Secret::new("hunter2-very-secret"),
        }
    }

    #[test]
    fn plaintext_idempotent_producer() {
        let config = producer_config(&settings()).expect("valid");
        assert_eq!(
            config.get("bootstrap.servers"),
            Some("kafka-1:9092,kafka-2:9092")
        );
        assert_eq!(config.get("client.id"), Some("tokengate-test"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("message.timeout.ms"), Some("30000"));
        assert_eq!(
            config.get("topic.metadata.propagation.max.ms"),
            Some("10000")
        );
        assert_eq!(config.get("allow.auto.create.topics"), Some("false"));
        assert_eq!(config.get("security.protocol"), Some("PLAINTEXT"));
        assert_eq!(config.get("sasl.mechanism"), None);
        assert_eq!(config.get("ssl.ca.location"), None);
    }

    #[test]
    fn security_protocol_follows_sasl_and_tls() {
        let mut s = settings();
        s.sasl = Some(sasl());
        let config = producer_config(&s).expect("valid");
        assert_eq!(config.get("security.protocol"), Some("SASL_PLAINTEXT"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.username"), Some("tokengate"));
        assert_eq!(config.get("sasl.password"), Some("hunter2-very-secret"));

        s.tls = Some(KafkaTls::default());
        let config = producer_config(&s).expect("valid");
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("ssl.ca.location"), Some("probe"));

        s.sasl = None;
        s.tls = Some(KafkaTls {
            ca_file: Some("/etc/kafka/ca.pem".into()),
            cert_file: Some("/etc/kafka/client.pem".into()),
            key_file: Some("/etc/kafka/client.key".into()),
        });
        let config = producer_config(&s).expect("valid");
        assert_eq!(config.get("security.protocol"), Some("SSL"));
        assert_eq!(config.get("ssl.ca.location"), Some("/etc/kafka/ca.pem"));
        assert_eq!(
            config.get("ssl.certificate.location"),
            Some("/etc/kafka/client.pem")
        );
        assert_eq!(
            config.get("ssl.key.location"),
            Some("/etc/kafka/client.key")
        );
    }

    #[test]
    fn short_delivery_timeout_bounds_the_wait_for_a_topic() {
        let mut s = settings();
        s.delivery_timeout = Duration::from_secs(2);
        let config = producer_config(&s).expect("valid");
        assert_eq!(config.get("message.timeout.ms"), Some("2000"));
        assert_eq!(
            config.get("topic.metadata.propagation.max.ms"),
            Some("2000")
        );
    }

    #[test]
    fn refuses_what_librdkafka_would_misread() {
        let refused = |s: KafkaSettings| producer_config(&s).expect_err("refused").to_string();
        let mut s = settings();
        s.sasl = Some(KafkaSasl {
            mechanism: "GSSAPI".into(),
            ..sasl()
        });
        assert!(refused(s).contains("events.kafka.sasl.mechanism"));
        let mut s = settings();
        s.sasl = Some(KafkaSasl {
            password: Secret::default(),
            ..sasl()
        });
        assert!(refused(s).contains("events.kafka.sasl.password_file"));
        let mut s = settings();
        s.tls = Some(KafkaTls {
            cert_file: Some("/c.pem".into()),
            ..KafkaTls::default()
        });
        assert!(refused(s).contains("events.kafka.tls.key_file"));
        let mut s = settings();
        s.delivery_timeout = Duration::ZERO;
        assert!(refused(s).contains("events.kafka.delivery_timeout"));
        let mut s = settings();
        s.brokers.clear();
        assert!(refused(s).contains("events.kafka.brokers"));
    }

    #[test]
    fn the_password_is_never_in_debug_output() {
        let mut s = settings();
        s.sasl = Some(sasl());
        s.tls = Some(KafkaTls::default());
        let config = producer_config(&s).expect("valid");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        let sink = KafkaSink::new(&s).expect("built without a broker");
        let shown = format!("{sink:?} {s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn sink_is_named_kafka_and_never_gives_up() {
        let sink = KafkaSink::new(&settings()).expect("built without a broker");
        assert_eq!(sink.name(), "kafka");
        assert_eq!(sink.topic(), "tokengate.events");
        let backoff = sink.backoff();
        assert_eq!(backoff.first, Duration::from_millis(500));
        assert_eq!(backoff.max, Duration::from_secs(30));
        assert_eq!(backoff.give_up_after, None);
    }

    #[test]
    fn missing_topic_says_what_to_do() {
        assert_eq!(
            missing_topic("tokengate.events", "k1:9092,k2:9092"),
            "Kafka topic \"tokengate.events\" does not exist on k1:9092,k2:9092; \
             create it (tokengate does not create topics)"
        );
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_unknown_not_missing() {
        let mut s = settings();
        // A port nothing listens on: refused at once.
        s.brokers = vec!["127.0.0.1:1".into()];
        let sink = KafkaSink::new(&s).expect("built without a broker");
        assert!(matches!(sink.check_topic().await, TopicCheck::Unknown(_)));
    }
}
