//! Access tokens already verified, by digest (cached mode, SPEC §10).
//!
//! Once the session check costs no round trip, verifying the JWT is the
//! largest part of a cached `/authenticate` (base64, two JSON documents and
//! an HMAC or a signature, with a verifier built per call). What verification
//! decides from the token's bytes alone — signature, algorithm, `typ`, `kid`,
//! issuer, audience — cannot change for the same bytes while the process
//! keeps its keys, so it is remembered under the token's SHA-256 and only the
//! times (`exp`, `iat`) are checked again on each use. A token is remembered
//! only after it verified; a SHA-256 match is a match of the whole token
//! (finding another token with the same digest is a preimage). The digest is
//! of the presented bytes, so the comparison reveals nothing about a stored
//! token a guesser could use.
//!
//! Bounded by `auth.local_cache.max_entries`: when full it is emptied, and
//! tokens are verified again as they come back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use aws_lc_rs::digest::{SHA256, digest};

use super::AccessClaims;

type Digest = [u8; 32];

pub struct VerifiedTokens {
    map: Mutex<HashMap<Digest, Arc<AccessClaims>>>,
    capacity: usize,
}

/// A token's place in the memo: what [`VerifiedTokens::get`] found, or
/// where to [`VerifiedTokens::put`] it once verified.
pub struct Lookup {
    digest: Digest,
    pub found: Option<Arc<AccessClaims>>,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub fn get(&self, token: &str) -> Lookup {
        let mut digest_bytes = [0; 32];
        digest_bytes.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
        let found = self.lock().get(&digest_bytes).cloned();
        Lookup {
            digest: digest_bytes,
            found,
        }
    }

    /// Remembers the claims of a token that verified.
    pub fn put(&self, lookup: Lookup, claims: Arc<AccessClaims>) {
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(lookup.digest, claims);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Digest, Arc<AccessClaims>>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn claims(sub: &str) -> Arc<AccessClaims> {
        Arc::new(AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: sub.into(),
            iat: 0,
            exp: 10,
            jti: Uuid::new_v4(),
            sid: Uuid::new_v4(),
            scope: None,
            client_id: None,
            email: None,
            email_verified: None,
        })
    }

    #[test]
    fn only_the_same_bytes_find_what_was_put() {
        let memo = VerifiedTokens::new(10);
        let lookup = memo.get("a.b.c");
        assert!(lookup.found.is_none());
        memo.put(lookup, claims("u1"));
        assert_eq!(
            memo.get("a.b.c").found.map(|c| c.sub.clone()),
            Some("u1".into())
        );
        assert!(memo.get("a.b.d").found.is_none());
        assert!(memo.get("a.b.c ").found.is_none());
    }

    #[test]
    fn a_full_memo_starts_over() {
        let memo = VerifiedTokens::new(2);
        for token in ["t1", "t2", "t3"] {
            let lookup = memo.get(token);
            memo.put(lookup, claims(token));
        }
        assert_eq!(memo.len(), 1);
        assert!(memo.get("t3").found.is_some());
        assert!(memo.get("t1").found.is_none());
    }
}
