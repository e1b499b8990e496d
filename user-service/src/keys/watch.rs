//! Following the key source while the service runs.

use std::{path::Path, sync::Arc, time::Duration};

use prometheus_client::metrics::counter::Counter;
use shippy_service::Shutdown;

use super::{FILE_CHECK_INTERVAL, KeySource, consul::KvKey, kv_source};
use crate::tokens::{Ring, TokenSigner, file_source};

/// How long to wait after a failed Consul read before the next.
const KV_RETRY: Duration = Duration::from_secs(1);

/// What the source last held, so each change is acted on (and a bad one
/// logged) once.
#[derive(Debug, Default, PartialEq, Eq)]
enum Seen {
    #[default]
    Nothing,
    Text(String),
    Error(String),
}

struct Follower {
    signer: Arc<TokenSigner>,
    failures: Counter,
    seen: Seen,
}

impl Follower {
    /// Takes what the source now holds (`Ok(text)`) or why it cannot be read.
    fn saw(&mut self, what: Result<String, String>, source: &str) {
        let seen = match what {
            Ok(text) => Seen::Text(text),
            Err(error) => Seen::Error(error),
        };
        if seen == self.seen {
            return;
        }
        let result = match &seen {
            Seen::Text(text) => {
                Ring::parse(text, source).map_err(|error| shippy_service::error::chain(&error))
            }
            Seen::Error(error) => Err(error.clone()),
            Seen::Nothing => return,
        };
        match result {
            Ok(ring) => {
                if !self.signer.replace(ring) {
                    tracing::debug!(source, "signing key source rewritten with the same keys");
                }
            }
            Err(error) => {
                self.failures.inc();
                tracing::error!(
                    source,
                    error = %shippy_service::text::excerpt(&error),
                    kids = ?self.signer.kids(),
                    "the signing key source cannot be used; the keys in use stay"
                );
            }
        }
        self.seen = seen;
    }
}

/// Keeps `signer`'s ring equal to what `source` holds until `shutdown`:
/// a file is read every [`FILE_CHECK_INTERVAL`], a Consul key is followed
/// with blocking queries; `SIGHUP` reads either at once.
pub async fn follow(
    source: KeySource,
    signer: Arc<TokenSigner>,
    failures: Counter,
    mut hangups: Hangups,
    shutdown: Shutdown,
) {
    let mut follower = Follower {
        signer,
        failures,
        seen: Seen::Nothing,
    };
    match source {
        KeySource::Generated => {}
        KeySource::File(path) => follow_file(&path, &mut follower, &mut hangups, &shutdown).await,
        KeySource::Consul(kv) => follow_kv(&kv, &mut follower, &mut hangups, &shutdown).await,
    }
}

async fn follow_file(
    path: &Path,
    follower: &mut Follower,
    hangups: &mut Hangups,
    shutdown: &Shutdown,
) {
    let source = file_source(path);
    // The first check reads what was loaded at start again (the same keys:
    // nothing to log), so a change made meanwhile is not missed.
    let mut ticks = tokio::time::interval(FILE_CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = ticks.tick() => {}
            () = hangups.next() => tracing::info!(source, "SIGHUP: reading the signing keys again"),
        }
        let read = tokio::fs::read_to_string(path)
            .await
            .map_err(|error| format!("cannot read {source}: {error}"));
        follower.saw(read, &source);
    }
}

async fn follow_kv(
    kv: &KvKey,
    follower: &mut Follower,
    hangups: &mut Hangups,
    shutdown: &Shutdown,
) {
    let source = kv_source(kv.name());
    let mut index: Option<u64> = None;
    loop {
        let read = tokio::select! {
            () = shutdown.wait() => return,
            read = kv.read(index) => read,
            () = hangups.next() => {
                tracing::info!(source, "SIGHUP: reading the signing keys again");
                kv.read(None).await
            }
        };
        match read {
            Ok(value) => {
                // Consul's advice: an index that went backwards starts over.
                index = match index {
                    Some(old) if value.index < old => None,
                    _ => Some(value.index),
                };
                follower.saw(Ok(value.text), &source);
            }
            Err(error) => {
                index = None;
                follower.saw(Err(error.to_string()), &source);
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(KV_RETRY) => {}
                }
            }
        }
    }
}

/// `SIGHUP`s to this process (none if the handler cannot be installed),
/// listened for from the moment this is made: made first thing
/// at start-up, so a `SIGHUP` while the service still waits for Consul or
/// its database is taken (and acted on once the keys are followed) instead
/// of ending the process, which is the signal's default.
#[derive(Debug)]
pub struct Hangups(Option<tokio::signal::unix::Signal>);

impl Hangups {
    /// Starts listening.
    pub fn listen() -> Self {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Self(Some(signal)),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; the key source is still checked regularly");
                Self(None)
            }
        }
    }

    async fn next(&mut self) {
        match &mut self.0 {
            Some(signal) => {
                if signal.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}
