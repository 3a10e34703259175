//! The configuration both examples share: where tokengate is, how its
//! tokens are signed, and the API token that watches the revocation feed.
//! Everything comes from the environment, with defaults; a missing or
//! unusable value is an error from `main`, never a panic.

use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokengate_layer::{ApiTokens, AuthLayer, Feed, Verifier};

pub type BoxError = Box<dyn Error + Send + Sync>;

/// `main`'s ending: an error in words (not `Debug`) and a failing status.
pub fn exit(name: &str, result: Result<(), BoxError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How long the feed may be down before the layer stops trusting it and
/// asks `/authenticate` per request instead.
const MAX_OUTAGE: Duration = Duration::from_secs(5);
/// How long to wait at start for the feed's first `live` event.
const WAIT_LIVE: Duration = Duration::from_secs(5);

/// `$name`, or `default` when it is unset (an unset variable is not an
/// error; one that is not UTF-8 is).
fn var_or(name: &str, default: &str) -> Result<String, BoxError> {
    match std::env::var(name) {
        Ok(value) => Ok(value.trim_end_matches('/').to_owned()),
        Err(std::env::VarError::NotPresent) => Ok(default.to_owned()),
        Err(e) => Err(format!("{name}: {e}").into()),
    }
}

/// `$name` if set and not empty.
fn var_opt(name: &str) -> Result<Option<String>, BoxError> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(Some(value)),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(format!("{name}: {e}").into()),
    }
}

/// Where to listen: `$LISTEN`, else `default`.
pub fn listen_addr(default: &str) -> Result<SocketAddr, BoxError> {
    let text = var_or("LISTEN", default)?;
    text.parse()
        .map_err(|e| format!("LISTEN={text:?} is not an address like 127.0.0.1:3000: {e}").into())
}

/// The pieces every [`AuthLayer`] of a service shares: one verifier (and
/// its key cache), one revocation feed, one API-token cache.
pub struct Tokengate {
    pub verifier: Verifier,
    pub feed: Feed,
    pub api_tokens: ApiTokens,
}

impl Tokengate {
    /// Reads the environment, loads the keys, starts the feed and waits
    /// (bounded) for it to be live.
    pub async fn from_env() -> Result<Self, BoxError> {
        let url = var_or("TOKENGATE_URL", "http://127.0.0.1:8080")?;
        let admin_url = var_or("TOKENGATE_ADMIN_URL", "http://127.0.0.1:9090")?;
        let Some(watch_token) = var_opt("TOKENGATE_WATCH_TOKEN")? else {
            return Err(
                "TOKENGATE_WATCH_TOKEN is not set: the revocation feed needs an API \
                        token with the scope sessions:watch. Make one with\n  \
                        tokengate token create orders-service --scopes sessions:watch\n\
                        (or POST /admin/tokens on a replica's admin listener) and export \
                        its tg_live_… value as TOKENGATE_WATCH_TOKEN"
                    .into(),
            );
        };

        let verifier = match var_opt("TOKENGATE_SECRET")? {
            Some(secret) => {
                eprintln!("verifying HS256 tokens with TOKENGATE_SECRET");
                Verifier::hs256(secret.into_bytes())
                    .build()
                    .map_err(|e| format!("TOKENGATE_SECRET: {e}"))?
            }
            None => {
                let jwks = format!("{url}/.well-known/jwks.json");
                let verifier = Verifier::jwks(jwks.as_str()).build()?;
                let keys = verifier
                    .load_keys()
                    .await
                    .map_err(|e| format!("cannot load tokengate's keys from {jwks}: {e}"))?;
                if keys == 0 {
                    return Err(format!(
                        "{jwks} lists no keys: this tokengate signs with its HS256 secret; \
                         set TOKENGATE_SECRET to it"
                    )
                    .into());
                }
                eprintln!("verifying tokens with the {keys} key(s) of {jwks}");
                verifier
            }
        };

        let feed = Feed::builder(format!("{admin_url}/events/sessions"), watch_token)
            .max_outage(MAX_OUTAGE)
            .fallback_authenticate(format!("{url}/authenticate"))
            .start()
            .map_err(|e| format!("the revocation feed at {admin_url}: {e}"))?;
        if tokio::time::timeout(WAIT_LIVE, feed.wait_live())
            .await
            .is_err()
        {
            // Not fatal: until it is live, the layer asks /authenticate.
            eprintln!(
                "the revocation feed at {admin_url}/events/sessions is not live after \
                 {WAIT_LIVE:?} (is TOKENGATE_WATCH_TOKEN valid, with sessions:watch?); \
                 asking {url}/authenticate per request until it is"
            );
        } else {
            eprintln!("the revocation feed at {admin_url}/events/sessions is live");
        }

        let api_tokens = ApiTokens::builder(format!("{url}/auth/validate")).build()?;
        Ok(Self {
            verifier,
            feed,
            api_tokens,
        })
    }

    /// A layer admitting any valid access or API token.
    pub fn layer(&self) -> AuthLayer {
        AuthLayer::new(self.verifier.clone())
            .with_feed(self.feed.clone())
            .with_api_tokens(self.api_tokens.clone())
    }
}
