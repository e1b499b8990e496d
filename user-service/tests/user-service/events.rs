//! user.created through the outbox when NATS is down: users are still
//! created, and their events reach the stream once NATS is back.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use prost::Message;
use shippy_harness::user::{TestApp, stream_messages};
use shippy_proto::events::v1::UserCreated;
use shippy_testkit::NatsServer;

#[tokio::test]
async fn users_created_while_nats_is_down_are_announced_once_it_is_back() {
    let mut nats = NatsServer::start().await;
    let app = TestApp::spawn_with_nats(nats.url()).await;
    let first = app.create_user("Before", "before@example.com").await;
    let mut stream = app.stream().await;
    assert_eq!(
        stream_messages(&mut stream, 1, Duration::from_secs(10))
            .await
            .len(),
        1
    );

    nats.stop();
    let mut during = Vec::new();
    for n in 0..3 {
        during.push(
            app.create_user(&format!("During {n}"), &format!("d{n}@example.com"))
                .await,
        );
    }

    // The relay has tried and failed: the events wait in the outbox.
    let pool = sqlx::PgPool::connect(app.settings.database_url.expose())
        .await
        .unwrap();
    let mut failed_attempts = 0;
    for _ in 0..200 {
        failed_attempts = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND attempts > 0",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if failed_attempts > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        failed_attempts > 0,
        "the relay never tried while NATS was down"
    );
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(pending, 3);

    nats.restart().await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut stream = async_nats::jetstream::new(client)
        .get_stream(&app.settings.events_stream)
        .await
        .expect("the stream survived the restart");
    let messages = stream_messages(&mut stream, 4, Duration::from_secs(30)).await;
    let users: Vec<String> = messages
        .iter()
        .map(|message| {
            UserCreated::decode(message.payload.as_ref())
                .unwrap()
                .user_id
        })
        .collect();
    let mut expected = vec![first];
    expected.extend(during);
    assert_eq!(users, expected, "every event once, in order");
    app.stop().await;
}
