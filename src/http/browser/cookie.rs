//! The cookies of browser sessions: reading ours from `Cookie`, and the
//! `Set-Cookie` values that set and clear them.

use std::fmt::Write as _;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

use crate::config::CookieSettings;

/// Suffix of the sign-in form's CSRF cookie, after the session cookie's name.
const CSRF_SUFFIX: &str = "-csrf";

/// The value of the cookie `name`, from every `Cookie` header. The first
/// one wins, as in browsers' own order (most specific path first).
pub(super) fn read<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.trim_matches('"'))
        })
}

/// The session cookie's value, if the request has one.
pub(super) fn session<'a>(headers: &'a HeaderMap, settings: &CookieSettings) -> Option<&'a str> {
    read(headers, &settings.name)
}

/// The sign-in form's CSRF cookie's value, if any.
pub(super) fn csrf<'a>(headers: &'a HeaderMap, settings: &CookieSettings) -> Option<&'a str> {
    read(headers, &csrf_name(settings))
}

fn csrf_name(settings: &CookieSettings) -> String {
    format!("{}{CSRF_SUFFIX}", settings.name)
}

/// Sets the session cookie for `max_age` seconds: `HttpOnly` (no script
/// reads it), `SameSite=Lax` (sent on top-level navigations only, so a
/// link from elsewhere still finds the user signed in), `Secure` unless
/// configured off, `Domain` only when configured.
pub(super) fn set_session(settings: &CookieSettings, value: &str, max_age: u64) -> HeaderValue {
    attributes(&settings.name, value, max_age, settings, true, "Lax")
}

/// Clears the session cookie.
pub(super) fn clear_session(settings: &CookieSettings) -> HeaderValue {
    attributes(&settings.name, "", 0, settings, true, "Lax")
}

/// Sets the sign-in form's CSRF cookie: host-only and `SameSite=Strict`,
/// since only the sign-in page itself posts with it.
pub(super) fn set_csrf(settings: &CookieSettings, value: &str) -> HeaderValue {
    attributes(&csrf_name(settings), value, 3600, settings, false, "Strict")
}

fn attributes(
    name: &str,
    value: &str,
    max_age: u64,
    settings: &CookieSettings,
    with_domain: bool,
    same_site: &str,
) -> HeaderValue {
    let mut cookie =
        format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite={same_site}");
    if settings.secure {
        cookie.push_str("; Secure");
    }
    if with_domain && !settings.domain.is_empty() {
        let _ = write!(cookie, "; Domain={}", settings.domain);
    }
    // Names, domains (checked at start-up) and values (base64url) are
    // header-safe; an empty value is the fallback that cannot be.
    HeaderValue::try_from(cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, "a=1; __Host-tokengate=abc".parse().unwrap());
        headers.append(COOKIE, "__Host-tokengate=later".parse().unwrap());
        let s = CookieSettings::default();
        assert_eq!(session(&headers, &s), Some("abc"));
        assert_eq!(csrf(&headers, &s), None);
        assert_eq!(read(&headers, "__Host-tokengat"), None);
    }

    #[test]
    fn cookies_carry_the_attributes_browsers_hold_them_to() {
        let s = CookieSettings::default();
        assert_eq!(
            set_session(&s, "v", 60),
            "__Host-tokengate=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            clear_session(&s),
            "__Host-tokengate=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
        );
        let sso = CookieSettings {
            name: "tokengate".into(),
            domain: ".example.com".into(),
            ..s
        };
        assert_eq!(
            set_session(&sso, "v", 60),
            "tokengate=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure; Domain=.example.com"
        );
        // The form's cookie stays on the sign-in page's host.
        assert_eq!(
            set_csrf(&sso, "c"),
            "tokengate-csrf=c; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict; Secure"
        );
    }
}
