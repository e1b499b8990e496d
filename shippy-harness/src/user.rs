//! user-service alone, as its own tests start it: the real server on a
//! random port, its own fresh database, its own JetStream stream and
//! subject, its own signing key (so a test can forge and expire tokens
//! with it).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use async_nats::jetstream;
use shippy_proto::user::v1::{User, user_service_client::UserServiceClient};
use shippy_service::settings::Secret;
use shippy_testkit::{fresh_postgres_database, infra_var, init_test_logging};
use tonic::transport::Channel;
use user_service::{settings::Settings, tokens};

use crate::{ADMIN, settings, spawn};

/// A fresh signing key for user-service: its PEM, and the file it is
/// written to (for `jwt_signing_key_file`).
pub fn signing_key() -> (Secret, PathBuf) {
    let pem = tokens::generate_pem(1).unwrap();
    let unique = uuid::Uuid::new_v4().simple();
    let file = std::env::temp_dir().join(format!("shippy-user-key-{unique}.pem"));
    std::fs::write(&file, &pem).unwrap();
    let Ok(pem) = pem.parse();
    (pem, file)
}

/// The user `id`, as `Get` and `Delete` name the one they are about.
pub fn user_id(id: &str) -> User {
    User {
        id: id.into(),
        ..Default::default()
    }
}

/// A running user-service; stopped when [`TestApp::stop`]ped (or dropped
/// with the test's runtime).
#[derive(Debug)]
pub struct TestApp {
    pub address: SocketAddr,
    pub channel: Channel,
    pub settings: Settings,
    /// The PEM of the signing key, to forge tokens in tests.
    pub key_pem: Secret,
    server: spawn::Service,
}

impl TestApp {
    /// A server on the shared test NATS.
    pub async fn spawn() -> Self {
        Self::spawn_with_nats(infra_var("TEST_NATS_URL")).await
    }

    /// A server publishing to `nats_url`, once it reports `SERVING`.
    pub async fn spawn_with_nats(nats_url: String) -> Self {
        Self::spawn_custom(nats_url, |_| {}).await
    }

    /// A server with settings `adjust` changed from the tests' defaults.
    pub async fn spawn_custom(nats_url: String, adjust: impl FnOnce(&mut Settings)) -> Self {
        init_test_logging();
        let (key_pem, key_file) = signing_key();
        let mut settings = settings::user(fresh_postgres_database("users").await);
        settings.nats_url = nats_url.parse().unwrap();
        settings.jwt_signing_key_file = Some(key_file);
        adjust(&mut settings);
        Self::spawn_with(settings, key_pem).await
    }

    pub async fn spawn_with(settings: Settings, key_pem: Secret) -> Self {
        let server = spawn::user(&settings).await.serving().await;
        Self {
            address: server.address,
            channel: server.channel(),
            settings,
            key_pem,
            server,
        }
    }

    pub fn users(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(self.channel.clone())
    }

    pub fn key_file(&self) -> PathBuf {
        self.settings.jwt_signing_key_file.clone().unwrap()
    }

    /// Creates a user and returns its id.
    pub async fn create_user(&self, name: &str, email: &str) -> String {
        crate::create_user(self.channel.clone(), name, email).await
    }

    /// Logs in and returns the token.
    pub async fn login(&self, email: &str) -> String {
        crate::login(self.channel.clone(), email).await
    }

    /// Creates the administrator and returns their token.
    pub async fn admin_token(&self) -> String {
        self.create_user("Admin", ADMIN).await;
        self.login(ADMIN).await
    }

    /// The JetStream stream this app publishes to, once it exists.
    pub async fn stream(&self) -> jetstream::stream::Stream {
        let client = async_nats::connect(self.settings.nats_url.expose())
            .await
            .unwrap();
        let jetstream = jetstream::new(client);
        for _ in 0..100 {
            if let Ok(stream) = jetstream.get_stream(&self.settings.events_stream).await {
                return stream;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("stream {} never appeared", self.settings.events_stream);
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// Messages on `stream`, waiting up to `wait` for at least `count`.
pub async fn stream_messages(
    stream: &mut jetstream::stream::Stream,
    count: u64,
    wait: Duration,
) -> Vec<jetstream::message::StreamMessage> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let have = stream.info().await.unwrap().state.messages;
        if have >= count || tokio::time::Instant::now() > deadline {
            let mut messages = Vec::new();
            for sequence in 1..=have {
                messages.push(stream.get_raw_message(sequence).await.unwrap());
            }
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
