//! Opaque refresh tokens.
//!
//! Wire form: base64url (no padding) of
//! `sid (16) ‖ generation (4, big-endian) ‖ secret (32) ‖ owner ‖ tag (16)`,
//! no dots — it can never be mistaken for a JWT, nor a JWT for it.
//!
//! * `owner` (1 to [`MAX_OWNER`] bytes of UTF-8: the user's sub, or
//!   `client:<id>`) names the session's key, whose hash tag it is: on a
//!   Redis Cluster any replica finds the session's slot without a look-up
//!   (SPEC §16). It is no secret (the access token says it too).
//! * `secret` carries the entropy: 256 bits from the OS CSPRNG at login. The
//!   store keeps only a hash of it.
//! * `tag` = HMAC-SHA256 over the rest under a server key, truncated to 128
//!   bits. It lets any replica tell, without a round trip, a token we minted
//!   from garbage, and which generation of its session it belongs to. That is
//!   what makes theft detection exact: a genuine token of an older generation
//!   is a replayed, rotated token — at any depth — while a forged one, which
//!   anyone who knows a session id could make up, never ends a session.
//! * The successor of generation `g` is derived, not random:
//!   `secret' = HMAC(key, sid ‖ g ‖ secret)`. A retry inside the grace window
//!   recomputes the very same successor, so no plaintext token ever sits in
//!   the store. HMAC-SHA256 keyed with a ≥256-bit secret is a PRF: the derived
//!   secret is as unpredictable as the random one it came from.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

const SID_LEN: usize = 16;
const GEN_LEN: usize = 4;
const SECRET_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// The fixed part of a token: all but its owner.
const FIXED_LEN: usize = SID_LEN + GEN_LEN + SECRET_LEN + TAG_LEN;
/// The longest owner a token carries (a sub is at most 255 bytes, and
/// `client:` goes before a client's).
pub const MAX_OWNER: usize = 512;
/// Bounds of the encoded token, for cheap rejection of garbage.
const MIN_ENCODED: usize = ((FIXED_LEN + 1) * 8).div_ceil(6);
const MAX_ENCODED: usize = ((FIXED_LEN + MAX_OWNER) * 8).div_ceil(6);

/// The hash the store keeps in place of a refresh secret.
pub type SecretHash = [u8; 16];

/// A decoded, authenticated refresh token.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// Whose session: its key's hash tag (`tokens::owner`).
    pub owner: String,
    pub sid: Uuid,
    pub generation: u32,
    secret: [u8; SECRET_LEN],
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshToken")
            .field("owner", &self.owner)
            .field("sid", &self.sid)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl RefreshToken {
    /// The first token of `owner`'s new session: a fresh random secret.
    pub fn first(owner: &str, sid: Uuid) -> Self {
        let mut secret = [0u8; SECRET_LEN];
        rand::fill(&mut secret);
        Self {
            owner: owner.to_owned(),
            sid,
            generation: 0,
            secret,
        }
    }

    /// What the store keeps: see [`secret_hash`].
    pub fn secret_hash(&self) -> SecretHash {
        secret_hash(&self.secret)
    }
}

/// What the store keeps in place of a secret (a refresh token's, a browser
/// cookie's): SHA-256, truncated to 128 bits (preimage resistance, not
/// collision resistance, is what matters here).
pub fn secret_hash(secret: &[u8]) -> SecretHash {
    let digest = Sha256::digest(secret);
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&digest[..16]);
    hash
}

/// Mints, authenticates and derives refresh tokens under one server key.
pub struct RefreshTokens {
    tag_key: Hmac<Sha256>,
    successor_key: Hmac<Sha256>,
}

impl RefreshTokens {
    /// `root` is the server secret; two independent keys are derived from it
    /// so the tag and the successor never share a key with each other or with
    /// JWT signing.
    pub fn new(root: &[u8]) -> Self {
        Self {
            tag_key: keyed(&derive(root, b"tokengate/refresh-token/tag/v1")),
            successor_key: keyed(&derive(root, b"tokengate/refresh-token/successor/v1")),
        }
    }

    pub fn encode(&self, token: &RefreshToken) -> String {
        let mut raw = Vec::with_capacity(FIXED_LEN + token.owner.len());
        raw.extend_from_slice(token.sid.as_bytes());
        raw.extend_from_slice(&token.generation.to_be_bytes());
        raw.extend_from_slice(&token.secret);
        raw.extend_from_slice(token.owner.as_bytes());
        let tag = self.tag(&raw);
        raw.extend_from_slice(&tag);
        B64.encode(raw)
    }

    /// Decodes a presented token; `None` unless it is one we minted.
    pub fn decode(&self, text: &str) -> Option<RefreshToken> {
        if !(MIN_ENCODED..=MAX_ENCODED).contains(&text.len()) {
            return None;
        }
        let raw = B64.decode(text).ok()?;
        let (body, tag) = raw.split_at_checked(raw.len().checked_sub(TAG_LEN)?)?;
        if !bool::from(self.tag(body).ct_eq(tag)) {
            return None;
        }
        let (sid, rest) = body.split_at_checked(SID_LEN)?;
        let (generation, rest) = rest.split_at_checked(GEN_LEN)?;
        let (secret, owner) = rest.split_at_checked(SECRET_LEN)?;
        let owner = std::str::from_utf8(owner).ok().filter(|o| !o.is_empty())?;
        Some(RefreshToken {
            owner: owner.to_owned(),
            sid: Uuid::from_slice(sid).ok()?,
            generation: u32::from_be_bytes(generation.try_into().ok()?),
            secret: secret.try_into().ok()?,
        })
    }

    /// The one successor of `token`; `None` only past 2^32 rotations.
    pub fn successor(&self, token: &RefreshToken) -> Option<RefreshToken> {
        let mut mac = self.successor_key.clone();
        mac.update(token.sid.as_bytes());
        mac.update(&token.generation.to_be_bytes());
        mac.update(&token.secret);
        Some(RefreshToken {
            owner: token.owner.clone(),
            sid: token.sid,
            generation: token.generation.checked_add(1)?,
            secret: mac.finalize().into_bytes().into(),
        })
    }

    fn tag(&self, body: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.tag_key.clone();
        mac.update(body);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }
}

fn derive(root: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = keyed(root);
    mac.update(label);
    mac.finalize().into_bytes().into()
}

fn keyed(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> RefreshTokens {
        RefreshTokens::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn round_trip() {
        let t = tokens();
        for owner in ["alice", "client:billing", &"é".repeat(MAX_OWNER / 2)] {
            let token = RefreshToken::first(owner, Uuid::new_v4());
            let text = t.encode(&token);
            assert!(!text.contains('.'));
            assert_eq!(t.decode(&text), Some(token));
        }
    }

    #[test]
    fn first_tokens_are_random() {
        let sid = Uuid::new_v4();
        assert_ne!(
            RefreshToken::first("alice", sid).secret_hash(),
            RefreshToken::first("alice", sid).secret_hash()
        );
    }

    #[test]
    fn successor_is_deterministic_and_new() {
        let t = tokens();
        let first = RefreshToken::first("alice", Uuid::new_v4());
        let next = t.successor(&first).unwrap();
        assert_eq!(next.generation, 1);
        assert_eq!((next.sid, &next.owner), (first.sid, &first.owner));
        assert_eq!(Some(next.clone()), t.successor(&first));
        assert_ne!(next.secret_hash(), first.secret_hash());
        assert_ne!(t.encode(&next), t.encode(&first));
    }

    #[test]
    fn any_change_breaks_the_tag() {
        let t = tokens();
        let text = t.encode(&RefreshToken::first("alice", Uuid::new_v4()));
        for i in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            assert_eq!(t.decode(&changed), None, "position {i}");
        }
    }

    #[test]
    fn another_key_does_not_accept_it() {
        let text = tokens().encode(&RefreshToken::first("alice", Uuid::new_v4()));
        let other = RefreshTokens::new(b"another key, also thirty-two bytes!");
        assert_eq!(other.decode(&text), None);
    }

    #[test]
    fn garbage_and_jwts_are_refused() {
        let t = tokens();
        let jwt_like = format!("{}.{}.{}", "a".repeat(30), "b".repeat(30), "c".repeat(29));
        for garbage in [
            "",
            "x",
            &"A".repeat(MIN_ENCODED),
            &"A".repeat(MAX_ENCODED + 1),
            &jwt_like,
            &"é".repeat(46),
        ] {
            assert_eq!(t.decode(garbage), None);
        }
    }
}
