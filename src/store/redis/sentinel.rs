//! Finding the master through Redis Sentinel (`cache.sentinel`).
//!
//! Each new connection asks the sentinels which node is master (`SENTINEL
//! MASTER <name>`), connects there and checks with `ROLE` that the node
//! agrees. Connections are made rarely (see the parent module), so the
//! extra round trips are paid once per connection, never per request.
//!
//! Each pooled connection remembers the master it goes to. A failover is
//! noticed two ways. A watcher asks the sentinels every [`CHECK_EVERY`]
//! and, once they name another master, the pool drops its connections to
//! the old one and hands out none that goes there: Sentinel demotes the
//! old master only when it next looks at it (up to ten seconds later), and
//! until then the old master would go on accepting writes that its
//! demotion throws away. And a `READONLY`-type reply makes
//! the pool forget its connections from the request path (see
//! `not_the_master` in the parent).
//!
//! The local cache's tracking connection (SPEC §10) goes to the master the
//! same way, and learns of a failover from the same answers: the newest
//! one is kept in a `watch` channel, and [`MasterWatch`] wakes whoever
//! holds a connection to a master the sentinels no longer name — at the
//! moment the watcher (or any new connection) hears of it, with no second
//! watcher asking the sentinels.
//!
//! Sentinels can disagree for a moment after a failover: the ones that
//! have not yet heard of it still name the old master. Each answer carries
//! the configuration epoch it comes from, a failover raises it, and an
//! answer older than the newest one seen is ignored — so a lagging
//! sentinel cannot send us back to a demoted master.
//!
//! Why not redis's `sentinel` module: it asks the sentinels in list order,
//! so a sentinel whose host is down (no reset, just silence — likely the
//! very host whose master failed) costs every connection its full connect
//! timeout, our whole deadline; it takes the first answer whatever its
//! epoch; and it connects to the master twice (once for `ROLE`). Here the
//! sentinels are asked at once over kept connections, and the connection
//! that passed `ROLE` is the one the pool gets.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{
    self, AsyncConnectionConfig, Client, ConnectionAddr, ErrorKind, IntoConnectionInfo,
    ProtocolVersion, RedisConnectionInfo, RedisError, RedisResult, Role,
};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;

use crate::config::{ConfigError, SentinelSettings};

/// How often the watcher asks the sentinels where the master is; a
/// failover is noticed at most this long after the sentinels announce it.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Where a master listens, as the sentinels name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    host: String,
    port: u16,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One sentinel's view: the master and the epoch of that configuration.
#[derive(Clone)]
struct Answer {
    address: Address,
    epoch: u64,
}

/// One sentinel and the connection kept to it.
struct Node {
    client: Client,
    connection: Mutex<Option<MultiplexedConnection>>,
}

pub struct Sentinels {
    /// The name they monitor the master under.
    master: String,
    nodes: Vec<Node>,
    /// For the sentinels, who answer quickly or not at all.
    config: AsyncConnectionConfig,
    /// Database and password on the master.
    redis: RedisConnectionInfo,
    /// The answer of the newest configuration any sentinel gave; a new
    /// master's address wakes the receivers ([`MasterWatch`]).
    newest: watch::Sender<Option<Answer>>,
}

/// Follows, for one connection, whether the sentinels still name the master
/// it goes to.
pub struct MasterWatch {
    address: Address,
    newest: watch::Receiver<Option<Answer>>,
}

impl MasterWatch {
    /// Whether the newest answer seen names another master.
    pub fn is_superseded(&self) -> bool {
        !names(&self.newest.borrow(), &self.address)
    }

    /// Returns once the sentinels name another master (never if the
    /// sentinels are gone with their store).
    pub async fn superseded(&mut self) {
        let address = &self.address;
        if self
            .newest
            .wait_for(|newest| !names(newest, address))
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    }
}

fn names(newest: &Option<Answer>, address: &Address) -> bool {
    newest
        .as_ref()
        .is_some_and(|newest| newest.address == *address)
}

impl Sentinels {
    /// The sentinels of `settings`; nothing is connected yet. `timeout`
    /// bounds each connection to a sentinel and each of its answers.
    pub fn new(settings: &SentinelSettings, timeout: Duration) -> Result<Self, ConfigError> {
        let mut auth = RedisConnectionInfo::default();
        if let Some(password) = &settings.password {
            auth = auth.set_password(password.expose());
        }
        let nodes = settings
            .addresses()?
            .into_iter()
            .map(|(host, port)| {
                let info = ConnectionAddr::Tcp(host, port)
                    .into_connection_info()
                    .map(|info| info.set_redis_settings(auth.clone()));
                let client = info.and_then(Client::open).map_err(|e| {
                    ConfigError::new("cache.sentinel.nodes", format!("unusable: {e}"))
                })?;
                Ok(Node {
                    client,
                    connection: Mutex::new(None),
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        let mut redis = RedisConnectionInfo::default().set_db(i64::from(settings.db));
        if let Some(password) = &settings.redis_password {
            redis = redis.set_password(password.expose());
        }
        Ok(Self {
            master: settings.master.clone(),
            nodes,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout)),
            redis,
            newest: watch::Sender::new(None),
        })
    }

    pub fn master(&self) -> &str {
        &self.master
    }

    /// A connection to the master the sentinels name, checked with `ROLE`,
    /// and where it goes; `protocol` RESP3 for one that receives pushes.
    pub async fn connect(
        &self,
        config: &AsyncConnectionConfig,
        protocol: ProtocolVersion,
    ) -> RedisResult<(MultiplexedConnection, Address)> {
        let address = self.lookup().await?;
        let info = ConnectionAddr::Tcp(address.host.clone(), address.port)
            .into_connection_info()?
            .set_redis_settings(self.redis.clone().set_protocol(protocol));
        let mut connection = Client::open(info)?
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        match redis::cmd("ROLE")
            .query_async::<Role>(&mut connection)
            .await
        {
            Ok(Role::Primary { .. }) => {}
            // A user denied ROLE by an ACL proves nothing about the node:
            // READONLY will tell if it is no master.
            Err(e) if e.kind() == ErrorKind::Server(redis::ServerErrorKind::NoPerm) => {}
            Ok(_) => {
                return Err(RedisError::from((
                    ErrorKind::Client,
                    "the node the sentinels name as master is no master (yet)",
                    format!("{} {address}", self.master),
                )));
            }
            Err(e) => return Err(e),
        }
        Ok((connection, address))
    }

    /// Whether `address` is the master of the newest configuration seen.
    pub fn is_newest(&self, address: &Address) -> bool {
        names(&self.newest.borrow(), address)
    }

    /// Follows whether the sentinels still name `address` (from now on: a
    /// failover already noted shows in [`MasterWatch::is_superseded`]).
    pub fn watch(&self, address: Address) -> MasterWatch {
        MasterWatch {
            address,
            newest: self.newest.subscribe(),
        }
    }

    /// The first answer not older than the newest seen.
    async fn lookup(&self) -> RedisResult<Address> {
        let mut asks: FuturesUnordered<_> = self.nodes.iter().map(|node| self.ask(node)).collect();
        let mut error = None;
        while let Some(answer) = asks.next().await {
            match answer {
                Ok(answer) if self.note(&answer) => return Ok(answer.address),
                Ok(answer) => {
                    error = Some(RedisError::from((
                        ErrorKind::MasterNameNotFoundBySentinel,
                        "a sentinel that has not heard of the last failover",
                        format!("epoch {} named {}", answer.epoch, answer.address),
                    )));
                }
                Err(e) => error = Some(e),
            }
        }
        Err(error.unwrap_or_else(|| {
            RedisError::from((ErrorKind::EmptySentinelList, "no sentinel configured"))
        }))
    }

    /// Asks every sentinel and notes the newest answer (for the watcher,
    /// which then drops connections to any other master).
    pub async fn survey(&self) {
        let asks: FuturesUnordered<_> = self.nodes.iter().map(|node| self.ask(node)).collect();
        let answers: Vec<_> = asks.collect().await;
        if let Some(newest) = answers
            .into_iter()
            .filter_map(Result::ok)
            .max_by_key(|answer| answer.epoch)
        {
            self.note(&newest);
        }
    }

    /// Keeps `answer` if its configuration is not older than the newest
    /// seen; whether it was kept. Another master's address wakes the
    /// [`MasterWatch`]es.
    fn note(&self, answer: &Answer) -> bool {
        let mut current = false;
        self.newest.send_if_modified(|newest| {
            current = newest.as_ref().is_none_or(|n| n.epoch <= answer.epoch);
            let moved = current && !names(newest, &answer.address);
            if current {
                *newest = Some(answer.clone());
            }
            moved
        });
        current
    }

    /// `SENTINEL MASTER <name>` on one sentinel; a kept connection that
    /// broke is replaced once.
    async fn ask(&self, node: &Node) -> RedisResult<Answer> {
        let kept = lock(&node.connection).clone();
        let fresh = kept.is_none();
        let mut connection = match kept {
            Some(connection) => connection,
            None => self.reconnect(node).await?,
        };
        let mut ask = redis::cmd("SENTINEL");
        ask.arg("MASTER").arg(&self.master);
        let reply = match ask.query_async(&mut connection).await {
            Err(e) if !fresh && (e.is_connection_dropped() || e.is_unrecoverable_error()) => {
                connection = self.reconnect(node).await?;
                ask.query_async(&mut connection).await
            }
            reply => reply,
        };
        let reply: HashMap<String, String> = reply.inspect_err(|e| {
            if !super::answered(e) {
                *lock(&node.connection) = None;
            }
        })?;
        parse_master(&reply).ok_or_else(|| {
            RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "SENTINEL MASTER without ip, port and config-epoch",
                format!("{reply:?}"),
            ))
        })
    }

    async fn reconnect(&self, node: &Node) -> RedisResult<MultiplexedConnection> {
        *lock(&node.connection) = None;
        let connection = node
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        *lock(&node.connection) = Some(connection.clone());
        Ok(connection)
    }
}

fn parse_master(reply: &HashMap<String, String>) -> Option<Answer> {
    Some(Answer {
        address: Address {
            host: reply.get("ip")?.clone(),
            port: reply.get("port")?.parse().ok()?,
        },
        epoch: reply.get("config-epoch")?.parse().ok()?,
    })
}

/// The data behind these locks is always whole: a panic elsewhere leaves
/// nothing half-written.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(fields: &[(&str, &str)]) -> HashMap<String, String> {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_master_needs_its_address_and_epoch() {
        let full = reply(&[("ip", "10.0.0.2"), ("port", "6380"), ("config-epoch", "3")]);
        let answer = parse_master(&full).unwrap();
        assert_eq!(answer.address.to_string(), "10.0.0.2:6380");
        assert_eq!(answer.epoch, 3);
        for missing in ["ip", "port", "config-epoch"] {
            let mut partial = full.clone();
            partial.remove(missing);
            assert!(parse_master(&partial).is_none(), "{missing}");
        }
        let v6 = reply(&[("ip", "fd00::2"), ("port", "6379"), ("config-epoch", "0")]);
        assert_eq!(
            parse_master(&v6).unwrap().address.to_string(),
            "[fd00::2]:6379"
        );
    }

    /// Sentinels of master `m` (never asked: the tests note answers).
    fn sentinels() -> Sentinels {
        let settings = SentinelSettings {
            master: "m".into(),
            nodes: vec!["127.0.0.1:1".into()],
            ..SentinelSettings::default()
        };
        Sentinels::new(&settings, Duration::from_secs(1)).unwrap()
    }

    fn answer(host: &str, epoch: u64) -> Answer {
        Answer {
            address: Address {
                host: host.into(),
                port: 6379,
            },
            epoch,
        }
    }

    #[test]
    fn an_answer_older_than_the_newest_seen_is_not_kept() {
        let sentinels = sentinels();
        let (old, new) = (answer("old", 0), answer("new", 1));
        assert!(!sentinels.is_newest(&old.address), "nothing seen yet");
        assert!(sentinels.note(&old));
        assert!(sentinels.is_newest(&old.address));
        assert!(sentinels.note(&new));
        assert!(!sentinels.note(&old), "a lagging sentinel");
        assert!(sentinels.is_newest(&new.address));
        assert!(!sentinels.is_newest(&old.address));
    }

    #[tokio::test]
    async fn a_watch_wakes_when_another_master_is_named_and_only_then() {
        let sentinels = sentinels();
        assert!(sentinels.note(&answer("old", 1)));
        let mut watch = sentinels.watch(answer("old", 1).address);
        assert!(!watch.is_superseded());
        // The same master again, or a lagging sentinel's older answer.
        assert!(sentinels.note(&answer("old", 2)));
        assert!(!sentinels.note(&answer("new", 0)));
        let woke = tokio::time::timeout(Duration::from_millis(20), watch.superseded()).await;
        assert!(woke.is_err(), "woken while its master is still named");
        assert!(sentinels.note(&answer("new", 3)));
        tokio::time::timeout(Duration::from_secs(1), watch.superseded())
            .await
            .expect("woken by the failover");
        assert!(watch.is_superseded());
        // A watch begun after the failover sees it at once.
        let late = sentinels.watch(answer("old", 1).address);
        assert!(late.is_superseded());
    }
}
