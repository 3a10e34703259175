//! Webhook endpoints (SPEC §14, `events.webhooks`): every event a sink
//! wants, POSTed as its JSON envelope and signed per the Standard Webhooks
//! spec (<https://www.standardwebhooks.com/>): `webhook-id` (the event's
//! id, for the receiver to deduplicate), `webhook-timestamp` (Unix seconds
//! at sending) and `webhook-signature` (`v1,` + HMAC-SHA256, [`signature`]).
//!
//! Each endpoint is a [`Sink`] of its own, so the dispatcher gives it a
//! consumer group of its own on the log: its queue. A slow or dead endpoint
//! delays only itself, retried with [`BACKOFF`] for over a day.
//!
//! Events go one at a time, in the log's order; a 2xx answer delivers one,
//! anything else (another status, no answer within [`TIMEOUT`], no
//! connection) stops the batch there, to be tried again after a backoff.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::WebhookSettings;
use crate::events::sink::{Backoff, BoxFuture, Delivered, DeliveryError, Sink};
use crate::store::event_log::LoggedEvent;

pub mod signature;

use signature::Signer;

/// Every event type there is; `events.webhooks[i].events` may list these.
pub const EVENT_TYPES: [&str; 6] = [
    "UserRegistered",
    "UserLoggedIn",
    "LoginFailed",
    "SessionEnded",
    "ApiTokenCreated",
    "ApiTokenRevoked",
];

/// How long one request may take, connecting included, before it counts
/// as failed.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Retries from 1 s, doubling, at most an hour apart, for 26 hours: the
/// Standard Webhooks spec suggests retrying with exponential backoff over
/// about a day (its reference schedule ends after ~27 hours), so an
/// endpoint down for a night still gets every event.
pub const BACKOFF: Backoff = Backoff {
    first: Duration::from_secs(1),
    max: Duration::from_secs(60 * 60),
    give_up_after: Some(Duration::from_secs(26 * 60 * 60)),
};

/// How much of an answer's body is read (and dropped) so that its
/// connection can be used again, and for how long.
const DRAIN_LIMIT: usize = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// Why an endpoint's settings were refused: the key and what is wrong.
/// Never contains the secret.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {message}")]
pub struct WebhookSetupError {
    pub key: String,
    pub message: String,
}

impl WebhookSetupError {
    fn new(key: String, message: impl Into<String>) -> Self {
        Self {
            key,
            message: message.into(),
        }
    }
}

/// One webhook endpoint.
pub struct WebhookSink {
    /// `webhook:<host>[:<port>]<path>`: no scheme, credentials or query.
    name: String,
    /// Where to POST, without credentials.
    uri: Uri,
    /// `Basic …` from the URL's credentials, if it had any.
    authorization: Option<HeaderValue>,
    /// The event types it gets; `None` = all.
    events: Option<BTreeSet<String>>,
    signer: Signer,
    client: Transport,
    /// [`TIMEOUT`]; shorter in tests.
    timeout: Duration,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("name", &self.name)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// The HTTP client: TLS for `https://`, plain TCP for `http://` to a
/// loopback address.
enum Transport {
    Https(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
    Http(Client<HttpConnector, Full<Bytes>>),
}

impl WebhookSink {
    /// The endpoint `events.webhooks[index]`, its secret already read from
    /// `secret_file`.
    pub fn new(settings: &WebhookSettings, index: usize) -> Result<Self, WebhookSetupError> {
        let key = |field: &str| format!("events.webhooks[{index}].{field}");
        let endpoint =
            Endpoint::parse(&settings.url).map_err(|m| WebhookSetupError::new(key("url"), m))?;
        let signer = Signer::from_secret(settings.secret.expose()).map_err(|e| {
            WebhookSetupError::new(
                key("secret_file"),
                format!("{}: the secret {e}", settings.secret_file.display()),
            )
        })?;
        let events =
            wanted(&settings.events).map_err(|m| WebhookSetupError::new(key("events"), m))?;
        let client = if endpoint.tls {
            Transport::https().map_err(|m| WebhookSetupError::new(key("url"), m))?
        } else {
            Transport::http()
        };
        Ok(Self {
            name: endpoint.name,
            uri: endpoint.uri,
            authorization: endpoint.authorization,
            events,
            signer,
            client,
            timeout: TIMEOUT,
        })
    }

    /// Sends one event; `Ok` when the endpoint answered 2xx.
    async fn send(&self, event: &LoggedEvent) -> Result<(), DeliveryError> {
        let fail = |why: String| {
            DeliveryError(format!(
                "{}: event {} ({}): {why}",
                self.name, event.id, event.kind
            ))
        };
        let body = event.envelope();
        let timestamp = crate::time::now() / 1000;
        let signature = self.signer.sign(&event.id, timestamp, body.as_bytes());
        let mut request = Request::post(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("tokengate/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", event.id.as_str())
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", signature);
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(format!("cannot make the request: {e}")))?;

        let answer = tokio::time::timeout(self.timeout, self.client.request(request)).await;
        let response = match answer {
            Err(_) => return Err(fail(format!("no answer within {:?}", self.timeout))),
            Ok(Err(e)) => return Err(fail(format!("request failed: {}", chain(&e)))),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        // Read a little of the body, so the connection can be reused; what
        // it says does not matter.
        let drain = Limited::new(response.into_body(), DRAIN_LIMIT).collect();
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(fail(format!("answered {}", describe(status))))
        }
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn wants(&self, kind: &str) -> bool {
        self.events
            .as_ref()
            .is_none_or(|events| events.contains(kind))
    }

    fn backoff(&self) -> Backoff {
        BACKOFF
    }

    fn deliver<'a>(&'a self, events: &'a [LoggedEvent]) -> BoxFuture<'a, Delivered> {
        Box::pin(async move {
            for (count, event) in events.iter().enumerate() {
                // The dispatcher hands over only wanted events; any other
                // counts as delivered (there is nothing to send).
                if !self.wants(&event.kind) {
                    continue;
                }
                if let Err(error) = self.send(event).await {
                    return Delivered {
                        count,
                        error: Some(error),
                    };
                }
            }
            Delivered::all(events)
        })
    }
}

/// Builds one sink per endpoint; two endpoints may not share a name (it is
/// their queue in the log).
pub fn webhook_sinks(settings: &[WebhookSettings]) -> Result<Vec<WebhookSink>, WebhookSetupError> {
    let mut sinks: Vec<WebhookSink> = Vec::with_capacity(settings.len());
    for (index, hook) in settings.iter().enumerate() {
        let sink = WebhookSink::new(hook, index)?;
        if let Some(first) = sinks.iter().position(|s| s.name == sink.name) {
            return Err(WebhookSetupError::new(
                format!("events.webhooks[{index}].url"),
                format!(
                    "names the same endpoint as events.webhooks[{first}] ({}); \
                     list each endpoint once",
                    sink.name
                ),
            ));
        }
        sinks.push(sink);
    }
    Ok(sinks)
}

impl Transport {
    /// Certificates are checked against the system's CA certificates (the
    /// "native roots", read once here): the runtime image carries them at
    /// /etc/ssl/certs and operators add their internal CAs there, which a
    /// bundle compiled into the binary (webpki-roots) would ignore and
    /// never update.
    fn https() -> Result<Self, String> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let tls = HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| format!("cannot check https:// certificates: {e}"))?
            .https_only()
            .enable_http1()
            .wrap_connector(tcp(false));
        Ok(Self::Https(client(tls)))
    }

    fn http() -> Self {
        Self::Http(client(tcp(true)))
    }

    async fn request(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        match self {
            Self::Https(client) => client.request(request).await,
            Self::Http(client) => client.request(request).await,
        }
    }
}

fn tcp(plain_only: bool) -> HttpConnector {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(plain_only);
    tcp.set_connect_timeout(Some(TIMEOUT));
    tcp.set_nodelay(true);
    tcp
}

fn client<C>(connector: C) -> Client<C, Full<Bytes>>
where
    C: hyper_util::client::legacy::connect::Connect + Clone,
{
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build(connector)
}

/// A URL checked for sending webhooks to.
#[derive(Debug)]
struct Endpoint {
    name: String,
    uri: Uri,
    authorization: Option<HeaderValue>,
    tls: bool,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url
            .trim()
            .parse()
            .map_err(|_| "is not a URL (e.g. https://hooks.example.com/tokengate)".to_owned())?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(
                "needs https:// and a host (e.g. https://hooks.example.com/tokengate)".into(),
            );
        };
        let host = authority.host();
        if host.is_empty() {
            return Err("has no host".into());
        }
        let tls = if *scheme == Scheme::HTTPS {
            true
        } else if *scheme == Scheme::HTTP {
            if !is_loopback(host) {
                return Err(format!(
                    "must be https:// (http:// only to a loopback address: \
                     127.0.0.0/8, ::1 or localhost; not {host})"
                ));
            }
            false
        } else {
            return Err(format!("must be https://, not {scheme}://"));
        };
        let host_port = match authority.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let authorization = authority
            .as_str()
            .rsplit_once('@')
            .map(|(userinfo, _)| basic(userinfo))
            .transpose()?;
        let path = uri.path();
        let uri = Uri::builder()
            .scheme(scheme.clone())
            .authority(Authority::try_from(host_port.as_str()).map_err(|_| "has an invalid host")?)
            .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
            .build()
            .map_err(|_| "is not a URL".to_owned())?;
        Ok(Self {
            name: format!("webhook:{host_port}{path}"),
            uri,
            authorization,
            tls,
        })
    }
}

/// `Authorization: Basic …` for a URL's `user:password@`.
fn basic(userinfo: &str) -> Result<HeaderValue, String> {
    let decoded = percent_encoding::percent_decode_str(userinfo).collect::<Vec<u8>>();
    let mut value = HeaderValue::try_from(format!("Basic {}", STANDARD.encode(decoded)))
        .map_err(|_| "has credentials that cannot be sent".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

/// 127.0.0.0/8, ::1 (also as `[::1]`) or `localhost`.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The event types an endpoint gets: `None` for all (`["*"]` or none
/// listed).
fn wanted(events: &[String]) -> Result<Option<BTreeSet<String>>, String> {
    if events.is_empty() || events == ["*"] {
        return Ok(None);
    }
    let mut wanted = BTreeSet::new();
    for kind in events {
        if kind == "*" {
            return Err("lists `*` beside other types; `[\"*\"]` alone means all".into());
        }
        if !EVENT_TYPES.contains(&kind.as_str()) {
            return Err(format!(
                "has an unknown event type `{kind}`; known: {}, or [\"*\"] for all",
                EVENT_TYPES.join(", ")
            ));
        }
        wanted.insert(kind.clone());
    }
    Ok(Some(wanted))
}

/// `500 Internal Server Error`, or just `599` when it has no reason.
fn describe(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// An error and its causes, `a: b: c` (hyper's own says only "client
/// error (Connect)").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
