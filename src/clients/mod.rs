//! Client authentication by id and secret against argon2id hashes: trusted
//! callers of `/login` (`login.clients`, HTTP Basic) and OAuth clients
//! (`oauth.clients`, HTTP Basic or form fields), from `config.yml` and from
//! the database ([`stored`]).
//!
//! argon2id costs tens of milliseconds by design, far too much for every
//! login. After a secret verifies once, we remember an HMAC of it (under a key
//! made at start-up, never stored) and later compare that in constant time.
//! Anything else is a guess until argon2 says otherwise, and guesses are
//! where floods come from, so before any hashing the [`Throttle`] asks the
//! store whether this client id from this address, or this address, failed
//! too often lately (shared by every replica); past the limit the answer is
//! `429` without a hash. A client's failures from everywhere together are
//! never counted against it: its secret is high-entropy, and such a total
//! would let anyone lock it out on every replica that has not yet
//! remembered its secret (a fresh start, a scale-up). A wrong secret
//! pays the full verification, and so does an unknown client id — against a
//! dummy hash made with the clients' own parameters — so timing does not
//! reveal which ids exist. Verifications run in the bounded [`Verifier`]
//! pool.
//!
//! A request reads one snapshot of the clients (an `Arc` swapped under a
//! lock that is never held across an await); [`ClientSecrets::replace_stored`]
//! builds the next one off the request path. One lookup answers the secret
//! and the client's policy together, so what was verified is what is granted.

pub mod stored;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::db::{ClientKind, StoredClient};
use crate::store::{SessionStore, StoreError};
use crate::throttle::{Throttle, ThrottleError};
use crate::time::Millis;
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

pub use crate::config::is_client_id;

#[derive(Debug, Clone, thiserror::Error)]
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
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    /// An argon2id PHC string (`secret_hash`).
    Hash(&'a str),
    /// The secret itself (`secret_file`), hashed once at start-up.
    Secret(&'a [u8]),
}

impl Credential<'_> {
    /// The configuration field it was given in.
    fn field(self) -> &'static str {
        match self {
            Self::Hash(_) => "secret_hash",
            Self::Secret(_) => "secret_file",
        }
    }
}

/// A configured client whose secret cannot be used: which one (its place
/// among those given), in which field, and why — for an error that names
/// the key.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Unusable {
    pub index: usize,
    pub field: &'static str,
    pub message: String,
}

/// What a client may do once it proved itself: `()` for login clients,
/// [`crate::oauth::ClientPolicy`] for OAuth clients.
pub trait Policy: PartialEq + Send + Sync + 'static {
    /// The policy of a client kept in the database.
    fn from_stored(client: &StoredClient) -> Self;
}

impl Policy for () {
    fn from_stored(_: &StoredClient) -> Self {}
}

struct Client<P> {
    id: String,
    /// The PHC string as given, to tell a changed hash on refresh.
    phc: String,
    hash: PasswordHash,
    policy: Arc<P>,
    /// MAC of the last secret that verified, if any.
    accepted: Mutex<Option<[u8; 32]>>,
}

impl<P> Client<P> {
    fn accepted(&self) -> MutexGuard<'_, Option<[u8; 32]>> {
        self.accepted.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What unknown ids verify against: a hash of random bytes with the
/// parameters of a real client's hash.
#[derive(Clone)]
struct Dummy {
    params: Params,
    hash: PasswordHash,
}

/// The clients one request sees.
struct ClientSet<P> {
    clients: HashMap<String, Arc<Client<P>>>,
    /// `None` without clients.
    dummy: Option<Dummy>,
}

/// Where a credential check comes from, for throttling.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub addr: IpAddr,
    pub now: Millis,
}

pub struct ClientSecrets<P> {
    /// Which clients of the database are ours (`None`: none are, as for
    /// the admin token).
    kind: Option<ClientKind>,
    /// Keeps the failure counters of each kind apart (`login:…`,
    /// `oauth:…`, `admin:…`) and names them in logs.
    label: &'static str,
    /// From `config.yml`, fixed at start-up; they win over stored ones.
    configured: Vec<Arc<Client<P>>>,
    current: RwLock<Arc<ClientSet<P>>>,
    /// Whether any client, configured or stored, has been known since
    /// start-up (see [`ClientSecrets::ever_had_clients`]).
    had_clients: AtomicBool,
    /// Stored ids already warned about (shadowed by `config.yml`, or with an
    /// unreadable hash), so that a refresh does not warn again.
    warned: Mutex<HashSet<String>>,
    cache_key: Hmac<Sha256>,
    verifier: Arc<Verifier>,
    throttle: Throttle,
    /// Checks under way, by client id and MAC of the secret: requests that
    /// present the same secret at once share one check (see `verify`).
    in_flight: Mutex<InFlight<P>>,
}

/// The outcome of one check, shared by every request that waits for it.
type Check<P> = tokio::sync::OnceCell<Result<Arc<P>, ClientError>>;

/// Checks under way, by client id and MAC of the secret presented.
type InFlight<P> = HashMap<(String, [u8; 32]), Arc<Check<P>>>;

impl<P: Policy> ClientSecrets<P> {
    /// The clients of `config.yml` of one kind, in its order (an error
    /// says which one).
    pub fn new<'a>(
        kind: ClientKind,
        clients: impl IntoIterator<Item = (&'a str, Credential<'a>, P)>,
        verifier: Arc<Verifier>,
        throttle: Throttle,
    ) -> Result<Self, Unusable> {
        Self::labelled(Some(kind), kind.as_str(), clients, verifier, throttle)
    }

    /// Secrets that are no kind of stored client (the admin token),
    /// throttled under `label`.
    pub fn labelled<'a>(
        kind: Option<ClientKind>,
        label: &'static str,
        clients: impl IntoIterator<Item = (&'a str, Credential<'a>, P)>,
        verifier: Arc<Verifier>,
        throttle: Throttle,
    ) -> Result<Self, Unusable> {
        let configured = clients
            .into_iter()
            .enumerate()
            .map(|(index, (id, credential, policy))| {
                let unusable = |message| Unusable {
                    index,
                    field: credential.field(),
                    message,
                };
                let hash = match credential {
                    Credential::Hash(text) => parse_secret_hash(text).map_err(unusable)?,
                    Credential::Secret(secret) => Argon2::default()
                        .hash_password(secret)
                        .map_err(|e| unusable(format!("cannot hash the secret: {e}")))?,
                };
                Ok(Arc::new(Client {
                    id: id.to_owned(),
                    phc: hash.to_string(),
                    hash,
                    policy: Arc::new(policy),
                    accepted: Mutex::new(None),
                }))
            })
            .collect::<Result<Vec<_>, Unusable>>()?;
        let dummy = match configured.first() {
            Some(first) => {
                // Parameters a hash that parsed has; failing here is ours.
                let unusable = |message| Unusable {
                    index: 0,
                    field: "secret_hash",
                    message,
                };
                let params = params_of(&first.hash).map_err(unusable)?;
                Some(Dummy {
                    hash: dummy_with(params.clone()).map_err(unusable)?,
                    params,
                })
            }
            None => None,
        };
        let clients = configured
            .iter()
            .map(|c| (c.id.clone(), c.clone()))
            .collect();
        let mut random = [0u8; 32];
        rand::fill(&mut random);
        // Any key length suits an HMAC.
        let cache_key = <Hmac<Sha256> as KeyInit>::new_from_slice(&random)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Ok(Self {
            kind,
            label,
            had_clients: AtomicBool::new(!configured.is_empty()),
            configured,
            current: RwLock::new(Arc::new(ClientSet { clients, dummy })),
            warned: Mutex::default(),
            cache_key,
            verifier,
            throttle,
            in_flight: Mutex::default(),
        })
    }

    /// No client at all, configured or stored (as last read).
    pub fn is_empty(&self) -> bool {
        self.snapshot().clients.is_empty()
    }

    /// Whether a client was ever known since start-up, even if all are gone
    /// now: what stays closed once closed is decided from this.
    pub fn ever_had_clients(&self) -> bool {
        self.had_clients.load(Ordering::Relaxed)
    }

    /// The policies of every client, configured and stored.
    pub fn policies(&self) -> Vec<Arc<P>> {
        let set = self.snapshot();
        set.clients.values().map(|c| c.policy.clone()).collect()
    }

    /// Checks an `Authorization: Basic` header value (RFC 7617); returns
    /// what the client may do.
    pub async fn verify_basic(
        &self,
        store: &impl SessionStore,
        authorization: Option<&[u8]>,
        attempt: Attempt,
    ) -> Result<Arc<P>, ClientError> {
        let (id, secret) = parse_basic(authorization.ok_or(ClientError::Missing)?)?;
        self.verify(store, &id, secret, attempt).await
    }

    /// Checks an id and secret; returns what the client may do.
    pub async fn verify(
        &self,
        store: &impl SessionStore,
        id: &str,
        secret: Vec<u8>,
        attempt: Attempt,
    ) -> Result<Arc<P>, ClientError> {
        // An `Arc`, not the lock: a refresh meanwhile swaps in a new set.
        let set = self.snapshot();
        let client = set.clients.get(id);
        let mac = self.mac(&secret);
        if let Some(client) = client {
            let known = *client.accepted();
            if known.is_some_and(|known| bool::from(known.ct_eq(&mac))) {
                return Ok(client.policy.clone());
            }
        }
        // A burst of requests with one secret, such as a busy backend's on a
        // replica that just started, shares one check: one argon2 run and
        // one counted attempt, not one each (which would queue them behind
        // each other and count them past the throttle's limit).
        let key = (id.to_owned(), mac);
        let check = lock(&self.in_flight)
            .entry(key.clone())
            .or_default()
            .clone();
        // Forgotten when this request is done, or dropped midway: the map
        // holds checks under way only, whatever clients do.
        let _forget = ForgetCheck {
            in_flight: &self.in_flight,
            key,
            check: check.clone(),
        };
        // Boxed: a cold path (a secret not yet remembered) whose future
        // would otherwise be nested into every caller's.
        check
            .get_or_init(|| Box::pin(self.check_fresh(store, &set, id, secret, mac, attempt)))
            .await
            .clone()
    }

    /// Checks a secret not remembered: throttled, then argon2 (against the
    /// dummy hash for an unknown id).
    async fn check_fresh(
        &self,
        store: &impl SessionStore,
        set: &ClientSet<P>,
        id: &str,
        secret: Vec<u8>,
        mac: [u8; 32],
        attempt: Attempt,
    ) -> Result<Arc<P>, ClientError> {
        let client = set.clients.get(id);
        let counters =
            self.throttle
                .counters(self.label, client.map(|c| c.id.as_str()), attempt.addr);
        // Counted as a failure from here until the secret proves right.
        self.throttle.admit(store, &counters, attempt.now).await?;
        let hash = match client {
            Some(client) => client.hash.clone(),
            None => set
                .dummy
                .as_ref()
                .map(|d| d.hash.clone())
                .ok_or(ClientError::Rejected)?,
        };
        let verified = match self.verifier.verify(secret, hash).await {
            Ok(verified) => verified,
            Err(e) => {
                self.throttle.forgive(store, &counters, attempt.now).await;
                return Err(e.into());
            }
        };
        match client {
            Some(client) if verified => {
                *client.accepted() = Some(mac);
                self.throttle.forgive(store, &counters, attempt.now).await;
                Ok(client.policy.clone())
            }
            _ => Err(ClientError::Rejected),
        }
    }

    /// Replaces the clients from the database with those of `stored` that
    /// are of this kind (the configured ones stay). A client whose hash is
    /// unchanged keeps its remembered secret, so a refresh costs no argon2;
    /// a changed hash forgets it. An id that `config.yml` also has is
    /// ignored, with one warning per id.
    pub async fn replace_stored(&self, stored: &[StoredClient]) -> Result<(), String> {
        let old = self.snapshot();
        let mut clients: HashMap<String, Arc<Client<P>>> = self
            .configured
            .iter()
            .map(|c| (c.id.clone(), c.clone()))
            .collect();
        let mut first_stored: Option<Arc<Client<P>>> = None;
        let mut problems = HashSet::new();
        for row in stored.iter().filter(|c| Some(c.kind) == self.kind) {
            if self.configured.iter().any(|c| c.id == row.id) {
                self.warn_once(&mut problems, &row.id, || {
                    tracing::warn!(
                        kind = self.label,
                        id = %row.id,
                        "a client in the database has the id of one in config.yml; \
                         config.yml wins and the database's is ignored"
                    );
                });
                continue;
            }
            if clients.contains_key(&row.id) {
                continue; // ids are the table's key; a second row cannot occur
            }
            let policy = P::from_stored(row);
            let client = match old.clients.get(&row.id) {
                Some(prev) if prev.phc == row.secret_hash && *prev.policy == policy => prev.clone(),
                Some(prev) if prev.phc == row.secret_hash => Arc::new(Client {
                    id: row.id.clone(),
                    phc: prev.phc.clone(),
                    hash: prev.hash.clone(),
                    policy: Arc::new(policy),
                    accepted: Mutex::new(*prev.accepted()),
                }),
                _ => match parse_secret_hash(&row.secret_hash) {
                    Ok(hash) => Arc::new(Client {
                        id: row.id.clone(),
                        phc: row.secret_hash.clone(),
                        hash,
                        policy: Arc::new(policy),
                        accepted: Mutex::new(None),
                    }),
                    Err(e) => {
                        self.warn_once(&mut problems, &row.id, || {
                            tracing::warn!(
                                kind = self.label,
                                id = %row.id,
                                error = %e,
                                "a client in the database has an unusable secret_hash; ignored"
                            );
                        });
                        continue;
                    }
                },
            };
            first_stored.get_or_insert_with(|| client.clone());
            clients.insert(row.id.clone(), client);
        }
        lock(&self.warned).retain(|id| problems.contains(id));

        // The configured clients' parameters when there are any, else the
        // first stored client's. A new dummy only when those change: making
        // one costs a full hash.
        let like = self.configured.first().or(first_stored.as_ref());
        let dummy = match like {
            None => None,
            Some(like) => {
                let params = params_of(&like.hash)?;
                match &old.dummy {
                    Some(dummy) if dummy.params == params => Some(dummy.clone()),
                    _ => {
                        let made = params.clone();
                        let hash = tokio::task::spawn_blocking(move || dummy_with(made))
                            .await
                            .map_err(|e| format!("cannot make the dummy hash: {e}"))??;
                        Some(Dummy { params, hash })
                    }
                }
            }
        };
        for id in clients.keys().filter(|id| !old.clients.contains_key(*id)) {
            tracing::info!(kind = self.label, %id, "client from the database added");
        }
        for id in old.clients.keys().filter(|id| !clients.contains_key(*id)) {
            tracing::info!(kind = self.label, %id, "client from the database removed");
        }
        if !clients.is_empty() {
            self.had_clients.store(true, Ordering::Relaxed);
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(ClientSet { clients, dummy });
        Ok(())
    }

    /// Runs `warn` unless `id` was warned about before; remembers it in
    /// `problems` either way (ids that stop being a problem are forgotten).
    fn warn_once(&self, problems: &mut HashSet<String>, id: &str, warn: impl FnOnce()) {
        problems.insert(id.to_owned());
        if lock(&self.warned).insert(id.to_owned()) {
            warn();
        }
    }

    fn snapshot(&self) -> Arc<ClientSet<P>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn mac(&self, secret: &[u8]) -> [u8; 32] {
        let mut mac = self.cache_key.clone();
        mac.update(secret);
        mac.finalize().into_bytes().into()
    }
}

/// Takes a check off the map of those under way, unless a newer one for
/// the same key took its place.
struct ForgetCheck<'a, P> {
    in_flight: &'a Mutex<InFlight<P>>,
    key: (String, [u8; 32]),
    check: Arc<Check<P>>,
}

impl<P> Drop for ForgetCheck<'_, P> {
    fn drop(&mut self) {
        let mut in_flight = lock(self.in_flight);
        if in_flight
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &self.check))
        {
            in_flight.remove(&self.key);
        }
    }
}

/// A set stays whole after any panic (inserts and removals are single steps).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn params_of(hash: &PasswordHash) -> Result<Params, String> {
    Params::try_from(hash).map_err(|e| format!("argon2 parameters: {e}"))
}

/// A hash of a random secret with `params`, so verifying against it costs
/// what verifying a real client does.
fn dummy_with(params: Params) -> Result<PasswordHash, String> {
    let mut random = [0u8; 32];
    rand::fill(&mut random);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(&random)
        .map_err(|e| e.to_string())
}

/// A dummy with the same argon2 parameters as `like`.
#[cfg(test)]
fn dummy_like(like: &PasswordHash) -> Result<PasswordHash, String> {
    dummy_with(params_of(like)?)
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
    use crate::store::memory::MemoryStore;
    use crate::store::{Admission, MockSessionStore};
    use crate::throttle::Limits;

    const T0: Millis = 1_800_000_000_000;

    fn basic(id: &str, secret: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))).into_bytes()
    }

    /// A policy that tells which client it belongs to, and where it came from.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct Named(pub String);

    impl Policy for Named {
        fn from_stored(client: &StoredClient) -> Self {
            Self(format!("stored {}", client.id))
        }
    }

    fn clients_with(max_failures: u32) -> ClientSecrets<Named> {
        let hash = hash_secret(b"s3cret:with:colons").unwrap();
        let verifier = Arc::new(Verifier::new(2, 16, Duration::from_secs(10)));
        let throttle = Throttle::new(Limits {
            per_pair: max_failures,
            per_address: 100,
            per_identity: 0,
            window: 60_000,
        });
        ClientSecrets::new(
            ClientKind::Login,
            [("web", Credential::Hash(&hash), Named("web".into()))],
            verifier,
            throttle,
        )
        .unwrap()
    }

    fn clients() -> ClientSecrets<Named> {
        clients_with(100)
    }

    fn store() -> MemoryStore {
        MemoryStore::for_tests()
    }

    fn from(addr: &str) -> Attempt {
        Attempt {
            addr: addr.parse().unwrap(),
            now: T0,
        }
    }

    async fn check(
        c: &ClientSecrets<Named>,
        s: &MemoryStore,
        header: &[u8],
    ) -> Result<String, ClientError> {
        let policy = c.verify_basic(s, Some(header), from("192.0.2.1")).await?;
        Ok(policy.0.clone())
    }

    #[tokio::test]
    async fn the_right_secret_passes_and_is_remembered() {
        let (c, s) = (clients(), store());
        let header = basic("web", "s3cret:with:colons");
        assert_eq!(check(&c, &s, &header).await.unwrap(), "web");
        assert!(c.snapshot().clients["web"].accepted().is_some());
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
    async fn failures_close_the_door_of_their_address_only() {
        // A fresh process: the right secret was never verified here, so
        // nothing remembered shields it (a new replica, a restart).
        let (c, s) = (clients_with(2), store());
        for _ in 0..5 {
            let _ = check(&c, &s, &basic("web", "guess")).await;
        }
        // The right secret is refused from the guessing address (never
        // hashed there)...
        assert!(matches!(
            check(&c, &s, &basic("web", "s3cret:with:colons")).await,
            Err(ClientError::Throttled(60))
        ));
        // ...and passes from any other: a client has no total of its own.
        let elsewhere = c
            .verify_basic(
                &s,
                Some(&basic("web", "s3cret:with:colons")),
                from("192.0.2.2"),
            )
            .await
            .map(|p| p.0.clone());
        assert_eq!(elsewhere.unwrap(), "web");
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
    async fn a_burst_with_one_secret_shares_one_check() {
        // A limit of 2: were each request checked and counted, most of the
        // burst would be refused.
        let (c, s) = (clients_with(2), store());
        let right = basic("web", "s3cret:with:colons");
        let burst = (0..32).map(|_| check(&c, &s, &right));
        let answers = futures_util::future::join_all(burst).await;
        assert!(answers.iter().all(|a| a.as_deref().ok() == Some("web")));
        assert_eq!(c.verifier.runs().get(), 1, "one argon2 run");
        // Wrong secrets are each their own check.
        let guesses: Vec<Vec<u8>> = (0..2).map(|n| basic("web", &format!("guess{n}"))).collect();
        let wrong = guesses.iter().map(|g| check(&c, &s, g));
        let _ = futures_util::future::join_all(wrong).await;
        assert_eq!(c.verifier.runs().get(), 3);
        assert!(
            lock(&c.in_flight).is_empty(),
            "only checks under way are kept"
        );
    }

    #[tokio::test]
    async fn a_right_secret_takes_its_counted_attempt_back() {
        let c = clients_with(2);
        let mut store = MockSessionStore::new();
        store
            .expect_admit_attempt()
            .times(1)
            .returning(|_, _, _| Ok(Admission::Admitted));
        store
            .expect_forgive_attempt()
            .times(1)
            .returning(|counters, _| {
                assert_eq!(counters.len(), 2);
                Ok(())
            });
        let got = c
            .verify_basic(
                &store,
                Some(&basic("web", "s3cret:with:colons")),
                from("192.0.2.1"),
            )
            .await;
        assert_eq!(got.unwrap().0, "web");
    }

    #[tokio::test]
    async fn throttled_attempts_never_count_or_hash() {
        let c = clients_with(2);
        let mut store = MockSessionStore::new();
        store
            .expect_admit_attempt()
            .times(1)
            .returning(|keys, _, _| {
                let keys: Vec<&str> = keys.iter().map(|c| c.key.as_str()).collect();
                assert_eq!(keys, ["login:a:192.0.2.1", "login:p:192.0.2.1:web"]);
                Ok(Admission::Refused(vec![None, Some(30_000)]))
            });
        store.expect_forgive_attempt().never();
        let got = c
            .verify_basic(&store, Some(&basic("web", "guess")), from("192.0.2.1"))
            .await;
        assert!(matches!(got, Err(ClientError::Throttled(30))), "{got:?}");
        assert_eq!(c.verifier.runs().get(), 0, "no argon2 ran");
    }

    #[tokio::test]
    async fn unknown_ids_are_counted_by_address_only_and_never_forgiven() {
        let c = clients_with(2);
        let mut store = MockSessionStore::new();
        store
            .expect_admit_attempt()
            .times(1)
            .returning(|counters, _, _| {
                assert_eq!(counters.len(), 1);
                assert_eq!(counters[0].key, "login:a:192.0.2.1");
                Ok(Admission::Admitted)
            });
        store.expect_forgive_attempt().never();
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
