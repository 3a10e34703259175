//! The one place argon2id runs for requests: a bounded pool.
//!
//! argon2id is slow on purpose (tens of milliseconds of one core per verify),
//! so unbounded, it is the cheapest way to take a replica down: a flood of
//! wrong secrets would queue verifications without end and every honest
//! request behind them would time out. Here at most one verification runs
//! per core, at most `queue` more wait for one, and none waits longer than
//! `wait`; past either bound the caller is told [`Busy`](VerifyError::Busy)
//! at once, which the HTTP layer answers `503` + `Retry-After`. Client
//! secrets and user passwords share it, and so do the hashes registrations
//! make.
//!
//! Each verification needs the hash's whole memory cost (19 MiB by default).
//! Allocated per call, glibc keeps those blocks in its heap once it has
//! raised its mmap threshold, and a flood grew a replica to hundreds of
//! megabytes. So the pool keeps one block buffer per worker and lends it out:
//! memory stays at `workers × m_cost`, whatever the load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use prometheus_client::metrics::counter::Counter;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("too many secret verifications waiting; retry shortly")]
    Busy,
    #[error("secret verification failed to run")]
    Internal,
}

pub struct Verifier {
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    wait: Duration,
    /// Verifications run, for `/metrics` (and tests that prove none ran).
    runs: Counter,
    /// Block buffers of finished verifications, at most one per worker.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
}

impl Verifier {
    /// `workers` verifications at a time, `queue` more waiting at most
    /// `wait` each.
    pub fn new(workers: usize, queue: usize, wait: Duration) -> Self {
        Self {
            running: Arc::new(Semaphore::new(workers.max(1))),
            waiting: AtomicUsize::new(0),
            queue,
            wait,
            runs: Counter::default(),
            memory: Arc::default(),
        }
    }

    /// How many verifications have run (a shared handle).
    pub fn runs(&self) -> &Counter {
        &self.runs
    }

    /// One worker per core: argon2 is pure CPU.
    pub fn per_core(queue: usize, wait: Duration) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new(cores, queue, wait)
    }

    /// A worker, at once or after waiting in the bounded queue.
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, VerifyError> {
        match self.running.clone().try_acquire_owned() {
            Ok(permit) => Ok(permit),
            Err(_) => {
                let _place = Waiting::enter(&self.waiting, self.queue)?;
                tokio::time::timeout(self.wait, self.running.clone().acquire_owned())
                    .await
                    .map_err(|_| VerifyError::Busy)?
                    .map_err(|_| VerifyError::Internal)
            }
        }
    }

    /// Whether `secret` matches `hash`, on the blocking pool.
    pub async fn verify(&self, secret: Vec<u8>, hash: PasswordHash) -> Result<bool, VerifyError> {
        let permit = self.permit().await?;
        self.runs.inc();
        let memory = self.memory.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut blocks = lock(&memory).pop().unwrap_or_default();
            let verified = matches(&secret, &hash, &mut blocks);
            lock(&memory).push(blocks);
            verified
        })
        .await
        .map_err(|_| VerifyError::Internal)
    }
}

impl Verifier {
    /// A new argon2id PHC string for `secret` (random salt, the crate's
    /// default parameters), in the same bounded pool: registrations flood
    /// like logins do.
    pub async fn hash(&self, secret: Vec<u8>) -> Result<String, VerifyError> {
        let permit = self.permit().await?;
        self.runs.inc();
        let memory = self.memory.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut blocks = lock(&memory).pop().unwrap_or_default();
            let hash = new_hash(&secret, &mut blocks);
            lock(&memory).push(blocks);
            hash
        })
        .await
        .map_err(|_| VerifyError::Internal)?
    }
}

/// argon2id of `secret` under a fresh salt with default parameters, as a
/// PHC string (the format `PasswordHash` parses).
fn new_hash(secret: &[u8], blocks: &mut Vec<Block>) -> Result<String, VerifyError> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    let params = Params::default();
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    if blocks.len() < params.block_count() {
        blocks.resize(params.block_count(), Block::default());
    }
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            secret,
            &salt,
            &mut out,
            &mut blocks[..params.block_count()],
        )
        .map_err(|_| VerifyError::Internal)?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    ))
}

/// A buffer list is whole after any panic (push and pop are single steps).
fn lock(memory: &Mutex<Vec<Vec<Block>>>) -> std::sync::MutexGuard<'_, Vec<Vec<Block>>> {
    memory.lock().unwrap_or_else(|e| e.into_inner())
}

/// argon2id of `secret` under the hash's salt and parameters, computed in
/// `blocks` (grown as needed), compared in constant time with its output.
fn matches(secret: &[u8], hash: &PasswordHash, blocks: &mut Vec<Block>) -> bool {
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let Ok(version) = hash
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    if blocks.len() < params.block_count() {
        blocks.resize(params.block_count(), Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let blocks = &mut blocks[..params.block_count()];
    Argon2::new(Algorithm::Argon2id, version, params)
        .hash_password_into_with_memory(secret, salt, &mut out, blocks)
        .is_ok_and(|()| bool::from(out.ct_eq(expected.as_bytes())))
}

/// A place in the bounded queue, given back on drop.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(waiting: &'a AtomicUsize, limit: usize) -> Result<Self, VerifyError> {
        let before = waiting.fetch_add(1, Ordering::AcqRel);
        let place = Self(waiting);
        if before >= limit {
            return Err(VerifyError::Busy); // `place` leaves the queue again
        }
        Ok(place)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::{hash_secret, parse_secret_hash};

    fn hash() -> PasswordHash {
        parse_secret_hash(&hash_secret(b"right").unwrap()).unwrap()
    }

    #[tokio::test]
    async fn verifies_right_and_wrong_secrets() {
        let v = Verifier::new(1, 4, Duration::from_secs(5));
        assert_eq!(v.verify(b"right".to_vec(), hash()).await, Ok(true));
        assert_eq!(v.verify(b"wrong".to_vec(), hash()).await, Ok(false));
        assert_eq!(v.runs().get(), 2);
        assert_eq!(v.memory.lock().unwrap().len(), 1, "one buffer, reused");
    }

    #[test]
    fn matches_what_the_argon2_crate_verifies() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let mut blocks = Vec::new();
        for params in [Params::new(8, 1, 1, None).unwrap(), Params::default()] {
            let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
            let hash = argon2.hash_password(b"right").unwrap();
            assert!(argon2.verify_password(b"right", &hash).is_ok());
            assert!(matches(b"right", &hash, &mut blocks));
            assert!(!matches(b"wrong", &hash, &mut blocks));
            assert!(!matches(b"righ", &hash, &mut blocks));
        }
        // A buffer grown for a costly hash still serves a cheap one.
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        );
        let hash = cheap.hash_password(b"x").unwrap();
        assert!(matches(b"x", &hash, &mut blocks));
    }

    #[tokio::test]
    async fn new_hashes_are_argon2id_phc_strings_that_verify() {
        use argon2::PasswordVerifier;
        let v = Verifier::new(1, 4, Duration::from_secs(5));
        let text = v.hash(b"correct horse".to_vec()).await.unwrap();
        let other = v.hash(b"correct horse".to_vec()).await.unwrap();
        assert_ne!(text, other, "a fresh salt each time");
        let hash = parse_secret_hash(&text).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &hash)
                .is_ok()
        );
        assert_eq!(
            v.verify(b"correct horse".to_vec(), hash.clone()).await,
            Ok(true)
        );
        assert_eq!(v.verify(b"correct horsf".to_vec(), hash).await, Ok(false));
        assert_eq!(v.runs().get(), 4);
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let v = Arc::new(Verifier::new(1, 2, Duration::from_secs(30)));
        let hash = hash();
        // The only worker is taken; two callers fill the queue.
        let worker = v.running.clone().try_acquire_owned().unwrap();
        let queued: Vec<_> = (0..2)
            .map(|_| {
                let (v, hash) = (v.clone(), hash.clone());
                tokio::spawn(async move { v.verify(b"wrong".to_vec(), hash).await })
            })
            .collect();
        while v.waiting.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            v.verify(b"wrong".to_vec(), hash).await,
            Err(VerifyError::Busy),
            "a third waiter is refused without waiting"
        );
        drop(worker);
        for call in queued {
            assert_eq!(call.await.unwrap(), Ok(false), "queued calls still run");
        }
        assert_eq!(v.waiting.load(Ordering::Acquire), 0, "the queue drains");
    }

    #[tokio::test]
    async fn waiting_longer_than_the_limit_is_busy() {
        let v = Verifier::new(1, 16, Duration::from_millis(20));
        let _worker = v.running.clone().try_acquire_owned().unwrap();
        assert_eq!(
            v.verify(b"wrong".to_vec(), hash()).await,
            Err(VerifyError::Busy)
        );
        assert_eq!(v.waiting.load(Ordering::Acquire), 0);
    }
}
