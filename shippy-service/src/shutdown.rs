//! One shutdown signal for every task of a service.
//!
//! [`Shutdown`] is a cancellation token: clones share it, so the gRPC server,
//! background workers and anything else watch the same signal, and tests fire
//! it by hand. [`Shutdown::on_ctrl_c_or_sigterm`] wires it to the process's
//! signals.

use tokio_util::sync::CancellationToken;

/// A cloneable handle to one service-wide shutdown signal.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A signal nobody has fired yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the signal: every waiter wakes up.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the signal has fired (at once if it already has).
    pub async fn wait(&self) {
        self.token.cancelled().await;
    }

    /// A future that resolves on shutdown and owns its handle, for APIs such
    /// as `serve_with_incoming_shutdown` that want a `'static` future.
    pub fn wait_owned(&self) -> impl Future<Output = ()> + Send + 'static {
        self.token.clone().cancelled_owned()
    }

    /// A signal fired by Ctrl-C (SIGINT) or SIGTERM, whichever comes first.
    pub fn on_ctrl_c_or_sigterm() -> Self {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let signal = wait_for_signal().await;
            tracing::info!(signal, "shutdown requested");
            trigger.trigger();
        });
        shutdown
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut sigterm) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = sigterm.recv() => "SIGTERM",
        },
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops this service");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let shutdown = Shutdown::new();
        let watcher = shutdown.clone();
        let owned = shutdown.wait_owned();
        assert!(!watcher.is_triggered());
        shutdown.trigger();
        watcher.wait().await;
        owned.await;
        assert!(watcher.is_triggered());
    }
}
