//! Cross-site request forgery (SPEC §15): every POST of a page must come
//! from our own pages. Two independent checks, both required:
//! - `Sec-Fetch-Site`, which browsers set and pages cannot: anything but
//!   `same-origin` (or `none`, typed by the user) is refused. Browsers too
//!   old to send it are left to the token.
//! - A per-form token: HMAC-SHA256 of the form's name under a key only the
//!   browser's cookie yields — the session's binding key when signed in, a
//!   random CSRF cookie on the sign-in page. A page elsewhere can read
//!   neither cookie, so it cannot make the token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::Sha256;

/// The forms, each with tokens of its own.
#[derive(Debug, Clone, Copy)]
pub(super) enum Form {
    SignIn,
    SignOut,
    Sessions,
    Totp,
}

impl Form {
    fn name(self) -> &'static [u8] {
        match self {
            Self::SignIn => b"sign_in",
            Self::SignOut => b"sign_out",
            Self::Sessions => b"sessions",
            Self::Totp => b"totp",
        }
    }
}

fn mac(key: &[u8], form: Form) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(form.name());
    mac
}

/// The token `form` carries for a browser holding `key`.
pub(super) fn token(key: &[u8], form: Form) -> String {
    B64.encode(mac(key, form).finalize().into_bytes())
}

/// Whether `given` is the token of `form` for `key` (constant time).
pub(super) fn verify(key: &[u8], form: Form, given: &str) -> bool {
    B64.decode(given)
        .is_ok_and(|tag| mac(key, form).verify_slice(&tag).is_ok())
}

/// Whether the browser says the request comes from one of our pages, or
/// says nothing.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-site") {
        None => true,
        Some(site) => matches!(site.as_bytes(), b"same-origin" | b"none"),
    }
}

/// A fresh random value for the sign-in form's CSRF cookie.
pub(super) fn new_cookie_value() -> String {
    let mut value = [0u8; 32];
    rand::fill(&mut value);
    B64.encode(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_good_for_its_key_and_form_only() {
        let t = token(b"key", Form::SignOut);
        assert!(verify(b"key", Form::SignOut, &t));
        assert!(!verify(b"other", Form::SignOut, &t));
        assert!(!verify(b"key", Form::Sessions, &t));
        assert!(!verify(b"key", Form::SignOut, ""));
        assert!(!verify(b"key", Form::SignOut, &t[1..]));
    }

    #[test]
    fn only_our_own_pages_may_post() {
        let mut headers = HeaderMap::new();
        assert!(same_origin(&headers));
        for (site, ok) in [
            ("same-origin", true),
            ("none", true),
            ("same-site", false),
            ("cross-site", false),
        ] {
            headers.insert("sec-fetch-site", site.parse().unwrap());
            assert_eq!(same_origin(&headers), ok, "{site}");
        }
    }
}
