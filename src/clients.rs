//! Client authentication by id and secret against argon2id hashes: trusted
//! callers of `/login` (`login.clients`, HTTP Basic) and OAuth clients
//! (`oauth.clients`, HTTP Basic or form fields).
//!
//! argon2id costs tens of milliseconds by design, far too much for every
//! login. After a secret verifies once, we remember an HMAC of it (under a key
//! made at start-up, never stored) and later compare that in constant time.
//! A wrong secret always pays the full verification, and so does an unknown
//! client id — against a dummy hash — so timing does not reveal which ids
//! exist. Verifications run on the blocking pool, at most one per core at a
//! time, so a flood of bad credentials cannot starve the request path.

use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// Hashes a client secret for `login.clients[].secret_hash` (argon2id, PHC
/// string, random salt).
pub fn hash_secret(secret: &[u8]) -> Result<String, argon2::password_hash::Error> {
    Ok(Argon2::default().hash_password(secret)?.to_string())
}

/// Parses a configured hash, accepting argon2id only.
pub fn parse_secret_hash(text: &str) -> Result<PasswordHash, String> {
    let hash = PasswordHash::new(text).map_err(|e| {
        format!("not a PHC hash string ({e}); make one with `tokengate hash-secret`")
    })?;
    if hash.algorithm != argon2::ARGON2ID_IDENT {
        return Err(format!(
            "algorithm {} is not argon2id; make one with `tokengate hash-secret`",
            hash.algorithm
        ));
    }
    Ok(hash)
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("no HTTP Basic client credentials")]
    Missing,
    #[error("malformed HTTP Basic credentials")]
    Malformed,
    #[error("unknown client or wrong secret")]
    Rejected,
    #[error("credential check failed to run")]
    Internal,
}

struct Client {
    id: String,
    hash: PasswordHash,
    /// MAC of the last secret that verified, if any.
    accepted: Mutex<Option<[u8; 32]>>,
}

pub struct ClientSecrets {
    clients: Vec<Client>,
    /// Verified against when the id is unknown; `None` for open login.
    dummy: Option<PasswordHash>,
    cache_key: Hmac<Sha256>,
    verifications: Arc<Semaphore>,
}

impl ClientSecrets {
    /// `(id, secret_hash)` pairs that passed [`crate::config::Settings::validate`].
    pub fn new<'a>(clients: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let clients = clients
            .into_iter()
            .map(|(id, hash)| {
                Ok(Client {
                    id: id.to_owned(),
                    hash: parse_secret_hash(hash)?,
                    accepted: Mutex::new(None),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut random = [0u8; 32];
        rand::fill(&mut random);
        let dummy = if clients.is_empty() {
            None
        } else {
            Some(
                Argon2::default()
                    .hash_password(&random)
                    .map_err(|e| e.to_string())?,
            )
        };
        rand::fill(&mut random);
        let cache_key =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&random).map_err(|e| e.to_string())?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Self {
            clients,
            dummy,
            cache_key,
            verifications: Arc::new(Semaphore::new(cores)),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Checks an `Authorization: Basic` header value (RFC 7617); returns the
    /// client id.
    pub async fn verify_basic(&self, authorization: Option<&[u8]>) -> Result<&str, ClientError> {
        let (id, secret) = parse_basic(authorization.ok_or(ClientError::Missing)?)?;
        self.verify(&id, secret).await
    }

    /// Checks an id and secret; returns the client id.
    pub async fn verify(&self, id: &str, secret: Vec<u8>) -> Result<&str, ClientError> {
        let client = self.clients.iter().find(|c| c.id == id);
        let mac = self.mac(&secret);
        if let Some(client) = client {
            let known = *client.accepted.lock().unwrap_or_else(|e| e.into_inner());
            if known.is_some_and(|known| bool::from(known.ct_eq(&mac))) {
                return Ok(&client.id);
            }
        }
        let hash = match client {
            Some(client) => client.hash.clone(),
            None => self.dummy.clone().ok_or(ClientError::Rejected)?,
        };
        let permit = self
            .verifications
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Internal)?;
        let verified = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            Argon2::default().verify_password(&secret, &hash).is_ok()
        })
        .await
        .map_err(|_| ClientError::Internal)?;
        match client {
            Some(client) if verified => {
                *client.accepted.lock().unwrap_or_else(|e| e.into_inner()) = Some(mac);
                Ok(&client.id)
            }
            _ => Err(ClientError::Rejected),
        }
    }

    fn mac(&self, secret: &[u8]) -> [u8; 32] {
        let mut mac = self.cache_key.clone();
        mac.update(secret);
        mac.finalize().into_bytes().into()
    }
}

/// Splits `Basic base64(id:secret)` (RFC 7617). `Missing` when the header
/// uses another scheme.
pub fn parse_basic(header: &[u8]) -> Result<(String, Vec<u8>), ClientError> {
    let text = std::str::from_utf8(header).map_err(|_| ClientError::Malformed)?;
    let (scheme, encoded) = text.trim().split_once(' ').ok_or(ClientError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ClientError::Missing);
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| ClientError::Malformed)?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(ClientError::Malformed)?;
    let id = String::from_utf8(decoded[..colon].to_vec()).map_err(|_| ClientError::Malformed)?;
    Ok((id, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))).into_bytes()
    }

    fn clients() -> ClientSecrets {
        let hash = hash_secret(b"s3cret:with:colons").unwrap();
        ClientSecrets::new([("web", hash.as_str())]).unwrap()
    }

    #[tokio::test]
    async fn the_right_secret_passes_and_is_remembered() {
        let c = clients();
        let header = basic("web", "s3cret:with:colons");
        assert_eq!(c.verify_basic(Some(&header)).await, Ok("web"));
        assert!(c.clients[0].accepted.lock().unwrap().is_some());
        assert_eq!(c.verify_basic(Some(&header)).await, Ok("web"));
    }

    #[tokio::test]
    async fn wrong_secret_unknown_id_and_bad_headers_fail() {
        let c = clients();
        assert_eq!(
            c.verify_basic(Some(&basic("web", "nope"))).await,
            Err(ClientError::Rejected)
        );
        assert_eq!(
            c.verify_basic(Some(&basic("ghost", "s3cret:with:colons")))
                .await,
            Err(ClientError::Rejected)
        );
        assert_eq!(c.verify_basic(None).await, Err(ClientError::Missing));
        assert_eq!(
            c.verify_basic(Some(b"Bearer abc")).await,
            Err(ClientError::Missing)
        );
        for bad in [
            &b"Basic"[..],
            b"Basic !!!",
            b"Basic bm9jb2xvbg==",
            b"\xff\xfe",
        ] {
            assert_eq!(c.verify_basic(Some(bad)).await, Err(ClientError::Malformed));
        }
    }

    #[tokio::test]
    async fn a_remembered_secret_does_not_open_the_door_to_others() {
        let c = clients();
        c.verify_basic(Some(&basic("web", "s3cret:with:colons")))
            .await
            .unwrap();
        assert_eq!(
            c.verify_basic(Some(&basic("web", "s3cret:with:colon")))
                .await,
            Err(ClientError::Rejected)
        );
    }

    #[test]
    fn only_argon2id_hashes_are_accepted() {
        assert!(parse_secret_hash(&hash_secret(b"x").unwrap()).is_ok());
        assert!(parse_secret_hash("plain").is_err());
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$Iq8i1Fb3uLaPZ7PNmQVoJA";
        assert!(parse_secret_hash(argon2i).is_err());
    }
}
