//! Access tokens: compact JWS (RFC 9068 profile) signed and verified locally.
//!
//! Keys, headers and one [`Validation`] per verifying key are built once; per
//! request we only sign or verify. Verification picks the key by `kid` and
//! pins that key's algorithm (so `alg` in the token chooses nothing), requires
//! `iss`, `aud`, `exp`, and checks the `typ` header so no other JWT signed with
//! the same key (an ID token, another service's token) passes as one of ours.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::keys::Keys;

/// The `typ` header value of our access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Claims of an access token, exactly as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: Uuid,
    pub sid: Uuid,
    /// Granted scopes, space-separated (OAuth clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The OAuth client the token was issued to (RFC 9068 §2.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The account's email, for sessions of a password login (OpenID
    /// Connect's claim name), so the gate can say it without a lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether that email was verified (OpenID Connect's claim); only a
    /// verified email is asserted to apps in identity headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

impl AccessClaims {
    /// Who the session belongs to, as the gate names it (see [`super::owner`]).
    pub fn owner(&self) -> std::borrow::Cow<'_, str> {
        super::owner(&self.sub, self.client_id.as_deref())
    }

    /// The email, if it was verified.
    pub fn verified_email(&self) -> Option<&str> {
        self.email
            .as_deref()
            .filter(|_| self.email_verified == Some(true))
    }

    /// The granted scopes, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.as_deref().unwrap_or("").split_ascii_whitespace()
    }
}

/// What goes into a token besides the standard claims.
#[derive(Debug, Clone, Copy, Default)]
pub struct Grant<'a> {
    pub scope: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub email: Option<&'a str>,
    /// Whether `email` was verified (ignored without an email).
    pub email_verified: bool,
}

/// Why an access token was refused; logged, never shown to the caller in
/// more detail than `invalid_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed")]
    Malformed,
    #[error("bad signature")]
    Signature,
    #[error("algorithm not accepted")]
    Algorithm,
    #[error("expired")]
    Expired,
    #[error("issued in the future")]
    NotYetValid,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("not an access token (typ)")]
    Type,
    #[error("session ended or token superseded")]
    Revoked,
    /// An API token that no one issued.
    #[error("unknown token")]
    Unknown,
}

impl Rejection {
    /// A short stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Signature => "signature",
            Self::Algorithm => "algorithm",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Type => "type",
            Self::Revoked => "revoked",
            Self::Unknown => "unknown",
        }
    }
}

struct Verifier {
    kid: String,
    key: DecodingKey,
    validation: Validation,
}

/// Signs with the first key, verifies with any (see [`Keys`]).
pub struct AccessTokens {
    encoding: EncodingKey,
    header: Header,
    verifiers: Vec<Verifier>,
    issuer: String,
    audience: String,
    lifetime_secs: u64,
    leeway_secs: u64,
}

/// What a signing step produces: the token and the claims inside it.
#[derive(Debug, Clone)]
pub struct SignedAccess {
    pub token: String,
    pub claims: AccessClaims,
}

impl AccessTokens {
    pub fn new(
        keys: Keys,
        issuer: &str,
        audience: &str,
        lifetime_secs: u64,
        leeway_secs: u64,
    ) -> Self {
        let mut header = Header::new(keys.signing_algorithm);
        header.typ = Some(ACCESS_TOKEN_TYPE.into());
        header.kid = Some(keys.signing_kid.clone());

        let verifiers = keys
            .verifying
            .into_iter()
            .map(|k| {
                let mut validation = Validation::new(k.algorithm);
                validation.set_issuer(&[issuer]);
                validation.set_audience(&[audience]);
                validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                // Time is checked by `verify` against the caller's clock, so
                // the rules stay testable without sleeping.
                validation.validate_exp = false;
                Verifier {
                    kid: k.kid,
                    key: k.key,
                    validation,
                }
            })
            .collect();

        Self {
            encoding: keys.signing,
            header,
            verifiers,
            issuer: issuer.into(),
            audience: audience.into(),
            lifetime_secs,
            leeway_secs,
        }
    }

    pub fn lifetime_secs(&self) -> u64 {
        self.lifetime_secs
    }

    /// Signs a token issued at `iat` (seconds). The same inputs always give
    /// the same claims, which is how a refresh retry re-issues its successor.
    pub fn sign(
        &self,
        sub: &str,
        sid: Uuid,
        jti: Uuid,
        iat: u64,
        grant: Grant<'_>,
    ) -> Result<SignedAccess, jsonwebtoken::errors::Error> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: sub.into(),
            iat,
            exp: iat + self.lifetime_secs,
            jti,
            sid,
            scope: grant.scope.map(str::to_owned),
            client_id: grant.client_id.map(str::to_owned),
            email: grant.email.map(str::to_owned),
            email_verified: grant.email.map(|_| grant.email_verified),
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.encoding)?;
        Ok(SignedAccess { token, claims })
    }

    /// Verifies signature, algorithm, `typ`, issuer, audience and time at
    /// `now` (seconds). Says nothing about whether the session still lives.
    pub fn verify(&self, token: &str, now: u64) -> Result<AccessClaims, Rejection> {
        let verifier = match self.verifiers.as_slice() {
            // One key (the usual case): no need to read the header twice; the
            // kid is checked below, after the signature.
            [only] => only,
            many => {
                let header = jsonwebtoken::decode_header(token).map_err(|e| rejection(e.kind()))?;
                // Tokens always carry a kid; with several keys it must name one.
                let kid = header.kid.ok_or(Rejection::Signature)?;
                many.iter()
                    .find(|v| v.kid == kid)
                    .ok_or(Rejection::Signature)?
            }
        };
        let data = jsonwebtoken::decode::<AccessClaims>(token, &verifier.key, &verifier.validation)
            .map_err(|e| rejection(e.kind()))?;
        if data
            .header
            .kid
            .as_deref()
            .is_some_and(|kid| kid != verifier.kid)
        {
            return Err(Rejection::Signature);
        }
        let typ_ok = data.header.typ.as_deref().is_some_and(|typ| {
            typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
                || typ.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(Rejection::Type);
        }
        let claims = data.claims;
        self.check_times(&claims, now)?;
        Ok(claims)
    }

    /// The part of [`AccessTokens::verify`] that depends on `now`: what a
    /// token verified before must pass again on each use.
    pub fn check_times(&self, claims: &AccessClaims, now: u64) -> Result<(), Rejection> {
        if claims.exp.saturating_add(self.leeway_secs) < now {
            return Err(Rejection::Expired);
        }
        if claims.iat > now.saturating_add(self.leeway_secs) {
            return Err(Rejection::NotYetValid);
        }
        Ok(())
    }
}

fn rejection(kind: &ErrorKind) -> Rejection {
    match kind {
        ErrorKind::InvalidSignature => Rejection::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Rejection::Algorithm,
        ErrorKind::ExpiredSignature => Rejection::Expired,
        ErrorKind::ImmatureSignature => Rejection::NotYetValid,
        ErrorKind::InvalidIssuer => Rejection::Issuer,
        ErrorKind::InvalidAudience => Rejection::Audience,
        _ => Rejection::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use jsonwebtoken::Algorithm;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn tokens() -> AccessTokens {
        AccessTokens::new(Keys::hmac(SECRET), "tokengate", "tokengate", 900, 5)
    }

    fn signed() -> SignedAccess {
        tokens()
            .sign("42", Uuid::new_v4(), Uuid::new_v4(), NOW, Grant::default())
            .unwrap()
    }

    fn kid() -> String {
        Keys::hmac(SECRET).signing_kid
    }

    /// Re-signs arbitrary header and claims JSON with our key.
    fn forge(header: &serde_json::Value, claims: &serde_json::Value, key: &[u8]) -> String {
        let header: Header = serde_json::from_value(header.clone()).unwrap();
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key)).unwrap()
    }

    fn claims_json(s: &SignedAccess) -> serde_json::Value {
        serde_json::to_value(&s.claims).unwrap()
    }

    #[test]
    fn a_signed_token_verifies_with_its_claims() {
        let s = signed();
        assert_eq!(tokens().verify(&s.token, NOW).unwrap(), s.claims);
        assert_eq!(s.claims.exp, NOW + 900);
        let header = jsonwebtoken::decode_header(&s.token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(header.kid, Some(kid()));
        let json = claims_json(&s);
        assert!(json.get("scope").is_none() && json.get("client_id").is_none());
    }

    #[test]
    fn scope_and_client_id_are_signed_in() {
        let grant = Grant {
            scope: Some("read write"),
            client_id: Some("billing"),
            ..Grant::default()
        };
        let s = tokens()
            .sign("billing", Uuid::new_v4(), Uuid::new_v4(), NOW, grant)
            .unwrap();
        let claims = tokens().verify(&s.token, NOW).unwrap();
        assert_eq!(claims.scopes().collect::<Vec<_>>(), ["read", "write"]);
        assert_eq!(claims.client_id.as_deref(), Some("billing"));
    }

    #[test]
    fn unknown_kid_is_refused_and_a_missing_one_tolerated_with_one_key() {
        let s = signed();
        let claims = claims_json(&s);
        let other = forge(
            &serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": "nope"}),
            &claims,
            SECRET,
        );
        assert_eq!(tokens().verify(&other, NOW), Err(Rejection::Signature));
        let bare = forge(
            &serde_json::json!({"alg": "HS256", "typ": "at+jwt"}),
            &claims,
            SECRET,
        );
        assert!(tokens().verify(&bare, NOW).is_ok());
    }

    #[test]
    fn signing_is_deterministic() {
        let t = tokens();
        let (sid, jti) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            t.sign("u", sid, jti, NOW, Grant::default()).unwrap().token,
            t.sign("u", sid, jti, NOW, Grant::default()).unwrap().token
        );
    }

    #[test]
    fn expiry_honours_the_leeway() {
        let s = signed();
        let t = tokens();
        assert!(t.verify(&s.token, NOW + 900 + 5).is_ok());
        assert_eq!(t.verify(&s.token, NOW + 900 + 6), Err(Rejection::Expired));
        assert_eq!(t.verify(&s.token, NOW - 6), Err(Rejection::NotYetValid));
    }

    #[test]
    fn wrong_key_is_a_bad_signature() {
        let s = signed();
        let forged = forge(
            &serde_json::json!({"alg": "HS256", "typ": "at+jwt"}),
            &claims_json(&s),
            b"another key that is long enough!!",
        );
        assert_eq!(tokens().verify(&forged, NOW), Err(Rejection::Signature));
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let s = signed();
        let payload = B64.encode(serde_json::to_vec(&claims_json(&s)).unwrap());
        let none = format!(
            "{}.{payload}.",
            B64.encode(br#"{"alg":"none","typ":"at+jwt"}"#)
        );
        assert!(tokens().verify(&none, NOW).is_err());
        let hs512 = forge(
            &serde_json::json!({"alg": "HS512", "typ": "at+jwt"}),
            &claims_json(&s),
            SECRET,
        );
        assert_eq!(tokens().verify(&hs512, NOW), Err(Rejection::Algorithm));
    }

    #[test]
    fn tampered_payload_is_refused() {
        let s = signed();
        let mut parts: Vec<String> = s.token.split('.').map(String::from).collect();
        let mut claims = claims_json(&s);
        claims["sub"] = "admin".into();
        parts[1] = B64.encode(serde_json::to_vec(&claims).unwrap());
        assert_eq!(
            tokens().verify(&parts.join("."), NOW),
            Err(Rejection::Signature)
        );
    }

    #[test]
    fn wrong_issuer_audience_or_type_is_refused() {
        let s = signed();
        let header = serde_json::json!({"alg": "HS256", "typ": "at+jwt"});
        let mut c = claims_json(&s);
        c["iss"] = "someone-else".into();
        assert_eq!(
            tokens().verify(&forge(&header, &c, SECRET), NOW),
            Err(Rejection::Issuer)
        );
        let mut c = claims_json(&s);
        c["aud"] = "other".into();
        assert_eq!(
            tokens().verify(&forge(&header, &c, SECRET), NOW),
            Err(Rejection::Audience)
        );
        for typ in [serde_json::json!("JWT"), serde_json::Value::Null] {
            let header = serde_json::json!({"alg": "HS256", "typ": typ});
            assert_eq!(
                tokens().verify(&forge(&header, &claims_json(&s), SECRET), NOW),
                Err(Rejection::Type)
            );
        }
    }

    #[test]
    fn missing_claims_are_malformed() {
        let s = signed();
        let header = serde_json::json!({"alg": "HS256", "typ": "at+jwt"});
        for claim in ["sid", "jti", "iat", "exp", "sub"] {
            let mut c = claims_json(&s);
            c.as_object_mut().unwrap().remove(claim);
            assert!(
                tokens().verify(&forge(&header, &c, SECRET), NOW).is_err(),
                "{claim} missing"
            );
        }
    }

    #[test]
    fn garbage_is_malformed() {
        for garbage in ["", "abc", "a.b.c", "....", "\u{0}", &"x".repeat(5000)] {
            assert_eq!(tokens().verify(garbage, NOW), Err(Rejection::Malformed));
        }
    }
}
