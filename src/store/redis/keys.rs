//! The keys the store writes, and script arguments as bytes.

use uuid::Uuid;

use super::{API_TOKEN_PREFIX, FAILURE_PREFIX, KEY_PREFIX, USER_PREFIX};
use crate::store::Counter;
use crate::tokens::api::TokenHash;

pub fn session_key(sid: Uuid) -> String {
    let mut key = String::with_capacity(KEY_PREFIX.len() + 36);
    key.push_str(KEY_PREFIX);
    key.push_str(sid.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
    key
}

pub(super) fn user_key(sub: &str) -> String {
    format!("{USER_PREFIX}{sub}")
}

pub(super) fn api_token_key(hash: &TokenHash) -> String {
    format!("{API_TOKEN_PREFIX}{}", hash.hex())
}

/// The counters' keys, and their limits as script arguments in the same order.
pub(super) fn failure_counters(counters: &[Counter]) -> (Vec<String>, Vec<Vec<u8>>) {
    counters
        .iter()
        .map(|c| {
            (
                format!("{FAILURE_PREFIX}{}", c.key),
                num(u64::from(c.limit)),
            )
        })
        .unzip()
}

pub(super) fn num(n: u64) -> Vec<u8> {
    n.to_string().into_bytes()
}

pub(super) fn text(value: Option<&str>) -> Vec<u8> {
    value.unwrap_or_default().as_bytes().to_vec()
}

/// `1` or nothing, as the scripts read a yes or no.
pub(super) fn flag(yes: bool) -> Vec<u8> {
    if yes { b"1".to_vec() } else { Vec::new() }
}
