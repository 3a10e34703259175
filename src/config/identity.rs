//! Settings of the identity half (SPEC §7): the durable database, user
//! accounts and the events they cause. Plain data, checked for shape here;
//! `db`, `users` and `events` turn them into pools and policies.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Secret, duration, positive, read_secret_file};

/// The embedded default: a file next to the process, created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://tokengate.db?mode=rwc";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://…` (one host) or `postgres://user[:pass]@host[:port]/db`.
    pub url: Secret,
    /// File holding the Postgres password (Docker secrets); replaces the URL's.
    pub password_file: Option<PathBuf>,
    /// Most connections per replica.
    pub max_connections: u32,
    /// Deadline of one database operation (and of getting a connection);
    /// past it the request fails with `503`.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// How often each replica re-reads the clients kept in the database
    /// (`tokengate client add`); requests never wait for the database.
    #[serde(deserialize_with = "duration")]
    pub clients_refresh: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::new(DEFAULT_DATABASE_URL),
            password_file: None,
            max_connections: 8,
            timeout: Duration::from_secs(2),
            clients_refresh: Duration::from_secs(5),
        }
    }
}

/// Who may call `/register`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    #[default]
    Open,
    /// Only trusted `/login` clients (HTTP Basic) may register users.
    Closed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserSettings {
    pub registration: Registration,
    /// Shortest password in characters (NIST SP 800-63B); the longest is
    /// [`MAX_PASSWORD_BYTES`].
    pub password_min: usize,
    /// Failed password logins of one account from one address within
    /// `failure_window` before that pair gets `429`; 0 = no limit.
    pub max_failures: u32,
    /// Failed password logins of one account from every address together
    /// within `failure_window` before the account gets `429` (NIST SP
    /// 800-63B's ceiling); 0 = no limit.
    pub max_failures_per_account: u32,
    #[serde(deserialize_with = "duration")]
    pub failure_window: Duration,
    /// Registrations one address may make per hour, unless a trusted login
    /// client vouches for them; beyond, `429`; 0 = no limit.
    pub registrations_per_address: u32,
}

/// Longest accepted password (SPEC §7); argon2 is fed no more than this.
pub const MAX_PASSWORD_BYTES: usize = 1024;

impl Default for UserSettings {
    fn default() -> Self {
        Self {
            registration: Registration::Open,
            password_min: 8,
            max_failures: 5,
            max_failures_per_account: 100,
            failure_window: Duration::from_secs(5 * 60),
            registrations_per_address: 10,
        }
    }
}

impl DatabaseSettings {
    pub fn is_postgres(&self) -> bool {
        let url = self.url.expose();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }

    /// Reads `password_file` and checks the section: all a command that only
    /// opens the database uses (`migrate`, `client`, `token`).
    pub fn resolved(mut self) -> Result<Self, ConfigError> {
        self.read_password_file()?;
        self.validate()?;
        Ok(self)
    }

    /// Puts the password of `password_file` into the URL.
    pub(super) fn read_password_file(&mut self) -> Result<(), ConfigError> {
        if let Some(path) = &self.password_file {
            let password = read_secret_file("database.password_file", path)?;
            self.url = Secret::new(with_postgres_password(self.url.expose(), &password)?);
        }
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let url = self.url.expose();
        if !(self.is_postgres() || url.starts_with("sqlite:")) {
            return Err(ConfigError::new(
                "database.url",
                "must start with sqlite: (one host) or postgres:// (any number of replicas)",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::new(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        positive("database.timeout", self.timeout)?;
        positive("database.clients_refresh", self.clients_refresh)
    }
}

impl UserSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.password_min == 0 || self.password_min > MAX_PASSWORD_BYTES {
            return Err(ConfigError::new(
                "users.password_min",
                format!("must be 1 to {MAX_PASSWORD_BYTES}"),
            ));
        }
        positive("users.failure_window", self.failure_window)
    }
}

/// Puts `password` into the user-info of a `postgres://` URL.
pub(super) fn with_postgres_password(url: &str, password: &str) -> Result<String, ConfigError> {
    let (scheme, rest) = ["postgres://", "postgresql://"]
        .into_iter()
        .find_map(|scheme| Some((scheme, url.strip_prefix(scheme)?)))
        .ok_or_else(|| {
            ConfigError::new(
                "database.password_file",
                "needs database.url to be a postgres:// URL",
            )
        })?;
    let (user, host) = match rest.rsplit_once('@') {
        Some((user_info, host)) => (user_info.split(':').next().unwrap_or_default(), host),
        None => ("", rest),
    };
    if user.is_empty() {
        return Err(ConfigError::new(
            "database.url",
            "with database.password_file, name the user: postgres://USER@host/db",
        ));
    }
    Ok(format!(
        "{scheme}{user}:{}@{host}",
        super::cache::percent_encode(password)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_file_replaces_the_urls_password() {
        assert_eq!(
            with_postgres_password("postgres://tg:old@db:5432/tg", "n:w@/").unwrap(),
            "postgres://tg:n%3Aw%40%2F@db:5432/tg"
        );
        assert!(with_postgres_password("postgres://db/tg", "x").is_err());
        assert!(with_postgres_password("sqlite://x.db", "x").is_err());
    }
}
