//! Serving before a dependency is up: a service starts listening at once,
//! answers health `NOT_SERVING` (and its handlers `UNAVAILABLE`) while it
//! waits for its database with backoff, then `SERVING`; afterwards health
//! follows whether the database answers.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::{
    ApiError, Shutdown,
    error::chain,
    retry::{self, Backoff},
    server::Health,
};

/// Whether a service's dependency has been prepared; cheap to clone and check.
#[derive(Debug, Clone, Default)]
pub struct Ready(Arc<AtomicBool>);

impl Ready {
    /// Not ready yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether preparation has finished.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// `dependency` once preparation has finished; before, `UNAVAILABLE`
    /// saying "the {what} is not ready yet; retry shortly" (`what`: e.g.
    /// "vessel store"). Every handler reaches its store through this.
    pub fn gate<'a, T>(&self, dependency: &'a T, what: &str) -> Result<&'a T, ApiError> {
        if self.is_ready() {
            Ok(dependency)
        } else {
            Err(ApiError::Unavailable {
                message: format!("the {what} is not ready yet; retry shortly"),
                source: None,
            })
        }
    }

    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// What [`watch`] watches, and what it sets as that changes.
#[derive(Debug, Clone)]
pub struct Watched {
    /// The dependency's name, for logs (e.g. "vessel store").
    pub what: &'static str,
    /// The gRPC services whose health follows it.
    pub services: Vec<&'static str>,
    /// How often a prepared dependency is pinged.
    pub probe_interval: Duration,
    /// The server's health, `SERVING` while the dependency answers.
    pub health: Health,
    /// Set once the dependency is prepared.
    pub ready: Ready,
}

impl Watched {
    /// How often a prepared dependency is pinged, unless told otherwise.
    pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
}

/// Retries `prepare(store)` (migrations, seeding) with backoff until it
/// succeeds, then sets `ready` and health `SERVING`; then pings every
/// `probe_interval` and flips health to `NOT_SERVING` and back as
/// `ping(store)` fails and recovers. Returns when `shutdown` fires. Each
/// call gets its own clone of `store` (a pool handle, cheap to clone).
pub async fn watch<S, P, PF, PT, PE, K, KF, KE>(
    watched: Watched,
    shutdown: Shutdown,
    store: S,
    prepare: P,
    ping: K,
) where
    S: Clone,
    P: Fn(S) -> PF,
    PF: Future<Output = Result<PT, PE>>,
    PE: std::error::Error + 'static,
    K: Fn(S) -> KF,
    KF: Future<Output = Result<(), KE>>,
    KE: std::error::Error + 'static,
{
    let Watched {
        what,
        services,
        probe_interval,
        health,
        ready,
    } = watched;
    if retry::until_ready(what, Backoff::default(), &shutdown, || {
        prepare(store.clone())
    })
    .await
    .is_none()
    {
        return;
    }
    tracing::info!("{what} ready; serving");
    ready.set();
    health.set(&services, true).await;

    let mut serving = true;
    loop {
        tokio::select! {
            () = shutdown.wait() => break,
            () = tokio::time::sleep(probe_interval) => {}
        }
        match (ping(store.clone()).await, serving) {
            (Ok(()), false) => {
                tracing::info!("{what} answers again; serving");
                serving = true;
                health.set(&services, true).await;
            }
            (Err(error), true) => {
                tracing::warn!(error = %chain(&error), "{what} unreachable; not serving");
                serving = false;
                health.set(&services, false).await;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_is_unavailable_until_ready_then_lets_through() {
        let ready = Ready::new();
        let store = "the store";
        match ready.gate(&store, "vessel store") {
            Err(ApiError::Unavailable { message, .. }) => {
                assert_eq!(message, "the vessel store is not ready yet; retry shortly");
            }
            other => panic!("expected UNAVAILABLE before ready, got {other:?}"),
        }
        ready.set();
        assert_eq!(ready.gate(&store, "vessel store").ok(), Some(&store));
    }
}
