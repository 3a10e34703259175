//! Client authentication by id and secret against argon2id hashes: trusted
//! callers of `/login` (`login.clients`, HTTP Basic) and OAuth clients
//! (`oauth.clients`, HTTP Basic or form fields).
//!
//! argon2id costs tens of milliseconds by design, far too much for every
//! login. After a secret verifies once, we remember an HMAC of it (under a key
//! made at start-up, never stored) and later compare that in constant time.
//! Anything else is a guess until argon2 says otherwise, and guesses are
//! where floods come from, so before any hashing the [`Throttle`] asks the
//! store whether this client id or this address failed too often lately
//! (shared by every replica); past the limit the answer is `429` without a
//! hash. An honest client whose secret is remembered never reaches that
//! check, so a flood against its id does not lock it out. A wrong secret
//! pays the full verification, and so does an unknown client id — against a
//! dummy hash made with the configured hashes' own parameters — so timing
//! does not reveal which ids exist. Verifications run in the bounded
//! [`Verifier`] pool.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::store::{Millis, SessionStore, StoreError};
use crate::throttle::{Throttle, ThrottleError};
use crate::verifier::{Verifier, VerifyError};

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

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no HTTP Basic client credentials")]
    Missing,
    #[error("malformed HTTP Basic credentials")]
    Malformed,
    #[error("unknown client or wrong secret")]
    Rejected,
    #[error("too many failed attempts; retry in {0}s")]
    Throttled(u64),
    #[error(transparent)]
    Verifier(#[from] VerifyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ThrottleError> for ClientError {
    fn from(error: ThrottleError) -> Self {
        match error {
            ThrottleError::Throttled(seconds) => Self::Throttled(seconds),
            ThrottleError::Store(e) => Self::Store(e),
        }
    }
}

/// How a configured client proves itself.
pub enum Credential<'a> {
    /// An argon2id PHC string (`secret_hash`).
    Hash(&'a str),
    /// The secret itself (`secret_file`), hashed once at start-up.
    Secret(&'a [u8]),
}

struct Client {
    id: String,
    hash: PasswordHash,
    /// MAC of the last secret that verified, if any.
    accepted: Mutex<Option<[u8; 32]>>,
}

/// Where a credential check comes from, for throttling.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub addr: IpAddr,
    pub now: Millis,
}

pub struct ClientSecrets {
    /// `login` or `oauth`: keeps the two kinds' failure counters apart.
    kind: &'static str,
    clients: Vec<Client>,
    /// Verified against when the id is unknown; `None` without clients.
    dummy: Option<PasswordHash>,
    cache_key: Hmac<Sha256>,
    verifier: Arc<Verifier>,
    throttle: Throttle,
}

impl ClientSecrets {
    /// Clients that passed [`crate::config::Settings::validate`].
    pub fn new<'a>(
        kind: &'static str,
        clients: impl IntoIterator<Item = (&'a str, Credential<'a>)>,
        verifier: Arc<Verifier>,
        throttle: Throttle,
    ) -> Result<Self, String> {
        let clients = clients
            .into_iter()
            .map(|(id, credential)| {
                let hash = match credential {
                    Credential::Hash(text) => parse_secret_hash(text)?,
                    Credential::Secret(secret) => Argon2::default()
                        .hash_password(secret)
                        .map_err(|e| format!("client {id:?}: cannot hash its secret: {e}"))?,
                };
                Ok(Client {
                    id: id.to_owned(),
                    hash,
                    accepted: Mutex::new(None),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let dummy = clients.first().map(|c| dummy_like(&c.hash)).transpose()?;
        let mut random = [0u8; 32];
        rand::fill(&mut random);
        let cache_key =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&random).map_err(|e| e.to_string())?;
        Ok(Self {
            kind,
            clients,
            dummy,
            cache_key,
            verifier,
            throttle,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Checks an `Authorization: Basic` header value (RFC 7617); returns the
    /// client id.
    pub async fn verify_basic(
        &self,
        store: &impl SessionStore,
        authorization: Option<&[u8]>,
        attempt: Attempt,
    ) -> Result<&str, ClientError> {
        let (id, secret) = parse_basic(authorization.ok_or(ClientError::Missing)?)?;
        self.verify(store, &id, secret, attempt).await
    }

    /// Checks an id and secret; returns the client id.
    pub async fn verify(
        &self,
        store: &impl SessionStore,
        id: &str,
        secret: Vec<u8>,
        attempt: Attempt,
    ) -> Result<&str, ClientError> {
        let client = self.clients.iter().find(|c| c.id == id);
        let mac = self.mac(&secret);
        if let Some(client) = client {
            let known = *client.accepted.lock().unwrap_or_else(|e| e.into_inner());
            if known.is_some_and(|known| bool::from(known.ct_eq(&mac))) {
                return Ok(&client.id);
            }
        }
        // Unknown ids are counted by address only: counting each invented id
        // would let a flood fill the store.
        let keys = self
            .throttle
            .keys(self.kind, client.map(|c| c.id.as_str()), attempt.addr);
        self.throttle.check(store, &keys, attempt.now).await?;
        let hash = match client {
            Some(client) => client.hash.clone(),
            None => self.dummy.clone().ok_or(ClientError::Rejected)?,
        };
        let verified = self.verifier.verify(secret, hash).await?;
        match client {
            Some(client) if verified => {
                *client.accepted.lock().unwrap_or_else(|e| e.into_inner()) = Some(mac);
                Ok(&client.id)
            }
            _ => {
                self.throttle.fail(store, &keys, attempt.now).await?;
                Err(ClientError::Rejected)
            }
        }
    }

    fn mac(&self, secret: &[u8]) -> [u8; 32] {
        let mut mac = self.cache_key.clone();
        mac.update(secret);
        mac.finalize().into_bytes().into()
    }
}

/// A hash of a random secret with the same argon2 parameters as `like`, so
/// verifying against it costs what verifying a real client does.
fn dummy_like(like: &PasswordHash) -> Result<PasswordHash, String> {
    let params = Params::try_from(like).map_err(|e| format!("argon2 parameters: {e}"))?;
    let mut random = [0u8; 32];
    rand::fill(&mut random);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(&random)
        .map_err(|e| e.to_string())
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
    use std::time::Duration;

    use super::*;
    use crate::store::MockSessionStore;
    use crate::store::Timing;
    use crate::store::memory::MemoryStore;

    const T0: Millis = 1_800_000_000_000;

    fn basic(id: &str, secret: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))).into_bytes()
    }

    fn clients_with(max_failures: u32) -> ClientSecrets {
        let hash = hash_secret(b"s3cret:with:colons").unwrap();
        let verifier = Arc::new(Verifier::new(2, 16, Duration::from_secs(10)));
        let throttle = Throttle {
            max_failures,
            window: 60_000,
        };
        ClientSecrets::new(
            "login",
            [("web", Credential::Hash(&hash))],
            verifier,
            throttle,
        )
        .unwrap()
    }

    fn clients() -> ClientSecrets {
        clients_with(100)
    }

    fn store() -> MemoryStore {
        MemoryStore::new(Timing {
            idle: 1,
            refresh_lifetime: 1,
            grace: 0,
            max_session: 1,
        })
    }

    fn from(addr: &str) -> Attempt {
        Attempt {
            addr: addr.parse().unwrap(),
            now: T0,
        }
    }

    async fn check(
        c: &ClientSecrets,
        s: &MemoryStore,
        header: &[u8],
    ) -> Result<String, ClientError> {
        c.verify_basic(s, Some(header), from("192.0.2.1"))
            .await
            .map(str::to_owned)
    }

    #[tokio::test]
    async fn the_right_secret_passes_and_is_remembered() {
        let (c, s) = (clients(), store());
        let header = basic("web", "s3cret:with:colons");
        assert_eq!(check(&c, &s, &header).await.unwrap(), "web");
        assert!(c.clients[0].accepted.lock().unwrap().is_some());
        assert_eq!(check(&c, &s, &header).await.unwrap(), "web");
    }

    #[tokio::test]
    async fn wrong_secret_unknown_id_and_bad_headers_fail() {
        let (c, s) = (clients(), store());
        let rejected = |r: Result<String, ClientError>| matches!(r, Err(ClientError::Rejected));
        assert!(rejected(check(&c, &s, &basic("web", "nope")).await));
        assert!(rejected(
            check(&c, &s, &basic("ghost", "s3cret:with:colons")).await
        ));
        assert!(matches!(
            c.verify_basic(&s, None, from("192.0.2.1")).await,
            Err(ClientError::Missing)
        ));
        assert!(matches!(
            check(&c, &s, b"Bearer abc").await,
            Err(ClientError::Missing)
        ));
        for bad in [
            &b"Basic"[..],
            b"Basic !!!",
            b"Basic bm9jb2xvbg==",
            b"\xff\xfe",
        ] {
            assert!(matches!(
                check(&c, &s, bad).await,
                Err(ClientError::Malformed)
            ));
        }
    }

    #[tokio::test]
    async fn a_remembered_secret_does_not_open_the_door_to_others() {
        let (c, s) = (clients(), store());
        check(&c, &s, &basic("web", "s3cret:with:colons"))
            .await
            .unwrap();
        assert!(matches!(
            check(&c, &s, &basic("web", "s3cret:with:colon")).await,
            Err(ClientError::Rejected)
        ));
    }

    #[tokio::test]
    async fn failures_close_the_door_before_any_hashing() {
        let (c, s) = (clients_with(2), store());
        for _ in 0..2 {
            assert!(matches!(
                check(&c, &s, &basic("web", "guess")).await,
                Err(ClientError::Rejected)
            ));
        }
        // Even the right secret is now refused from this address (never
        // hashed), while another address still gets through.
        assert!(matches!(
            check(&c, &s, &basic("web", "s3cret:with:colons")).await,
            Err(ClientError::Throttled(60))
        ));
        let elsewhere = c
            .verify_basic(
                &s,
                Some(&basic("web", "s3cret:with:colons")),
                from("192.0.2.2"),
            )
            .await;
        assert!(
            matches!(elsewhere, Err(ClientError::Throttled(_))),
            "the id itself is throttled too: {elsewhere:?}"
        );
    }

    #[tokio::test]
    async fn a_remembered_client_is_never_locked_out_by_a_flood() {
        let (c, s) = (clients_with(2), store());
        let right = basic("web", "s3cret:with:colons");
        check(&c, &s, &right).await.unwrap();
        for _ in 0..5 {
            let _ = check(&c, &s, &basic("web", "guess")).await;
        }
        assert_eq!(check(&c, &s, &right).await.unwrap(), "web");
    }

    #[tokio::test]
    async fn throttled_attempts_never_count_or_hash() {
        let c = clients_with(2);
        let mut store = MockSessionStore::new();
        store
            .expect_failures_over()
            .times(1)
            .returning(|keys, _, _| {
                assert_eq!(keys, ["login:a:192.0.2.1", "login:c:web"]);
                Ok(Some(30_000))
            });
        store.expect_record_failure().never();
        let got = c
            .verify_basic(&store, Some(&basic("web", "guess")), from("192.0.2.1"))
            .await;
        assert!(matches!(got, Err(ClientError::Throttled(30))), "{got:?}");
        assert_eq!(c.verifier.runs().get(), 0, "no argon2 ran");
    }

    #[tokio::test]
    async fn unknown_ids_are_counted_by_address_only() {
        let c = clients_with(2);
        let mut store = MockSessionStore::new();
        store.expect_failures_over().returning(|keys, _, _| {
            assert_eq!(keys, ["login:a:192.0.2.1"]);
            Ok(None)
        });
        store
            .expect_record_failure()
            .times(1)
            .returning(|keys, _, _, _| {
                assert_eq!(keys, ["login:a:192.0.2.1"]);
                Ok(())
            });
        let got = c
            .verify_basic(&store, Some(&basic("ghost", "x")), from("192.0.2.1"))
            .await;
        assert!(matches!(got, Err(ClientError::Rejected)));
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let costs = |hash: &PasswordHash| {
            let p = Params::try_from(hash).unwrap();
            (p.m_cost(), p.t_cost(), p.p_cost())
        };
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password(b"x")
        .unwrap();
        assert_eq!(costs(&dummy_like(&cheap).unwrap()), (8, 1, 1));
        let default = parse_secret_hash(&hash_secret(b"x").unwrap()).unwrap();
        let d = Params::default();
        assert_eq!(
            costs(&dummy_like(&default).unwrap()),
            (d.m_cost(), d.t_cost(), d.p_cost())
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
