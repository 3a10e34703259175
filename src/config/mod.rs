//! Typed settings, loaded once at start-up (SPEC §1).
//!
//! Sources, later ones winning: built-in defaults → the YAML file (`config.yml`
//! or `--config PATH`) → `TOKENGATE__SECTION__KEY` environment variables.
//! [`Settings::load`] also resolves `*_file` indirections and validates every
//! value, so the service never sees a half-valid configuration: an error names
//! the offending key in one line and start-up stops. A command that uses a few
//! sections [`Settings::read`]s the configuration and resolves only those
//! ([`DatabaseSettings::resolved`], [`CacheSettings::resolved`]).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

mod admin;
mod api_tokens;
mod auth;
mod cache;
mod clients;
mod cookie;
mod events;
mod gate;
mod grpc;
mod identity;
mod local_cache;
mod redis_cluster;
mod sentinel;
mod server;
mod totp;
pub use admin::AdminSettings;
pub use api_tokens::ApiTokenSettings;
pub use auth::{AuthSettings, SigningAlgorithm, SigningKeySettings};
pub use cache::CacheSettings;
use clients::validate_clients;
pub use clients::{
    LoginClient, LoginSettings, OAuthClient, OAuthSettings, ThrottleSettings, is_client_id,
};
pub use cookie::CookieSettings;
pub(crate) use cookie::is_host;
pub use events::{
    CLUSTER_STREAM, EventSettings, FEED_TAG, KafkaSasl, KafkaSettings, KafkaTls, WebhookSettings,
};
pub use gate::{AuthenticateSettings, IdentityHeader};
pub use grpc::GrpcSettings;
pub use identity::{
    DEFAULT_DATABASE_URL, DatabaseSettings, MAX_PASSWORD_BYTES, Registration, UserSettings,
};
pub use local_cache::{LocalCacheSettings, touch_interval};
pub use redis_cluster::ClusterSettings;
pub use sentinel::SentinelSettings;
pub use server::{LogMode, LoggingSettings, ServerSettings};
pub use totp::{TOTP_KEY_BYTES, TotpKey, TotpSettings};

/// The file read when no `--config` is given; missing is fine.
pub const DEFAULT_CONFIG_FILE: &str = "config.yml";

/// Shortest accepted HS256 key (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub logging: LoggingSettings,
    pub cache: CacheSettings,
    pub auth: AuthSettings,
    pub login: LoginSettings,
    pub oauth: OAuthSettings,
    pub throttle: ThrottleSettings,
    pub database: DatabaseSettings,
    pub users: UserSettings,
    pub totp: TotpSettings,
    pub events: EventSettings,
    pub grpc: GrpcSettings,
    pub admin: AdminSettings,
    pub authenticate: AuthenticateSettings,
    pub api_tokens: ApiTokenSettings,
    pub cookie: CookieSettings,
}

/// A configuration value that must never reach a log line.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "[redacted]"
        })
    }
}

/// Why the configuration was refused: the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl Settings {
    /// Loads defaults, the file and the process environment, then resolves and
    /// validates. An explicitly given file must exist; the default one may not.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::read(path)?.resolved()
    }

    /// [`Settings::load`] with the environment as a parameter, so tests never
    /// touch process-wide variables.
    pub fn load_from(
        path: Option<&Path>,
        environment: config::Environment,
    ) -> Result<Self, ConfigError> {
        Self::read_from(path, environment)?.resolved()
    }

    /// Loads defaults, the file and the process environment, checked for shape
    /// only (types, unknown keys): no file read, no value validated. For the
    /// commands that resolve just the sections they use.
    pub fn read(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::read_from(path, config::Environment::with_prefix("TOKENGATE"))
    }

    /// [`Settings::read`] with the environment as a parameter.
    pub fn read_from(
        path: Option<&Path>,
        environment: config::Environment,
    ) -> Result<Self, ConfigError> {
        let file = match path {
            Some(path) => config::File::from(path).required(true),
            None => config::File::with_name(DEFAULT_CONFIG_FILE).required(false),
        };
        let key = path.map_or(DEFAULT_CONFIG_FILE.into(), |p| p.display().to_string());
        config::Config::builder()
            .add_source(file.format(config::FileFormat::Yaml))
            // No `try_parsing`: it would turn a digits-only secret into a float.
            // Numbers still deserialize from strings where a number is expected.
            .add_source(environment.separator("__"))
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| from_config_error(&key, e))
    }

    /// Reads `*_file` indirections into their values, then validates.
    pub fn resolved(mut self) -> Result<Self, ConfigError> {
        if let Some(path) = &self.auth.secret_file {
            if !self.auth.secret.is_empty() {
                return Err(ConfigError::new(
                    "auth.secret_file",
                    "set either auth.secret or auth.secret_file, not both",
                ));
            }
            self.auth.secret = Secret(read_secret_file("auth.secret_file", path)?);
        }
        for (i, key) in self.auth.signing_keys.iter_mut().enumerate() {
            let name = format!("auth.signing_keys[{i}].private_key_file");
            key.private_key_pem = Secret(read_secret_file(&name, &key.private_key_file)?);
        }
        for (i, client) in self.login.clients.iter_mut().enumerate() {
            let Some(path) = &client.secret_file else {
                continue;
            };
            let key = format!("login.clients[{i}].secret_file");
            if !client.secret_hash.is_empty() {
                return Err(ConfigError::new(
                    key,
                    "set secret_hash or secret_file, not both",
                ));
            }
            client.secret = Secret(read_secret_file(&key, path)?);
            if client.secret.is_empty() {
                return Err(ConfigError::new(key, "the file is empty"));
            }
        }
        self.cache.read_files()?;
        self.admin.resolve()?;
        self.totp.resolve()?;
        self.database.read_password_file()?;
        self.events.read_files()?;
        if self.cache.cluster.is_some() && self.events.stream == events::DEFAULT_STREAM {
            self.events.stream = events::CLUSTER_STREAM.into();
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks what serde cannot: lengths, combinations, parsable strings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.logging.level)
            .map_err(|e| ConfigError::new("logging.level", format!("not a tracing filter: {e}")))?;
        self.cache.validate()?;
        self.database.validate()?;
        self.users.validate()?;
        self.totp.validate()?;
        self.events.validate()?;
        if self.cache.cluster.is_some() && !self.events.stream.contains(events::FEED_TAG) {
            return Err(ConfigError::new(
                "events.stream",
                format!(
                    "must contain the hash tag {} with cache.cluster: events are appended \
                     with the rest of the feed, in one slot (e.g. {})",
                    events::FEED_TAG,
                    events::CLUSTER_STREAM
                ),
            ));
        }
        self.cookie.validate()?;
        if self.server.max_connections == 0 {
            return Err(ConfigError::new(
                "server.max_connections",
                "must be at least 1",
            ));
        }
        positive(
            "server.header_read_timeout",
            self.server.header_read_timeout,
        )?;
        positive("server.body_read_timeout", self.server.body_read_timeout)?;
        positive("server.idle_timeout", self.server.idle_timeout)?;
        self.grpc.validate()?;
        non_empty("auth.issuer", &self.auth.issuer)?;
        non_empty("auth.audience", &self.auth.audience)?;
        let secret_len = self.auth.secret.expose().len();
        if secret_len == 0 && self.uses_redis() {
            return Err(ConfigError::new(
                "auth.secret",
                "required with Redis (cache.url, cache.sentinel or cache.cluster): every replica must sign and verify with the same key \
                 (set auth.secret or auth.secret_file)",
            ));
        }
        if secret_len != 0 && secret_len < MIN_SECRET_BYTES {
            return Err(ConfigError::new(
                "auth.secret",
                format!("must be at least {MIN_SECRET_BYTES} bytes, got {secret_len}"),
            ));
        }
        positive("auth.access_lifetime", self.auth.access_lifetime)?;
        positive("auth.refresh_lifetime", self.auth.refresh_lifetime)?;
        positive("auth.auto_logout", self.auth.auto_logout)?;
        local_cache::validate(&self.auth, self.cache.timeout)?;
        positive("throttle.window", self.throttle.window)?;
        positive("throttle.hash_wait", self.throttle.hash_wait)?;
        if self.auth.max_session < self.auth.access_lifetime {
            return Err(ConfigError::new(
                "auth.max_session",
                "must be at least auth.access_lifetime: no access token may outlive its session",
            ));
        }
        self.auth.validate_keys()?;
        validate_clients("login.clients", self.login.clients.iter().map(|c| &c.id))?;
        validate_clients("oauth.clients", self.oauth.clients.iter().map(|c| &c.id))?;
        self.admin.validate()?;
        let url = &self.oauth.public_url;
        let is_http = url.starts_with("http://") || url.starts_with("https://");
        if !url.is_empty() && !is_http {
            return Err(ConfigError::new(
                "oauth.public_url",
                "must start with http:// or https://",
            ));
        }
        Ok(())
    }

    pub fn uses_redis(&self) -> bool {
        !self.cache.url.is_empty() || self.cache.sentinel.is_some() || self.cache.cluster.is_some()
    }
}

pub(super) fn positive(key: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::new(key, "must be longer than 0s"));
    }
    Ok(())
}

pub(super) fn non_empty(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::new(key, "must not be empty"));
    }
    Ok(())
}

/// Reads a Docker-secrets style file: its content minus one trailing newline.
pub(super) fn read_secret_file(key: &str, path: &Path) -> Result<String, ConfigError> {
    let mut content = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?;
    if content.ends_with('\n') {
        content.pop();
        if content.ends_with('\r') {
            content.pop();
        }
    }
    Ok(content)
}

/// Turns the `config` crate's errors into one line that names the key.
fn from_config_error(file: &str, error: config::ConfigError) -> ConfigError {
    let key = match &error {
        config::ConfigError::Type { key: Some(key), .. }
        | config::ConfigError::At { key: Some(key), .. }
        | config::ConfigError::NotFound(key) => key.clone(),
        _ => file.to_string(),
    };
    // The crate appends " for key `a.b` in <origin>"; the key is said first.
    let text = error.to_string().replace('\n', " ");
    let message = text.split(" for key `").next().unwrap_or_default();
    ConfigError::new(key, message)
}

/// Deserializes human durations such as `15m`, `720h`, `90s`, `500ms`.
pub(super) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(text.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration like 15m, 720h, 90s or 500ms ({e})"
        ))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;

    pub(crate) fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        from_file(yaml, env, Settings::load_from)
    }

    /// `how` (load or read) of `yaml` in a file and `env`.
    fn from_file(
        yaml: &str,
        env: &[(&str, &str)],
        how: fn(Option<&Path>, config::Environment) -> Result<Settings, ConfigError>,
    ) -> Result<Settings, ConfigError> {
        let dir = std::env::temp_dir().join(format!("tokengate-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.yml");
        std::fs::write(&path, yaml).unwrap();
        let vars: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let result = how(
            Some(&path),
            config::Environment::with_prefix("TOKENGATE").source(Some(vars)),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults_match_the_spec() {
        let s = load("", &[]).unwrap();
        assert_eq!(s.server.host, "0.0.0.0");
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.logging.mode, LogMode::Text);
        assert_eq!(s.logging.level, "info");
        assert!(s.cache.url.is_empty());
        assert_eq!(s.auth.issuer, "tokengate");
        assert_eq!(s.auth.audience, "tokengate");
        assert!(s.auth.secret.is_empty());
        assert_eq!(s.auth.access_lifetime, Duration::from_secs(900));
        assert_eq!(s.auth.refresh_lifetime, Duration::from_secs(720 * 3600));
        assert_eq!(s.auth.auto_logout, Duration::from_secs(86400));
        assert_eq!(s.auth.refresh_grace, Duration::from_secs(10));
        assert_eq!(s.auth.leeway, Duration::from_secs(5));
        assert!(s.login.clients.is_empty());
        assert_eq!(s.database.url.expose(), "sqlite://tokengate.db?mode=rwc");
        assert_eq!(s.users.registration, Registration::Open);
        assert_eq!(s.users.password_min, 8);
        assert_eq!(s.users.max_failures, 5);
        assert_eq!(s.users.max_failures_per_account, 100);
        assert_eq!(s.users.failure_window, Duration::from_secs(300));
        assert_eq!(s.users.registrations_per_address, 10);
        assert_eq!(s.auth.max_sessions_per_user, 100);
        assert_eq!(s.events.max_len, 100_000);
        assert_eq!(s.throttle.max_failures, 10);
        assert_eq!(s.throttle.max_failures_per_address, 100);
        assert_eq!(s.events.stream, "tg:events");
        assert_eq!(s.grpc.port, 9090);
    }

    #[test]
    fn checked_in_config_file_holds_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_FILE);
        let empty = config::Environment::with_prefix("TOKENGATE").source(Some(HashMap::new()));
        let s = Settings::load_from(Some(&path), empty).unwrap();
        let d = Settings::default();
        assert_eq!(s.server.port, d.server.port);
        assert_eq!(s.auth.refresh_grace, d.auth.refresh_grace);
        assert_eq!(s.auth.auto_logout, d.auth.auto_logout);
        assert_eq!(s.auth.max_sessions_per_user, d.auth.max_sessions_per_user);
        assert_eq!(s.cache.pool_size, d.cache.pool_size);
        assert_eq!(s.grpc.port, d.grpc.port);
        assert_eq!(s.admin.listen, d.admin.listen);
        assert_eq!(s.database.url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(s.database.password_file, d.database.password_file);
        assert_eq!(s.database.max_connections, d.database.max_connections);
        assert_eq!(s.database.timeout, d.database.timeout);
        assert_eq!(s.database.clients_refresh, d.database.clients_refresh);
        assert_eq!(s.users.registration, d.users.registration);
        assert_eq!(s.users.password_min, d.users.password_min);
        assert_eq!(s.users.max_failures, d.users.max_failures);
        assert_eq!(
            s.users.max_failures_per_account,
            d.users.max_failures_per_account
        );
        assert_eq!(s.users.failure_window, d.users.failure_window);
        assert_eq!(
            s.users.registrations_per_address,
            d.users.registrations_per_address
        );
        assert_eq!(s.throttle.max_failures, d.throttle.max_failures);
        assert_eq!(
            s.throttle.max_failures_per_address,
            d.throttle.max_failures_per_address
        );
        assert_eq!(s.events.stream, d.events.stream);
        assert_eq!(s.events.max_len, d.events.max_len);
        assert_eq!(s.events.relay_interval, d.events.relay_interval);
        assert_eq!(
            s.api_tokens.misses_per_address,
            d.api_tokens.misses_per_address
        );
    }

    /// `config.compose.yml` as a replica in compose.yaml loads it: its secrets
    /// under /run/secrets (here a temporary directory) and the environment
    /// compose.yaml gives the `jwt` service.
    #[test]
    fn compose_config_file_loads_with_its_secrets() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let yaml = std::fs::read_to_string(root.join("config.compose.yml")).unwrap();
        let dir = std::env::temp_dir().join(format!("tokengate-compose-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let secrets = format!("{}/", dir.display());
        let db_password = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
        for (name, value) in [
            ("jwt_secret", SECRET),
            ("redis_password", "redis-password"),
            ("login_client_secret", "web-client-secret"),
            ("db_password", db_password),
        ] {
            std::fs::write(dir.join(name), value).unwrap();
        }
        let path = dir.join("config.yml");
        std::fs::write(&path, yaml.replace("/run/secrets/", &secrets)).unwrap();
        let env: HashMap<String, String> = [
            ("TOKENGATE__CACHE__URL", "redis://cache:6379/0".to_owned()),
            (
                "TOKENGATE__CACHE__PASSWORD_FILE",
                format!("{secrets}redis_password"),
            ),
            (
                "TOKENGATE__AUTH__SECRET_FILE",
                format!("{secrets}jwt_secret"),
            ),
            ("TOKENGATE__LOGGING__MODE", "json".to_owned()),
            ("TOKENGATE__ADMIN__LISTEN", "0.0.0.0:8081".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let result = Settings::load_from(
            Some(&path),
            config::Environment::with_prefix("TOKENGATE").source(Some(env)),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let s = result.unwrap();
        assert!(s.database.is_postgres());
        assert_eq!(
            s.database.url.expose(),
            format!("postgres://tokengate:{db_password}@db:5432/tokengate")
        );
        assert_eq!(s.login.clients.len(), 1);
        assert_eq!(s.login.clients[0].id, "web");
        assert!(!s.login.open);
        assert!(!s.server.trusted_proxies.is_empty());
        assert_eq!(s.admin.listen_addr(), Some(([0, 0, 0, 0], 8081).into()));
    }

    #[test]
    fn environment_overrides_the_file() {
        let s = load(
            "server:\n  port: 7000\nauth:\n  access_lifetime: 1m\n",
            &[
                ("TOKENGATE__SERVER__PORT", "9000"),
                ("TOKENGATE__AUTH__REFRESH_GRACE", "0s"),
                ("TOKENGATE__LOGGING__MODE", "json"),
                ("TOKENGATE__CACHE__URL", "redis://127.0.0.1:6379/0"),
                ("TOKENGATE__AUTH__SECRET", SECRET),
                ("TOKENGATE__LOGIN__OPEN", "true"),
            ],
        )
        .unwrap();
        assert_eq!(s.server.port, 9000);
        assert_eq!(s.auth.access_lifetime, Duration::from_secs(60));
        assert_eq!(s.auth.refresh_grace, Duration::ZERO);
        assert_eq!(s.logging.mode, LogMode::Json);
        assert!(s.uses_redis());
    }

    #[test]
    fn numeric_secret_from_the_environment_stays_a_string() {
        let digits = "12345678901234567890123456789012345";
        let s = load("", &[("TOKENGATE__AUTH__SECRET", digits)]).unwrap();
        assert_eq!(s.auth.secret.expose(), digits);
    }

    fn error_key(yaml: &str, env: &[(&str, &str)]) -> String {
        let e = load(yaml, env).unwrap_err();
        assert!(!e.to_string().contains('\n'), "one line: {e}");
        e.key
    }

    #[test]
    fn invalid_values_name_their_key() {
        assert_eq!(error_key("logging:\n  mode: xml\n", &[]), "logging.mode");
        assert_eq!(
            error_key("logging:\n  level: 'a=b=c'\n", &[]),
            "logging.level"
        );
        assert_eq!(
            error_key("auth:\n  access_lifetime: soon\n", &[]),
            "auth.access_lifetime"
        );
        assert_eq!(error_key("auth:\n  secret: short\n", &[]), "auth.secret");
        assert_eq!(error_key("cache:\n  url: 'http://x'\n", &[]), "cache.url");
        assert_eq!(
            error_key("", &[("TOKENGATE__SERVER__PORT", "99999")]),
            "server.port"
        );
        assert_eq!(error_key("auth:\n  leeway: 5\n", &[]), "auth.leeway");
    }

    /// What a command that opens only the database or the cache checks: the
    /// shape of everything, then that section alone.
    #[test]
    fn a_section_is_resolved_and_checked_alone() {
        let yaml = "auth:\n  algorithm: EdDSA\n  secret_file: /nonexistent/secret\n\
                    login:\n  clients: [{id: web, secret_hash: not-a-hash}]\n";
        let env = [("TOKENGATE__CACHE__POOL_SIZE", "0")];
        assert_eq!(load(yaml, &env).unwrap_err().key, "auth.secret_file");
        let read = from_file(yaml, &env, Settings::read_from).unwrap();
        let database = read.database.clone().resolved().unwrap();
        assert_eq!(database.url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(read.cache.resolved().unwrap_err().key, "cache.pool_size");

        let bad_url = [("TOKENGATE__DATABASE__URL", "mysql://db")];
        let read = from_file("", &bad_url, Settings::read_from).unwrap();
        assert_eq!(read.database.resolved().unwrap_err().key, "database.url");
        let file = [("TOKENGATE__CACHE__PASSWORD_FILE", "/nonexistent/password")];
        let read = from_file("", &file, Settings::read_from).unwrap();
        assert_eq!(
            read.cache.resolved().unwrap_err().key,
            "cache.password_file"
        );
        // The shape is everyone's.
        let port = [("TOKENGATE__SERVER__PORT", "http")];
        let e = from_file("", &port, Settings::read_from).unwrap_err();
        assert_eq!(e.key, "server.port");
        let e = from_file("loggin: {}\n", &[], Settings::read_from).unwrap_err();
        assert!(e.message.contains("loggin"), "{e}");
    }

    #[test]
    fn redis_without_a_secret_is_refused() {
        let e = load("cache:\n  url: redis://127.0.0.1:6379\n", &[]).unwrap_err();
        assert_eq!(e.key, "auth.secret");
        assert!(e.message.contains("every replica"), "{e}");
    }

    #[test]
    fn login_clients_may_read_their_secret_from_a_file() {
        let dir = std::env::temp_dir().join(format!("tokengate-login-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("login_client_secret");
        std::fs::write(&file, "s3cret\n").unwrap();
        let yaml = |extra: &str| {
            format!(
                "login:\n  clients:\n    - id: web\n      secret_file: {}\n{extra}",
                file.display()
            )
        };
        let s = load(&yaml(""), &[]).unwrap();
        assert_eq!(s.login.clients[0].secret.expose(), "s3cret");
        assert!(!format!("{s:?}").contains("s3cret"), "redacted");
        let both = yaml("      secret_hash: x\n");
        assert_eq!(error_key(&both, &[]), "login.clients[0].secret_file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(error_key(&yaml(""), &[]), "login.clients[0].secret_file");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn max_session_defaults_and_bounds() {
        let s = load("", &[]).unwrap();
        assert_eq!(s.auth.max_session, Duration::from_secs(720 * 3600));
        assert_eq!(s.throttle.max_failures, 10);
        assert_eq!(s.throttle.window, Duration::from_secs(300));
        let short = "auth:\n  max_session: 1m\n  access_lifetime: 15m\n";
        assert_eq!(error_key(short, &[]), "auth.max_session");
        assert!(load("auth:\n  max_session: 15m\n", &[]).is_ok());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = load("auth:\n  secrett: x\n", &[]).unwrap_err();
        assert!(e.to_string().contains("secrett"), "{e}");
    }

    #[test]
    fn login_clients_are_checked() {
        // A bad secret_hash is refused when the clients are built
        // (app::tests), naming the key as this does.
        let colon = format!(
            "login:\n  clients:\n    - id: 'a:b'\n      secret_hash: '{}'\n",
            crate::clients::hash_secret(b"s").unwrap()
        );
        assert_eq!(error_key(&colon, &[]), "login.clients[0].id");
    }

    #[test]
    fn secret_files_are_read_without_their_newline() {
        let dir = std::env::temp_dir().join(format!("tokengate-secret-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("jwt");
        let password = dir.join("redis");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        std::fs::write(&password, "p@ss word\n").unwrap();
        let yaml = format!(
            "cache:\n  url: redis://user:old@127.0.0.1:6379/2\n  password_file: {}\nauth:\n  secret_file: {}\nlogin:\n  open: true\n",
            password.display(),
            secret.display()
        );
        let s = load(&yaml, &[]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(s.auth.secret.expose(), SECRET);
        assert_eq!(
            s.cache.url.expose(),
            "redis://:p%40ss%20word@127.0.0.1:6379/2"
        );
    }

    /// A temporary directory with a self-signed certificate and its key
    /// (`a.crt`, `a.key`) and an unrelated key (`b.key`), made by `openssl`.
    struct TlsFiles(PathBuf);

    impl TlsFiles {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("tokengate-tls-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
            let openssl = |args: &[&str]| {
                let out = std::process::Command::new("openssl")
                    .args(args)
                    .current_dir(&dir)
                    .output()
                    .expect("openssl is installed");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            openssl(
                &[
                    &["req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=a"],
                    &ec[..],
                    &["-keyout", "a.key", "-out", "a.crt"],
                ]
                .concat(),
            );
            openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "b.key",
            ]);
            std::fs::write(dir.join("garbage.pem"), "not a PEM file\n").unwrap();
            Self(dir)
        }

        fn path(&self, name: &str) -> String {
            self.0.join(name).display().to_string()
        }

        /// A Redis cache section with a secret, for `load`.
        fn yaml(&self, url: &str, tls: &[(&str, &str)]) -> String {
            let mut yaml = format!(
                "auth:\n  secret: {SECRET}\nlogin:\n  open: true\ncache:\n  url: '{url}'\n"
            );
            for (key, file) in tls {
                yaml.push_str(&format!("  {key}: {}\n", self.path(file)));
            }
            yaml
        }
    }

    impl Drop for TlsFiles {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const TLS_URL: &str = "rediss://127.0.0.1:6380/0";

    #[test]
    fn tls_files_are_read_at_start_up() {
        let files = TlsFiles::new();
        let all = [
            ("tls_ca_file", "a.crt"),
            ("tls_cert_file", "a.crt"),
            ("tls_key_file", "a.key"),
        ];
        let s = load(&files.yaml(TLS_URL, &all), &[]).unwrap();
        assert_eq!(s.cache.uses_tls(), Some(true));
        assert!(
            s.cache
                .tls_ca_pem
                .as_deref()
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
        assert_eq!(s.cache.tls_cert_pem, s.cache.tls_ca_pem);
        let key = s.cache.tls_key_pem.as_ref().unwrap().expose();
        assert!(key.contains("PRIVATE KEY"));
        assert!(
            !format!("{s:?}").contains("PRIVATE KEY"),
            "the key is redacted"
        );
        // A CA alone (no client certificate) and plain rediss:// are fine too.
        load(&files.yaml(TLS_URL, &all[..1]), &[]).unwrap();
        let plain = load(&files.yaml(TLS_URL, &[]), &[]).unwrap();
        assert!(plain.cache.tls_ca_pem.is_none());
    }

    #[test]
    fn tls_files_need_a_rediss_url() {
        let files = TlsFiles::new();
        for key in ["tls_ca_file", "tls_cert_file", "tls_key_file"] {
            let file = if key == "tls_key_file" {
                "a.key"
            } else {
                "a.crt"
            };
            let yaml = files.yaml("redis://127.0.0.1:6379/0", &[(key, file)]);
            assert_eq!(error_key(&yaml, &[]), format!("cache.{key}"));
        }
        // Also with the in-memory store, and before a missing file is noticed.
        let memory = format!("cache:\n  tls_ca_file: {}\n", files.path("missing.crt"));
        let e = load(&memory, &[]).unwrap_err();
        assert_eq!(e.key, "cache.tls_ca_file");
        assert!(e.message.contains("rediss://"), "{e}");
    }

    #[test]
    fn client_certificate_and_key_come_together() {
        let files = TlsFiles::new();
        let cert_only = files.yaml(TLS_URL, &[("tls_cert_file", "a.crt")]);
        assert_eq!(error_key(&cert_only, &[]), "cache.tls_key_file");
        let key_only = files.yaml(TLS_URL, &[("tls_key_file", "a.key")]);
        assert_eq!(error_key(&key_only, &[]), "cache.tls_cert_file");
    }

    #[test]
    fn bad_tls_files_name_their_key() {
        let files = TlsFiles::new();
        let cases = [
            (
                "cache.tls_ca_file",
                [("tls_ca_file", "missing.crt")].as_slice(),
            ),
            ("cache.tls_ca_file", &[("tls_ca_file", "garbage.pem")]),
            ("cache.tls_ca_file", &[("tls_ca_file", "a.key")]),
            (
                "cache.tls_cert_file",
                &[("tls_cert_file", "garbage.pem"), ("tls_key_file", "a.key")],
            ),
            (
                "cache.tls_cert_file",
                &[("tls_cert_file", "missing.crt"), ("tls_key_file", "a.key")],
            ),
            (
                "cache.tls_key_file",
                &[("tls_cert_file", "a.crt"), ("tls_key_file", "garbage.pem")],
            ),
            (
                "cache.tls_key_file",
                &[("tls_cert_file", "a.crt"), ("tls_key_file", "a.crt")],
            ),
            // Not the certificate's key.
            (
                "cache.tls_key_file",
                &[("tls_cert_file", "a.crt"), ("tls_key_file", "b.key")],
            ),
        ];
        for (key, tls) in cases {
            assert_eq!(error_key(&files.yaml(TLS_URL, tls), &[]), key, "{tls:?}");
        }
    }

    #[test]
    fn password_file_works_with_a_tls_url() {
        let files = TlsFiles::new();
        let password = files.path("redis_password");
        std::fs::write(&password, "p@ss\n").unwrap();
        let yaml = format!(
            "{}  password_file: {password}\n",
            files.yaml(
                "rediss://:old@redis.internal:6380/1",
                &[("tls_ca_file", "a.crt")]
            )
        );
        let s = load(&yaml, &[]).unwrap();
        assert_eq!(
            s.cache.url.expose(),
            "rediss://:p%40ss@redis.internal:6380/1"
        );
        assert_eq!(s.cache.uses_tls(), Some(true));
    }

    #[test]
    fn insecure_tls_urls_are_refused() {
        let yaml = format!(
            "auth:\n  secret: {SECRET}\ncache:\n  url: 'rediss://127.0.0.1:6380/0#insecure'\n"
        );
        assert_eq!(error_key(&yaml, &[]), "cache.url");
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let mut s = Settings::default();
        s.auth.secret = Secret::new(SECRET);
        assert!(!format!("{s:?}").contains(SECRET));
    }

    #[test]
    fn signing_keys_are_checked() {
        let dir = std::env::temp_dir().join(format!("tokengate-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = dir.join("ed.pem");
        let ed = crate::tokens::keys::generate_private_key(SigningAlgorithm::EdDSA).unwrap();
        std::fs::write(&pem, ed).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "nope").unwrap();
        let keys = |algorithm: &str, first: &str, file: &Path| {
            format!(
                "auth:\n  algorithm: {algorithm}\n  signing_keys:\n    - kid: k1\n      algorithm: {first}\n      private_key_file: {}\n",
                file.display()
            )
        };
        let ok = load(&keys("EdDSA", "EdDSA", &pem), &[]).unwrap();
        assert!(
            ok.auth.signing_keys[0]
                .private_key_pem
                .expose()
                .contains("PRIVATE KEY")
        );
        assert!(
            !format!("{ok:?}").contains("PRIVATE KEY"),
            "keys are redacted"
        );
        assert_eq!(
            error_key(&keys("ES256", "EdDSA", &pem), &[]),
            "auth.signing_keys[0].algorithm"
        );
        // A garbage PEM is refused when the keys are built (app::tests).
        assert!(load(&keys("EdDSA", "EdDSA", &garbage), &[]).is_ok());
        assert_eq!(
            error_key(&keys("EdDSA", "EdDSA", &dir.join("missing.pem")), &[]),
            "auth.signing_keys[0].private_key_file"
        );
        assert_eq!(
            error_key(&keys("HS256", "EdDSA", &pem), &[]),
            "auth.signing_keys"
        );
        assert_eq!(
            error_key("auth:\n  algorithm: EdDSA\n", &[]),
            "auth.signing_keys"
        );
        assert_eq!(
            error_key("auth:\n  algorithm: HS512\n", &[]),
            "auth.algorithm"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn oauth_clients_are_checked() {
        let hash = crate::clients::hash_secret(b"s").unwrap();
        let client = |scopes: &str| {
            format!(
                "oauth:\n  clients:\n    - id: billing\n      secret_hash: '{hash}'\n      scopes: {scopes}\n      rate_limit: 600\n"
            )
        };
        let s = load(&client("[read, write]"), &[]).unwrap();
        assert_eq!(s.oauth.clients[0].scopes, ["read", "write"]);
        assert_eq!(s.oauth.clients[0].rate_limit, 600);
        assert!(!s.oauth.clients[0].refresh_tokens);
        // Scopes that are no scope tokens are refused when the clients are
        // built (app::tests).
        assert_eq!(
            error_key("oauth:\n  public_url: auth.example.com\n", &[]),
            "oauth.public_url"
        );
    }

    #[test]
    fn connection_limits_have_defaults_and_overrides() {
        let d = load("", &[]).unwrap().server;
        assert_eq!(d.max_connections, 4096);
        assert_eq!(d.header_read_timeout, Duration::from_secs(10));
        assert_eq!(d.body_read_timeout, Duration::from_secs(10));
        assert_eq!(d.idle_timeout, Duration::from_secs(10));
        let s = load(
            "server:\n  max_connections: 1000\n  header_read_timeout: 2s\n  idle_timeout: 90s\n",
            &[
                ("TOKENGATE__SERVER__BODY_READ_TIMEOUT", "500ms"),
                ("TOKENGATE__SERVER__MAX_CONNECTIONS", "2000"),
            ],
        )
        .unwrap()
        .server;
        assert_eq!(s.max_connections, 2000);
        assert_eq!(s.header_read_timeout, Duration::from_secs(2));
        assert_eq!(s.body_read_timeout, Duration::from_millis(500));
        assert_eq!(s.idle_timeout, Duration::from_secs(90));
    }

    #[test]
    fn connection_limits_are_checked() {
        assert_eq!(
            error_key("server:\n  max_connections: 0\n", &[]),
            "server.max_connections"
        );
        assert_eq!(
            error_key("server:\n  max_connections: -1\n", &[]),
            "server.max_connections"
        );
        for key in ["header_read_timeout", "body_read_timeout", "idle_timeout"] {
            assert_eq!(
                error_key(&format!("server:\n  {key}: 0s\n"), &[]),
                format!("server.{key}")
            );
            assert_eq!(
                error_key(&format!("server:\n  {key}: slow\n"), &[]),
                format!("server.{key}")
            );
        }
    }

    #[test]
    fn checked_in_config_file_holds_the_connection_limits() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_FILE);
        let empty = config::Environment::with_prefix("TOKENGATE").source(Some(HashMap::new()));
        let s = Settings::load_from(Some(&path), empty).unwrap().server;
        let d = ServerSettings::default();
        assert_eq!(s.max_connections, d.max_connections);
        assert_eq!(s.header_read_timeout, d.header_read_timeout);
        assert_eq!(s.body_read_timeout, d.body_read_timeout);
        assert_eq!(s.idle_timeout, d.idle_timeout);
    }
}
