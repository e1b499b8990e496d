//! email-service against a real NATS (JetStream) and a real SMTP server:
//! every user.created event becomes one welcome mail, none lost, none twice.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{net::SocketAddr, time::Duration};

use async_nats::{HeaderMap, header::NATS_MESSAGE_ID, jetstream};
use email_service::{app::Application, settings::Settings};
use prost::Message;
use shippy_proto::events::v1::UserCreated;
use shippy_service::{base::Serve, nats};
use shippy_testkit::{
    Running, SmtpServer, health_status, infra_var, init_test_logging, wait_for_health,
};
use tonic_health::pb::health_check_response::ServingStatus;

const WAIT: Duration = Duration::from_secs(20);

/// One test's world: its own stream, subject, consumer and sent-mail log on
/// the shared test NATS, and its own SMTP server.
pub(crate) struct World {
    pub(crate) settings: Settings,
    pub(crate) jetstream: jetstream::Context,
}

impl World {
    pub(crate) async fn new(nats_url: String, smtp_url: Option<String>) -> Self {
        init_test_logging();
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let settings = Settings {
            serve: Serve::loopback(),
            nats_url: nats_url.parse().unwrap(),
            smtp_url: smtp_url.map(|url| url.parse().unwrap()),
            mail_from: "Shippy <no-reply@shippy.example>".into(),
            mail_subject: "Welcome aboard".into(),
            events_stream: format!("USERS_{unique}"),
            user_created_subject: format!("test.{unique}.user.created"),
            consumer: format!("email_{unique}"),
            sent_stream: format!("SENT_{unique}"),
            dead_stream: format!("DEAD_{unique}"),
            mail_max_age: Duration::from_secs(24 * 3600).into(),
            mail_stuck_after: Duration::from_secs(300).into(),
        };
        let client = async_nats::connect(&nats_url).await.unwrap();
        let jetstream = jetstream::new(client);
        nats::user_events_stream(
            &jetstream,
            &settings.events_stream,
            &settings.user_created_subject,
        )
        .await
        .unwrap();
        Self {
            settings,
            jetstream,
        }
    }

    /// Publishes raw bytes as an event, with `msg_id` as Nats-Msg-Id.
    pub(crate) async fn publish_raw(&self, msg_id: &str, payload: Vec<u8>) {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, msg_id);
        self.jetstream
            .publish_with_headers(
                self.settings.user_created_subject.clone(),
                headers,
                payload.into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Publishes a user.created event and returns it.
    pub(crate) async fn publish(&self, name: &str, email: &str) -> UserCreated {
        let event = UserCreated {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: None,
            user_id: uuid::Uuid::new_v4().to_string(),
            name: name.into(),
            email: email.into(),
            company: "Shippy".into(),
        };
        self.publish_raw(&event.event_id, event.encode_to_vec())
            .await;
        event
    }

    pub(crate) async fn start(&self) -> Service {
        let app = Application::build(&self.settings).await.expect("build");
        let metrics = app.metrics_addr().unwrap();
        let server = Running::spawn(app.local_addr().unwrap(), |shutdown| app.run(shutdown));
        Service {
            channel: server.channel(),
            metrics,
            server,
        }
    }

    /// An SMTP server of the test's own, a world mailing to it on the shared
    /// test NATS, and the service serving it.
    pub(crate) async fn mailing() -> (SmtpServer, Self, Service) {
        let smtp = SmtpServer::start().await;
        let (world, service) = Self::serving_mail_to(smtp.url()).await;
        (smtp, world, service)
    }

    /// A world mailing to the SMTP server at `smtp_url`, on the shared test
    /// NATS, and the service serving it.
    pub(crate) async fn serving_mail_to(smtp_url: String) -> (Self, Service) {
        let world = Self::new(infra_var("TEST_NATS_URL"), Some(smtp_url)).await;
        let service = world.serving().await;
        (world, service)
    }

    /// [`World::start`], once the service reports `SERVING`.
    pub(crate) async fn serving(&self) -> Service {
        let service = self.start().await;
        wait_for_health(&service.channel, ServingStatus::Serving).await;
        service
    }

    /// The user events consumer, once the service made it.
    pub(crate) async fn consumer(&self) -> jetstream::consumer::PullConsumer {
        let stream = self
            .jetstream
            .get_stream(&self.settings.events_stream)
            .await
            .unwrap();
        stream.get_consumer(&self.settings.consumer).await.unwrap()
    }

    /// Waits up to `wait` until the consumer has nothing left to deliver and
    /// nothing unacknowledged; returns whether it came to that.
    pub(crate) async fn wait_until_settled(&self, wait: Duration) -> bool {
        let mut consumer = self.consumer().await;
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            let info = consumer.info().await.unwrap();
            if info.num_ack_pending == 0 && info.num_pending == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

/// email-service running in the test.
pub(crate) struct Service {
    pub(crate) channel: tonic::transport::Channel,
    pub(crate) metrics: SocketAddr,
    server: Running<email_service::app::RunError>,
}

impl Service {
    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }
}

pub(crate) fn mails_to<'a>(mails: &'a [String], address: &str) -> Vec<&'a String> {
    mails.iter().filter(|mail| mail.contains(address)).collect()
}

#[tokio::test]
async fn the_welcome_mail_reaches_the_user_by_name() {
    let (smtp, world, service) = World::mailing().await;

    world.publish("Ewan Valentine", "ewan@example.com").await;
    let mails = smtp.wait_for_mails(1, WAIT).await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(
        mail.contains("To: \"Ewan Valentine\" <ewan@example.com>")
            || mail.contains("To: Ewan Valentine <ewan@example.com>"),
        "{mail}"
    );
    shippy_testkit::assert_mentions(
        mail,
        &[
            "Subject: Welcome aboard",
            "From: Shippy <no-reply@shippy.example>",
            "Hi Ewan Valentine,",
            "text/plain",
            "text/html",
        ],
    );
    service.stop().await;
}

#[tokio::test]
async fn events_published_while_the_service_was_down_are_mailed_when_it_starts() {
    let smtp = SmtpServer::start().await;
    let world = World::new(infra_var("TEST_NATS_URL"), Some(smtp.url())).await;
    // The consumer exists (a first run), then the service stops.
    let service = world.serving().await;
    world.publish("First", "first@example.com").await;
    assert_eq!(smtp.wait_for_mails(1, WAIT).await.len(), 1);
    service.stop().await;

    for n in 0..3 {
        world
            .publish(&format!("Later {n}"), &format!("later{n}@example.com"))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        smtp.mails().len(),
        1,
        "nobody mails while the service is down"
    );

    let service = world.start().await;
    // An event delivered to the stopped worker's last open pull request
    // comes back after the ack wait (30 s): allow for it.
    let mails = smtp.wait_for_mails(4, Duration::from_secs(45)).await;
    assert_eq!(mails.len(), 4);
    for n in 0..3 {
        assert_eq!(mails_to(&mails, &format!("later{n}@example.com")).len(), 1);
    }
    service.stop().await;
}

#[tokio::test]
async fn with_the_smtp_server_down_the_mail_goes_out_once_it_is_back() {
    let mut smtp = SmtpServer::reserve();
    let (world, service) = World::serving_mail_to(smtp.url()).await;
    world.publish("Patient", "patient@example.com").await;

    // Let at least one delivery fail against the missing server.
    let mut consumer = world.consumer().await;
    let mut redelivered = false;
    for _ in 0..100 {
        let info = consumer.info().await.unwrap();
        if info.num_redelivered > 0
            || info.num_ack_pending > 0 && info.delivered.stream_sequence > 0
        {
            redelivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(redelivered, "the event was delivered and not acknowledged");
    assert!(smtp.mails().is_empty());

    smtp.restart().await;
    let mails = smtp.wait_for_mails(1, Duration::from_secs(30)).await;
    assert_eq!(mails_to(&mails, "patient@example.com").len(), 1);
    service.stop().await;
}

#[tokio::test]
async fn the_same_event_delivered_twice_is_mailed_once() {
    let (smtp, world, service) = World::mailing().await;
    let event = world.publish("Once", "once@example.com").await;
    assert_eq!(smtp.wait_for_mails(1, WAIT).await.len(), 1);

    // The same event again, past the broker's de-duplication (another
    // Nats-Msg-Id): a redelivery, as after a lost acknowledgement.
    world
        .publish_raw("another-message-id", event.encode_to_vec())
        .await;
    // And once more after a restart: the record survives it.
    service.stop().await;
    let service = world.start().await;
    world
        .publish_raw("yet-another-message-id", event.encode_to_vec())
        .await;
    let marker = world.publish("Marker", "marker@example.com").await;
    let mails = smtp.wait_for_mails(2, WAIT).await;
    assert_eq!(
        mails_to(&mails, &marker.email).len(),
        1,
        "later events still flow"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        mails_to(&smtp.mails(), "once@example.com").len(),
        1,
        "one mail, not three"
    );
    service.stop().await;
}

#[tokio::test]
async fn a_malformed_event_does_not_block_the_ones_after_it() {
    let (smtp, world, service) = World::mailing().await;
    world
        .publish_raw("garbage", b"\xff\xfe not protobuf".to_vec())
        .await;
    world.publish("", "not an address").await;
    world.publish("After", "after@example.com").await;
    let mails = smtp.wait_for_mails(1, WAIT).await;
    assert_eq!(mails_to(&mails, "after@example.com").len(), 1);

    // The malformed ones were terminated, not left to come back forever.
    assert!(
        world.wait_until_settled(Duration::from_secs(5)).await,
        "nothing left pending or unacknowledged"
    );
    // Given up, not dropped: both are kept in the dead-mail stream.
    assert_eq!(
        crate::refusals::wait_for_dead(&world, 2, Duration::from_secs(10)).await,
        2
    );
    service.stop().await;
}

#[tokio::test]
async fn health_is_not_serving_while_nats_is_unreachable() {
    let mut nats = shippy_testkit::NatsServer::start().await;
    let world = World::new(nats.url(), None).await;
    let service = world.serving().await;
    nats.stop();
    wait_for_health(&service.channel, ServingStatus::NotServing).await;
    assert_eq!(
        health_status(service.channel.clone(), "").await,
        ServingStatus::NotServing
    );
    nats.restart().await;
    wait_for_health(&service.channel, ServingStatus::Serving).await;
    service.stop().await;
}

#[tokio::test]
async fn a_name_with_a_line_break_is_terminated_and_later_mails_still_go_out() {
    let (smtp, world, service) = World::mailing().await;
    world
        .publish("Eve\r\nBcc: spy@example.com", "eve@example.com")
        .await;
    world.publish("Eve\0", "eve2@example.com").await;
    world.publish("After", "after@example.com").await;
    let mails = smtp.wait_for_mails(1, WAIT).await;
    assert_eq!(mails_to(&mails, "after@example.com").len(), 1);
    assert!(mails_to(&smtp.mails(), "spy@example.com").is_empty());
    assert_eq!(
        health_status(service.channel.clone(), "").await,
        ServingStatus::Serving,
        "the worker lives on"
    );
    // The bad events were terminated, not left to come back.
    assert!(
        world.wait_until_settled(Duration::from_secs(5)).await,
        "nothing left pending or unacknowledged"
    );
    assert_eq!(smtp.mails().len(), 1, "no mail for the bad events");
    service.stop().await;
}
