//! Rate limits per client: a burst past the allowance is 429 with
//! `Retry-After` and the RateLimit headers; a forged `X-Forwarded-For`
//! changes nothing; behind a trusted proxy each client has its own budget;
//! a spray of addresses does not grow the tracked set past its cap.

use std::{net::IpAddr, time::Duration};

use api_gateway::limit::RateLimits;
use serde_json::json;

use crate::{Answer, Gateway, Services};

/// A gateway whose general budget is `burst` at once then 1 a second, and
/// its login budget 3 at once; `trusted` its proxies.
async fn gateway(burst: u32, trusted: &[&str], max_clients: u64) -> Gateway {
    let services = Services::start().await;
    let mut settings = services.settings();
    settings.rate_limits = RateLimits {
        per_second: 1,
        burst,
        login_per_second: 1,
        login_burst: 3,
        max_clients,
    };
    settings.forwarding.trusted_proxies = trusted.iter().map(|net| net.parse().unwrap()).collect();
    Gateway::start_with(services, settings).await
}

/// `GET /api/v1/vessels` without a token (401 when let through: the
/// services are not asked) from `source`, naming `forwarded` if any.
async fn list(gateway: &Gateway, source: [u8; 4], forwarded: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = forwarded
        .map(|address| ("x-forwarded-for", address))
        .into_iter()
        .collect();
    gateway
        .send_from(
            IpAddr::from(source),
            "GET",
            "/api/v1/vessels",
            &headers,
            None,
        )
        .await
}

fn header<'a>(answer: &'a Answer, name: &str) -> &'a str {
    answer
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

fn assert_limited(answer: &Answer) {
    answer.assert_error(429, "RESOURCE_EXHAUSTED");
    let wait: u64 = header(answer, "retry-after").parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(header(answer, "ratelimit-remaining"), "0");
    assert!(answer.message().contains("your address"), "{}", answer.text);
}

#[tokio::test]
async fn a_burst_past_the_allowance_is_429_with_retry_after_and_ratelimit_headers() {
    let gateway = gateway(5, &[], 1000).await;
    let client = [127, 0, 0, 11];
    for left in (0..5).rev() {
        let answer = list(&gateway, client, None).await;
        assert_eq!(answer.status, 401, "{}", answer.text);
        assert_eq!(header(&answer, "ratelimit-limit"), "5");
        assert_eq!(header(&answer, "ratelimit-remaining"), left.to_string());
        assert_eq!(header(&answer, "ratelimit-policy"), "5;w=5");
    }
    let refused = list(&gateway, client, None).await;
    assert_limited(&refused);
    assert_eq!(header(&refused, "ratelimit-limit"), "5");
    assert_eq!(header(&refused, "x-content-type-options"), "nosniff");

    // Another client is not held up; nor are the probes.
    let other = list(&gateway, [127, 0, 0, 12], None).await;
    assert_eq!(other.status, 401, "{}", other.text);
    let health = gateway
        .send_from(IpAddr::from(client), "GET", "/healthz", &[], None)
        .await;
    assert_eq!(health.status, 200, "{}", health.text);

    // A second later one more request is let through.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = list(&gateway, client, None).await;
    assert_eq!(again.status, 401, "{}", again.text);

    // Logins have their own, stricter budget: 3 at once.
    let login = json!({"email": "nobody@example.com", "password": "wrong password"});
    let guesser = IpAddr::from([127, 0, 0, 13]);
    for _ in 0..3 {
        let answer = gateway.post_from(guesser, "/api/v1/login", &login).await;
        assert_eq!(answer.status, 401, "{}", answer.text);
    }
    let refused = gateway.post_from(guesser, "/api/v1/login", &login).await;
    assert_limited(&refused);
    assert!(refused.message().contains("logins"), "{}", refused.text);
    let listed = list(&gateway, [127, 0, 0, 13], None).await;
    assert_eq!(listed.status, 401, "the general budget is apart");

    let (_, metrics) = crate::raw_request(gateway.metrics, "GET", "/metrics", &[]).await;
    for budget in ["default", "login"] {
        let line = format!("http_rate_limited_total{{budget=\"{budget}\"}} 1");
        assert!(metrics.contains(&line), "{line} in:\n{metrics}");
    }
}

#[tokio::test]
async fn a_forged_x_forwarded_for_from_an_untrusted_peer_does_not_reset_the_budget() {
    // 127.0.0.21 is no trusted proxy (only 10.0.0.0/8 is).
    let gateway = gateway(3, &["10.0.0.0/8"], 1000).await;
    for n in 0..3 {
        let forged = format!("198.51.100.{n}");
        let answer = list(&gateway, [127, 0, 0, 21], Some(&forged)).await;
        assert_eq!(answer.status, 401, "{}", answer.text);
    }
    let forged = list(&gateway, [127, 0, 0, 21], Some("198.51.100.99")).await;
    assert_limited(&forged);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_address_has_its_own_budget() {
    let proxy = [127, 0, 0, 31];
    let gateway = gateway(3, &["127.0.0.31/32"], 1000).await;
    for _ in 0..3 {
        let answer = list(&gateway, proxy, Some("198.51.100.1")).await;
        assert_eq!(answer.status, 401, "{}", answer.text);
    }
    assert_limited(&list(&gateway, proxy, Some("198.51.100.1")).await);
    // The client the proxy names: the nearest untrusted hop, not what the
    // client wrote further left.
    assert_limited(&list(&gateway, proxy, Some("203.0.113.9, 198.51.100.1")).await);
    for _ in 0..3 {
        let other = list(&gateway, proxy, Some("198.51.100.2")).await;
        assert_eq!(other.status, 401, "{}", other.text);
    }
    // The proxy's own requests (no header) count as the proxy.
    let own = list(&gateway, proxy, None).await;
    assert_eq!(own.status, 401, "{}", own.text);
}

#[tokio::test]
async fn a_spray_of_addresses_keeps_the_tracked_clients_within_the_cap() {
    const CAP: u64 = 50;
    let proxy = [127, 0, 0, 41];
    let gateway = gateway(5, &["127.0.0.41/32"], CAP).await;
    for n in 0..1000u32 {
        let [_, _, high, low] = n.to_be_bytes();
        let address = format!("10.9.{high}.{low}");
        let answer = list(&gateway, proxy, Some(&address)).await;
        assert_eq!(answer.status, 401, "{address}: {}", answer.text);
    }
    let (_, metrics) = crate::raw_request(gateway.metrics, "GET", "/metrics", &[]).await;
    let tracked: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("http_rate_limit_clients{budget=\"default\"} "))
        .and_then(|value| value.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(tracked <= CAP, "{tracked} clients tracked, cap {CAP}");
}
