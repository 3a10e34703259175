use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use super::code::{STEP_SECONDS, Secret};
use super::seal::{ENROLMENT_LIFETIME, Keys};
use super::*;
use crate::config::{TotpKey, UserSettings};
use crate::db::{MockDurableStore, TotpRecord};
use crate::store::memory::MemoryStore;

/// A time in the middle of a step (step T0 / 30_000).
const T0: Millis = 1_800_000_015_000;
const KEY: TotpKey = TotpKey([7; 32]);

fn from(addr: &str, now: Millis) -> Attempt {
    Attempt {
        addr: addr.parse().unwrap(),
        now,
    }
}

fn totp_with(key: Option<TotpKey>) -> Totp {
    let users = UserSettings {
        max_failures: 3,
        max_failures_per_account: 5,
        ..UserSettings::default()
    };
    let settings = TotpSettings {
        key,
        issuer: "Example Corp".into(),
        ..TotpSettings::default()
    };
    Totp::new(&settings, Throttle::for_users(&users, &Default::default())).unwrap()
}

/// The code of `secret` (base32, as shown) at `now`.
fn code_at(secret: &str, now: Millis) -> String {
    let bytes = totp_rs::Secret::try_from_base32(secret).unwrap();
    let secret = Secret(bytes.as_bytes().try_into().unwrap());
    secret.totp(6).unwrap().generate(now / 1000).to_string()
}

/// What the fake database holds for one account.
#[derive(Default)]
struct Rows {
    totp: Option<TotpRecord>,
    recovery: BTreeSet<String>,
}

/// A database of one account's TOTP rows, behaving as the SQL does:
/// conditional update of the step, delete-if-present of recovery codes,
/// insert refused when enrolled.
fn fake_db(user: Uuid) -> (MockDurableStore, Arc<Mutex<Rows>>) {
    let rows = Arc::new(Mutex::new(Rows::default()));
    let mut db = MockDurableStore::new();
    let r = rows.clone();
    db.expect_totp().returning(move |u| {
        Ok((u == user)
            .then(|| r.lock().unwrap().totp.clone())
            .flatten())
    });
    let r = rows.clone();
    db.expect_enable_totp().returning(move |new| {
        let mut rows = r.lock().unwrap();
        if new.user != user || rows.totp.is_some() {
            return Ok(false);
        }
        rows.totp = Some(TotpRecord {
            secret: new.secret.clone(),
            last_step: new.last_step,
        });
        rows.recovery = new.recovery_hashes.iter().cloned().collect();
        Ok(true)
    });
    let r = rows.clone();
    db.expect_use_totp_step().returning(move |u, step| {
        let mut rows = r.lock().unwrap();
        match &mut rows.totp {
            Some(record) if u == user && record.last_step < step => {
                record.last_step = step;
                Ok(true)
            }
            _ => Ok(false),
        }
    });
    let r = rows.clone();
    db.expect_use_recovery_code()
        .returning(move |u, hash| Ok(u == user && r.lock().unwrap().recovery.remove(hash)));
    let r = rows.clone();
    db.expect_disable_totp().returning(move |u| {
        let mut rows = r.lock().unwrap();
        rows.recovery.clear();
        Ok(u == user && rows.totp.take().is_some())
    });
    (db, rows)
}

/// `user` enrolled at T0; the secret (base32) and the recovery codes.
async fn enrolled(totp: &Totp, db: &MockDurableStore, user: Uuid) -> (String, Vec<String>) {
    let store = MemoryStore::for_tests();
    let enrolment = totp.begin(user, "alice@example.com", T0).unwrap();
    let code = code_at(&enrolment.secret, T0);
    let codes = totp
        .confirm(
            db,
            &store,
            user,
            &enrolment.sealed,
            &code,
            from("192.0.2.1", T0),
        )
        .await
        .unwrap();
    (enrolment.secret, codes)
}

#[test]
fn rfc_6238_appendix_b_sha1_vectors() {
    let secret = Secret(*b"12345678901234567890");
    let vectors = [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];
    let eight = secret.totp(8).unwrap();
    for (time, expected) in vectors {
        assert_eq!(eight.generate(time).to_string(), expected, "T = {time}");
        // The six-digit code is the same number's last six digits, and
        // the check (our code path) finds its step.
        let six = &expected[2..];
        assert_eq!(
            secret.matching_step(six, time, 0),
            Some(time / STEP_SECONDS),
            "T = {time}"
        );
    }
}

#[test]
fn a_code_matches_one_step_either_side_and_only_after_the_last_used() {
    let secret = Secret([3; 20]);
    let now = T0 / 1000;
    let step = now / STEP_SECONDS;
    let code = |s: u64| {
        secret
            .totp(6)
            .unwrap()
            .generate(s * STEP_SECONDS)
            .to_string()
    };
    for s in [step - 1, step, step + 1] {
        assert_eq!(secret.matching_step(&code(s), now, 0), Some(s));
    }
    for s in [step - 2, step + 2] {
        assert_eq!(secret.matching_step(&code(s), now, 0), None);
    }
    assert_eq!(secret.matching_step(&code(step), now, step), None);
    assert_eq!(secret.matching_step(&code(step), now, step - 1), Some(step));
    for junk in ["", "12345", "1234567", "+12345", "abcdef"] {
        assert_eq!(secret.matching_step(junk, now, 0), None, "{junk:?}");
    }
}

#[test]
fn secrets_open_only_for_their_user_unaltered_and_with_their_key() {
    let keys = Keys::new(&KEY).unwrap();
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let secret = Secret::generate();
    let blob = keys.seal_secret(alice, &secret).unwrap();
    assert_eq!(blob.len(), 12 + 20 + 16);
    assert_eq!(keys.open_secret(alice, &blob).unwrap(), secret);
    // Random nonces: the same secret seals differently each time.
    assert_ne!(keys.seal_secret(alice, &secret).unwrap(), blob);
    assert!(keys.open_secret(bob, &blob).is_err());
    for i in [0, 12, blob.len() - 1] {
        let mut tampered = blob.clone();
        tampered[i] ^= 1;
        assert!(keys.open_secret(alice, &tampered).is_err(), "byte {i}");
    }
    assert!(keys.open_secret(alice, &blob[..20]).is_err());
    let other = Keys::new(&TotpKey([8; 32])).unwrap();
    assert!(other.open_secret(alice, &blob).is_err());
    // A sealed enrolment is no stored secret (another derived key).
    let sealed = keys.seal_enrolment(alice, &secret, T0).unwrap();
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sealed).unwrap();
    assert!(keys.open_secret(alice, &bytes).is_err());
}

#[test]
fn a_sealed_enrolment_is_this_users_and_expires() {
    let keys = Keys::new(&KEY).unwrap();
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let secret = Secret::generate();
    let sealed = keys.seal_enrolment(alice, &secret, T0).unwrap();
    assert_eq!(
        keys.open_enrolment(alice, &sealed, T0),
        Some(secret.clone())
    );
    let last = T0 + ENROLMENT_LIFETIME;
    assert_eq!(keys.open_enrolment(alice, &sealed, last), Some(secret));
    assert_eq!(keys.open_enrolment(alice, &sealed, last + 1), None);
    // Begun on a replica whose clock is ahead: a minute is tolerated.
    assert!(keys.open_enrolment(alice, &sealed, T0 - 60_000).is_some());
    assert!(keys.open_enrolment(alice, &sealed, T0 - 60_001).is_none());
    assert!(keys.open_enrolment(bob, &sealed, T0).is_none());
    let mut altered = sealed.clone().into_bytes();
    altered[20] = if altered[20] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    for bad in [altered.as_str(), "", "not base64!", &sealed[..30]] {
        assert!(keys.open_enrolment(alice, bad, T0).is_none(), "{bad:?}");
    }
}

#[test]
fn the_enrolment_shows_the_secret_as_uri_and_plain_svg() {
    let totp = totp_with(Some(KEY));
    let user = Uuid::new_v4();
    let enrolment = totp.begin(user, "alice+tg@example.com", T0).unwrap();
    assert_eq!(enrolment.secret.len(), 32);
    assert_eq!(
        enrolment.uri,
        format!(
            "otpauth://totp/Example%20Corp:alice%2Btg%40example.com?secret={}\
             &issuer=Example%20Corp&algorithm=SHA1&digits=6&period=30",
            enrolment.secret
        )
    );
    let svg = &enrolment.qr_svg;
    assert!(svg.starts_with("<svg role=\"img\""), "{svg}");
    assert!(svg.ends_with("</svg>"));
    for banned in ["<?xml", "<script", "href", "url(", "style", "<image"] {
        assert!(!svg.contains(banned), "{banned}");
    }
    assert_eq!(format!("{enrolment:?}"), "TotpEnrolment([redacted])");
    assert!(!format!("{:?}", Secret([1; 20])).contains('1'));
    // Another secret each time.
    assert_ne!(
        totp.begin(user, "a@b.c", T0).unwrap().secret,
        enrolment.secret
    );
}

#[test]
fn recovery_codes_are_ten_distinct_grouped_and_normalized() {
    let codes = recovery::generate();
    assert_eq!(codes.len(), 10);
    assert_eq!(codes.iter().collect::<BTreeSet<_>>().len(), 10);
    for code in &codes {
        let groups: Vec<&str> = code.split('-').collect();
        assert_eq!(groups.len(), 3, "{code}");
        assert!(groups.iter().all(|g| g.len() == 4), "{code}");
        let plain = code.replace('-', "");
        assert_eq!(recovery::normalize(code).as_deref(), Some(plain.as_str()));
        let retyped = format!(" {} ", code.to_uppercase().replace('-', " "));
        assert_eq!(
            recovery::normalize(&retyped).as_deref(),
            Some(plain.as_str())
        );
        let hash = recovery::hash(&plain);
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&plain));
    }
    for bad in [
        "",
        "abcd-efgh-ijk",
        "abcd-efgh-ijkl-m",
        "abcd-efgh-ijk1",
        "123456",
    ] {
        assert_eq!(recovery::normalize(bad), None, "{bad}");
    }
}

#[tokio::test]
async fn confirming_stores_the_secret_encrypted_with_the_used_step_and_hashed_codes() {
    let totp = totp_with(Some(KEY));
    let user = Uuid::new_v4();
    let (db, rows) = fake_db(user);
    let (secret, codes) = enrolled(&totp, &db, user).await;
    assert_eq!(codes.len(), 10);
    let record = rows.lock().unwrap().totp.clone().unwrap();
    assert_eq!(record.last_step, T0 / 1000 / STEP_SECONDS);
    let raw = totp_rs::Secret::try_from_base32(&secret).unwrap();
    assert!(!record.secret.windows(20).any(|w| w == raw.as_bytes()));
    let expected: BTreeSet<String> = codes
        .iter()
        .map(|c| recovery::hash(&recovery::normalize(c).unwrap()))
        .collect();
    assert_eq!(rows.lock().unwrap().recovery, expected);
    assert!(totp.enabled(&db, user).await.unwrap());
    assert!(!totp.enabled(&db, Uuid::new_v4()).await.unwrap());
}

#[tokio::test]
async fn confirm_refuses_a_wrong_code_an_old_or_foreign_enrolment_and_a_second_one() {
    let totp = totp_with(Some(KEY));
    let store = MemoryStore::for_tests();
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let (db, rows) = fake_db(alice);
    let enrolment = totp.begin(alice, "alice@example.com", T0).unwrap();
    let code = code_at(&enrolment.secret, T0);
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let late = T0 + ENROLMENT_LIFETIME + 1;
    let cases = [
        (alice, wrong.to_owned(), T0),
        (alice, code_at(&enrolment.secret, late), late),
        (bob, code.clone(), T0),
    ];
    for (user, code, now) in cases {
        let refused = totp
            .confirm(
                &db,
                &store,
                user,
                &enrolment.sealed,
                &code,
                from("192.0.2.9", now),
            )
            .await;
        assert!(
            matches!(refused, Err(TotpError::InvalidCode)),
            "{refused:?}"
        );
    }
    assert!(rows.lock().unwrap().totp.is_none());
    // Once enrolled, another enrolment is refused, even with a right code.
    enrolled(&totp, &db, alice).await;
    let again = totp.begin(alice, "alice@example.com", T0).unwrap();
    let next = T0 + 30_000;
    let refused = totp
        .confirm(
            &db,
            &store,
            alice,
            &again.sealed,
            &code_at(&again.secret, next),
            from("192.0.2.1", next),
        )
        .await;
    assert!(
        matches!(refused, Err(TotpError::AlreadyEnabled)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_code_is_accepted_once_and_the_confirming_code_is_used_up() {
    let totp = totp_with(Some(KEY));
    let store = MemoryStore::for_tests();
    let user = Uuid::new_v4();
    let (db, _rows) = fake_db(user);
    let (secret, _) = enrolled(&totp, &db, user).await;
    let caller = from("192.0.2.1", T0);
    let confirming = code_at(&secret, T0);
    let reused = totp.verify(&db, &store, user, &confirming, caller).await;
    assert!(matches!(reused, Err(TotpError::InvalidCode)));
    // The next step's code (spaces tolerated), once; then not even the
    // step before it.
    let next = T0 + 30_000;
    let code = code_at(&secret, next);
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    let at_next = from("192.0.2.1", next);
    totp.verify(&db, &store, user, &spaced, at_next)
        .await
        .unwrap();
    assert!(matches!(
        totp.verify(&db, &store, user, &code, at_next).await,
        Err(TotpError::InvalidCode)
    ));
    let later = T0 + 60_000;
    let behind = code_at(&secret, next);
    assert!(matches!(
        totp.verify(&db, &store, user, &behind, from("192.0.2.1", later))
            .await,
        Err(TotpError::InvalidCode)
    ));
}

#[tokio::test]
async fn a_recovery_code_is_accepted_once_and_without_the_key() {
    let totp = totp_with(Some(KEY));
    let store = MemoryStore::for_tests();
    let user = Uuid::new_v4();
    let (db, rows) = fake_db(user);
    let (secret, codes) = enrolled(&totp, &db, user).await;
    let caller = from("192.0.2.1", T0);
    totp.verify(&db, &store, user, &codes[0].to_uppercase(), caller)
        .await
        .unwrap();
    assert!(matches!(
        totp.verify(&db, &store, user, &codes[0], caller).await,
        Err(TotpError::InvalidCode)
    ));
    assert_eq!(rows.lock().unwrap().recovery.len(), 9);
    // A replica without the key still takes recovery codes, and says
    // that codes cannot be checked rather than that they are wrong.
    let keyless = totp_with(None);
    keyless
        .verify(&db, &store, user, &codes[1], caller)
        .await
        .unwrap();
    let next = T0 + 30_000;
    let code = code_at(&secret, next);
    assert!(matches!(
        keyless
            .verify(&db, &store, user, &code, from("192.0.2.1", next))
            .await,
        Err(TotpError::NotConfigured)
    ));
    assert!(matches!(
        keyless.begin(user, "alice@example.com", T0),
        Err(TotpError::NotConfigured)
    ));
}

#[tokio::test]
async fn disabling_needs_a_code_and_removes_everything() {
    let totp = totp_with(Some(KEY));
    let store = MemoryStore::for_tests();
    let user = Uuid::new_v4();
    let (db, rows) = fake_db(user);
    let (_, codes) = enrolled(&totp, &db, user).await;
    let caller = from("192.0.2.1", T0);
    assert!(matches!(
        totp.disable(&db, &store, user, "not a code", caller).await,
        Err(TotpError::InvalidCode)
    ));
    assert!(totp.enabled(&db, user).await.unwrap());
    totp.disable(&db, &store, user, &codes[3], caller)
        .await
        .unwrap();
    assert!(!totp.enabled(&db, user).await.unwrap());
    assert!(rows.lock().unwrap().recovery.is_empty());
    assert!(matches!(
        totp.verify(&db, &store, user, &codes[4], caller).await,
        Err(TotpError::InvalidCode)
    ));
}

#[tokio::test]
async fn wrong_codes_are_throttled_per_account_and_address_like_passwords() {
    let totp = totp_with(Some(KEY));
    let store = MemoryStore::for_tests();
    let user = Uuid::new_v4();
    let (db, _rows) = fake_db(user);
    let (secret, _) = enrolled(&totp, &db, user).await;
    let now = T0 + 30_000;
    let right = code_at(&secret, now);
    let wrong = if right == "000000" {
        "000001"
    } else {
        "000000"
    };
    for _ in 0..3 {
        let refused = totp
            .verify(&db, &store, user, wrong, from("192.0.2.1", now))
            .await;
        assert!(matches!(refused, Err(TotpError::InvalidCode)));
    }
    // That address is shut out, right code or not; another is not.
    assert!(matches!(
        totp.verify(&db, &store, user, &right, from("192.0.2.1", now))
            .await,
        Err(TotpError::Throttled(_))
    ));
    totp.verify(&db, &store, user, &right, from("198.51.100.7", now))
        .await
        .unwrap();
    // Two more failures elsewhere reach the account's total of five.
    for _ in 0..2 {
        let _ = totp
            .verify(&db, &store, user, wrong, from("203.0.113.5", now))
            .await;
    }
    let later = now + 30_000;
    assert!(matches!(
        totp.verify(
            &db,
            &store,
            user,
            &code_at(&secret, later),
            from("198.51.100.7", later)
        )
        .await,
        Err(TotpError::Throttled(_))
    ));
}
