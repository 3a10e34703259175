//! `RefreshTokens::decode`, `encode` and `successor` (src/tokens/refresh.rs).
//!
//! First byte even: the rest is 52 bytes of token fields (sid, generation,
//! secret) the harness mints with its own implementation of the wire
//! format, then edit operations; the minted token must decode to those
//! fields and re-encode identically, its successor must be the documented
//! one, and any edit that changes the text must be refused. First byte odd:
//! the rest is any text, which the decoder accepts only in canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate::tokens::RefreshTokens;
use tokengate_fuzz::{SECRET, WireToken, check_decode, check_minted, mutate};

static TOKENS: std::sync::LazyLock<RefreshTokens> =
    std::sync::LazyLock::new(|| RefreshTokens::new(SECRET.as_bytes()));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Some(wire) = WireToken::from_bytes(rest) else {
            return;
        };
        let text = check_minted(&TOKENS, SECRET.as_bytes(), wire);
        let changed = mutate(text.as_bytes(), &rest[52..]);
        if changed != text.as_bytes() {
            if let Ok(changed) = std::str::from_utf8(&changed) {
                assert_eq!(
                    TOKENS.decode(changed),
                    None,
                    "an edited token passed: {changed}"
                );
            }
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        check_decode(&TOKENS, text);
    }
});
