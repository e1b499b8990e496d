//! A fault-injecting TCP proxy: stands between a service and what it
//! depends on (its database, NATS, a peer) and, on command, passes traffic,
//! refuses it (connections reset, new ones closed at once) or blackholes it
//! (connections stay open, nothing gets through): a network partition.

use std::net::SocketAddr;

use serde::Serialize;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Forwards both ways.
    Pass,
    /// Closes every connection, and each new one at once.
    Refuse,
    /// Accepts, keeps connections open, forwards nothing.
    Blackhole,
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    /// What it stands for (`consignment-db`, …).
    pub name: String,
    /// Where it listens.
    pub address: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy on a spare loopback port forwarding to `upstream`.
    pub async fn start(name: &str, upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (mode, watching) = watch::channel(Mode::Pass);
        let task = tokio::spawn(accept(listener, upstream, watching));
        Ok(Self {
            name: name.to_owned(),
            address,
            mode,
            task,
        })
    }

    /// Switches what it does, for existing connections too.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// What it does now.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, mode: watch::Receiver<Mode>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = inbound.set_nodelay(true);
        tokio::spawn(serve(inbound, upstream, mode.clone()));
    }
}

async fn serve(mut inbound: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let current = *mode.borrow_and_update();
    match current {
        Mode::Refuse => return,
        Mode::Blackhole => {
            // Held, silent, until the partition heals; then closed.
            let _ = mode.wait_for(|mode| *mode == Mode::Pass).await;
            return;
        }
        Mode::Pass => {}
    }
    let connected = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        TcpStream::connect(upstream),
    )
    .await;
    let Ok(Ok(mut outbound)) = connected else {
        return;
    };
    let _ = outbound.set_nodelay(true);
    let changed = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => None,
        changed = mode.wait_for(|mode| *mode != Mode::Pass) => changed.ok().map(|mode| *mode),
    };
    if changed == Some(Mode::Blackhole) {
        // Both ends stay open and hear nothing until it heals.
        let _ = mode.wait_for(|mode| *mode == Mode::Pass).await;
    }
    // Refuse (or healed after a blackhole): both connections close here.
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        address
    }

    async fn round_trip(address: SocketAddr) -> Option<Vec<u8>> {
        let mut socket = TcpStream::connect(address).await.ok()?;
        socket.write_all(b"ping").await.ok()?;
        let mut answer = [0u8; 4];
        tokio::time::timeout(
            std::time::Duration::from_millis(500),
            socket.read_exact(&mut answer),
        )
        .await
        .ok()?
        .ok()?;
        Some(answer.to_vec())
    }

    #[tokio::test]
    async fn passes_refuses_and_blackholes_on_command() {
        let proxy = FaultProxy::start("echo", echo().await).await.unwrap();
        assert_eq!(
            round_trip(proxy.address).await.as_deref(),
            Some(&b"ping"[..])
        );
        proxy.set(Mode::Refuse);
        assert_eq!(round_trip(proxy.address).await, None);
        proxy.set(Mode::Blackhole);
        assert_eq!(round_trip(proxy.address).await, None);
        proxy.set(Mode::Pass);
        assert_eq!(
            round_trip(proxy.address).await.as_deref(),
            Some(&b"ping"[..])
        );
    }

    #[tokio::test]
    async fn a_partition_cuts_connections_already_open() {
        let proxy = FaultProxy::start("echo", echo().await).await.unwrap();
        let mut socket = TcpStream::connect(proxy.address).await.unwrap();
        socket.write_all(b"ping").await.unwrap();
        let mut answer = [0u8; 4];
        socket.read_exact(&mut answer).await.unwrap();
        proxy.set(Mode::Blackhole);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        socket.write_all(b"pong").await.unwrap();
        let silent = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            socket.read_exact(&mut answer),
        )
        .await;
        assert!(silent.is_err(), "nothing gets through a blackhole");
    }
}
