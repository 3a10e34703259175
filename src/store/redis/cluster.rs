//! A Redis Cluster's topology as the local cache needs it (SPEC §16): which
//! master serves which slots, and a plain connection to each master for its
//! tracking pushes. Requests themselves go through
//! redis-rs's cluster client (see [`super::connections`]), which keeps its
//! own slot map.

use deadpool_redis::redis::cluster::ClusterClient;
use deadpool_redis::redis::{
    self, AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    ProtocolVersion, RedisResult, TlsCertificates, Value,
};

use super::Conn;

/// Number of hash slots of every Redis Cluster.
const SLOTS: u16 = 16384;

/// `cache.cluster`: the client requests go through, and what a plain
/// connection to one node needs (the tracking connections).
pub struct ClusterTarget {
    pub(super) client: ClusterClient,
    pub(super) password: Option<String>,
    /// `Some` with TLS: the CA and client certificate, if any.
    pub(super) tls: Option<TlsCertificates>,
}

/// A master's address.
pub type Node = (String, u16);

/// Which master serves each range of slots, as `CLUSTER SLOTS` says it,
/// sorted: the same topology is an equal map, whatever the reply's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    /// `(first, last, master)`, by `first`.
    ranges: Vec<(u16, u16, Node)>,
}

impl SlotMap {
    /// Asks any node for the map, over `conn` (the cluster client).
    pub(super) async fn fetch(conn: &mut Conn) -> RedisResult<Self> {
        let reply: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
        Self::parse(&reply).ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::Parse,
                "CLUSTER SLOTS replied something else",
            ))
        })
    }

    /// `[[first, last, [host, port, id, …], replicas…], …]`.
    fn parse(reply: &Value) -> Option<Self> {
        let Value::Array(entries) = reply else {
            return None;
        };
        let slot = |v: &Value| match v {
            Value::Int(n) => u16::try_from(*n).ok().filter(|n| *n < SLOTS),
            _ => None,
        };
        let mut ranges = entries
            .iter()
            .map(|entry| {
                let Value::Array(fields) = entry else {
                    return None;
                };
                let Value::Array(node) = fields.get(2)? else {
                    return None;
                };
                let host = match node.first()? {
                    Value::BulkString(host) => String::from_utf8(host.clone()).ok()?,
                    _ => return None,
                };
                let port = match node.get(1)? {
                    Value::Int(port) => u16::try_from(*port).ok()?,
                    _ => return None,
                };
                Some((slot(fields.first()?)?, slot(fields.get(1)?)?, (host, port)))
            })
            .collect::<Option<Vec<_>>>()?;
        ranges.sort_unstable();
        Some(Self { ranges })
    }

    /// The masters, each once.
    pub fn masters(&self) -> Vec<Node> {
        let mut masters: Vec<Node> = Vec::new();
        for (_, _, master) in &self.ranges {
            if !masters.contains(master) {
                masters.push(master.clone());
            }
        }
        masters
    }
}

impl ClusterTarget {
    /// A plain RESP3 connection to one master, with the cluster's password
    /// and TLS.
    pub(super) async fn connect_node(
        &self,
        (host, port): &Node,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<redis::aio::MultiplexedConnection> {
        let addr = match &self.tls {
            Some(_) => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            },
            None => ConnectionAddr::Tcp(host.clone(), *port),
        };
        let info: ConnectionInfo = addr.into_connection_info()?;
        let mut settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        if let Some(password) = &self.password {
            settings = settings.set_password(password.clone());
        }
        let info = info.set_redis_settings(settings);
        let client = match &self.tls {
            Some(certs) => Client::build_with_tls(info, certs.clone())?,
            None => Client::open(info)?,
        };
        client
            .get_multiplexed_async_connection_with_config(config)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_map_is_equal_for_the_same_topology_only() {
        let node = |port: i64| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let range = |first, last, port| {
            Value::Array(vec![
                Value::Int(first),
                Value::Int(last),
                node(port),
                node(port + 3),
            ])
        };
        let map = SlotMap::parse(&Value::Array(vec![
            range(10923, 16383, 7002),
            range(0, 5460, 7000),
            range(5461, 10922, 7001),
        ]))
        .unwrap();
        assert_eq!(
            map.masters(),
            [7000, 7001, 7002].map(|port| ("127.0.0.1".to_owned(), port))
        );
        // The same map in another order is the same map; another master is not.
        let again = SlotMap::parse(&Value::Array(vec![
            range(0, 5460, 7000),
            range(5461, 10922, 7001),
            range(10923, 16383, 7002),
        ]))
        .unwrap();
        assert_eq!(again, map);
        let failed_over = SlotMap::parse(&Value::Array(vec![
            range(0, 5460, 7000),
            range(5461, 10922, 7001),
            range(10923, 16383, 7005),
        ]))
        .unwrap();
        assert_ne!(failed_over, map);
        assert!(SlotMap::parse(&Value::Int(1)).is_none());
    }
}
