//! SPEC §15 TOTP through the one door (`Gate`), on a real SQLite file:
//! enrol with the secret the app is given, sign in with a code once and
//! with a recovery code once, turn it off; and without `totp.key_file`
//! nobody can enrol.

use tokengate::app;
use tokengate::config::{Secret, Settings, TotpKey};
use tokengate::service::{Attempt, Gate, Registration, ServiceError};
use uuid::Uuid;

/// A gate on a fresh SQLite file (removed with the guard), migrated.
async fn gate(key: Option<TotpKey>) -> (Gate, tempdir::Guard) {
    let dir = tempdir::Guard::new();
    let mut settings = Settings::default();
    settings.database.url = Secret::new(format!("sqlite://{}?mode=rwc", dir.file("tg.db")));
    settings.totp.key = key;
    let gate = app::build(&settings).expect("build");
    gate.migrate().await.expect("migrate");
    (gate, dir)
}

fn caller(now: u64) -> Attempt {
    Attempt {
        addr: "192.0.2.10".parse().unwrap(),
        now,
    }
}

async fn register(gate: &Gate, email: &str) -> Uuid {
    let account = Registration {
        email: email.into(),
        password: "correct horse battery".into(),
        email_verified: false,
    };
    gate.register(None, || Ok(account), caller(tokengate::time::now()))
        .await
        .expect("register")
}

/// The code an authenticator app shows for `secret` (base32) at `now`.
fn app_code(secret: &str, now: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret).expect("base32");
    totp_rs::Builder::new()
        .with_secret(secret.as_bytes().to_vec())
        .build()
        .expect("totp")
        .generate(now / 1000)
        .to_string()
}

#[tokio::test]
async fn an_account_enrols_signs_in_with_codes_once_and_turns_totp_off() {
    let (gate, _dir) = gate(Some(TotpKey([9; 32]))).await;
    let alice = register(&gate, "alice@example.com").await;
    assert!(!gate.totp_enabled(alice).await.unwrap());

    let enrolment = gate.totp_begin(alice, "alice@example.com").unwrap();
    assert!(
        enrolment
            .uri
            .starts_with("otpauth://totp/tokengate:alice%40example.com?")
    );
    assert!(enrolment.qr_svg.starts_with("<svg"));
    // Nothing is stored until confirmed.
    assert!(!gate.totp_enabled(alice).await.unwrap());
    let now = tokengate::time::now();
    let code = app_code(&enrolment.secret, now);
    let codes = gate
        .totp_confirm(alice, &enrolment.sealed, &code, caller(now))
        .await
        .unwrap();
    assert_eq!(codes.len(), 10);
    assert!(gate.totp_enabled(alice).await.unwrap());

    // The confirming code is used up; a recovery code works once.
    let reused = gate.totp_verify(alice, &code, caller(now)).await;
    assert!(
        matches!(reused, Err(ServiceError::InvalidCode)),
        "{reused:?}"
    );
    gate.totp_verify(alice, &codes[0], caller(now))
        .await
        .unwrap();
    let again = gate.totp_verify(alice, &codes[0], caller(now)).await;
    assert!(matches!(again, Err(ServiceError::InvalidCode)), "{again:?}");
    // The next step's code passes once.
    let next = now + 30_000;
    let code = app_code(&enrolment.secret, next);
    gate.totp_verify(alice, &code, caller(next)).await.unwrap();

    // Enrolling twice is a conflict; turning off needs a code.
    let second = gate.totp_begin(alice, "alice@example.com").unwrap();
    let later = now + 60_000;
    let refused = gate
        .totp_confirm(
            alice,
            &second.sealed,
            &app_code(&second.secret, later),
            caller(later),
        )
        .await;
    assert!(
        matches!(refused, Err(ServiceError::TotpAlreadyEnabled)),
        "{refused:?}"
    );
    let wrong = gate
        .totp_disable(alice, "zzzz-zzzz-zzzz", caller(later))
        .await;
    assert!(matches!(wrong, Err(ServiceError::InvalidCode)), "{wrong:?}");
    gate.totp_disable(alice, &codes[1], caller(later))
        .await
        .unwrap();
    assert!(!gate.totp_enabled(alice).await.unwrap());
    let gone = gate.totp_verify(alice, &codes[2], caller(later)).await;
    assert!(matches!(gone, Err(ServiceError::InvalidCode)), "{gone:?}");
}

#[tokio::test]
async fn without_a_key_file_nobody_can_enrol() {
    let (gate, _dir) = gate(None).await;
    let alice = register(&gate, "alice@example.com").await;
    let refused = gate.totp_begin(alice, "alice@example.com");
    assert!(
        matches!(refused, Err(ServiceError::TotpNotConfigured)),
        "{refused:?}"
    );
    assert_eq!(
        ServiceError::TotpNotConfigured.code(),
        "totp_not_configured"
    );
    let refused = gate
        .totp_confirm(alice, "anything", "123456", caller(tokengate::time::now()))
        .await;
    assert!(
        matches!(refused, Err(ServiceError::TotpNotConfigured)),
        "{refused:?}"
    );
}

/// A temporary directory, removed on drop.
mod tempdir {
    use std::path::PathBuf;

    pub struct Guard(PathBuf);

    impl Guard {
        pub fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("tokengate-totp-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).expect("create the directory");
            Self(dir)
        }

        pub fn file(&self, name: &str) -> String {
            self.0.join(name).display().to_string()
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
