//! A Redis Cluster's topology as the local cache needs it (SPEC §16): which
//! master serves which slots, a plain connection to each master for its
//! tracking pushes, and the slot of a key. Requests themselves go through
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

/// Which master serves each range of slots, as `CLUSTER SLOTS` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    /// `(first, last, index into masters)`, sorted by `first`.
    ranges: Vec<(u16, u16, usize)>,
    masters: Vec<Node>,
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
        let mut map = Self {
            ranges: Vec::with_capacity(entries.len()),
            masters: Vec::new(),
        };
        for entry in entries {
            let Value::Array(fields) = entry else {
                return None;
            };
            let slot = |v: &Value| match v {
                Value::Int(n) => u16::try_from(*n).ok().filter(|n| *n < SLOTS),
                _ => None,
            };
            let (first, last) = (slot(fields.first()?)?, slot(fields.get(1)?)?);
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
            let master = (host, port);
            let index = match map.masters.iter().position(|m| *m == master) {
                Some(index) => index,
                None => {
                    map.masters.push(master);
                    map.masters.len() - 1
                }
            };
            map.ranges.push((first, last, index));
        }
        map.ranges.sort_unstable();
        Some(map)
    }

    /// The masters, in the order [`Self::master_of`] indexes them.
    pub fn masters(&self) -> &[Node] {
        &self.masters
    }

    /// The index of the master serving `key`'s slot.
    pub fn master_of(&self, key: &[u8]) -> Option<usize> {
        let slot = slot_of(key);
        let at = self.ranges.partition_point(|&(first, _, _)| first <= slot);
        let &(_, last, index) = self.ranges.get(at.checked_sub(1)?)?;
        (slot <= last).then_some(index)
    }
}

/// A key's hash slot: CRC16 (XMODEM) of its hash tag — the text between
/// the first `{` and the next `}`, when not empty — else of the whole key.
pub fn slot_of(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % SLOTS
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
    fn slots_follow_the_hash_tag() {
        // Values from `CLUSTER KEYSLOT` of Redis 7.
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"tg:{u:alice}:idx"), slot_of(b"u:alice"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
        assert_ne!(slot_of(b"foo{}{bar}"), slot_of(b"bar"));
    }

    #[test]
    fn a_slot_map_names_the_master_of_each_slot() {
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
        assert_eq!(map.masters().len(), 3);
        let port = |key: &[u8]| map.masters()[map.master_of(key).unwrap()].1;
        assert_eq!(port(b"foo"), 7002); // slot 12182
        assert_eq!(
            port(b"{a}x"),
            7000 + u16::from(slot_of(b"a") > 5460) + u16::from(slot_of(b"a") > 10922)
        );
        assert!(SlotMap::parse(&Value::Int(1)).is_none());
    }
}
