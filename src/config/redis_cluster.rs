//! `cache.cluster`: sessions on a Redis Cluster (SPEC §16). `nodes` are
//! seeds: any reachable one tells the client the slot map, and the client
//! follows `MOVED`/`ASK` redirections and failovers from there.
//!
//! With it, `cache.url` and `cache.sentinel` stay empty. The nodes'
//! password comes from `cache.password_file` or `cache.cluster.password_file`
//! (`requirepass`, the same on every node); `tls: true` speaks TLS to every
//! node, trusting `cache.tls_ca_file` (else the system's store), with
//! `cache.tls_cert_file`/`tls_key_file` as the client certificate.

use std::path::PathBuf;

use serde::Deserialize;

use super::sentinel::{addresses, nodes};
use super::{CacheSettings, ConfigError, Secret, read_secret_file};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// Seed nodes, each `host:port`: a list, or one comma-separated string
    /// (as an environment variable gives it).
    #[serde(deserialize_with = "nodes")]
    pub nodes: Vec<String>,
    /// File holding the nodes' password; unset = `cache.password_file`, or none.
    pub password_file: Option<PathBuf>,
    /// TLS to every node (`tls-cluster yes`, `tls-port`).
    pub tls: bool,
    /// The password read from `password_file` (or `cache.password_file`).
    #[serde(skip)]
    pub password: Option<Secret>,
}

impl ClusterSettings {
    /// The seeds' addresses; an error names the entry that is no `host:port`.
    pub fn addresses(&self) -> Result<Vec<(String, u16)>, ConfigError> {
        addresses(
            "cache.cluster.nodes",
            &self.nodes,
            "node of the cluster",
            6379,
        )
    }
}

impl CacheSettings {
    /// The shape of `cache.cluster` and what it excludes.
    pub(super) fn validate_cluster(&self) -> Result<(), ConfigError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        if !self.url.is_empty() {
            return Err(ConfigError::new(
                "cache.url",
                "must be empty with cache.cluster: the cluster's nodes give every address \
                 (exactly one of cache.url, cache.sentinel and cache.cluster)",
            ));
        }
        if self.sentinel.is_some() {
            return Err(ConfigError::new(
                "cache.sentinel",
                "must be unset with cache.cluster: a Redis Cluster fails over by itself \
                 (exactly one of cache.url, cache.sentinel and cache.cluster)",
            ));
        }
        cluster.addresses()?;
        if !cluster.tls
            && let Some((key, _)) = self.tls_files().next()
        {
            return Err(ConfigError::new(
                key,
                "needs cache.cluster.tls: true (TLS to every node of the cluster)",
            ));
        }
        Ok(())
    }

    /// Reads the nodes' password: `cache.cluster.password_file`, else
    /// `cache.password_file`.
    pub(super) fn resolve_cluster(&mut self) -> Result<(), ConfigError> {
        self.validate_cluster()?;
        let fallback = self.password_file.clone();
        let Some(cluster) = &mut self.cluster else {
            return Ok(());
        };
        let file = match (&cluster.password_file, fallback) {
            (Some(path), _) => Some(("cache.cluster.password_file", path.clone())),
            (None, Some(path)) => Some(("cache.password_file", path)),
            (None, None) => None,
        };
        if let Some((key, path)) = file {
            cluster.password = Some(Secret::new(read_secret_file(key, &path)?));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;

    const BASE: &str = "auth:\n  secret: 0123456789abcdef0123456789abcdef\nlogin:\n  open: true\n";

    fn cluster(lines: &str) -> String {
        format!("{BASE}cache:\n{lines}")
    }

    fn key(yaml: &str) -> String {
        load(yaml, &[]).unwrap_err().key
    }

    #[test]
    fn a_cluster_section_selects_redis_without_a_url() {
        let s = load(
            &cluster("  cluster:\n    nodes: ['127.0.0.1:7000', '[::1]:7001']\n"),
            &[],
        )
        .unwrap();
        assert!(s.uses_redis());
        let cluster = s.cache.cluster.as_ref().unwrap();
        assert_eq!(
            cluster.addresses().unwrap(),
            [("127.0.0.1".into(), 7000), ("::1".into(), 7001)]
        );
        assert!(!cluster.tls);
    }

    #[test]
    fn nodes_may_come_as_one_comma_separated_string() {
        let s = load(&cluster("  cluster:\n    nodes: 'a:1, b:2'\n"), &[]).unwrap();
        assert_eq!(s.cache.cluster.unwrap().nodes, ["a:1", "b:2"]);
    }

    #[test]
    fn exactly_one_of_url_sentinel_and_cluster() {
        assert_eq!(
            key(&cluster(
                "  url: redis://127.0.0.1:6379\n  cluster:\n    nodes: ['a:1']\n"
            )),
            "cache.url"
        );
        assert_eq!(
            key(&cluster(
                "  sentinel:\n    master: m\n    nodes: ['a:1']\n  cluster:\n    nodes: ['a:1']\n"
            )),
            "cache.sentinel"
        );
    }

    #[test]
    fn bad_nodes_are_named() {
        assert_eq!(
            key(&cluster("  cluster:\n    nodes: []\n")),
            "cache.cluster.nodes"
        );
        assert_eq!(
            key(&cluster("  cluster:\n    nodes: ['a:1', 'nope']\n")),
            "cache.cluster.nodes[1]"
        );
    }

    #[test]
    fn tls_files_need_tls_on() {
        assert_eq!(
            key(&cluster(
                "  tls_ca_file: /nonexistent.pem\n  cluster:\n    nodes: ['a:1']\n"
            )),
            "cache.tls_ca_file"
        );
    }

    #[test]
    fn the_password_file_is_read() {
        let path = std::env::temp_dir().join(format!("tg-cluster-pw-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").unwrap();
        let s = load(
            &cluster(&format!(
                "  cluster:\n    nodes: ['a:1']\n    password_file: {}\n",
                path.display()
            )),
            &[],
        )
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            s.cache.cluster.unwrap().password.unwrap().expose(),
            "s3cret"
        );
    }
}
