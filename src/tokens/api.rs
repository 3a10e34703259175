//! The token itself: `tg_live_` and 43 base64url characters, 256 bits from
//! the operating system's CSPRNG. What is stored and looked up is the
//! SHA-256 of the whole string, so the database never holds a usable token,
//! and a lookup needs no constant-time compare (a hash is found or not; the
//! timing of the search says nothing about a preimage).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// What every API token starts with, so that a leaked one is easy to find
/// (secret scanners) and to tell from a JWT.
pub const PREFIX: &str = "tg_live_";

/// Random bytes per token.
const RANDOM_BYTES: usize = 32;

/// base64url of 32 bytes, without padding.
const ENCODED_LEN: usize = 43;

/// SHA-256 of a token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// The hash [`TokenHash::hex`] wrote.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// Lower-case hex, as the database and the cache key hold it.
    pub fn hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

/// Never print a hash by accident either: it is what the database is
/// searched by.
impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A new token and its hash.
pub fn generate() -> (String, TokenHash) {
    let mut random = [0u8; RANDOM_BYTES];
    rand::fill(&mut random);
    let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
    let hash = TokenHash::of(&token);
    (token, hash)
}

/// Whether a bearer token claims to be an API token (rather than a JWT):
/// anything starting `tg_`, so that near misses (`tg_test_…`, a cut-off
/// token) are refused as malformed API tokens, not parsed as JWTs.
pub fn is_api_token(token: &str) -> bool {
    token.starts_with("tg_")
}

/// The hash of a well-formed token; `None` for anything else — a wrong
/// prefix, length or alphabet, or a last character with bits set that 32
/// bytes cannot have (no two strings name one token).
pub fn parse(token: &str) -> Option<TokenHash> {
    let encoded = token.strip_prefix(PREFIX)?;
    if encoded.len() != ENCODED_LEN {
        return None;
    }
    let mut random = [0u8; RANDOM_BYTES];
    match URL_SAFE_NO_PAD.decode_slice(encoded, &mut random) {
        Ok(RANDOM_BYTES) => Some(TokenHash::of(token)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_to_their_hash() {
        let (token, hash) = generate();
        assert_eq!(token.len(), PREFIX.len() + ENCODED_LEN);
        assert!(token.starts_with(PREFIX));
        assert!(parse(&token) == Some(hash));
        assert_eq!(hash.hex().len(), 64);
        assert!(TokenHash::from_hex(&hash.hex()) == Some(hash));
        assert!(TokenHash::from_hex("ab").is_none());
        assert!(TokenHash::from_hex(&"g".repeat(64)).is_none());
        let (other, other_hash) = generate();
        assert_ne!(token, other);
        assert!(hash != other_hash);
    }

    #[test]
    fn near_misses_do_not_parse() {
        let (token, _) = generate();
        let body = &token[PREFIX.len()..];
        for bad in [
            String::new(),
            "tg_live_".into(),
            body.to_owned(),
            format!("tg_test_{body}"),
            format!("TG_LIVE_{body}"),
            format!("tg_live{body}"),
            format!("tg_live__{body}"),
            format!("{token}A"),
            token[..token.len() - 1].to_owned(),
            format!("{}+", &token[..token.len() - 1]),
            format!("{}=", &token[..token.len() - 1]),
            format!("{token}="),
            format!(" {token}"),
        ] {
            assert!(parse(&bad).is_none(), "{bad:?}");
        }
        // 43 characters carry 258 bits: the last one's two low bits must be 0.
        let noncanonical = format!("{PREFIX}{}B", "A".repeat(42));
        assert!(parse(&noncanonical).is_none());
        assert!(parse(&format!("{PREFIX}{}A", "A".repeat(42))).is_some());
    }

    #[test]
    fn api_tokens_are_told_from_jwts() {
        assert!(is_api_token("tg_live_x"));
        assert!(is_api_token("tg_test_x"));
        assert!(!is_api_token("eyJhbGciOiJIUzI1NiJ9.e30.x"));
    }

    #[test]
    fn the_hash_is_sha256_of_the_whole_token() {
        // As `printf %s tg_live_AAA…A | sha256sum` prints it.
        let token = format!("{PREFIX}{}", "A".repeat(43));
        let hash = parse(&token).map(|h| h.hex());
        assert_eq!(
            hash.as_deref(),
            Some("60ab17b9ce04de28fd98d527af2c4f364e557d41bdaa80e9d2dd70f7eb651ce2")
        );
    }
}
