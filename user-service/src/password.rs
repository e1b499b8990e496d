//! bcrypt hashing and verification, off the async runtime.
//!
//! bcrypt is slow on purpose (cost 12: a few hundred milliseconds), so every
//! hash and verify runs on a pool of its own threads, one per core, never on
//! the threads that serve other requests. Those threads run only when the
//! CPU is otherwise idle (`SCHED_IDLE` on Linux): bcrypt uses whatever CPU
//! is left, but everything else on the machine (this service's other RPCs,
//! its neighbours) goes first, so a burst of logins cannot starve them. At most
//! [`QUEUE`] hashes wait; beyond that a login is refused as busy. Logging in
//! with an unknown email verifies against a dummy hash of the same cost, so
//! it takes as long as a wrong password and the two cannot be told apart by
//! timing.

use std::sync::{Arc, Mutex, mpsc};

/// How many hashes may wait for a bcrypt thread.
pub const QUEUE: usize = 1024;

type Job = Box<dyn FnOnce() + Send>;

/// bcrypt's own threads.
#[derive(Debug, Clone)]
struct Pool {
    jobs: mpsc::SyncSender<Job>,
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
    fn new() -> Self {
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
        Self { jobs }
    }

    /// Runs `work` on a bcrypt thread and waits for its result.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        self.jobs.try_send(job).map_err(|error| match error {
            mpsc::TrySendError::Full(_) => HashError::Busy,
            mpsc::TrySendError::Disconnected(_) => HashError::Stopped,
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
    /// A hasher at `cost` (4 to 31; 12 is bcrypt's default).
    pub async fn new(cost: u32) -> Result<Self, HashError> {
        let random = uuid::Uuid::new_v4().to_string();
        let pool = Pool::new();
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
}
