//! What a registration may contain: the shape of an email address and the
//! password policy (NIST SP 800-63B: a minimum length, a maximum that no
//! honest password reaches, no composition rules, no common passwords).

use crate::config::MAX_PASSWORD_BYTES;

/// RFC 5321's limit on a forward path, the longest address that can receive mail.
pub const MAX_EMAIL_BYTES: usize = 254;
const MAX_LOCAL_PART_BYTES: usize = 64;

/// The few passwords every guessing list starts with; a policy that admits
/// them protects no one. Compared case-insensitively.
const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "password1",
    "password123",
    "12345678",
    "123456789",
    "1234567890",
    "qwertyui",
    "qwerty123",
    "11111111",
    "00000000",
    "iloveyou",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "welcome1",
    "abc12345",
    "letmein1",
    "trustno1",
    "passw0rd",
    "admin123",
    "changeme",
    "superman",
    "starwars",
];

/// Trims and lower-cases an email address, or says what is wrong with it.
///
/// Addresses are ASCII (`local@domain`, an internationalized domain in its
/// `xn--` form): the unique index compares them byte for byte, and ASCII
/// lower case is the one case folding with no locale in it. No control
/// characters, no spaces, one `@`, a dot-free domain allowed (`localhost`).
pub fn normalize_email(email: &str) -> Result<String, &'static str> {
    let email = email.trim();
    if email.is_empty() || email.len() > MAX_EMAIL_BYTES {
        return Err("email must be 1 to 254 bytes");
    }
    if !email.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "email must be printable ASCII without spaces (use the xn-- form of an international domain)",
        );
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err("email must look like name@domain");
    };
    let domain_ok = !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if local.is_empty() || local.len() > MAX_LOCAL_PART_BYTES || !domain_ok {
        return Err("email must look like name@domain");
    }
    Ok(email.to_ascii_lowercase())
}

/// Why a password is refused, naming the rule; `None` if it is acceptable.
pub fn password_problem(password: &str, min_chars: usize) -> Option<String> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Some(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    if password.chars().count() < min_chars {
        return Some(format!("password must be at least {min_chars} characters"));
    }
    if COMMON_PASSWORDS
        .iter()
        .any(|common| common.eq_ignore_ascii_case(password))
    {
        return Some("password is one of the most common passwords; choose another".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            normalize_email("  Alice.Smith+tag@Example.COM \n").unwrap(),
            "alice.smith+tag@example.com"
        );
        assert_eq!(normalize_email("root@localhost").unwrap(), "root@localhost");
        assert_eq!(
            normalize_email("a@xn--bcher-kva.example").unwrap(),
            "a@xn--bcher-kva.example"
        );
    }

    #[test]
    fn malformed_and_hostile_emails_are_refused() {
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "   ",
            "no-at-sign",
            "@example.com",
            "alice@",
            "a@b@c",
            "alice@exa mple.com",
            "al ice@example.com",
            "alice\0@example.com",
            "alice@example.com\0",
            "ålice@example.com",
            "alice@bücher.example",
            "alice@\u{202e}moc.elpmaxe",
            "alice@example..com",
            "alice@.example.com",
            &long,
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
        let local = format!("{}@example.com", "a".repeat(65));
        assert!(normalize_email(&local).is_err());
    }

    #[test]
    fn password_rules_are_named() {
        assert_eq!(password_problem("correct horse", 8), None);
        // Characters, not bytes: four two-byte letters are four characters.
        assert!(
            password_problem("éééé", 8)
                .unwrap()
                .contains("at least 8 characters")
        );
        assert_eq!(password_problem("éééééééé", 8), None);
        assert!(password_problem("short", 8).unwrap().contains("at least 8"));
        let huge = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(
            password_problem(&huge, 8)
                .unwrap()
                .contains("at most 1024 bytes")
        );
        assert_eq!(password_problem(&"x".repeat(MAX_PASSWORD_BYTES), 8), None);
        assert!(password_problem("Password1", 8).unwrap().contains("common"));
    }
}
