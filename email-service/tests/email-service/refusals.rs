//! Mail that cannot go out (issue 23, point 1): what the SMTP server refuses
//! for good, or an address it or our rules cannot take, is given up at once
//! and kept with the reason in the dead-mail stream; what it refuses for now
//! is retried, up to `MAIL_MAX_AGE`; neither holds back the mail behind it;
//! and health reports mail that does not move.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, consumer::pull, message::StreamMessage};
use email_service::{dead, worker::MAX_ACK_PENDING};
use prost::Message;
use shippy_testkit::{SmtpServer, infra_var, wait_for_health};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::mail::{Service, World, mails_to};

/// How long later mail may take behind a flood of refused addresses: far
/// more than it needs (a few seconds here), far less than "never".
const LATER_MAIL_BOUND: Duration = Duration::from_secs(60);

/// An aiosmtpd of a test's own with the handler in `picky_smtp.py`:
/// refuses `gone…@` for good (550) and `later…@` for now (451), keeps the
/// rest; with SMTPUTF8 on or off.
struct PickySmtp {
    port: u16,
    maildir: PathBuf,
    process: Child,
}

impl PickySmtp {
    async fn start(smtputf8: bool) -> Self {
        let [port] = shippy_testkit::spare_ports();
        let maildir = std::env::temp_dir().join(format!("shippy-picky-{}", uuid::Uuid::new_v4()));
        let mut command = Command::new("/usr/bin/python3");
        command
            .env(
                "PYTHONPATH",
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/email-service"),
            )
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "picky_smtp.Handler"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if smtputf8 {
            command.arg("--smtputf8");
        }
        let server = Self {
            port,
            process: command
                .arg(&maildir)
                .spawn()
                .expect("start aiosmtpd (cargo dev infra up installs python3-aiosmtpd)"),
            maildir,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("aiosmtpd with picky_smtp.Handler did not start on port {port}");
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn mails(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| std::fs::read(entry.path()).ok())
            .map(|raw| String::from_utf8_lossy(&raw).into_owned())
            .collect()
    }

    async fn wait_for_mails(&self, count: usize, wait: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mails = self.mails();
            if mails.len() >= count || tokio::time::Instant::now() > deadline {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for PickySmtp {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

/// Publishes the three good sign-ups that must not be held back; when.
async fn publish_three_good(world: &World) -> Instant {
    let published = Instant::now();
    for n in 0..3 {
        world
            .publish(&format!("Good {n}"), &format!("good{n}@example.com"))
            .await;
    }
    published
}

/// Each of the three good sign-ups got its one mail (`took` after them).
fn assert_three_good(mails: &[String], took: Duration) {
    for n in 0..3 {
        assert_eq!(
            mails_to(mails, &format!("good{n}@example.com")).len(),
            1,
            "later mail went out within {LATER_MAIL_BOUND:?} (waited {took:?})"
        );
    }
}

/// The value of the metric line starting with `name ` (0 when absent).
async fn metric(address: SocketAddr, name: &str) -> u64 {
    shippy_testkit::http_get(&format!("http://{address}/metrics"))
        .await
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .map_or(0, |value| value.trim().parse::<f64>().unwrap() as u64)
}

/// How many events the dead-mail stream keeps.
async fn dead_count(world: &World) -> u64 {
    match world
        .jetstream
        .get_stream(&world.settings.dead_stream)
        .await
    {
        Ok(mut stream) => stream.info().await.unwrap().state.messages,
        Err(_) => 0,
    }
}

/// Waits up to `wait` until the dead-mail stream keeps `count` events.
pub(crate) async fn wait_for_dead(world: &World, count: u64, wait: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let kept = dead_count(world).await;
        if kept >= count || tokio::time::Instant::now() > deadline {
            return kept;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The dead-mail record of the event `id`.
async fn dead_record(world: &World, id: &str) -> StreamMessage {
    let stream = world
        .jetstream
        .get_stream(&world.settings.dead_stream)
        .await
        .unwrap();
    stream
        .get_last_raw_message_by_subject(&format!("email.dead.{}.{id}", world.settings.consumer))
        .await
        .unwrap_or_else(|error| panic!("no dead-mail record for {id}: {error}"))
}

fn header(record: &StreamMessage, name: &str) -> String {
    record
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .as_str()
        .to_owned()
}

/// Stops the service, then deletes the test's streams.
async fn stop_and_clean_up(service: Service, world: &World) {
    service.stop().await;
    clean_up(world).await;
}

/// Deletes the test's streams (the shared test NATS keeps them otherwise).
async fn clean_up(world: &World) {
    for stream in [
        &world.settings.events_stream,
        &world.settings.sent_stream,
        &world.settings.dead_stream,
    ] {
        let _ = world.jetstream.delete_stream(stream).await;
    }
}

/// Issue 23's probe: 1,000 sign-ups with a non-ASCII address, which the
/// stock aiosmtpd (no SMTPUTF8) cannot take, then a few good ones. Before,
/// the bad ones were retried forever and filled the consumer's 1,000
/// ack-pending slots: no later mail went out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_addresses_the_server_cannot_take_do_not_hold_back_later_mail() {
    let (smtp, world, service) = World::mailing().await;

    let mut first_bad = None;
    for n in 0..1_000 {
        let event = world.publish("Umlaut", &format!("ü{n}@example.com")).await;
        first_bad.get_or_insert(event);
    }
    let published = publish_three_good(&world).await;
    let mails = smtp.wait_for_mails(3, LATER_MAIL_BOUND).await;
    let took = published.elapsed();
    assert_three_good(&mails, took);
    eprintln!("3 good mails behind 1,000 bad addresses took {took:?}");

    assert_eq!(
        wait_for_dead(&world, 1_000, Duration::from_secs(60)).await,
        1_000,
        "every bad address is kept in the dead-mail stream"
    );
    assert!(
        world.wait_until_settled(Duration::from_secs(30)).await,
        "nothing left pending or unacknowledged"
    );
    let first_bad = first_bad.unwrap();
    let record = dead_record(&world, &first_bad.event_id).await;
    assert_eq!(
        record.payload.as_ref(),
        first_bad.encode_to_vec().as_slice()
    );
    assert_eq!(header(&record, "Nats-Msg-Id"), first_bad.event_id);
    let reason = header(&record, dead::REASON);
    assert!(reason.contains("SMTPUTF8"), "{reason}");
    assert!(reason.contains("\\u{fc}0@example.com"), "escaped: {reason}");
    assert!(reason.is_ascii() && reason.len() < 400, "{reason}");
    assert_eq!(header(&record, dead::DELIVERED), "1", "given up at once");
    assert_eq!(
        metric(service.metrics, "email_dead_letters_total").await,
        1_000
    );
    assert!(smtp.mails().len() == 3, "no mail for the bad addresses");
    stop_and_clean_up(service, &world).await;
}

#[tokio::test]
async fn a_recipient_refused_for_good_is_kept_with_the_reason_and_later_mail_flows() {
    let smtp = PickySmtp::start(false).await;
    let (world, service) = World::serving_mail_to(smtp.url()).await;

    let gone = world.publish("Gone", "gone1@example.com").await;
    world.publish("After", "after@example.com").await;
    let mails = smtp.wait_for_mails(1, Duration::from_secs(20)).await;
    assert_eq!(mails_to(&mails, "after@example.com").len(), 1);
    assert_eq!(wait_for_dead(&world, 1, Duration::from_secs(20)).await, 1);
    let record = dead_record(&world, &gone.event_id).await;
    let reason = header(&record, dead::REASON);
    assert!(
        reason.contains("refused the mail for good") && reason.contains("550"),
        "{reason}"
    );
    assert_eq!(header(&record, dead::DELIVERED), "1", "not retried");
    assert_eq!(
        header(&record, dead::SUBJECT),
        world.settings.user_created_subject
    );
    assert!(world.wait_until_settled(Duration::from_secs(10)).await);
    assert_eq!(metric(service.metrics, "email_dead_letters_total").await, 1);
    // The record stream is bounded: a flood of refused sign-ups cannot fill
    // the broker's disk.
    for stream in [&world.settings.dead_stream, &world.settings.sent_stream] {
        let mut stream = world.jetstream.get_stream(stream).await.unwrap();
        let config = &stream.info().await.unwrap().config;
        assert_eq!(config.max_messages, 1_000_000);
        assert_eq!(config.max_messages_per_subject, 1);
    }
    stop_and_clean_up(service, &world).await;
}

/// 1,100 recipients the server answers "not now" (451), more than
/// JetStream's default cap of 1,000 unacknowledged events, then good ones:
/// the refused ones wait for their retry without holding the rest back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_not_now_answers_does_not_hold_back_later_mail() {
    let smtp = PickySmtp::start(false).await;
    let (world, service) = World::serving_mail_to(smtp.url()).await;

    for n in 0..1_100 {
        world
            .publish("Later", &format!("later{n}@example.com"))
            .await;
    }
    let published = publish_three_good(&world).await;
    let mails = smtp.wait_for_mails(3, LATER_MAIL_BOUND).await;
    let took = published.elapsed();
    assert_three_good(&mails, took);
    eprintln!("3 good mails behind 1,100 answered 451 took {took:?}");
    // "Not now" is not "never": none of them was given up.
    assert_eq!(dead_count(&world).await, 0);
    let mut consumer = world.consumer().await;
    let info = consumer.info().await.unwrap();
    assert_eq!(info.config.max_ack_pending, MAX_ACK_PENDING);
    assert!(info.num_ack_pending >= 1_000, "{}", info.num_ack_pending);
    stop_and_clean_up(service, &world).await;
}

#[tokio::test]
async fn mail_failing_for_longer_than_the_max_age_is_given_up_with_the_last_error() {
    // A server that is never there: every attempt fails for now.
    let smtp = SmtpServer::reserve();
    let mut world = World::new(infra_var("TEST_NATS_URL"), Some(smtp.url())).await;
    world.settings.mail_max_age = Duration::from_secs(3).into();
    let service = world.serving().await;

    let event = world.publish("Patient", "patient@example.com").await;
    assert_eq!(dead_count(&world).await, 0, "not given up at once");
    assert_eq!(wait_for_dead(&world, 1, Duration::from_secs(30)).await, 1);
    let record = dead_record(&world, &event.event_id).await;
    let reason = header(&record, dead::REASON);
    assert!(
        reason.contains("not mailed within MAIL_MAX_AGE (3s)"),
        "{reason}"
    );
    let delivered: u32 = header(&record, dead::DELIVERED).parse().unwrap();
    assert!(delivered >= 2, "retried first: {delivered}");
    assert!(world.wait_until_settled(Duration::from_secs(10)).await);
    stop_and_clean_up(service, &world).await;
}

#[tokio::test]
async fn a_non_ascii_address_is_mailed_where_the_server_offers_smtputf8() {
    let smtp = PickySmtp::start(true).await;
    let (world, service) = World::serving_mail_to(smtp.url()).await;

    world.publish("Jürgen", "jürgen@example.com").await;
    let mails = smtp.wait_for_mails(1, Duration::from_secs(20)).await;
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].starts_with("X-Rcpt-To: jürgen@example.com"),
        "{}",
        mails[0]
    );
    assert!(world.wait_until_settled(Duration::from_secs(10)).await);
    assert_eq!(dead_count(&world).await, 0);
    stop_and_clean_up(service, &world).await;
}

/// `"john doe"@example.com` was accepted at sign-up and its mail dropped
/// with no trace but a log line (issue 23, point 8). user-service refuses
/// it now; an event from before is kept in the dead-mail stream.
#[tokio::test]
async fn a_quoted_local_part_from_an_older_event_is_kept_in_the_dead_mail_stream() {
    let (smtp, world, service) = World::mailing().await;

    let quoted = world.publish("John", "\"john doe\"@example.com").await;
    world.publish("After", "after@example.com").await;
    let mails = smtp.wait_for_mails(1, Duration::from_secs(20)).await;
    assert_eq!(mails_to(&mails, "after@example.com").len(), 1);
    assert_eq!(wait_for_dead(&world, 1, Duration::from_secs(20)).await, 1);
    let reason = header(&dead_record(&world, &quoted.event_id).await, dead::REASON);
    assert!(reason.contains("cannot address a mail"), "{reason}");
    stop_and_clean_up(service, &world).await;
}

/// A consumer made by an older version (JetStream's defaults: 1,000
/// unacknowledged at most) gets the new settings when the service starts.
#[tokio::test]
async fn a_consumer_made_by_an_older_version_gets_the_new_settings() {
    let smtp = SmtpServer::start().await;
    let world = World::new(infra_var("TEST_NATS_URL"), Some(smtp.url())).await;
    let stream = world
        .jetstream
        .get_stream(&world.settings.events_stream)
        .await
        .unwrap();
    let old: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(world.settings.consumer.clone()),
            filter_subject: world.settings.user_created_subject.clone(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: email_service::worker::ACK_WAIT,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(old.cached_info().config.max_ack_pending, 1_000);

    let service = world.serving().await;
    world.publish("Still", "still@example.com").await;
    assert_eq!(
        smtp.wait_for_mails(1, Duration::from_secs(20)).await.len(),
        1
    );
    let mut consumer = world.consumer().await;
    let config = consumer.info().await.unwrap().config.clone();
    assert_eq!(config.max_ack_pending, MAX_ACK_PENDING);
    assert_eq!(config.max_deliver, -1);
    stop_and_clean_up(service, &world).await;
}

/// SMTP server down with mail waiting: health turns NOT_SERVING after
/// MAIL_STUCK_AFTER (and the gauge says so), SERVING again once the mail
/// goes out.
#[tokio::test]
async fn health_reports_mail_that_does_not_move_and_recovers_when_it_does() {
    let mut smtp = SmtpServer::reserve();
    let mut world = World::new(infra_var("TEST_NATS_URL"), Some(smtp.url())).await;
    world.settings.mail_stuck_after = Duration::from_secs(2).into();
    let service = world.serving().await;
    // Idle is not stuck.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        shippy_testkit::health_status(service.channel.clone(), "").await,
        ServingStatus::Serving
    );

    world.publish("Waiting", "waiting@example.com").await;
    wait_for_health(&service.channel, ServingStatus::NotServing).await;
    assert_eq!(metric(service.metrics, "email_consumer_stuck").await, 1);
    assert!(metric(service.metrics, "email_backlog").await >= 1);

    smtp.restart().await;
    let mails = smtp.wait_for_mails(1, Duration::from_secs(30)).await;
    assert_eq!(mails_to(&mails, "waiting@example.com").len(), 1);
    wait_for_health(&service.channel, ServingStatus::Serving).await;
    assert_eq!(metric(service.metrics, "email_consumer_stuck").await, 0);
    stop_and_clean_up(service, &world).await;
}

/// One recipient answered "not now" (451) on an otherwise quiet system is
/// not a stuck consumer: the server takes mail, that mailbox not yet, and
/// its retry comes when its time comes. New mail arriving meanwhile still
/// goes out, and health stays `SERVING` throughout.
#[tokio::test]
async fn one_recipients_not_now_on_a_quiet_system_is_not_stuck() {
    let smtp = PickySmtp::start(false).await;
    let mut world = World::new(infra_var("TEST_NATS_URL"), Some(smtp.url())).await;
    world.settings.mail_stuck_after = Duration::from_secs(1).into();
    let service = world.serving().await;
    world.publish("Full mailbox", "later1@example.com").await;
    // Well past MAIL_STUCK_AFTER, and the first retry is a minute away.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            shippy_testkit::health_status(service.channel.clone(), "").await,
            ServingStatus::Serving,
            "a recipient's 451 is not the consumer stuck"
        );
    }
    assert_eq!(metric(service.metrics, "email_consumer_stuck").await, 0);
    assert!(
        metric(service.metrics, "email_backlog").await >= 1,
        "it is still waiting"
    );
    world.publish("Next", "next@example.com").await;
    let mails = smtp.wait_for_mails(1, Duration::from_secs(20)).await;
    assert_eq!(mails_to(&mails, "next@example.com").len(), 1);
    stop_and_clean_up(service, &world).await;
}

/// Instances under two consumer names (a renamed `EMAIL_CONSUMER`, or two
/// deployments) share the default sent- and dead-mail streams: each adds its
/// subjects, so neither's records are refused (a refused dead-mail record
/// would leave the event coming back forever).
#[tokio::test]
async fn two_consumer_names_share_the_sent_and_dead_mail_streams() {
    let smtp = PickySmtp::start(false).await;
    let first = World::new(infra_var("TEST_NATS_URL"), Some(smtp.url())).await;
    let mut second = World::new(infra_var("TEST_NATS_URL"), Some(smtp.url())).await;
    second.settings.sent_stream = first.settings.sent_stream.clone();
    second.settings.dead_stream = first.settings.dead_stream.clone();

    let mut gone = Vec::new();
    for (n, world) in [&first, &second].into_iter().enumerate() {
        let service = world.serving().await;
        gone.push(world.publish("Gone", &format!("gone{n}@example.com")).await);
        world.publish("Good", &format!("good{n}@example.com")).await;
        assert_eq!(
            mails_to(
                &smtp.wait_for_mails(n + 1, Duration::from_secs(20)).await,
                &format!("good{n}@example.com")
            )
            .len(),
            1
        );
        assert!(world.wait_until_settled(Duration::from_secs(20)).await);
        service.stop().await;
    }
    assert_eq!(dead_count(&first).await, 2);
    dead_record(&first, &gone[0].event_id).await;
    dead_record(&second, &gone[1].event_id).await;
    let sent = first
        .jetstream
        .get_stream(&first.settings.sent_stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(sent, 2, "both mails recorded as sent");
    clean_up(&first).await;
    let _ = second
        .jetstream
        .delete_stream(&second.settings.events_stream)
        .await;
}

/// A consumer that can never be set up (here another stream already takes
/// the dead-mail subjects) consumes nothing: health says so after
/// MAIL_STUCK_AFTER, rather than SERVING while no mail goes out.
#[tokio::test]
async fn health_reports_a_consumer_that_cannot_be_set_up() {
    let smtp = SmtpServer::start().await;
    let mut world = World::new(infra_var("TEST_NATS_URL"), Some(smtp.url())).await;
    world.settings.mail_stuck_after = Duration::from_secs(2).into();
    let blocker = format!("BLOCK_{}", world.settings.consumer);
    world
        .jetstream
        .create_stream(jetstream::stream::Config {
            name: blocker.clone(),
            subjects: vec![format!("email.dead.{}.>", world.settings.consumer)],
            ..Default::default()
        })
        .await
        .unwrap();
    let service = world.serving().await;
    wait_for_health(&service.channel, ServingStatus::NotServing).await;
    assert_eq!(metric(service.metrics, "email_consumer_stuck").await, 1);
    service.stop().await;
    let _ = world.jetstream.delete_stream(&blocker).await;
    clean_up(&world).await;
}
