//! The TOTP itself (RFC 6238 over RFC 4226's HOTP): the shared secret, how
//! an authenticator app is told it (base32, an `otpauth://` URI, a QR
//! code), and which time step a code belongs to.
//!
//! The parameters are the ones every app supports without being told:
//! HMAC-SHA1, 6 digits, 30-second steps. Some apps read `algorithm=SHA256`
//! and silently use SHA1 anyway, so anything else would only lock users
//! out. The HMAC and the truncation are `totp-rs`'s; the clock is ours
//! (passed in), and so is the single-use rule (see `super`).

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

use super::TotpError;

/// Bytes of a secret: RFC 4226 §4 recommends 160 bits.
pub const SECRET_BYTES: usize = 20;
/// Seconds of one time step (RFC 6238's default, what apps assume).
pub const STEP_SECONDS: u64 = 30;
/// Digits of a code.
pub const DIGITS: u8 = 6;
/// Steps either side of now a code may belong to: a phone's clock a little
/// off, a code typed as it changed (RFC 6238 §5.2 recommends one).
const SKEW_STEPS: u64 = 1;

/// A shared TOTP secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(super) [u8; SECRET_BYTES]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Secret {
    /// A new random secret, from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::fill(&mut bytes);
        Self(bytes)
    }

    /// RFC 4648 base32 without padding, as apps take a typed-in key.
    pub fn base32(&self) -> String {
        totp_rs::Secret::new_stack(self.0).to_base32()
    }

    /// The step in now−1 ..= now+1 whose code is `code` and which comes
    /// after `used` (the step of the last code accepted; 0: none yet).
    /// `code` is 6 ASCII digits; anything else matches nothing.
    pub fn matching_step(&self, code: &str, now_seconds: u64, used: u64) -> Option<u64> {
        let totp = self.totp(DIGITS).ok()?;
        let now = now_seconds / STEP_SECONDS;
        let candidates = now.saturating_sub(SKEW_STEPS)..=now.saturating_add(SKEW_STEPS);
        // Every candidate is computed, matched or not: the time taken says
        // nothing about which step (if any) it was.
        candidates
            .map(|step| (step, totp.check(code, step * STEP_SECONDS).is_some()))
            .fold(None, |found, (step, matches)| {
                found.or((matches && step > used).then_some(step))
            })
    }

    /// The `totp-rs` generator of this secret for exactly one step (the
    /// window is ours, in [`Secret::matching_step`]).
    pub(super) fn totp(&self, digits: u8) -> Result<totp_rs::Totp, TotpError> {
        totp_rs::Builder::new()
            .with_algorithm(totp_rs::Algorithm::SHA1)
            .with_digits(digits)
            .with_skew(0)
            .with_step_duration(STEP_SECONDS)
            .with_secret(totp_rs::Secret::new_stack(self.0))
            .build()
            .map_err(|e| TotpError::Internal(format!("totp parameters: {e}")))
    }
}

/// What a URI component keeps as is: RFC 3986's unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The key URI apps read from a QR code (Google Authenticator's "Key Uri
/// Format"): the label `issuer:account` and the parameters spelled out,
/// though they are the defaults, for apps that assume otherwise.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &Secret) -> String {
    let issuer = utf8_percent_encode(issuer, COMPONENT).to_string();
    let account = utf8_percent_encode(account, COMPONENT);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}\
         &algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        secret.base32()
    )
}

/// `uri` as a QR code in plain SVG markup, to inline into a page served
/// under CSP `default-src 'self'`: one `<svg>` element of a rectangle and a
/// path, no XML declaration, script, style sheet or external reference.
pub fn qr_svg(uri: &str) -> Result<String, TotpError> {
    let code = QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::M)
        .map_err(|e| TotpError::Internal(format!("QR code: {e}")))?;
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    // The renderer starts with `<?xml …?>`, which HTML has no use for.
    let start = image
        .find("<svg")
        .ok_or_else(|| TotpError::Internal("QR code: no <svg> element".into()))?;
    Ok(image[start..].replacen(
        "<svg ",
        "<svg role=\"img\" aria-label=\"QR code of the key for your authenticator app\" ",
        1,
    ))
}
