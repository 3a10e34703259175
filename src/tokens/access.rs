//! Access tokens: compact JWS (RFC 9068 profile) signed and verified locally.
//!
//! Keys, header and [`Validation`] are built once; per request we only sign or
//! verify. Verification pins the algorithm, requires `iss`, `aud`, `exp`, and
//! checks the `typ` header so no other JWT signed with the same key (an ID
//! token, another service's token) ever passes as one of ours.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
        }
    }
}

/// Signs and verifies access tokens with one HS256 key.
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    header: Header,
    validation: Validation,
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
        secret: &[u8],
        issuer: &str,
        audience: &str,
        lifetime_secs: u64,
        leeway_secs: u64,
    ) -> Self {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(ACCESS_TOKEN_TYPE.into());

        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Time is checked by `verify` against the caller's clock, so the
        // rules stay testable without sleeping.
        validation.validate_exp = false;

        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            header,
            validation,
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
    ) -> Result<SignedAccess, jsonwebtoken::errors::Error> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: sub.into(),
            iat,
            exp: iat + self.lifetime_secs,
            jti,
            sid,
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.encoding)?;
        Ok(SignedAccess { token, claims })
    }

    /// Verifies signature, algorithm, `typ`, issuer, audience and time at
    /// `now` (seconds). Says nothing about whether the session still lives.
    pub fn verify(&self, token: &str, now: u64) -> Result<AccessClaims, Rejection> {
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| rejection(e.kind()))?;
        let typ_ok = data.header.typ.as_deref().is_some_and(|typ| {
            typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
                || typ.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(Rejection::Type);
        }
        let claims = data.claims;
        if claims.exp.saturating_add(self.leeway_secs) < now {
            return Err(Rejection::Expired);
        }
        if claims.iat > now.saturating_add(self.leeway_secs) {
            return Err(Rejection::NotYetValid);
        }
        Ok(claims)
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

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn tokens() -> AccessTokens {
        AccessTokens::new(SECRET, "tokengate", "tokengate", 900, 5)
    }

    fn signed() -> SignedAccess {
        tokens()
            .sign("42", Uuid::new_v4(), Uuid::new_v4(), NOW)
            .unwrap()
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
    }

    #[test]
    fn signing_is_deterministic() {
        let t = tokens();
        let (sid, jti) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            t.sign("u", sid, jti, NOW).unwrap().token,
            t.sign("u", sid, jti, NOW).unwrap().token
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
