//! Tokens already verified, so the next request with the same token costs
//! a look-up instead of a signature check (HS256 about 2.5 µs, EdDSA about
//! 30 µs; `scripts/bench --layer`). A client sends one access token many
//! times over its life, so most requests hit.
//!
//! Keyed by the whole token: one that differs in any byte is verified
//! afresh. `exp`/`nbf` are still checked on every hit, and the session's
//! standing (the revocation feed) is the layer's, after this. Entries go
//! with their token's expiry, and all of them when the keys change (a key
//! withdrawn from the JWKS must stop verifying at once). Bounded: when
//! full, expired entries go, and if none had, everything (a burst of new
//! tokens costs a verification each, never memory).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use crate::claims::Signed;

pub(crate) struct Verified {
    entries: RwLock<Entries>,
    max: usize,
}

#[derive(Default)]
struct Entries {
    tokens: HashMap<Box<str>, Signed>,
    /// Which key set verified them: bumped when the keys change, so a token
    /// verified with the old ones just then is not remembered.
    generation: u64,
}

impl Verified {
    /// At most `max` tokens (0: none, every request is verified).
    pub(crate) fn new(max: usize) -> Self {
        Self {
            entries: RwLock::default(),
            max,
        }
    }

    pub(crate) fn get(&self, token: &str) -> Option<Signed> {
        if self.max == 0 {
            return None;
        }
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .tokens
            .get(token)
            .cloned()
    }

    /// Read before the keys a verification uses; given back to `insert`.
    pub(crate) fn generation(&self) -> u64 {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .generation
    }

    /// Remembers `token`, verified at `now` with the keys of `generation`
    /// and valid until `exp + leeway`.
    pub(crate) fn insert(
        &self,
        token: &str,
        signed: &Signed,
        generation: u64,
        now: u64,
        leeway: u64,
    ) {
        if self.max == 0 {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.generation != generation {
            return;
        }
        let tokens = &mut entries.tokens;
        if tokens.len() >= self.max {
            tokens.retain(|_, s| s.claims.exp.saturating_add(leeway) >= now);
            if tokens.len() >= self.max {
                tokens.clear();
            }
        }
        tokens.insert(token.into(), signed.clone());
    }

    /// Forgets everything: the keys changed.
    pub(crate) fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        entries.generation += 1;
        entries.tokens.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .tokens
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Claims;

    fn signed(exp: u64) -> Signed {
        let claims: Claims = serde_json::from_value(serde_json::json!({
            "sub": "alice", "sid": uuid::Uuid::nil(), "jti": uuid::Uuid::nil(),
            "iat": 1, "exp": exp, "iss": "tokengate", "aud": "tokengate",
        }))
        .expect("claims");
        Signed { claims, nbf: None }
    }

    #[test]
    fn remembers_by_the_whole_token_and_forgets_when_the_keys_change() {
        let verified = Verified::new(10);
        let generation = verified.generation();
        verified.insert("a.b.c", &signed(100), generation, 50, 5);
        assert!(verified.get("a.b.c").is_some());
        assert!(verified.get("a.b.d").is_none(), "one byte differs");
        verified.clear();
        assert!(verified.get("a.b.c").is_none());
        // Verified with the keys of before: not remembered.
        verified.insert("a.b.c", &signed(100), generation, 50, 5);
        assert_eq!(verified.len(), 0);
    }

    #[test]
    fn stays_within_its_bound_dropping_the_expired_first() {
        let verified = Verified::new(2);
        let generation = verified.generation();
        verified.insert("old", &signed(10), generation, 5, 5);
        verified.insert("live", &signed(100), generation, 5, 5);
        // At 50 "old" has expired (10 + 5 < 50): it makes room.
        verified.insert("new", &signed(100), generation, 50, 5);
        assert!(verified.get("old").is_none());
        assert!(verified.get("live").is_some() && verified.get("new").is_some());
        // Full of live ones: everything goes rather than growing.
        verified.insert("newer", &signed(100), generation, 50, 5);
        assert_eq!(verified.len(), 1);
        let off = Verified::new(0);
        off.insert("x", &signed(100), off.generation(), 5, 5);
        assert!(off.get("x").is_none());
    }
}
