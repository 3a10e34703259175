//! `cache.sentinel`: reach Redis through Redis Sentinel, which names the
//! current master and promotes a replica when the master fails.
//!
//! With it, `cache.url` stays empty: the sentinels give the address. The
//! master's password comes from `cache.password_file` (it is the replicas'
//! too, since any of them may be promoted), its database from
//! `cache.sentinel.db`; the sentinels' own password (`requirepass` in
//! sentinel.conf), if they have one, from `cache.sentinel.password_file`.
//! TLS is not supported with Sentinel: the `cache.tls_*` files are refused.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::{CacheSettings, ConfigError, Secret, read_secret_file};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SentinelSettings {
    /// The name the sentinels monitor the master under
    /// (`sentinel monitor <name> …`).
    pub master: String,
    /// The sentinels, each `host:port`: a list, or one comma-separated
    /// string (as an environment variable gives it).
    #[serde(deserialize_with = "nodes")]
    pub nodes: Vec<String>,
    /// The database number on the master (a Redis URL's `/db`).
    pub db: u32,
    /// File holding the sentinels' password; unset = they ask for none.
    pub password_file: Option<PathBuf>,
    /// `password_file`'s content, read by [`super::Settings::resolved`].
    #[serde(skip)]
    pub password: Option<Secret>,
    /// The master's password, read from `cache.password_file`.
    #[serde(skip)]
    pub redis_password: Option<Secret>,
}

impl SentinelSettings {
    /// The sentinels' addresses; an error names the entry that is no
    /// `host:port`.
    pub fn addresses(&self) -> Result<Vec<(String, u16)>, ConfigError> {
        addresses("cache.sentinel.nodes", &self.nodes, "sentinel", 26379)
    }
}

/// `nodes` (the setting `key`), each `host:port`; an error names the entry
/// that is not, or says that at least one `what` is needed.
pub(super) fn addresses(
    key: &str,
    nodes: &[String],
    what: &str,
    port: u16,
) -> Result<Vec<(String, u16)>, ConfigError> {
    if nodes.is_empty() {
        return Err(ConfigError::new(
            key,
            format!("needs at least one {what}, as host:port (e.g. [\"10.0.0.1:{port}\"])"),
        ));
    }
    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            address(node).ok_or_else(|| {
                ConfigError::new(
                    format!("{key}[{i}]"),
                    format!("{node:?} is not host:port (e.g. 10.0.0.1:{port} or [::1]:{port})"),
                )
            })
        })
        .collect()
}

/// `host:port`, `[v6]:port`; the port not 0.
fn address(node: &str) -> Option<(String, u16)> {
    let (host, port) = node.trim().rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?,
        None if host.contains(':') => return None, // an IPv6 address needs brackets
        None => host,
    };
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| (host.to_owned(), port))
}

impl CacheSettings {
    /// The shape of `cache.sentinel` and what it excludes.
    pub(super) fn validate_sentinel(&self) -> Result<(), ConfigError> {
        let Some(sentinel) = &self.sentinel else {
            return Ok(());
        };
        if !self.url.is_empty() {
            return Err(ConfigError::new(
                "cache.url",
                "must be empty with cache.sentinel: the sentinels give the master's address \
                 (its password comes from cache.password_file, its database from \
                 cache.sentinel.db)",
            ));
        }
        if sentinel.master.trim().is_empty() {
            return Err(ConfigError::new(
                "cache.sentinel.master",
                "must not be empty: the name the sentinels monitor the master under \
                 (sentinel monitor <name> …)",
            ));
        }
        sentinel.addresses()?;
        if let Some((key, _)) = self.tls_files().next() {
            return Err(ConfigError::new(
                key,
                "TLS is not supported with cache.sentinel: the sentinels and Redis are \
                 reached over plain TCP",
            ));
        }
        Ok(())
    }

    /// Checks `cache.sentinel` and reads its passwords: `cache.password_file`
    /// is the master's, `cache.sentinel.password_file` the sentinels'.
    pub(super) fn resolve_sentinel(&mut self) -> Result<(), ConfigError> {
        self.validate_sentinel()?;
        let master_password = self.password_file.clone();
        let Some(sentinel) = &mut self.sentinel else {
            return Ok(());
        };
        if let Some(path) = &master_password {
            sentinel.redis_password =
                Some(Secret::new(read_secret_file("cache.password_file", path)?));
        }
        if let Some(path) = &sentinel.password_file {
            sentinel.password = Some(Secret::new(read_secret_file(
                "cache.sentinel.password_file",
                path,
            )?));
        }
        Ok(())
    }
}

/// A YAML list, or one comma-separated string.
pub(super) fn nodes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Nodes {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Nodes::deserialize(deserializer)? {
        Nodes::List(nodes) => nodes,
        Nodes::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;

    const BASE: &str = "auth:\n  secret: 0123456789abcdef0123456789abcdef\nlogin:\n  open: true\n";

    fn sentinel(lines: &str) -> String {
        format!("{BASE}cache:\n  sentinel:\n{lines}")
    }

    fn key(yaml: &str) -> String {
        load(yaml, &[]).unwrap_err().key
    }

    #[test]
    fn a_sentinel_section_selects_redis_without_a_url() {
        let s = load(
            &sentinel("    master: mymaster\n    nodes: ['127.0.0.1:26379', '[::1]:26380']\n"),
            &[],
        )
        .unwrap();
        assert!(s.uses_redis());
        let sentinel = s.cache.sentinel.as_ref().unwrap();
        assert_eq!(sentinel.master, "mymaster");
        assert_eq!(sentinel.db, 0);
        assert_eq!(
            sentinel.addresses().unwrap(),
            [("127.0.0.1".into(), 26379), ("::1".into(), 26380)]
        );
        assert!(sentinel.password.is_none() && sentinel.redis_password.is_none());
        assert!(load("", &[]).unwrap().cache.sentinel.is_none());
    }

    #[test]
    fn the_environment_gives_the_nodes_as_one_string() {
        let env = [
            ("TOKENGATE__CACHE__SENTINEL__MASTER", "mymaster"),
            (
                "TOKENGATE__CACHE__SENTINEL__NODES",
                "10.0.0.1:26379, 10.0.0.2:26379",
            ),
            ("TOKENGATE__CACHE__SENTINEL__DB", "2"),
        ];
        let s = load(BASE, &env).unwrap();
        let sentinel = s.cache.sentinel.unwrap();
        assert_eq!(sentinel.nodes, ["10.0.0.1:26379", "10.0.0.2:26379"]);
        assert_eq!(sentinel.db, 2);
    }

    #[test]
    fn passwords_are_read_from_their_files() {
        let dir = std::env::temp_dir().join(format!("tokengate-sentinel-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("redis"), "master-pass\n").unwrap();
        std::fs::write(dir.join("sentinel"), "sentinel-pass\n").unwrap();
        let yaml = format!(
            "{BASE}cache:\n  password_file: {}\n  sentinel:\n    master: m\n    nodes: ['s:26379']\n    password_file: {}\n",
            dir.join("redis").display(),
            dir.join("sentinel").display(),
        );
        let s = load(&yaml, &[]).unwrap();
        let sentinel = s.cache.sentinel.as_ref().unwrap();
        assert_eq!(
            sentinel.redis_password.as_ref().unwrap().expose(),
            "master-pass"
        );
        assert_eq!(
            sentinel.password.as_ref().unwrap().expose(),
            "sentinel-pass"
        );
        assert!(s.cache.url.is_empty(), "no URL is made up");
        assert!(!format!("{s:?}").contains("-pass"), "redacted");
        let missing = yaml.replace("sentinel\n", "missing\n");
        assert_eq!(key(&missing), "cache.sentinel.password_file");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn each_mistake_names_its_key() {
        let ok = "    master: m\n    nodes: ['127.0.0.1:26379']\n";
        let cases = [
            ("cache.sentinel.master", "    nodes: ['127.0.0.1:26379']\n"),
            ("cache.sentinel.nodes", "    master: m\n"),
            ("cache.sentinel.nodes", "    master: m\n    nodes: []\n"),
            (
                "cache.sentinel.nodes[1]",
                "    master: m\n    nodes: ['a:1', 'b']\n",
            ),
            (
                "cache.sentinel.nodes[0]",
                "    master: m\n    nodes: ['a:0']\n",
            ),
            (
                "cache.sentinel.nodes[0]",
                "    master: m\n    nodes: [':26379']\n",
            ),
            (
                "cache.sentinel.nodes[0]",
                "    master: m\n    nodes: ['::1:26379']\n",
            ),
            (
                "cache.sentinel.nodes[0]",
                "    master: m\n    nodes: ['a:http']\n",
            ),
            ("cache.sentinel.db", &format!("{ok}    db: -1\n")),
            ("cache.sentinel", &format!("{ok}    port: 1\n")),
        ];
        for (expected, lines) in cases {
            assert_eq!(key(&sentinel(lines)), expected, "{lines}");
        }
        let with_url = format!("{}  url: redis://127.0.0.1:6379\n", sentinel(ok));
        assert_eq!(key(&with_url), "cache.url");
        let with_tls = format!("{}  tls_ca_file: /nonexistent/ca.crt\n", sentinel(ok));
        let e = load(&with_tls, &[]).unwrap_err();
        assert_eq!(e.key, "cache.tls_ca_file");
        assert!(e.message.contains("not supported"), "{}", e.message);
    }
}
