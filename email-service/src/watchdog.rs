//! Whether mail moves: a consumer that has events waiting and has mailed
//! (or given up) none of them for a while is stuck, and health says so.
//!
//! The worker marks [`Progress`] each time it settles an event; the
//! [`Watchdog`] reads the consumer's backlog from JetStream now and then.
//! Work waiting and no progress for `MAIL_STUCK_AFTER`: health turns
//! `NOT_SERVING`, one warning is logged and the `email_consumer_stuck` gauge
//! is 1, until mail moves again. A consumer with nothing to do is not stuck;
//! one whose backlog cannot be read (it was never set up, say) counts as
//! having work.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::jetstream::Context;
use prometheus_client::metrics::gauge::Gauge;
use shippy_service::{Shutdown, error::chain};

/// When the worker last settled an event (mailed, found mailed before, or
/// given up), shared between the worker and the watchdog.
#[derive(Debug, Clone)]
pub struct Progress {
    origin: Instant,
    /// Milliseconds from `origin` to the last progress.
    last: Arc<AtomicU64>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Progress made now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Marks progress now.
    pub fn moved(&self) {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    /// How long since the last progress.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

/// Watches one consumer's backlog against the worker's progress.
#[derive(Debug, Clone)]
pub struct Watchdog {
    /// JetStream.
    pub jetstream: Context,
    /// The events stream.
    pub stream: String,
    /// The durable consumer watched.
    pub consumer: String,
    /// The worker's progress.
    pub progress: Progress,
    /// How long without progress, with work waiting, is stuck.
    pub stuck_after: Duration,
    /// Set while stuck; health reads it.
    pub stuck: Arc<AtomicBool>,
    /// 1 while stuck, else 0.
    pub stuck_gauge: Gauge,
    /// Events not yet delivered plus those delivered and not yet settled.
    pub backlog_gauge: Gauge,
}

impl Watchdog {
    /// How often the backlog is read: a quarter of `stuck_after`, between
    /// 100 ms and 15 s.
    fn interval(&self) -> Duration {
        (self.stuck_after / 4).clamp(Duration::from_millis(100), Duration::from_secs(15))
    }

    /// The consumer's backlog: events waiting for delivery plus delivered
    /// ones not settled yet (in flight, or waiting for a retry).
    async fn backlog(&self) -> Result<u64, shippy_service::error::BoxError> {
        let stream = self.jetstream.get_stream_no_info(&self.stream).await?;
        let info = stream.consumer_info(&self.consumer).await?;
        Ok(info.num_pending + u64::try_from(info.num_ack_pending).unwrap_or(0))
    }

    /// Watches until `shutdown` fires.
    pub async fn run(self, shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                () = tokio::time::sleep(self.interval()) => {}
            }
            let backlog = self.backlog().await;
            if let Err(error) = &backlog {
                // NATS unreachable (health says so already), or the consumer
                // not set up (yet): the worker says why.
                tracing::debug!(error = %chain(&**error), "reading the consumer's backlog");
            }
            self.judge(backlog.ok());
        }
    }

    /// Decides whether a consumer with `backlog` events (`None`: it cannot
    /// be read) is stuck, and says so when that changes.
    fn judge(&self, backlog: Option<u64>) {
        if let Some(backlog) = backlog {
            self.backlog_gauge
                .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        }
        if backlog == Some(0) {
            // Nothing to do is not stuck; the clock starts when work arrives.
            self.progress.moved();
        }
        let idle = self.progress.idle_for();
        let stuck = backlog != Some(0) && idle >= self.stuck_after;
        if stuck == self.stuck.swap(stuck, Ordering::SeqCst) {
            return;
        }
        self.stuck_gauge.set(i64::from(stuck));
        if stuck {
            tracing::warn!(
                backlog = backlog.map_or_else(|| "unknown".to_owned(), |b| b.to_string()),
                idle_s = idle.as_secs(),
                stuck_after = %humantime::format_duration(self.stuck_after),
                "mail is stuck: events wait and none was mailed or given up for MAIL_STUCK_AFTER; \
                 health is NOT_SERVING until mail moves (is the SMTP server up and taking mail?)"
            );
        } else {
            tracing::info!(backlog = ?backlog, "mail moves again; health is SERVING");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_from_the_last_move() {
        let progress = Progress::new();
        std::thread::sleep(Duration::from_millis(30));
        assert!(progress.idle_for() >= Duration::from_millis(30));
        progress.moved();
        assert!(progress.idle_for() < Duration::from_millis(30));
    }
}
