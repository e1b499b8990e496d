//! A server started in-process on its own task: where it listens, and a
//! stop that waits for it to end cleanly.

use std::{fmt::Debug, future::Future, net::SocketAddr};

use shippy_service::Shutdown;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

/// A server running on a task of the test's runtime.
#[derive(Debug)]
pub struct Running<E> {
    /// The address it listens on.
    pub address: SocketAddr,
    /// Stops it (what [`Running::stop`] triggers).
    pub shutdown: Shutdown,
    task: JoinHandle<Result<(), E>>,
}

impl<E: Debug + Send + 'static> Running<E> {
    /// Spawns `run` (given the shutdown signal) for a server bound to `address`.
    pub fn spawn<F>(address: SocketAddr, run: impl FnOnce(Shutdown) -> F) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let shutdown = Shutdown::new();
        let task = tokio::spawn(run(shutdown.clone()));
        Self {
            address,
            shutdown,
            task,
        }
    }

    /// A channel to it.
    pub fn channel(&self) -> Channel {
        shippy_service::discovery::static_channel(
            &format!("http://{}", self.address),
            Default::default(),
        )
        .expect("a loopback URL")
    }

    /// Itself, once its health reports `SERVING`.
    pub async fn serving(self) -> Self {
        crate::wait_for_health(&self.channel(), ServingStatus::Serving).await;
        self
    }

    /// Stops it and waits until it has, asserting a clean stop.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.task
            .await
            .expect("the server's task")
            .expect("clean stop");
    }

    /// Where it listens and its shutdown, leaving it to run.
    pub fn detach(self) -> (SocketAddr, Shutdown) {
        (self.address, self.shutdown)
    }
}
