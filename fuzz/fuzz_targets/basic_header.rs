//! `tokengate::clients::parse_basic` (RFC 7617) on arbitrary bytes: it
//! returns credentials only for a Basic header with canonical base64 of
//! `id:secret`, those credentials round-trip, and `Missing` means another
//! scheme. First byte 0: the rest is split into an id (colons dropped) and a
//! secret, and the header built from them must parse back to exactly them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate_fuzz::{check_basic_round_trip, check_parse_basic};

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0, rest)) if rest.len() >= 2 => {
            let (knobs, rest) = rest.split_at(2);
            let split = usize::from(knobs[0]).min(rest.len());
            let (id, secret) = rest.split_at(split);
            let id: String = String::from_utf8_lossy(id).replace(':', "");
            let scheme = ["Basic", "basic", "BASIC", "bAsIc"][usize::from(knobs[1] % 4)];
            check_basic_round_trip(&id, secret, scheme, usize::from(knobs[1] / 4));
        }
        _ => check_parse_basic(data),
    }
});
