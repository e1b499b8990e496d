//! One client cannot take what every client needs: request slots are
//! budgeted per address and taken only once a request's message arrived;
//! behind the api-gateway each browser has its own login budget; and a
//! guesser cannot lock an account's owner out.

use std::{net::IpAddr, time::Duration};

use shippy_harness::refused;
use shippy_proto::user::v1::{User, user_service_client::UserServiceClient};
use shippy_service::admission::{
    CLIENT_ADDRESS_KEY, DEFAULT_MESSAGE_TIMEOUT, DEFAULT_PER_CLIENT_LIMIT,
};
use shippy_testkit::{
    SERVICE_TOKEN,
    calls::{channel_from, hold_bodyless_calls},
    health_status, infra_var,
};
use tonic::{Code, Request, Status, transport::Channel};
use tonic_health::pb::health_check_response::ServingStatus;

use shippy_harness::{PASSWORD, user::TestApp};

const AUTH: &str = "/shippy.user.v1.UserService/Auth";

fn login_as(email: &str, password: &str) -> User {
    User {
        email: email.into(),
        password: password.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn three_hundred_bodyless_calls_from_one_address_leave_a_correct_login_working() {
    let app = TestApp::spawn().await;
    app.create_user("Owner", "owner@example.com").await;
    let attacker = IpAddr::from([127, 0, 0, 2]);
    // Three connections, 100 streams each (a connection takes at most 128).
    let mut held = Vec::new();
    for _ in 0..3 {
        let channel = channel_from(app.address, attacker).await;
        held.extend(hold_bodyless_calls(&channel, AUTH, 100));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = tokio::time::Instant::now();
    let token = app
        .users()
        .auth(login_as("owner@example.com", PASSWORD))
        .await
        .expect("a correct login is served while the attacker holds its streams")
        .into_inner()
        .token;
    assert!(!token.is_empty());
    assert!(
        started.elapsed() < DEFAULT_MESSAGE_TIMEOUT,
        "served at once, not after the held calls timed out: {:?}",
        started.elapsed()
    );
    // Health is never shed, not even for the attacker's own address.
    let attacker_channel = channel_from(app.address, attacker).await;
    assert_eq!(
        health_status(attacker_channel, "").await,
        ServingStatus::Serving
    );

    let mut codes = Vec::new();
    for call in held {
        codes.push(call.await.unwrap());
    }
    let refused = codes
        .iter()
        .filter(|&&c| c == Code::ResourceExhausted)
        .count();
    let timed_out = codes
        .iter()
        .filter(|&&c| c == Code::DeadlineExceeded)
        .count();
    // Exactly 172 and 128 when all 300 arrive within the message timeout;
    // on a slow machine a few may arrive after the first ones timed out.
    assert_eq!(refused + timed_out, 300, "{codes:?}");
    assert!(
        refused >= 300 - 2 * DEFAULT_PER_CLIENT_LIMIT,
        "past its own budget the attacker is refused at once: {codes:?}"
    );
    assert!(
        timed_out >= DEFAULT_PER_CLIENT_LIMIT,
        "held calls end when their message does not come: {codes:?}"
    );
}

#[tokio::test]
async fn a_request_whose_message_never_comes_is_answered_within_the_message_timeout() {
    let app = TestApp::spawn().await;
    let channel = channel_from(app.address, IpAddr::from([127, 0, 0, 3])).await;
    let started = tokio::time::Instant::now();
    let code = hold_bodyless_calls(&channel, AUTH, 1)
        .pop()
        .unwrap()
        .await
        .unwrap();
    assert_eq!(code, Code::DeadlineExceeded);
    let took = started.elapsed();
    assert!(
        took >= DEFAULT_MESSAGE_TIMEOUT && took < DEFAULT_MESSAGE_TIMEOUT + Duration::from_secs(3),
        "{took:?}"
    );
}

/// `Auth` as the api-gateway calls it for a browser at `client`.
async fn forwarded_login(
    channel: &Channel,
    client: &str,
    secret: Option<&str>,
    email: &str,
    password: &str,
) -> Result<String, Status> {
    let mut request = Request::new(login_as(email, password));
    request
        .metadata_mut()
        .insert(CLIENT_ADDRESS_KEY, client.parse().unwrap());
    if let Some(secret) = secret {
        request
            .metadata_mut()
            .insert("x-service-token", secret.parse().unwrap());
    }
    UserServiceClient::new(channel.clone())
        .auth(request)
        .await
        .map(|answer| answer.into_inner().token)
}

/// `email` logs in with [`PASSWORD`] from a browser at `client`, through
/// the api-gateway (which names the browser with the service secret).
async fn gateway_login(app: &TestApp, client: &str, email: &str) -> Result<String, Status> {
    forwarded_login(&app.channel, client, Some(SERVICE_TOKEN), email, PASSWORD).await
}

/// A wrong password for victim `n` (`victim<n>@example.com`) from `client`
/// (with `secret`): refused as UNAUTHENTICATED.
async fn wrong_guess(app: &TestApp, client: &str, secret: Option<&str>, n: u32) {
    let email = format!("victim{n}@example.com");
    let refused = forwarded_login(&app.channel, client, secret, &email, "wrong password")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
}

async fn app_with_address_limit(per_address: u32) -> TestApp {
    TestApp::spawn_custom(infra_var("TEST_NATS_URL"), |settings| {
        settings.login.max_failures_per_address = per_address;
        settings.login.service_token = Some(SERVICE_TOKEN.parse().unwrap());
    })
    .await
}

#[tokio::test]
async fn behind_the_gateway_one_guessing_browser_does_not_lock_out_the_others() {
    let app = app_with_address_limit(5).await;
    app.create_user("Honest", "honest@example.com").await;
    for n in 0..5 {
        wrong_guess(&app, "203.0.113.66", Some(SERVICE_TOKEN), n).await;
    }
    refused(
        gateway_login(&app, "203.0.113.66", "honest@example.com").await,
        Code::ResourceExhausted,
        &["your address"],
    );

    // Another browser behind the same gateway (the same TCP peer) logs in.
    let token = gateway_login(&app, "198.51.100.7", "honest@example.com")
        .await
        .expect("another browser is not throttled");
    assert!(!token.is_empty());
}

#[tokio::test]
async fn an_address_named_without_the_service_secret_is_not_believed() {
    let app = app_with_address_limit(3).await;
    app.create_user("Honest", "honest@example.com").await;
    // A guesser naming a fresh address each time, without the secret (or
    // with a wrong one), is still counted under its own TCP address.
    for n in 0..3 {
        let secret = (n % 2 == 1).then_some("a-wrong-secret-0123456789abcdef-0123456789");
        wrong_guess(&app, &format!("203.0.113.{n}"), secret, n).await;
    }
    refused(
        forwarded_login(
            &app.channel,
            "203.0.113.200",
            None,
            "honest@example.com",
            PASSWORD,
        )
        .await,
        Code::ResourceExhausted,
        &[],
    );
}

#[tokio::test]
async fn a_guesser_cannot_lock_the_owner_out_of_an_address_they_logged_in_from() {
    let app = app_with_address_limit(1000).await;
    app.create_user("Owner", "owner@example.com").await;
    let home = "198.51.100.7";
    gateway_login(&app, home, "owner@example.com")
        .await
        .expect("the owner logs in from home");
    let max_failures = app.settings.login.max_failures;
    for _ in 0..max_failures {
        let _ = forwarded_login(
            &app.channel,
            "203.0.113.66",
            Some(SERVICE_TOKEN),
            "owner@example.com",
            "a guess",
        )
        .await;
    }
    refused(
        gateway_login(&app, "192.0.2.10", "owner@example.com").await,
        Code::ResourceExhausted,
        &["this account"],
    );
    gateway_login(&app, home, "owner@example.com")
        .await
        .expect("the owner still logs in from an address they used before");
}
