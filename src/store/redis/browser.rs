//! The reply of `scripts/browser.lua`: who a browser session is.

use crate::store::{BrowserSession, StoreError, Subject};

/// `{sub, email, email verified, amr}`, empty strings for none; a browser
/// session has no scope.
pub(super) fn session(reply: Vec<Vec<u8>>) -> Result<BrowserSession, StoreError> {
    let mut fields = reply.into_iter().map(|field| {
        String::from_utf8(field)
            .map_err(|_| StoreError::Protocol("a browser session's field is not text".into()))
    });
    let mut next = || {
        fields.next().unwrap_or_else(|| {
            Err(StoreError::Protocol(
                "a browser session's reply is short".into(),
            ))
        })
    };
    let given = |text: String| (!text.is_empty()).then_some(text);
    let sub = next()?;
    let email = given(next()?);
    let email_verified = !next()?.is_empty();
    let amr = next()?;
    Ok(BrowserSession {
        subject: Subject {
            sub,
            client: None,
            scope: None,
            email,
            email_verified,
        },
        amr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_names_the_user_and_how_they_signed_in() {
        let reply = ["ada", "ada@example.com", "1", "pwd otp"].map(|f| f.as_bytes().to_vec());
        let session = session(reply.to_vec()).unwrap();
        assert_eq!(session.subject.sub, "ada");
        assert_eq!(session.subject.email.as_deref(), Some("ada@example.com"));
        assert!(session.subject.email_verified);
        assert_eq!(session.subject.scope, None);
        assert_eq!(session.amr, "pwd otp");
        assert!(super::session(vec![b"ada".to_vec()]).is_err());
    }
}
