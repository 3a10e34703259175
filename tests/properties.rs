//! Property tests of the parsers that face hostile input (stable Rust, run
//! by `cargo test`): the refresh-token decoder, HTTP Basic, and — through
//! the real router — the Bearer header and the JSON and form body readers.
//!
//! The invariants are the fuzz targets' own: this file includes their
//! oracle (`fuzz/src/lib.rs`), so proptest and libFuzzer hold the parsers
//! to one statement of what may be answered. See FUZZING.md.

#[path = "../fuzz/src/lib.rs"]
mod oracle;

use http::Method;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use oracle::{
    Auth, BODY_LIMIT, CLIENT_ID, CLIENT_SECRET, HARNESS, SECRET, WireToken, check_basic_round_trip,
    check_bearer_garbage, check_decode, check_form_endpoint, check_json_endpoint, check_minted,
    check_mutated_access, check_parse_basic, mutate, post, with_basic, with_header,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use tokengate::tokens::{RefreshToken, RefreshTokens};
use uuid::Uuid;

fn tokens() -> RefreshTokens {
    RefreshTokens::new(SECRET.as_bytes())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // Shrunk failures are reported, not saved into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn wire_token() -> impl Strategy<Value = WireToken> {
    (
        any::<[u8; 16]>(),
        any::<u32>(),
        any::<[u8; 32]>(),
        "(client:)?[^\\x00]{1,40}",
    )
        .prop_map(|(sid, generation, secret, owner)| WireToken {
            sid,
            generation,
            secret,
            owner,
        })
}

/// The base64url alphabet the token is written in.
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("user_id".to_owned()),
                    Just("refresh".to_owned()),
                    Just("token".to_owned()),
                    ".{0,8}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request body: arbitrary bytes, or JSON of the endpoints' shapes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        json_value().prop_map(|v| json!({ "user_id": v }).to_string().into_bytes()),
        json_value().prop_map(|v| json!({ "refresh": v }).to_string().into_bytes()),
        json_value().prop_map(|v| json!({ "token": v }).to_string().into_bytes()),
    ]
}

fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        Just(Some(b"application/json".to_vec())),
        Just(Some(b"Application/JSON; charset=utf-8".to_vec())),
        Just(Some(b"application/vnd.api+json".to_vec())),
        Just(Some(b"application/x-www-form-urlencoded".to_vec())),
        Just(Some(b"text/plain".to_vec())),
        Just(Some(b"application/jsonp".to_vec())),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(Some),
        "[a-zA-Z+/; =-]{0,30}".prop_map(|s| Some(s.into_bytes())),
    ]
}

/// A POST with the given type (skipped when it cannot be a header value).
fn request(
    path: &str,
    content_type: Option<&[u8]>,
    body: &[u8],
) -> Option<http::Request<http_body_util::Full<bytes::Bytes>>> {
    let request = post(path, None, body);
    match content_type {
        Some(value) => with_header(request, CONTENT_TYPE, value),
        None => Some(request),
    }
}

proptest! {
    #![proptest_config(config())]

    // --- refresh tokens -----------------------------------------------------

    #[test]
    fn tokens_minted_to_the_documented_format_decode_to_their_fields(wire in wire_token()) {
        check_minted(&tokens(), SECRET.as_bytes(), wire);
    }

    #[test]
    fn refresh_tokens_round_trip(sid in any::<u128>(), depth in 0usize..4) {
        let t = tokens();
        let mut token = RefreshToken::first("alice", Uuid::from_u128(sid));
        for _ in 0..depth {
            token = t.successor(&token).expect("far from 2^32 rotations");
        }
        let text = t.encode(&token);
        prop_assert_eq!(t.decode(&text), Some(token.clone()));
        prop_assert_eq!(t.encode(&t.decode(&text).unwrap()), text);
    }

    #[test]
    fn any_single_byte_change_is_refused(
        wire in wire_token(),
        at in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let text = wire.encode(SECRET.as_bytes());
        let mut bytes = text.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        if let Ok(changed) = String::from_utf8(bytes) {
            prop_assert_eq!(tokens().decode(&changed), None);
        }
    }

    #[test]
    fn truncated_or_extended_tokens_are_refused(
        wire in wire_token(),
        keep in any::<prop::sample::Index>(),
        extra in "[A-Za-z0-9_=.-]{1,8}",
    ) {
        let text = wire.encode(SECRET.as_bytes());
        let t = tokens();
        prop_assert_eq!(t.decode(&text[..keep.index(text.len())]), None);
        prop_assert_eq!(t.decode(&format!("{text}{extra}")), None);
        prop_assert_eq!(t.decode(&format!("{extra}{text}")), None);
    }

    #[test]
    fn edited_tokens_are_refused(wire in wire_token(), ops in prop::collection::vec(any::<u8>(), 3..24)) {
        let text = wire.encode(SECRET.as_bytes());
        let changed = mutate(text.as_bytes(), &ops);
        prop_assume!(changed != text.as_bytes());
        if let Ok(changed) = String::from_utf8(changed) {
            prop_assert_eq!(tokens().decode(&changed), None);
        }
    }

    #[test]
    fn tokens_under_another_key_are_refused(wire in wire_token(), key in "[ -~]{32,48}") {
        prop_assume!(key != SECRET);
        prop_assert_eq!(tokens().decode(&wire.encode(key.as_bytes())), None);
    }

    #[test]
    fn the_decoder_takes_any_text(text in ".{0,120}") {
        check_decode(&tokens(), &text);
    }

    #[test]
    fn the_decoder_takes_any_base64url_of_the_right_length(
        chars in prop::collection::vec(prop::sample::select(B64URL), 90..130),
    ) {
        let text = String::from_utf8(chars).unwrap();
        prop_assert_eq!(tokens().decode(&text), None);
    }

    // --- HTTP Basic ---------------------------------------------------------

    #[test]
    fn basic_credentials_round_trip(
        id in "[^:]{0,40}",
        secret in prop::collection::vec(any::<u8>(), 0..64),
        scheme in prop::sample::select(vec!["Basic", "basic", "BASIC", "bAsIc"]),
        pad in 0usize..9,
    ) {
        check_basic_round_trip(&id, &secret, scheme, pad);
    }

    #[test]
    fn parse_basic_takes_any_bytes(header in prop::collection::vec(any::<u8>(), 0..80)) {
        check_parse_basic(&header);
    }

    #[test]
    fn parse_basic_takes_any_basic_payload(payload in "[A-Za-z0-9+/=: ]{0,40}") {
        check_parse_basic(format!("Basic {payload}").as_bytes());
    }

    // --- the router: Bearer header ----------------------------------------

    #[test]
    fn no_authorization_bytes_pass_authenticate(
        header in prop::collection::vec(any::<u8>(), 0..120),
        method in any::<u8>(),
    ) {
        check_bearer_garbage(&HARNESS, oracle::method(method), "/authenticate", &header);
    }

    #[test]
    fn no_bearer_token_text_passes_authenticate(
        scheme in prop::sample::select(vec!["Bearer", "bearer", "BEARER", "Basic", "Token", ""]),
        token in "[ -~]{0,120}",
    ) {
        let header = format!("{scheme} {token}");
        check_bearer_garbage(&HARNESS, Method::GET, "/authenticate", header.as_bytes());
        check_bearer_garbage(&HARNESS, Method::POST, "/logout", header.as_bytes());
    }

    #[test]
    fn an_edited_access_token_passes_only_unchanged(ops in prop::collection::vec(any::<u8>(), 0..12)) {
        check_mutated_access(&HARNESS, &ops);
    }

    // --- the router: JSON bodies ------------------------------------------

    #[test]
    fn json_endpoints_answer_only_allowed_statuses(
        path in prop::sample::select(vec!["/login", "/refresh", "/logout", "/oauth/verify"]),
        content_type in content_type(),
        body in body(),
        oversized in prop::bool::weighted(0.05),
    ) {
        let mut body = body;
        if oversized {
            body.resize(BODY_LIMIT + 1, b' ');
        }
        if let Some(request) = request(path, content_type.as_deref(), &body) {
            check_json_endpoint(&HARNESS, path, request);
        }
    }

    #[test]
    fn every_valid_user_id_logs_in(
        user_id in prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            "[^\\p{Cc}]{1,60}".prop_map(Value::from),
        ],
    ) {
        let body = json!({ "user_id": user_id }).to_string();
        let request = post("/login", Some("application/json"), body.as_bytes());
        prop_assert_eq!(check_json_endpoint(&HARNESS, "/login", request), 200);
    }

    #[test]
    fn bodies_that_are_not_utf8_are_refused(
        user_id in any::<u32>(),
        bad in prop::collection::vec(0x80u8..=0xff, 1..4),
        in_key in any::<bool>(),
    ) {
        // Regression: serde_json's from_slice did not check the UTF-8 of
        // fields it skips, so such a body logged in.
        let mut body = format!("{{\"user_id\": {user_id}, ").into_bytes();
        if in_key {
            body.push(b'"');
            body.extend_from_slice(&bad);
            body.extend_from_slice(b"\": 1}");
        } else {
            body.extend_from_slice(b"\"extra\": [\"");
            body.extend_from_slice(&bad);
            body.extend_from_slice(b"\"]}");
        }
        prop_assume!(std::str::from_utf8(&body).is_err());
        let request = post("/login", Some("application/json"), &body);
        prop_assert_eq!(check_json_endpoint(&HARNESS, "/login", request), 400);
    }

    // --- the router: OAuth parameters -------------------------------------

    #[test]
    fn oauth_endpoints_answer_only_allowed_statuses(
        path in prop::sample::select(vec!["/oauth/token", "/oauth/introspect", "/oauth/revoke"]),
        content_type in content_type(),
        pairs in prop::collection::vec(
            (
                prop_oneof![
                    Just("grant_type".to_owned()),
                    Just("scope".to_owned()),
                    Just("token".to_owned()),
                    Just("refresh_token".to_owned()),
                    Just("client_id".to_owned()),
                    Just("client_secret".to_owned()),
                    ".{0,6}",
                ],
                prop_oneof![
                    Just("client_credentials".to_owned()),
                    Just("refresh_token".to_owned()),
                    Just("read write".to_owned()),
                    Just("admin".to_owned()),
                    Just(CLIENT_ID.to_owned()),
                    Just(CLIENT_SECRET.to_owned()),
                    ".{0,12}",
                ],
            ),
            0..5,
        ),
        as_json in any::<bool>(),
        auth in prop_oneof![Just(Auth::Good), Just(Auth::None), Just(Auth::Raw)],
        raw_auth in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let body = if as_json {
            Value::Object(pairs.into_iter().map(|(k, v)| (k, Value::from(v))).collect()).to_string()
        } else {
            form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
        };
        let Some(mut request) = request(path, content_type.as_deref(), body.as_bytes()) else {
            return Ok(());
        };
        request = match auth {
            Auth::Good => with_basic(request, CLIENT_ID, CLIENT_SECRET),
            Auth::Raw => match with_header(request, AUTHORIZATION, &raw_auth) {
                Some(request) => request,
                None => return Ok(()),
            },
            _ => request,
        };
        check_form_endpoint(&HARNESS, path, auth, request);
    }
}
