//! Where a browser goes: the URL it asked for (as nginx tells it), the
//! sign-in URL the gate's `401` names, and whether a sign-in may send it on
//! to `rd` — an open redirect is how a phishing link borrows our name, so
//! `rd` may only name the sign-in page's own host or `cookie.redirect_domains`.

use std::fmt::Write as _;

use http::HeaderMap;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::config::CookieSettings;

/// What a query value keeps unescaped (RFC 3986 unreserved).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Longest URL carried along; nginx's own request line limit is near.
const MAX_URL_BYTES: usize = 4096;

/// The URL the browser asked nginx for: `X-Original-URL` (Authelia's
/// convention), else `X-Forwarded-Proto` + `X-Forwarded-Host` (or `Host`) +
/// `X-Forwarded-Uri` (oauth2-proxy's, Traefik's). The caller believes these
/// only from a trusted proxy. `None` if absent or not an absolute http(s) URL.
pub(super) fn original_url(headers: &HeaderMap) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let url = match header("x-original-url") {
        Some(url) => url.to_owned(),
        None => {
            let proto = header("x-forwarded-proto")?.split(',').next()?.trim();
            let host = header("x-forwarded-host").or_else(|| header("host"))?;
            let uri = header("x-forwarded-uri")?;
            format!("{proto}://{host}{uri}")
        }
    };
    let (_, authority, rest) = split_url(&url)?;
    (host_of(authority).is_some() && (rest.is_empty() || rest.starts_with('/'))).then_some(url)
}

/// The gate's `Location`: `cookie.sign_in_url` with `rd` = the original
/// URL. A relative sign-in URL is put on the original URL's host, since
/// nginx redirects only to an absolute URL (`error_page 401 =302 $redirect`);
/// without an original URL it stays relative and has no `rd`.
pub(super) fn sign_in_location(settings: &CookieSettings, original: Option<&str>) -> String {
    let sign_in = &settings.sign_in_url;
    let Some(original) = original else {
        return sign_in.clone();
    };
    let mut location = match split_url(original) {
        Some((scheme, authority, _)) if sign_in.starts_with('/') => {
            format!("{scheme}://{authority}{sign_in}")
        }
        _ => sign_in.clone(),
    };
    let _ = write!(
        location,
        "?rd={}",
        utf8_percent_encode(original, QUERY_VALUE)
    );
    location
}

/// Where a sign-in (or sign-out) sends the browser on: `rd` if it is a
/// path of this site, a URL on `page_host` (the `host[:port]` the page was
/// reached on) or on a host `cookie.redirect_domains` allows (any port);
/// `None` otherwise.
pub(super) fn checked_rd(
    rd: &str,
    page_host: Option<&str>,
    settings: &CookieSettings,
) -> Option<String> {
    if rd.is_empty()
        || rd.len() > MAX_URL_BYTES
        || rd.bytes().any(|b| b <= b' ' || b == b'\\' || b == 0x7f)
    {
        return None;
    }
    if rd.starts_with('/') {
        // `//evil.example` and `/\evil.example` are other hosts to a browser.
        return (!rd.starts_with("//")).then(|| rd.to_owned());
    }
    let (_, authority, rest) = split_url(rd)?;
    if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
        return None;
    }
    let host = host_of(authority)?;
    // The page's own origin: host and port, as the browser reached it.
    let own = page_host.is_some_and(|own| own.eq_ignore_ascii_case(authority));
    let allowed = own
        || settings.redirect_domains.iter().any(|domain| {
            let domain = domain.to_ascii_lowercase();
            match domain.strip_prefix('.') {
                Some(parent) => host == parent || host.ends_with(&domain),
                None => host == domain,
            }
        });
    allowed.then(|| rd.to_owned())
}

/// `(scheme, authority, rest)` of an absolute http(s) URL.
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(end);
    Some((scheme, authority, rest))
}

/// The lower-cased host of an authority (`host[:port]`); `None` if it has
/// user info (`user@host`, which hides the real host from a reader) or is
/// not a host name at all.
fn host_of(authority: &str) -> Option<String> {
    if authority.contains('@') {
        return None;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => &authority[..v6.find(']')? + 2],
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    host
                } else {
                    authority
                }
            }),
    };
    crate::config::is_host(host).then(|| host.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(domains: &[&str]) -> CookieSettings {
        CookieSettings {
            redirect_domains: domains.iter().map(|d| d.to_string()).collect(),
            ..CookieSettings::default()
        }
    }

    #[test]
    fn the_original_url_is_what_nginx_says() {
        let mut headers = HeaderMap::new();
        assert_eq!(original_url(&headers), None);
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        headers.insert("host", "app.example.com".parse().unwrap());
        headers.insert("x-forwarded-uri", "/a?b=c".parse().unwrap());
        assert_eq!(
            original_url(&headers).as_deref(),
            Some("https://app.example.com/a?b=c")
        );
        headers.insert("x-original-url", "http://localhost:8080/x".parse().unwrap());
        assert_eq!(
            original_url(&headers).as_deref(),
            Some("http://localhost:8080/x")
        );
        for bad in [
            "javascript:alert(1)",
            "/relative",
            "https://user@evil/",
            "https://a b/",
        ] {
            headers.insert("x-original-url", bad.parse().unwrap());
            assert_eq!(original_url(&headers), None, "{bad}");
        }
    }

    #[test]
    fn the_sign_in_location_carries_the_original_url() {
        let s = settings(&[]);
        assert_eq!(sign_in_location(&s, None), "/oauth2/sign_in");
        assert_eq!(
            sign_in_location(&s, Some("http://localhost:8080/app/?x=1&y=2")),
            "http://localhost:8080/oauth2/sign_in?rd=http%3A%2F%2Flocalhost%3A8080%2Fapp%2F%3Fx%3D1%26y%3D2"
        );
        let sso = CookieSettings {
            sign_in_url: "https://auth.example.com/oauth2/sign_in".into(),
            ..s
        };
        assert_eq!(
            sign_in_location(&sso, Some("https://app.example.com/")),
            "https://auth.example.com/oauth2/sign_in?rd=https%3A%2F%2Fapp.example.com%2F"
        );
    }

    #[test]
    fn rd_may_only_lead_to_this_site_or_allowed_hosts() {
        let s = settings(&[".example.com", "partner.test"]);
        let page = Some("localhost:8080");
        let allowed = [
            "/app/?x=1",
            "http://localhost:8080/app/",
            "http://LOCALHOST:8080/",
            "https://example.com",
            "https://app.example.com/x",
            "https://a.b.example.com:8443/x?y#z",
            "https://partner.test/",
        ];
        for rd in allowed {
            assert_eq!(checked_rd(rd, page, &s).as_deref(), Some(rd), "{rd}");
        }
        let refused = [
            "",
            "//evil.example/",
            "/\\evil.example/",
            "https://evil.example/",
            "https://example.com.evil.example/",
            "https://evilexample.com/",
            "https://app.example.com@evil.example/",
            "https://sub.partner.test/",
            "javascript:alert(1)",
            "data:text/html,x",
            "https://app.example.com\\@evil.example",
            "https://evil.example\t/",
            "ftp://app.example.com/",
            "https://app.example.comevil/",
            "http://localhost:9999/",
            "http://localhost/",
        ];
        for rd in refused {
            assert_eq!(checked_rd(rd, page, &s), None, "{rd:?}");
        }
        assert_eq!(
            checked_rd("http://localhost:8080/", None, &settings(&[])),
            None
        );
    }
}
