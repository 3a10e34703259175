//! The one place argon2id runs for requests: a bounded pool.
//!
//! argon2id is slow on purpose (tens of milliseconds of one core per verify),
//! so unbounded, it is the cheapest way to take a replica down: a flood of
//! wrong secrets would queue verifications without end and every honest
//! request behind them would time out. Here at most one verification runs
//! per core, at most `queue` more wait for one, and none waits longer than
//! `wait`; past either bound the caller is told [`Busy`](VerifyError::Busy)
//! at once, which the HTTP layer answers `503` + `Retry-After`. Client
//! secrets use it today; user passwords are meant to share it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordVerifier};
use prometheus_client::metrics::counter::Counter;
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

    /// Whether `secret` matches `hash`, on the blocking pool.
    pub async fn verify(&self, secret: Vec<u8>, hash: PasswordHash) -> Result<bool, VerifyError> {
        let permit = match self.running.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let _place = Waiting::enter(&self.waiting, self.queue)?;
                tokio::time::timeout(self.wait, self.running.clone().acquire_owned())
                    .await
                    .map_err(|_| VerifyError::Busy)?
                    .map_err(|_| VerifyError::Internal)?
            }
        };
        self.runs.inc();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            Argon2::default().verify_password(&secret, &hash).is_ok()
        })
        .await
        .map_err(|_| VerifyError::Internal)
    }
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
