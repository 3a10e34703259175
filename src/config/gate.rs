//! `authenticate.*`: what a valid `/authenticate` answer tells the proxy
//! beyond `X-User-Id`, `X-Session-Id` and `X-Scope`.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthenticateSettings {
    /// The identity headers other gates answer with, for apps (and nginx
    /// configs) that already read them; none by default.
    pub identity_headers: Vec<IdentityHeader>,
}

/// A conventional identity header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum IdentityHeader {
    /// oauth2-proxy's user: the `sub`.
    #[serde(rename = "x-auth-request-user")]
    XAuthRequestUser,
    /// oauth2-proxy's email: the account's, for sessions of a password login.
    #[serde(rename = "x-auth-request-email")]
    XAuthRequestEmail,
    /// Authelia's user: the `sub`.
    #[serde(rename = "remote-user")]
    RemoteUser,
    /// Authelia's email.
    #[serde(rename = "remote-email")]
    RemoteEmail,
}

impl IdentityHeader {
    pub fn name(self) -> &'static str {
        match self {
            Self::XAuthRequestUser => "x-auth-request-user",
            Self::XAuthRequestEmail => "x-auth-request-email",
            Self::RemoteUser => "remote-user",
            Self::RemoteEmail => "remote-email",
        }
    }

    /// Whether it carries the email (else the user).
    pub fn is_email(self) -> bool {
        matches!(self, Self::XAuthRequestEmail | Self::RemoteEmail)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;
    use super::*;

    #[test]
    fn identity_headers_are_opt_in_and_named_as_other_gates_name_them() {
        assert!(
            load("", &[])
                .unwrap()
                .authenticate
                .identity_headers
                .is_empty()
        );
        let s = load(
            "authenticate:\n  identity_headers: [x-auth-request-user, remote-user, remote-email]\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            s.authenticate.identity_headers,
            [
                IdentityHeader::XAuthRequestUser,
                IdentityHeader::RemoteUser,
                IdentityHeader::RemoteEmail
            ]
        );
        let bad = load(
            "authenticate:\n  identity_headers: [x-forwarded-user]\n",
            &[],
        );
        assert!(bad.unwrap_err().to_string().contains("authenticate"));
    }
}
