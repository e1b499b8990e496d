//! Backoff, computed one way (backon's exponential backoff) wherever a
//! service waits before trying again: waiting for a dependency (a database, a
//! broker), re-registering in Consul, relaying events, redelivering mail,
//! retrying a call to another service.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};

use crate::{Shutdown, error::chain};

/// Backoff between attempts: from `min` doubling up to `max`, with jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay after the first failure.
    pub min: Duration,
    /// The longest delay between two attempts.
    pub max: Duration,
}

impl Backoff {
    fn builder(self, jitter: bool) -> ExponentialBuilder {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.min)
            .with_max_delay(self.max)
            .without_max_times();
        if jitter {
            builder.with_jitter()
        } else {
            builder
        }
    }

    /// The pauses before each retry: `min`, doubling, at most `max`; with
    /// `jitter`, each one longer by a random part of itself (so instances
    /// that failed together do not retry together).
    pub fn delays(self, jitter: bool) -> impl Iterator<Item = Duration> {
        self.builder(jitter).build()
    }

    /// The pause after `failures` failures in a row (1: the first).
    pub fn after(self, failures: u32, jitter: bool) -> Duration {
        let index = usize::try_from(failures.saturating_sub(1)).unwrap_or(usize::MAX);
        self.delays(jitter).nth(index).unwrap_or(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(200),
            max: Duration::from_secs(5),
        }
    }
}

/// Calls `attempt` until it succeeds, backing off between failures and
/// logging each one as a warning naming `what`. Returns `None` if `shutdown`
/// fires first.
pub async fn until_ready<T, E, F, Fut>(
    what: &str,
    backoff: Backoff,
    shutdown: &Shutdown,
    attempt: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error + 'static,
{
    let policy = backoff.builder(true);
    let retrying = attempt.retry(policy).notify(|error: &E, delay: Duration| {
        tracing::warn!(
            error = %chain(error),
            retry_in_ms = delay.as_millis() as u64,
            "{what} is not ready yet; retrying"
        );
    });
    tokio::select! {
        result = retrying => result.ok(),
        () = shutdown.wait() => None,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn pauses_double_from_min_up_to_max() {
        let backoff = Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        let seconds: Vec<u64> = [1, 2, 3, 4, 6, 7, 100]
            .into_iter()
            .map(|failures| backoff.after(failures, false).as_secs())
            .collect();
        assert_eq!(seconds, [1, 2, 4, 8, 32, 60, 60]);
        assert_eq!(backoff.after(0, false), Duration::from_secs(1));
        for failures in 1..10 {
            let plain = backoff.after(failures, false);
            let jittered = backoff.after(failures, true);
            assert!(
                jittered >= plain && jittered <= plain * 2,
                "{failures}: {jittered:?}"
            );
        }
    }
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const FAST: Backoff = Backoff {
        min: Duration::from_millis(1),
        max: Duration::from_millis(5),
    };

    #[tokio::test]
    async fn retries_until_the_attempt_succeeds() {
        let calls = AtomicU32::new(0);
        let value = until_ready("thing", FAST, &Shutdown::new(), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n < 4 {
                Err(std::io::Error::other("not yet"))
            } else {
                Ok(n)
            }
        })
        .await;
        assert_eq!(value, Some(4));
    }

    #[tokio::test]
    async fn gives_up_when_shutdown_fires() {
        let shutdown = Shutdown::new();
        shutdown.trigger();
        let value: Option<()> = until_ready("thing", FAST, &shutdown, || async {
            Err(std::io::Error::other("never"))
        })
        .await;
        assert_eq!(value, None);
    }
}
