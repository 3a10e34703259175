//! Recovery codes: the way back in when the phone with the authenticator
//! app is lost. Ten per enrolment, shown once, each good for one sign-in.
//!
//! A code is 12 random base32 characters (60 bits), shown as
//! `xxxx-xxxx-xxxx`. Only its SHA-256 is stored: a code is random, not
//! chosen by a person, so a fast hash is enough to make a leaked table
//! useless (nothing to guess a dictionary from), and it lets the database
//! find the code by its hash and delete it in one statement — which is
//! what makes each code usable once, across replicas. Guessing is what the
//! throttle is for: at 100 failures per account per window, 60 bits last
//! longer than any account.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

/// Codes made per enrolment.
pub const RECOVERY_CODES: usize = 10;

/// Characters of a code, dashes left out.
const LENGTH: usize = 12;

/// RFC 4648's base32 alphabet, lower case: no 0/1/8 to mistake for O/l/B.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// [`RECOVERY_CODES`] distinct new codes, as shown to the user.
pub fn generate() -> Vec<String> {
    let mut codes = BTreeSet::new();
    while codes.len() < RECOVERY_CODES {
        let mut random = [0u8; LENGTH];
        rand::fill(&mut random);
        // 256 is a multiple of 32: every character is equally likely.
        let chars: Vec<char> = random
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
            .collect();
        let groups: Vec<String> = chars.chunks(4).map(|c| c.iter().collect()).collect();
        codes.insert(groups.join("-"));
    }
    codes.into_iter().collect()
}

/// `text` as a code is hashed, if it can be one: dashes and spaces left
/// out, case ignored (a code read aloud or retyped from paper).
pub fn normalize(text: &str) -> Option<String> {
    let code: String = text
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let valid = code.len() == LENGTH && code.bytes().all(|b| ALPHABET.contains(&b));
    valid.then_some(code)
}

/// What is stored of a normalized code: its SHA-256, lower-case hex.
pub fn hash(normalized: &str) -> String {
    Sha256::digest(normalized.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
