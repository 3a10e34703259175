//! `cache.*`: where sessions live — a Redis URL (with TLS files and a
//! password file), Sentinel or a Redis Cluster; empty, the embedded store.
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{
    ClusterSettings, ConfigError, Secret, SentinelSettings, duration, positive, read_secret_file,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// Redis URL; empty selects the embedded in-memory store.
    pub url: Secret,
    /// File holding the Redis password (Docker secrets); overrides the URL's.
    pub password_file: Option<PathBuf>,
    /// Most Redis connections per replica. Concurrent requests share
    /// (pipeline over) one multiplexed connection, so few are ever opened.
    pub pool_size: usize,
    /// Deadline for one store operation, pool wait included.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// PEM bundle of the CAs that may sign Redis's certificate (`rediss://`
    /// only); unset = the system's trust store.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for Redis's `tls-auth-clients`; needs
    /// `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Find the master through Redis Sentinel instead of `url` (see
    /// [`SentinelSettings`]).
    pub sentinel: Option<SentinelSettings>,
    /// A Redis Cluster instead of `url` (see [`ClusterSettings`]).
    pub cluster: Option<ClusterSettings>,
    /// The files' contents, read by [`Settings::resolved`](super::Settings::resolved).
    #[serde(skip)]
    pub tls_ca_pem: Option<String>,
    #[serde(skip)]
    pub tls_cert_pem: Option<String>,
    #[serde(skip)]
    pub tls_key_pem: Option<Secret>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            password_file: None,
            pool_size: 32,
            timeout: Duration::from_secs(1),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            sentinel: None,
            cluster: None,
            tls_ca_pem: None,
            tls_cert_pem: None,
            tls_key_pem: None,
        }
    }
}

impl CacheSettings {
    /// Reads the section's files and checks it: all a Redis client needs, for
    /// a command that uses nothing else (`token revoke`).
    pub fn resolved(mut self) -> Result<Self, ConfigError> {
        self.read_files()?;
        self.validate()?;
        Ok(self)
    }

    /// Reads `password_file`, the sentinel's passwords and the `tls_*` files.
    pub(super) fn read_files(&mut self) -> Result<(), ConfigError> {
        self.resolve_sentinel()?;
        self.resolve_cluster()?;
        if let Some(path) = &self.password_file
            && self.sentinel.is_none()
            && self.cluster.is_none()
        {
            let password = read_secret_file("cache.password_file", path)?;
            self.url = Secret(with_redis_password(self.url.expose(), &password)?);
        }
        self.read_tls_files()
    }

    /// Checks the section, its files read.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.validate_sentinel()?;
        self.validate_cluster()?;
        if !self.url.is_empty() {
            let client = deadpool_redis::redis::Client::open(self.url.expose()).map_err(|_| {
                ConfigError::new(
                    "cache.url",
                    "not a Redis URL (expected redis[s]://[:password@]host:port[/db])",
                )
            })?;
            if let deadpool_redis::redis::ConnectionAddr::TcpTls { insecure: true, .. } =
                client.get_connection_info().addr()
            {
                return Err(ConfigError::new(
                    "cache.url",
                    "#insecure (no certificate check) is not supported; \
                     trust the server's CA with cache.tls_ca_file",
                ));
            }
        }
        self.validate_tls()?;
        if self.pool_size == 0 {
            return Err(ConfigError::new("cache.pool_size", "must be at least 1"));
        }
        positive("cache.timeout", self.timeout)
    }

    /// Whether `url` asks for TLS (`rediss://`); `None` when it is no Redis URL.
    pub(super) fn uses_tls(&self) -> Option<bool> {
        let client = deadpool_redis::redis::Client::open(self.url.expose()).ok()?;
        Some(matches!(
            client.get_connection_info().addr(),
            deadpool_redis::redis::ConnectionAddr::TcpTls { .. }
        ))
    }

    /// The `tls_*` files that are set, with their keys.
    pub(super) fn tls_files(&self) -> impl Iterator<Item = (&'static str, &PathBuf)> {
        [
            ("cache.tls_ca_file", &self.tls_ca_file),
            ("cache.tls_cert_file", &self.tls_cert_file),
            ("cache.tls_key_file", &self.tls_key_file),
        ]
        .into_iter()
        .filter_map(|(key, path)| Some((key, path.as_ref()?)))
    }

    /// TLS files only with a `rediss://` URL; a client certificate and its
    /// key together or not at all.
    fn check_tls_combination(&self) -> Result<(), ConfigError> {
        let cluster_tls = self.cluster.as_ref().is_some_and(|c| c.tls);
        if let Some((key, _)) = self.tls_files().next()
            && self.uses_tls() != Some(true)
            && !cluster_tls
        {
            return Err(ConfigError::new(
                key,
                "needs cache.url to be a rediss:// (TLS) URL",
            ));
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => Err(ConfigError::new(
                "cache.tls_key_file",
                "required with cache.tls_cert_file (the client certificate's private key)",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "cache.tls_cert_file",
                "required with cache.tls_key_file (the certificate of that key)",
            )),
            _ => Ok(()),
        }
    }

    /// Reads the `tls_*` files.
    fn read_tls_files(&mut self) -> Result<(), ConfigError> {
        self.check_tls_combination()?;
        let read = |key: &str, path: &Option<PathBuf>| {
            path.as_deref()
                .map(|path| read_pem_file(key, path))
                .transpose()
        };
        self.tls_ca_pem = read("cache.tls_ca_file", &self.tls_ca_file)?;
        self.tls_cert_pem = read("cache.tls_cert_file", &self.tls_cert_file)?;
        self.tls_key_pem = read("cache.tls_key_file", &self.tls_key_file)?.map(Secret);
        Ok(())
    }

    /// Checks the read PEM files as rustls will use them, so that a bad file
    /// stops start-up instead of failing every connection to Redis.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        fn content<'a>(
            key: &str,
            path: &Option<PathBuf>,
            pem: Option<&'a str>,
        ) -> Result<Option<&'a str>, ConfigError> {
            match (path, pem) {
                (Some(_), None) => Err(ConfigError::new(key, "not read (Settings::resolved)")),
                (_, pem) => Ok(pem),
            }
        }
        self.check_tls_combination()?;
        let certificates = |key: &'static str, pem: &str| {
            let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ConfigError::new(key, format!("not a PEM certificate file: {e}")))?;
            if certs.is_empty() {
                return Err(ConfigError::new(
                    key,
                    "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                ));
            }
            Ok(certs)
        };
        let ca = content(
            "cache.tls_ca_file",
            &self.tls_ca_file,
            self.tls_ca_pem.as_deref(),
        )?;
        if let Some(pem) = ca {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates("cache.tls_ca_file", pem)? {
                roots.add(cert).map_err(|e| {
                    ConfigError::new(
                        "cache.tls_ca_file",
                        format!("not a usable CA certificate: {e}"),
                    )
                })?;
            }
        }
        let cert = content(
            "cache.tls_cert_file",
            &self.tls_cert_file,
            self.tls_cert_pem.as_deref(),
        )?;
        let key = content(
            "cache.tls_key_file",
            &self.tls_key_file,
            self.tls_key_pem.as_ref().map(Secret::expose),
        )?;
        if let (Some(cert), Some(key)) = (cert, key) {
            let chain = certificates("cache.tls_cert_file", cert)?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| {
                ConfigError::new("cache.tls_key_file", format!("no PEM private key: {e}"))
            })?;
            // The provider the store installs; it refuses an unsupported key
            // type and a key that is not the certificate's.
            let provider = rustls::crypto::aws_lc_rs::default_provider();
            rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
                let message = match e {
                    rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                        "is not the private key of the certificate in cache.tls_cert_file".into()
                    }
                    other => format!("unusable with cache.tls_cert_file: {other}"),
                };
                ConfigError::new("cache.tls_key_file", message)
            })?;
        }
        Ok(())
    }
}

/// Reads a PEM file; its shape is checked by [`Settings::validate`].
fn read_pem_file(key: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))
}

/// Puts `password` into the user-info part of a Redis URL (TLS or not).
fn with_redis_password(url: &str, password: &str) -> Result<String, ConfigError> {
    let (scheme, rest) = ["redis://", "rediss://"]
        .into_iter()
        .find_map(|scheme| Some((scheme, url.strip_prefix(scheme)?)))
        .ok_or_else(|| {
            ConfigError::new(
                "cache.password_file",
                "needs cache.url to be a redis:// or rediss:// URL",
            )
        })?;
    // Drop any user-info already in the URL; the file wins.
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    Ok(format!("{scheme}:{}@{host}", percent_encode(password)))
}

/// Percent-encodes all but RFC 3986 unreserved characters (URL user-info).
pub(super) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
