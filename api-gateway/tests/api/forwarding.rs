//! Behind the gateway every browser is its own client to the services: one
//! guessing logins from its address does not lock the others out.

use std::net::IpAddr;

use serde_json::json;

use crate::{Gateway, PASSWORD};

/// user-service's default failed logins per address (`LOGIN_MAX_FAILURES_PER_ADDRESS`).
const PER_ADDRESS: usize = 100;

#[tokio::test]
async fn a_hundred_bad_logins_from_one_browser_leave_the_others_logging_in() {
    let gateway = Gateway::start().await;
    gateway.user("honest@example.com").await;
    let guesser = IpAddr::from([127, 0, 0, 2]);
    for n in 0..PER_ADDRESS {
        // A different account each time: the per-account limit stays out of it.
        let guess =
            json!({"email": format!("victim{n}@example.com"), "password": "wrong password"});
        let answer = gateway.post_from(guesser, "/api/v1/login", &guess).await;
        assert_eq!(answer.status, 401, "guess {n}: {}", answer.text);
    }
    let correct = json!({"email": "honest@example.com", "password": PASSWORD});
    let throttled = gateway.post_from(guesser, "/api/v1/login", &correct).await;
    assert_eq!(throttled.status, 429, "{}", throttled.text);
    assert!(
        throttled.message().contains("your address"),
        "{}",
        throttled.text
    );

    // Everyone else, behind the same gateway, logs in.
    let other = gateway
        .post_from(IpAddr::from([127, 0, 0, 3]), "/api/v1/login", &correct)
        .await;
    assert_eq!(other.status, 200, "{}", other.text);
}
