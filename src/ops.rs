//! What each command does, given plain data: serving ([`serve`]),
//! `hash-secret`, `healthcheck`, `migrate`, `client` ([`clients`]) and `token`
//! ([`tokens`]). The command line is parsed in `cli`, which this never sees.
//!
//! Serving takes the configuration resolved and checked whole
//! ([`Settings::load`](crate::config::Settings::load)); the other commands
//! take it as read ([`Settings::read`](crate::config::Settings::read)) and
//! resolve only the sections they use, so a key they do not use cannot stop
//! them: the database for `migrate`, `client` and `token`, the cache for
//! `token revoke`, `server.host` and `server.port` (plain values) for
//! `healthcheck`.

pub mod clients;
pub mod serve;
pub mod tokens;

use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{DatabaseSettings, ServerSettings};
use crate::db::{Database, DurableStore};

/// The configured database, its section resolved and checked here, with
/// every migration applied, as the service opens it at start-up.
pub async fn open_database(database: &DatabaseSettings) -> Result<Database, String> {
    let database = database.clone().resolved().map_err(|e| e.to_string())?;
    let db = Database::open(&database).map_err(|e| format!("database.url: {e}"))?;
    db.migrate()
        .await
        .map_err(|e| format!("database.url: cannot apply migrations: {e}"))?;
    Ok(db)
}

/// `tokengate migrate`: applies the migrations not yet applied, and exits.
pub async fn migrate(database: &DatabaseSettings) -> Result<(), String> {
    let db = open_database(database).await?;
    eprintln!("the {} database is migrated", db.kind());
    Ok(())
}

/// Reads one line from `input` (the trailing newline is not part of the
/// secret) and returns its argon2id hash.
pub fn hash_secret_from(input: impl BufRead) -> Result<String, String> {
    let line = input
        .lines()
        .next()
        .ok_or("no secret on standard input")?
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    let secret = line.strip_suffix('\r').unwrap_or(&line);
    if secret.is_empty() {
        return Err("the secret is empty".into());
    }
    crate::clients::hash_secret(secret.as_bytes()).map_err(|e| e.to_string())
}

/// `GET /ping` on the replica this configuration describes, via loopback
/// when it listens on every address. For container health checks: the
/// runtime image needs no curl.
pub async fn healthcheck(server: &ServerSettings) -> Result<(), String> {
    let host: IpAddr = match server.host.parse() {
        Ok(IpAddr::V4(ip)) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        Ok(IpAddr::V6(ip)) if ip.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        Ok(ip) => ip,
        Err(_) => Ipv4Addr::LOCALHOST.into(),
    };
    let address = (host, server.port);
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot connect to {host}:{}: {e}", address.1))?;
        stream
            .write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        stream
            .read_to_end(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
        if reply.starts_with(b"HTTP/1.1 200 ") {
            Ok(())
        } else {
            let line = reply.split(|&b| b == b'\r').next().unwrap_or_default();
            Err(format!("unhealthy: {}", String::from_utf8_lossy(line)))
        }
    };
    tokio::time::timeout(Duration::from_secs(3), probe)
        .await
        .map_err(|_| "no answer within 3s".to_string())?
}

/// Rows under a header, columns padded to their widest cell, two spaces
/// apart: what a person reads. Scripts use `--json`.
pub fn table<const N: usize>(
    header: [&str; N],
    rows: impl IntoIterator<Item = [String; N]>,
) -> String {
    let header = header.map(str::to_owned);
    let rows: Vec<[String; N]> = std::iter::once(header).chain(rows).collect();
    let mut widths = [0usize; N];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// An empty cell as `-`, so columns stay readable.
fn or_dash(cell: String) -> String {
    if cell.is_empty() { "-".into() } else { cell }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_secret_reads_one_line_without_its_newline() {
        let hash = hash_secret_from(&b"s3cret\nignored\n"[..]).unwrap();
        let parsed = crate::clients::parse_secret_hash(&hash).unwrap();
        use argon2::PasswordVerifier;
        assert!(
            argon2::Argon2::default()
                .verify_password(b"s3cret", &parsed)
                .is_ok()
        );
        assert!(hash_secret_from(&b"\n"[..]).is_err());
        assert!(hash_secret_from(&b""[..]).is_err());
        let crlf = hash_secret_from(&b"s3cret\r\n"[..]).unwrap();
        let parsed = crate::clients::parse_secret_hash(&crlf).unwrap();
        assert!(
            argon2::Argon2::default()
                .verify_password(b"s3cret", &parsed)
                .is_ok()
        );
    }
}
