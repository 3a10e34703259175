//! The keys the store writes, and script arguments as bytes.
//!
//! A session's key and its owner's index carry the owner as their hash tag
//! (`tg:{u:<owner>}:s:<sid>`, `tg:{u:<owner>}:idx`), so on a Redis Cluster
//! every script on them runs on one slot; tokens and browser cookies carry
//! the owner, so any replica names the key without a lookup. The feed's keys
//! (`tg:{feed}:…`, see `scripts/ended.lua`) share a tag of their own, as do
//! the failure counters of one credential check (`tg:{fail}:…`).

use uuid::Uuid;

use super::{API_TOKEN_PREFIX, FAILURE_PREFIX};
use crate::store::Counter;
use crate::tokens::api::TokenHash;

/// What every session key and index starts with; the owner follows.
pub const OWNER_PREFIX: &str = "tg:{u:";
/// After the owner, before the sid.
const SESSION_INFIX: &str = "}:s:";
/// The feed's keys (`scripts/ended.lua` names them too).
pub(super) const FEED_EXPIRY: &str = "tg:{feed}:expiry";
pub(super) const FEED_ENDED: &str = "tg:{feed}:ended";
pub(super) const FEED_EPOCH: &str = "tg:{feed}:epoch";

/// The key of session `sid` of `owner` (a user's sub, or `client:<id>`).
pub fn session_key(owner: &str, sid: Uuid) -> String {
    let mut key =
        String::with_capacity(OWNER_PREFIX.len() + owner.len() + SESSION_INFIX.len() + 36);
    key.push_str(OWNER_PREFIX);
    key.push_str(owner);
    key.push_str(SESSION_INFIX);
    key.push_str(sid.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
    key
}

/// The owner's index of sessions.
pub(super) fn user_key(owner: &str) -> String {
    format!("{OWNER_PREFIX}{owner}}}:idx")
}

/// The session a key names, if it is a session's key.
pub fn session_of_key(key: &[u8]) -> Option<Uuid> {
    let rest = key.strip_prefix(OWNER_PREFIX.as_bytes())?;
    let (head, sid) = rest.split_at_checked(rest.len().checked_sub(36)?)?;
    if !head.ends_with(SESSION_INFIX.as_bytes()) {
        return None;
    }
    Uuid::try_parse_ascii(sid).ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_key_names_its_session_and_shares_its_index_tag() {
        let sid = Uuid::now_v7();
        let key = session_key("client:billing", sid);
        assert_eq!(key, format!("tg:{{u:client:billing}}:s:{sid}"));
        assert_eq!(session_of_key(key.as_bytes()), Some(sid));
        assert_eq!(user_key("client:billing"), "tg:{u:client:billing}:idx");
        for other in [
            user_key("alice"),
            "tg:{feed}:ended".to_owned(),
            format!("tg:s:{sid}"),
            format!("tg:{{u:a}}:x:{sid}"),
        ] {
            assert_eq!(session_of_key(other.as_bytes()), None, "{other}");
        }
    }
}
