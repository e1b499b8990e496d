//! An SMTP server of a test's own that keeps what it receives.

use std::path::PathBuf;

use super::ExternalServer;

/// A real SMTP server of a test's own (Debian's `python3-aiosmtpd`, which
/// `cargo dev infra up` installs), storing what it receives in a maildir.
/// Killed when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    server: ExternalServer,
    maildir: PathBuf,
}

impl SmtpServer {
    /// A server on a spare loopback port, not started yet.
    pub fn reserve() -> Self {
        let [port] = crate::net::spare_ports();
        let server = ExternalServer::new(
            "aiosmtpd",
            "/usr/bin/python3",
            ([127, 0, 0, 1], port).into(),
        )
        .install_hint("cargo dev infra up installs python3-aiosmtpd");
        let maildir = server.dir().join("maildir");
        let server = server
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir);
        Self { server, maildir }
    }

    /// A running server.
    pub async fn start() -> Self {
        let mut server = Self::reserve();
        server.restart().await;
        server
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.server.address())
    }

    /// Starts (or restarts) it on its port; earlier mails stay.
    pub async fn restart(&mut self) {
        self.server.restart().await;
    }

    /// Stops it.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// The server it is (its log, its process).
    pub fn server(&self) -> &ExternalServer {
        &self.server
    }

    /// Every mail received so far, raw.
    pub fn mails(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut mails: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
            .collect();
        mails.sort();
        mails
    }

    /// Waits up to `wait` until at least `count` mails arrived; returns them all.
    pub async fn wait_for_mails(&self, count: usize, wait: std::time::Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mails = self.mails();
            if mails.len() >= count || tokio::time::Instant::now() > deadline {
                return mails;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
