//! Whether mail moves: a consumer that has events waiting and has mailed
//! (or given up) none of them for a while is stuck, and health says so.
//!
//! The worker marks [`Progress`] each time it settles an event; the
//! [`Watchdog`] reads the consumer's backlog from JetStream now and then.
//! Work waiting and no progress for `MAIL_STUCK_AFTER`: health turns
//! `NOT_SERVING`, one warning is logged and the `email_consumer_stuck` gauge
//! is 1, until mail moves again. A consumer with nothing to do is not stuck;
//! one whose backlog cannot be read (it was never set up, say) counts as
//! having work. Nor is a consumer whose only work is mail waiting out a
//! recipient's "not now" (a 4xx answer) while nothing new waits: the SMTP
//! server takes mail, one mailbox does not yet.

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
    /// Whether the last attempt showed the SMTP server taking mail: mailed,
    /// given up, or refused "not now" for that recipient alone (4xx).
    server_takes_mail: Arc<AtomicBool>,
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
            server_takes_mail: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Marks progress now.
    pub fn moved(&self) {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(now, Ordering::Relaxed);
        self.server_takes_mail.store(true, Ordering::Relaxed);
    }

    /// Notes an attempt that will be retried: `server_takes_mail` when the
    /// SMTP server answered "not now" for this recipient (4xx), not when it
    /// could not be reached or refused our own setup.
    pub fn retried(&self, server_takes_mail: bool) {
        self.server_takes_mail
            .store(server_takes_mail, Ordering::Relaxed);
    }

    /// Whether the last attempt showed the SMTP server taking mail.
    fn server_takes_mail(&self) -> bool {
        self.server_takes_mail.load(Ordering::Relaxed)
    }

    /// How long since the last progress.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

/// A consumer's work.
#[derive(Debug, Clone, Copy)]
struct Backlog {
    /// Events not delivered yet.
    undelivered: u64,
    /// Events delivered and not settled: in flight or waiting for a retry.
    unsettled: u64,
}

impl Backlog {
    fn total(self) -> u64 {
        self.undelivered.saturating_add(self.unsettled)
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

    /// The consumer's backlog: events waiting for delivery, and delivered
    /// ones not settled yet (in flight, or waiting for a retry).
    async fn backlog(&self) -> Result<Backlog, shippy_service::error::BoxError> {
        let stream = self.jetstream.get_stream_no_info(&self.stream).await?;
        let info = stream.consumer_info(&self.consumer).await?;
        Ok(Backlog {
            undelivered: info.num_pending,
            unsettled: u64::try_from(info.num_ack_pending).unwrap_or(0),
        })
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

    /// Decides whether a consumer with `backlog` (`None`: it cannot be read)
    /// is stuck, and says so when that changes.
    fn judge(&self, backlog: Option<Backlog>) {
        if let Some(backlog) = backlog {
            self.backlog_gauge
                .set(i64::try_from(backlog.total()).unwrap_or(i64::MAX));
        }
        let idle_backlog = backlog.is_some_and(|backlog| backlog.total() == 0);
        if idle_backlog {
            // Nothing to do is not stuck; the clock starts when work arrives.
            self.progress.moved();
        }
        let idle = self.progress.idle_for();
        // Only mail waiting out recipients' "not now", nothing new waiting,
        // and the server taking mail: that mail moves when its time comes.
        let only_recipients_waiting = backlog.is_some_and(|backlog| backlog.undelivered == 0)
            && self.progress.server_takes_mail();
        let stuck = !idle_backlog && !only_recipients_waiting && idle >= self.stuck_after;
        if stuck == self.stuck.swap(stuck, Ordering::SeqCst) {
            return;
        }
        self.stuck_gauge.set(i64::from(stuck));
        if stuck {
            tracing::warn!(
                backlog = backlog.map_or_else(|| "unknown".to_owned(), |b| b.total().to_string()),
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
