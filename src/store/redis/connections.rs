//! How the pool makes connections: to `cache.url` (TLS with rustls when
//! `rediss://`), to whichever master the sentinels name, or to a Redis
//! Cluster (one client that routes each command to its slot's master and
//! follows `MOVED`/`ASK` and failovers by itself); and how a reply tells a
//! broken connection, or a node that is no serving master, apart from an
//! answer.

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult, WeakPool};
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::cluster::ClusterClient;
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ConnectionAddr, ErrorKind, Pipeline,
    ProtocolVersion, RedisError, RedisFuture, ServerErrorKind, TlsCertificates, Value,
};

use super::SetupError;
use super::cluster::ClusterTarget;
use super::sentinel::{self, Sentinels};
use crate::config::CacheSettings;

/// Creates multiplexed connections; recycling is free (see the module doc):
/// with Sentinel it only checks, in memory, that the connection goes to
/// the master the sentinels name now.
pub struct Connections {
    pub(super) target: Target,
    pub(super) config: AsyncConnectionConfig,
}

/// Where connections go.
#[allow(clippy::large_enum_variant)] // one per store
pub(super) enum Target {
    /// `cache.url`.
    Url(Client),
    /// The master `cache.sentinel` names at the time.
    Sentinel(Sentinels),
    /// `cache.cluster`.
    Cluster(ClusterTarget),
}

/// A pooled connection, and with Sentinel the master it goes to.
pub struct Link {
    pub(super) connection: Conn,
    master: Option<sentinel::Address>,
}

/// A connection to one Redis, or to a whole Redis Cluster; both multiplexed
/// and cheap to clone.
#[derive(Clone)]
pub enum Conn {
    One(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::One(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::One(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::One(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl Connections {
    /// Whether `link` goes where new connections would go.
    pub(super) fn is_current(&self, link: &Link) -> bool {
        match (&self.target, &link.master) {
            (Target::Sentinel(sentinels), Some(master)) => sentinels.is_newest(master),
            _ => true,
        }
    }
}

impl managed::Manager for Connections {
    type Type = Link;
    type Error = RedisError;

    async fn create(&self) -> Result<Link, RedisError> {
        let (connection, master) = match &self.target {
            Target::Url(client) => {
                let connection = client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await?;
                (Conn::One(connection), None)
            }
            Target::Sentinel(sentinels) => {
                let (connection, master) = sentinels
                    .connect(&self.config, ProtocolVersion::RESP2)
                    .await?;
                (Conn::One(connection), Some(master))
            }
            Target::Cluster(cluster) => (
                Conn::Cluster(cluster.client.get_async_connection().await?),
                None,
            ),
        };
        Ok(Link { connection, master })
    }

    async fn recycle(&self, link: &mut Link, _: &Metrics) -> RecycleResult<RedisError> {
        if self.is_current(link) {
            Ok(())
        } else {
            Err(RecycleError::message("the sentinels name another master"))
        }
    }
}

pub(super) type Pool = managed::Pool<Connections>;

/// The client for `cache.url`, with the TLS files when there are any.
pub(super) fn client(cache: &CacheSettings) -> Result<Client, SetupError> {
    let url = cache.url.expose();
    let client = Client::open(url).map_err(SetupError::Url)?;
    if !matches!(
        client.get_connection_info().addr(),
        ConnectionAddr::TcpTls { .. }
    ) {
        return Ok(client);
    }
    install_crypto_provider();
    let certificates = tls_certificates(cache);
    if certificates.client_tls.is_none() && certificates.root_cert.is_none() {
        return Ok(client); // the system's trust store, no client certificate
    }
    Client::build_with_tls(url, certificates).map_err(SetupError::Tls)
}

/// The `cache.tls_*` files as redis-rs takes them: the CA to trust (none:
/// the system's store) and the client certificate with its key.
fn tls_certificates(cache: &CacheSettings) -> TlsCertificates {
    let client_tls = match (&cache.tls_cert_pem, &cache.tls_key_pem) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: cert.as_bytes().to_vec(),
            client_key: key.expose().as_bytes().to_vec(),
        }),
        _ => None,
    };
    TlsCertificates {
        client_tls,
        root_cert: cache.tls_ca_pem.as_ref().map(|pem| pem.as_bytes().to_vec()),
    }
}

/// The client for `cache.cluster`: the seeds, the password, TLS. It
/// retries a command while a slot's master is being replaced; our own
/// deadline (`cache.timeout`) bounds that, so a request to a slot without a
/// master fails closed in time while other slots answer.
pub(super) fn cluster_client(
    cache: &CacheSettings,
    cluster: &crate::config::ClusterSettings,
) -> Result<ClusterTarget, SetupError> {
    let scheme = if cluster.tls { "rediss" } else { "redis" };
    let seeds = cluster
        .addresses()
        .map_err(SetupError::Config)?
        .into_iter()
        .map(|(host, port)| match host.contains(':') {
            true => format!("{scheme}://[{host}]:{port}"),
            false => format!("{scheme}://{host}:{port}"),
        })
        .collect::<Vec<_>>();
    let mut builder = ClusterClient::builder(seeds)
        .connection_timeout(cache.timeout)
        .retries(cluster_retries(cache.timeout))
        .min_retry_wait(CLUSTER_RETRY_WAIT_MS)
        .max_retry_wait(CLUSTER_RETRY_WAIT_MS * 4);
    let password = cluster.password.as_ref().map(|p| p.expose().to_owned());
    if let Some(password) = &password {
        builder = builder.password(password);
    }
    let tls = cluster.tls.then(|| {
        install_crypto_provider();
        tls_certificates(cache)
    });
    if let Some(certs) = &tls {
        builder = builder
            .tls(deadpool_redis::redis::cluster::TlsMode::Secure)
            .certs(certs.clone());
    }
    Ok(ClusterTarget {
        client: builder.build().map_err(SetupError::Url)?,
        password,
        tls,
    })
}

/// The shortest wait between two tries of a command on a cluster (ms).
const CLUSTER_RETRY_WAIT_MS: u64 = 25;

/// Tries that fit in `timeout` at about [`CLUSTER_RETRY_WAIT_MS`] apart:
/// enough to ride out a failover the deadline allows, no more.
fn cluster_retries(timeout: std::time::Duration) -> u32 {
    let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    u32::try_from(ms / CLUSTER_RETRY_WAIT_MS)
        .unwrap_or(u32::MAX)
        .clamp(2, 64)
}

/// rustls needs one process-wide crypto provider, which redis's TLS uses
/// through `ClientConfig::builder()`. Ours is aws-lc-rs; a provider already
/// installed (by an earlier store, or a program embedding us) stays.
pub(super) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err only means another thread installed one just now: fine too.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// Whether Redis answered (with an error reply): the connection is fine.
pub(super) fn answered(error: &RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server(_) | ErrorKind::Parse | ErrorKind::UnexpectedReturnType
    )
}

/// Whether the node refused the command as no serving master: demoted to
/// a replica (`READONLY`), a replica cut off from its master
/// (`MASTERDOWN`), or still loading its data (`LOADING`). Such a refusal
/// comes before any write (on a replica, a script's first write is
/// refused), so nothing ran.
pub(super) fn not_the_master(error: &RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown | ServerErrorKind::BusyLoading
        )
    )
}

/// Follows the sentinels: when they name a new master, the pool drops its
/// connections to the old one. Aborted when the store is dropped.
pub(super) struct Watcher(tokio::task::AbortHandle);

impl Watcher {
    pub(super) fn start(pool: WeakPool<Connections>) -> Self {
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(sentinel::CHECK_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                let manager = pool.manager();
                let Target::Sentinel(sentinels) = &manager.target else {
                    return;
                };
                sentinels.survey().await;
                let old = pool.retain(|link, _| manager.is_current(link)).removed;
                if let Some(Link {
                    master: Some(from), ..
                }) = old.first()
                {
                    tracing::warn!(
                        master = sentinels.master(),
                        %from,
                        "the sentinels name another Redis master: reconnecting"
                    );
                }
            }
        });
        Self(task.abort_handle())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(line: &str) -> RedisError {
        let value =
            deadpool_redis::redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap();
        value.extract_error().unwrap_err()
    }

    #[test]
    fn a_node_that_is_no_master_is_told_apart_from_other_error_replies() {
        for refusal in [
            "READONLY You can't write against a read only replica. script: 53a4, on @user_script:1.",
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            "LOADING Redis is loading the dataset in memory",
        ] {
            let e = reply(refusal);
            assert!(not_the_master(&e), "{refusal}");
            assert!(
                answered(&e),
                "a reply, yet the connection must go: {refusal}"
            );
        }
        for other in [
            "ERR Error running script",
            "NOSCRIPT No matching script. Please use EVAL.",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            "NOAUTH Authentication required.",
        ] {
            assert!(!not_the_master(&reply(other)), "{other}");
        }
    }
}
