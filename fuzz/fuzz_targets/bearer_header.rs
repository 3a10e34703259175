//! The Bearer parser (`http::bearer_token`), reached through the real
//! router. First byte picks the case:
//! * 0–3: the rest is the `Authorization` value at `/authenticate` (any
//!   method) or `/logout`: always 401, never a pass, with the challenge
//!   SPEC §2 names for a missing or an invalid token;
//! * 4: the rest edits a live access token: it passes only while its signed
//!   part is intact, and then it is the same token (same `jti`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate_fuzz::{HARNESS, check_bearer_garbage, check_mutated_access, method};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        4 => check_mutated_access(&HARNESS, rest),
        3 => check_bearer_garbage(&HARNESS, http::Method::POST, "/logout", rest),
        _ => {
            let Some((&m, header)) = rest.split_first() else {
                return;
            };
            check_bearer_garbage(&HARNESS, method(m), "/authenticate", header);
        }
    }
});
