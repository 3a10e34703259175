//! The JSON body reader (`http::body::read` + `parse`) behind `/login`,
//! `/refresh`, `/logout` and `/oauth/verify`, through the real router.
//! Input: endpoint byte, content-type byte (a known type, or the next
//! length-prefixed bytes as the raw value), a `Content-Length` byte, then
//! the body (stretched past the 16 KiB limit on request). Statuses are those
//! SPEC §2 allows; 415 iff the type is not JSON, 413 iff over the limit; a
//! `/login` 200 only for a valid `user_id`, whose pair then works.
#![no_main]

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use libfuzzer_sys::fuzz_target;
use tokengate_fuzz::{BODY_LIMIT, HARNESS, check_json_endpoint, content_type, post, with_header};

const PATHS: [&str; 4] = ["/login", "/refresh", "/logout", "/oauth/verify"];

fuzz_target!(|data: &[u8]| {
    let [path, kind, length, rest @ ..] = data else {
        return;
    };
    let path = PATHS[usize::from(*path) % PATHS.len()];
    let (raw_type, body) = match content_type(*kind) {
        Some(_) => (None, rest),
        None => {
            let Some((&n, rest)) = rest.split_first() else {
                return;
            };
            let n = usize::from(n).min(rest.len());
            (Some(&rest[..n]), &rest[n..])
        }
    };
    let mut body = body.to_vec();
    if length % 16 == 15 {
        // Past the limit by a little, undeclared (as a chunked body is).
        body.resize(BODY_LIMIT + 1 + usize::from(length / 16), b' ');
    }
    let mut request = post(path, content_type(*kind).flatten(), &body);
    if let Some(raw) = raw_type {
        match with_header(request, CONTENT_TYPE, raw) {
            Some(r) => request = r,
            None => return,
        }
    }
    if length % 16 == 14 {
        // Declared too large, actually small.
        request = with_header(request, CONTENT_LENGTH, b"1000000").expect("header");
    }
    check_json_endpoint(&HARNESS, path, request);
});
