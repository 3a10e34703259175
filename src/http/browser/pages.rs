//! The pages, rendered on the server: plain HTML forms that work without
//! JavaScript, one stylesheet of our own (the CSP allows nothing else), a
//! label for every field, and a layout that holds at 320 px. Every value
//! that came from a request or a user is escaped here, once.

use std::fmt::Write as _;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use http_body_util::Full;

use crate::http::Response;
use crate::service::SessionView;

/// Nothing but our own origin: no inline script or style, no CDN; no
/// framing (clickjacking); no `<base>` tricks.
const CSP: &str = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The stylesheet, served at [`STYLESHEET_PATH`].
pub(super) const STYLESHEET: &str = include_str!("style.css");
pub(super) const STYLESHEET_PATH: &str = "/oauth2/static/style.css";

/// Escapes text for an HTML element or a quoted attribute.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `title` as its heading, `body` already HTML.
pub(super) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"{STYLESHEET_PATH}\"></head>\
         <body><main><h1>{title}</h1>\n{body}\n</main></body></html>\n",
        title = escape(title),
    );
    let mut response = http::Response::new(Full::new(Bytes::from(html)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    // The page's URL carries `rd`: no other site learns it.
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

/// A message in a live region, read out by screen readers when it appears.
fn alert(message: Option<&str>) -> String {
    message.map_or_else(String::new, |m| {
        format!("<p role=\"alert\" class=\"error\">{}</p>\n", escape(m))
    })
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
        escape(value)
    )
}

/// A form of one button (and hidden fields), posting to `action`.
fn button_form(action: &str, fields: &[(&str, &str)], label: &str, class: &str) -> String {
    let mut form = format!("<form method=\"post\" action=\"{action}\">");
    for (name, value) in fields {
        form.push_str(&hidden(name, value));
    }
    let _ = write!(
        form,
        "<button type=\"submit\" class=\"{class}\">{label}</button></form>"
    );
    form
}

pub(super) fn sign_in(
    status: StatusCode,
    rd: &str,
    csrf: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    let body = format!(
        "{alert}<form method=\"post\" action=\"/oauth2/sign_in\">{csrf}{rd}\
         <label for=\"email\">Email</label>\
         <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required value=\"{email}\">\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <label for=\"code\">Authentication code</label>\
         <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" aria-describedby=\"code-help\">\
         <p id=\"code-help\" class=\"help\">Only if you turned on two-factor authentication: the code from your app, or a recovery code.</p>\
         <button type=\"submit\">Sign in</button></form>",
        alert = alert(error),
        csrf = hidden("csrf", csrf),
        rd = hidden("rd", rd),
        email = escape(email),
    );
    page(status, "Sign in", &body)
}

pub(super) fn sign_out(rd: &str, csrf: &str, email: Option<&str>) -> Response {
    let who = email.map_or_else(String::new, |e| {
        format!("<p>Signed in as <strong>{}</strong>.</p>", escape(e))
    });
    let body = format!(
        "{who}{}",
        button_form(
            "/oauth2/sign_out",
            &[("csrf", csrf), ("rd", rd)],
            "Sign out",
            ""
        )
    );
    page(StatusCode::OK, "Sign out", &body)
}

pub(super) fn sessions(
    sessions: &[SessionView],
    csrf: &str,
    email: Option<&str>,
    message: Option<&str>,
) -> Response {
    let mut rows = String::new();
    for s in sessions {
        let sid = s.session_id.to_string();
        let kind = match (&s.client_id, s.browser) {
            (_, true) => "Browser".to_owned(),
            (Some(client), false) => format!("App ({})", escape(client)),
            (None, false) => "API tokens".to_owned(),
        };
        let this = if s.current {
            " <strong>(this browser)</strong>"
        } else {
            ""
        };
        let _ = writeln!(
            rows,
            "<tr data-sid=\"{sid}\"><td>{kind}{this}</td><td><time>{created}</time></td>\
             <td><time>{active}</time></td><td>{end}</td></tr>",
            created = time(s.created_at),
            active = time(s.last_active),
            end = button_form(
                "/oauth2/sessions",
                &[("csrf", csrf), ("sid", &sid)],
                "Sign out this one",
                "secondary"
            ),
        );
    }
    let who = email.map_or_else(String::new, |e| {
        format!("<p>Signed in as <strong>{}</strong>.</p>", escape(e))
    });
    let body = format!(
        "{alert}{who}<table><caption>Your sessions, oldest first</caption>\
         <thead><tr><th scope=\"col\">Session</th><th scope=\"col\">Started (UTC)</th>\
         <th scope=\"col\">Last active (UTC)</th><th scope=\"col\"><span class=\"sr-only\">Action</span></th></tr></thead>\
         <tbody>\n{rows}</tbody></table>{all}\
         <p><a href=\"/oauth2/totp\">Two-factor authentication</a> · <a href=\"/oauth2/sign_out\">Sign out</a></p>",
        alert = alert(message),
        all = button_form(
            "/oauth2/sessions",
            &[("csrf", csrf), ("all", "1")],
            "Sign out everywhere",
            "danger"
        ),
    );
    page(StatusCode::OK, "Your sessions", &body)
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM` (UTC): the RFC 3339 time
/// the API writes, to the minute.
fn time(secs: u64) -> String {
    let text = crate::time::rfc3339_seconds(secs.saturating_mul(1000));
    text.get(..16).unwrap_or(&text).replacen('T', " ", 1)
}

/// TOTP is off: offer to set it up, the password asked again (a stolen
/// session alone must not lock the owner out).
pub(super) fn totp_off(csrf: &str, message: Option<&str>) -> Response {
    let body = format!(
        "{}<p>Two-factor authentication is <strong>off</strong>. With it on, signing in \
         also asks for a code from an authenticator app.</p>\
         <form method=\"post\" action=\"/oauth2/totp\">{}{}\
         <label for=\"password\">Your password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Set up</button></form>{}",
        alert(message),
        hidden("csrf", csrf),
        hidden("action", "begin"),
        back(),
    );
    page(StatusCode::OK, "Two-factor authentication", &body)
}

/// A new secret to scan or type, and the form that confirms it.
pub(super) fn totp_enrol(qr_svg: &str, secret: &str, sealed: &str, csrf: &str) -> Response {
    // The SVG is our own rendering of the otpauth URI, not user input.
    let body = format!(
        "<p>Scan this code with your authenticator app, or type the key below.</p>\
         <figure id=\"totp-qr\" role=\"img\" aria-label=\"QR code of your authenticator key\">{qr_svg}</figure>\
         <p>Key: <code id=\"totp-secret\">{secret}</code></p>\
         <form method=\"post\" action=\"/oauth2/totp\">{csrf}{action}{sealed}\
         <label for=\"code\">Code from your app</label>\
         <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required>\
         <button type=\"submit\">Turn on</button></form>{back}",
        secret = escape(secret),
        csrf = hidden("csrf", csrf),
        action = hidden("action", "confirm"),
        sealed = hidden("sealed", sealed),
        back = back(),
    );
    page(StatusCode::OK, "Set up two-factor authentication", &body)
}

/// The recovery codes, shown this once.
pub(super) fn totp_recovery(codes: &[String]) -> Response {
    let mut list = String::new();
    for code in codes {
        let _ = write!(list, "<li><code>{}</code></li>", escape(code));
    }
    let body = format!(
        "<p role=\"status\">Two-factor authentication is <strong>on</strong>.</p>\
         <p>Keep these recovery codes somewhere safe. Each one signs you in once \
         if you lose your app. They are not shown again.</p>\
         <ol id=\"recovery-codes\">{list}</ol>{}",
        back()
    );
    page(StatusCode::OK, "Recovery codes", &body)
}

/// TOTP is on: offer to turn it off, with a code.
pub(super) fn totp_on(csrf: &str, message: Option<&str>) -> Response {
    let body = format!(
        "{}<p>Two-factor authentication is <strong>on</strong>.</p>\
         <form method=\"post\" action=\"/oauth2/totp\">{}{}\
         <label for=\"code\">Code from your app, or a recovery code</label>\
         <input id=\"code\" name=\"code\" autocomplete=\"one-time-code\" required>\
         <button type=\"submit\" class=\"danger\">Turn off</button></form>{}",
        alert(message),
        hidden("csrf", csrf),
        hidden("action", "disable"),
        back(),
    );
    page(StatusCode::OK, "Two-factor authentication", &body)
}

/// A page that only says something (and offers a way on).
pub(super) fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<p role=\"alert\">{}</p><p><a href=\"/oauth2/sign_in\">Sign in</a></p>",
        escape(text)
    );
    page(status, title, &body)
}

fn back() -> &'static str {
    "<p><a href=\"/oauth2/sessions\">Back to your sessions</a></p>"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_came_from_outside_is_escaped() {
        assert_eq!(
            escape("\"><script>alert('x')</script>&"),
            "&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"
        );
    }

    #[test]
    fn times_read_as_dates() {
        assert_eq!(time(0), "1970-01-01 00:00");
        assert_eq!(time(1_796_601_600 + 3_660), "2026-12-07 01:01");
        assert_eq!(time(951_782_400), "2000-02-29 00:00");
    }

    #[test]
    fn pages_allow_nothing_but_our_own_origin() {
        let response = sign_in(StatusCode::OK, "/x\"y", "t", "", Some("<b>"));
        assert_eq!(response.headers()[CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(response.headers()["x-frame-options"], "DENY");
    }
}
