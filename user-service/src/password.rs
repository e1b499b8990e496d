//! bcrypt hashing and verification, off the async runtime.
//!
//! bcrypt is slow on purpose (cost 12: a few hundred milliseconds), so every
//! hash and verify runs on a pool of its own threads, one per core, never on
//! the threads that serve other requests. Those threads run only when the
//! CPU is otherwise idle (`SCHED_IDLE` on Linux): bcrypt uses whatever CPU
//! is left, but everything else on the machine (this service's other RPCs,
//! its neighbours) goes first, so a burst of logins cannot starve them. At most
//! [`QUEUE`] hashes wait, and a request that would wait longer than
//! [`MAX_WAIT`] (estimated from the jobs ahead and how long a hash takes) is
//! refused as busy at once; a job whose caller went away (cancelled, or
//! past its deadline) is skipped, not hashed. Logging in
//! with an unknown email verifies against a dummy hash of the same cost, so
//! it takes as long as a wrong password and the two cannot be told apart by
//! timing.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

/// How many hashes may wait for a bcrypt thread.
pub const QUEUE: usize = 1024;
/// The longest a request may expect to wait for a bcrypt thread.
pub const MAX_WAIT: Duration = Duration::from_secs(3);

type Job = Box<dyn FnOnce() + Send>;

/// bcrypt's own threads.
#[derive(Debug, Clone)]
struct Pool {
    jobs: mpsc::SyncSender<Job>,
    threads: usize,
    /// Jobs queued and not started.
    waiting: Arc<AtomicUsize>,
    /// How long a job takes, in microseconds (a moving average).
    job_micros: Arc<AtomicU64>,
    max_wait: Duration,
}

/// Runs the calling thread only when no other thread wants the CPU
/// (`SCHED_IDLE` on Linux; the lowest priority elsewhere).
fn lower_priority() {
    use thread_priority::{ThreadPriority, set_current_thread_priority};
    #[cfg(target_os = "linux")]
    let lowered = {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        )
        .or_else(|_| set_current_thread_priority(ThreadPriority::Min))
    };
    #[cfg(not(target_os = "linux"))]
    let lowered = set_current_thread_priority(ThreadPriority::Min);
    if let Err(error) = lowered {
        tracing::warn!(?error, "cannot lower the bcrypt thread's priority");
    }
}

impl Pool {
    fn new(max_wait: Duration) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("bcrypt-{index}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a bcrypt thread");
            }
        }
        Self {
            jobs,
            threads,
            waiting: Arc::new(AtomicUsize::new(0)),
            job_micros: Arc::new(AtomicU64::new(0)),
            max_wait,
        }
    }

    /// How long a new job would wait before a thread starts it.
    fn expected_wait(&self) -> Duration {
        let ahead = u64::try_from(self.waiting.load(Ordering::SeqCst)).unwrap_or(u64::MAX);
        let threads = u64::try_from(self.threads.max(1)).unwrap_or(1);
        Duration::from_micros(
            ahead.saturating_mul(self.job_micros.load(Ordering::Relaxed)) / threads,
        )
    }

    /// Runs `work` on a bcrypt thread and waits for its result.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        if self.expected_wait() > self.max_wait {
            return Err(HashError::Busy);
        }
        let (done, result) = tokio::sync::oneshot::channel();
        let waiting = self.waiting.clone();
        let job_micros = self.job_micros.clone();
        let job: Job = Box::new(move || {
            waiting.fetch_sub(1, Ordering::SeqCst);
            // Nobody waits for the answer any more (the caller gave up or
            // its deadline passed): don't spend a bcrypt on it.
            if done.is_closed() {
                return;
            }
            let started = Instant::now();
            let answer = work();
            let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let average = job_micros.load(Ordering::Relaxed);
            let average = if average == 0 {
                took
            } else {
                (average.saturating_mul(7).saturating_add(took)) / 8
            };
            job_micros.store(average, Ordering::Relaxed);
            let _ = done.send(answer);
        });
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.jobs.try_send(job).map_err(|error| {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            match error {
                mpsc::TrySendError::Full(_) => HashError::Busy,
                mpsc::TrySendError::Disconnected(_) => HashError::Stopped,
            }
        })?;
        result.await.map_err(|_| HashError::Stopped)
    }
}

use crate::domain::{Password, PasswordHash};

/// Hashing failed (not a wrong password: a fault of ours).
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// bcrypt refused (e.g. an invalid cost or a corrupt stored hash).
    #[error("bcrypt failed")]
    Bcrypt(#[from] bcrypt::BcryptError),
    /// Too many hashes are waiting already.
    #[error("too many logins at once")]
    Busy,
    /// The bcrypt threads are gone.
    #[error("the bcrypt threads stopped")]
    Stopped,
}

/// Hashes and verifies passwords at a fixed bcrypt cost.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    cost: u32,
    pool: Pool,
    /// A hash of a random password at `cost`, verified when a login names no user.
    dummy: PasswordHash,
}

impl PasswordHasher {
    /// A hasher at `cost` (4 to 31; 12 is bcrypt's default) that refuses
    /// work expected to wait longer than [`MAX_WAIT`].
    pub async fn new(cost: u32) -> Result<Self, HashError> {
        Self::with_max_wait(cost, MAX_WAIT).await
    }

    /// A hasher that refuses work expected to wait longer than `max_wait`.
    pub async fn with_max_wait(cost: u32, max_wait: Duration) -> Result<Self, HashError> {
        let random = uuid::Uuid::new_v4().to_string();
        let pool = Pool::new(max_wait);
        let dummy = pool
            .run(move || bcrypt::non_truncating_hash(random, cost))
            .await??;
        Ok(Self {
            cost,
            pool,
            dummy: PasswordHash(dummy),
        })
    }

    /// The bcrypt hash of `password`.
    pub async fn hash(&self, password: Password) -> Result<PasswordHash, HashError> {
        let cost = self.cost;
        let hash = self
            .pool
            .run(move || bcrypt::non_truncating_hash(password.expose(), cost))
            .await??;
        Ok(PasswordHash(hash))
    }

    /// Whether `password` matches `hash`. With no hash (no such user) it
    /// spends the same time and answers `false`.
    pub async fn verify(
        &self,
        password: Password,
        hash: Option<PasswordHash>,
    ) -> Result<bool, HashError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.clone());
        let matches = self
            .pool
            .run(move || bcrypt::non_truncating_verify(password.expose(), &hash.0))
            .await??;
        Ok(known && matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_match() {
        let hasher = PasswordHasher::new(4).await.unwrap();
        let password = Password::parse_new("correct horse").unwrap();
        let hash = hasher.hash(password.clone()).await.unwrap();
        assert!(hash.0.starts_with("$2b$04$"), "cost 4 bcrypt");
        assert!(
            hasher
                .verify(password.clone(), Some(hash.clone()))
                .await
                .unwrap()
        );
        let wrong = Password::parse_given("battery staple").unwrap();
        assert!(!hasher.verify(wrong, Some(hash)).await.unwrap());
        assert!(!hasher.verify(password, None).await.unwrap());
    }

    #[tokio::test]
    async fn work_that_would_wait_too_long_is_refused_at_once() {
        let hasher = PasswordHasher::with_max_wait(8, Duration::from_millis(1))
            .await
            .unwrap();
        let password = Password::parse_given("guess").unwrap();
        let answers =
            futures::future::join_all((0..20).map(|_| hasher.verify(password.clone(), None))).await;
        let busy = answers
            .iter()
            .filter(|answer| matches!(answer, Err(HashError::Busy)))
            .count();
        assert!(busy > 0, "some were refused: {answers:?}");
        // Refused or answered; nothing else.
        assert!(
            answers
                .iter()
                .all(|answer| matches!(answer, Ok(false) | Err(HashError::Busy))),
            "{answers:?}"
        );
    }
}
