//! The OAuth parameter reader (`http::body::read_params`, `Params`) and the
//! client authentication in front of it, behind `/oauth/token`,
//! `/oauth/introspect` and `/oauth/revoke`, through the real router.
//! Input: endpoint byte, content-type byte (a known type or length-prefixed
//! raw bytes), auth byte (none, the harness client's Basic credentials, a
//! wrong secret, or length-prefixed raw `Authorization` bytes), then the
//! body. Statuses are those SPEC §6 allows, 415 iff neither form nor JSON,
//! 200 only for an authenticated client, and a granted token is exactly
//! what the client may have (then revoked).
#![no_main]

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use libfuzzer_sys::fuzz_target;
use tokengate_fuzz::{
    Auth, CLIENT_ID, CLIENT_SECRET, HARNESS, check_form_endpoint, content_type, post, with_basic,
    with_header,
};

const PATHS: [&str; 3] = ["/oauth/token", "/oauth/introspect", "/oauth/revoke"];

/// Splits a length-prefixed field off the front.
fn field(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&n, rest) = data.split_first()?;
    let n = usize::from(n).min(rest.len());
    Some(rest.split_at(n))
}

fuzz_target!(|data: &[u8]| {
    let [path, kind, auth, rest @ ..] = data else {
        return;
    };
    let path = PATHS[usize::from(*path) % PATHS.len()];
    let (raw_type, rest) = match content_type(*kind) {
        Some(_) => (None, rest),
        None => match field(rest) {
            Some((raw, rest)) => (Some(raw), rest),
            None => return,
        },
    };
    // A wrong secret costs a full argon2id verification: keep it rare.
    let auth_kind = match auth {
        0..=99 => Auth::Good,
        100..=199 => Auth::None,
        200 => Auth::WrongSecret,
        _ => Auth::Raw,
    };
    let (raw_auth, body) = match auth_kind {
        Auth::Raw => match field(rest) {
            Some((raw, rest)) => (Some(raw), rest),
            None => return,
        },
        _ => (None, rest),
    };
    let mut request = post(path, content_type(*kind).flatten(), body);
    if let Some(raw) = raw_type {
        match with_header(request, CONTENT_TYPE, raw) {
            Some(r) => request = r,
            None => return,
        }
    }
    request = match auth_kind {
        Auth::Good => with_basic(request, CLIENT_ID, CLIENT_SECRET),
        Auth::WrongSecret => with_basic(request, CLIENT_ID, "not-the-secret"),
        Auth::Raw => match with_header(request, AUTHORIZATION, raw_auth.unwrap_or_default()) {
            Some(r) => r,
            None => return,
        },
        Auth::None => request,
    };
    check_form_endpoint(&HARNESS, path, auth_kind, request);
});
