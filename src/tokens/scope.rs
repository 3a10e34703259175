//! Scope syntax (RFC 6749 §3.3): what a scope token may be, and how a
//! space-separated scope string splits. Shared by OAuth clients, API tokens
//! and the gate's `?scope=`.

/// Splits a space-separated scope string into distinct scope tokens, in the
/// order given.
pub fn parse_scope(text: &str) -> Result<Vec<String>, String> {
    let mut scopes: Vec<String> = Vec::new();
    for token in text.split(' ').filter(|t| !t.is_empty()) {
        if !is_scope_token(token) {
            return Err(format!("{token:?} is not a valid scope"));
        }
        if !scopes.iter().any(|s| s == token) {
            scopes.push(token.to_owned());
        }
    }
    Ok(scopes)
}

/// `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )` (RFC 6749 §3.3).
pub fn is_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_tokens_follow_rfc_6749() {
        for ok in ["read", "a:b", "x!#[]^~", "urn:x-y/z"] {
            assert!(is_scope_token(ok), "{ok}");
        }
        for bad in ["", "a b", "a\"b", "a\\b", "é", "\t"] {
            assert!(!is_scope_token(bad), "{bad}");
        }
    }
}
