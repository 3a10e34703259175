//! `cookie.*`: the browser sessions' cookie and where the gate sends a
//! browser to sign in (SPEC §15).

use serde::Deserialize;

use super::ConfigError;

/// The prefix browsers hold to the strictest rules: `Secure`, `Path=/`, no
/// `Domain`, so no sibling subdomain can set or shadow the cookie.
const HOST_PREFIX: &str = "__Host-";
/// `Secure` required, `Domain` allowed.
const SECURE_PREFIX: &str = "__Secure-";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CookieSettings {
    /// The cookie's name; a `Domain` cookie needs one without `__Host-`.
    pub name: String,
    /// Empty: host-only; `.example.com`: every subdomain (single sign-on).
    pub domain: String,
    /// Off only for plain-HTTP test setups that are not `localhost`
    /// (browsers treat `http://localhost` as secure).
    pub secure: bool,
    /// Hosts a sign-in's `rd` may name besides the host the sign-in page
    /// was reached on; `.example.com` allows every subdomain.
    pub redirect_domains: Vec<String>,
    /// Where the gate's `401` sends a browser; relative: on the host of the
    /// URL it came for.
    pub sign_in_url: String,
}

impl Default for CookieSettings {
    fn default() -> Self {
        Self {
            name: "__Host-tokengate".into(),
            domain: String::new(),
            secure: true,
            redirect_domains: Vec::new(),
            sign_in_url: "/oauth2/sign_in".into(),
        }
    }
}

impl CookieSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(ConfigError::new(
                "cookie.name",
                "must be a token of letters, digits, '-', '_' or '.'",
            ));
        }
        if self.name.starts_with(HOST_PREFIX) && !self.domain.is_empty() {
            return Err(ConfigError::new(
                "cookie.name",
                "a __Host- cookie may not have a Domain: name it otherwise to set cookie.domain",
            ));
        }
        if (self.name.starts_with(HOST_PREFIX) || self.name.starts_with(SECURE_PREFIX))
            && !self.secure
        {
            return Err(ConfigError::new(
                "cookie.secure",
                "browsers drop a __Host- or __Secure- cookie without Secure: rename the cookie to turn Secure off",
            ));
        }
        if !self.domain.is_empty() && !is_host(self.domain.trim_start_matches('.')) {
            return Err(ConfigError::new(
                "cookie.domain",
                "must be a host name such as .example.com",
            ));
        }
        if let Some(bad) = self
            .redirect_domains
            .iter()
            .find(|d| !is_host(d.trim_start_matches('.')))
        {
            return Err(ConfigError::new(
                "cookie.redirect_domains",
                format!(
                    "{bad:?} is not a host name (example.com, or .example.com for its subdomains)"
                ),
            ));
        }
        let url = &self.sign_in_url;
        let absolute = url.starts_with("https://") || url.starts_with("http://");
        if !(absolute || url.starts_with('/') && !url.starts_with("//")) || url.contains('?') {
            return Err(ConfigError::new(
                "cookie.sign_in_url",
                "must be a path (/oauth2/sign_in) or an http(s) URL, without a query",
            ));
        }
        Ok(())
    }
}

/// A DNS name or an IP address: what a cookie domain or a redirect host may
/// be (lower-case compared elsewhere).
pub(crate) fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;

    #[test]
    fn the_default_cookie_is_a_secure_host_only_one() {
        let s = load("", &[]).unwrap().cookie;
        assert_eq!(s.name, "__Host-tokengate");
        assert!(s.secure && s.domain.is_empty());
        assert_eq!(s.sign_in_url, "/oauth2/sign_in");
    }

    #[test]
    fn cookies_browsers_would_drop_are_refused_at_start_up() {
        for (yaml, key) in [
            ("cookie:\n  domain: .example.com\n", "cookie.name"),
            ("cookie:\n  secure: false\n", "cookie.secure"),
            ("cookie:\n  name: 'a b'\n", "cookie.name"),
            (
                "cookie:\n  name: tg\n  domain: 'example.com/x'\n",
                "cookie.domain",
            ),
            (
                "cookie:\n  redirect_domains: ['https://x']\n",
                "cookie.redirect_domains",
            ),
            (
                "cookie:\n  sign_in_url: //evil.example\n",
                "cookie.sign_in_url",
            ),
            ("cookie:\n  sign_in_url: sign_in\n", "cookie.sign_in_url"),
        ] {
            let error = load(yaml, &[]).unwrap_err().to_string();
            assert!(error.contains(key), "{yaml}: {error}");
        }
        let sso = load(
            "cookie:\n  name: tokengate\n  domain: .example.com\n  secure: false\n  redirect_domains: [.example.com]\n  sign_in_url: https://auth.example.com/oauth2/sign_in\n",
            &[],
        )
        .unwrap()
        .cookie;
        assert_eq!(sso.domain, ".example.com");
    }
}
