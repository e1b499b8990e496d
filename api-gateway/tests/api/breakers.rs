//! A circuit breaker per upstream: a hung consignment-service (a real
//! process, stopped with SIGSTOP, so its port still takes connections but
//! nothing answers) costs the deadline twice, then the gateway answers 503
//! with `Retry-After` at once; after SIGCONT a probe closes the circuit and
//! requests are answered again. The state is in `/metrics` and `/readyz`.

use std::time::{Duration, Instant};

use crate::{Gateway, Services, signal};

/// The gateway's deadline for consignment-service in this test.
const DEADLINE: Duration = Duration::from_secs(1);
/// How long an open circuit refuses before one call probes: long enough
/// that the checks made while it is open finish inside it on a loaded machine.
const COOL_DOWN: Duration = Duration::from_secs(10);

async fn metric(gateway: &Gateway, line_start: &str) -> Option<f64> {
    let (_, text) = crate::raw_request(gateway.metrics, "GET", "/metrics", &[]).await;
    text.lines()
        .find_map(|line| line.strip_prefix(line_start)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_upstream_gets_fast_503s_once_its_circuit_opens_and_200_after_it_resumes() {
    let (gateway, consignments) =
        crate::gateway_with_stoppable_consignments("gw_hung", DEADLINE, COOL_DOWN).await;
    let (_, token) = gateway.user("hung@example.com").await;
    let listed = gateway.get("/api/v1/consignments", Some(&token)).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let open = "upstream_circuit_open{upstream=\"consignment-service\"}";
    assert_eq!(metric(&gateway, open).await, Some(0.0));

    signal(&consignments, "-STOP");
    // The first calls wait out the deadline: that is how a hung upstream
    // is told from a slow one.
    for _ in 0..2 {
        let started = Instant::now();
        let answer = gateway.get("/api/v1/consignments", Some(&token)).await;
        let took = started.elapsed();
        answer.assert_error(504, "DEADLINE_EXCEEDED");
        assert!(answer.message().contains("in time"), "{}", answer.text);
        assert!(took >= DEADLINE / 2, "{took:?}");
    }
    // Then the circuit is open: 503 with Retry-After, at once.
    let mut latencies = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let answer = gateway.get("/api/v1/consignments", Some(&token)).await;
        latencies.push(started.elapsed());
        answer.assert_error(503, "UNAVAILABLE");
        assert!(
            answer.message().contains("consignment-service"),
            "{}",
            answer.text
        );
        let wait: u64 = answer.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=COOL_DOWN.as_secs()).contains(&wait), "{wait}");
    }
    latencies.sort();
    let slowest = latencies[latencies.len() - 1];
    let median = latencies[latencies.len() / 2];
    println!("fast-fail latency with the circuit open: median {median:?}, slowest {slowest:?}");
    // Answered at once, not after the deadline (a loaded machine may stall
    // one request now and then; the median says what the breaker costs).
    assert!(median < Duration::from_millis(100), "{latencies:?}");
    assert!(slowest < DEADLINE / 2, "{latencies:?}");
    // The other upstreams are not affected.
    let vessels = gateway.get("/api/v1/vessels", Some(&token)).await;
    assert_eq!(vessels.status, 200, "{}", vessels.text);

    assert_eq!(metric(&gateway, open).await, Some(1.0));
    let opened = "upstream_circuit_transitions_total{upstream=\"consignment-service\",to=\"open\"}";
    assert_eq!(metric(&gateway, opened).await, Some(1.0));
    let refused = "upstream_calls_refused_total{upstream=\"consignment-service\"}";
    assert!(metric(&gateway, refused).await >= Some(20.0));
    let ready = gateway.get("/readyz", None).await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert_eq!(
        ready.json["breakers"]["consignment-service"], "open",
        "{}",
        ready.text
    );
    assert_eq!(ready.json["breakers"]["vessel-service"], "closed");

    // Resumed: within a cool-down (and a probe) it answers again.
    signal(&consignments, "-CONT");
    crate::wait_until_consignments_answer(&gateway, &token, COOL_DOWN * 4).await;
    assert_eq!(metric(&gateway, open).await, Some(0.0));
    let closed =
        "upstream_circuit_transitions_total{upstream=\"consignment-service\",to=\"closed\"}";
    assert_eq!(metric(&gateway, closed).await, Some(1.0));
    let ready = gateway.get("/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json["breakers"]["consignment-service"], "closed");
    consignments.stop().await;
}

/// An upstream with no instance at all (its name resolves to nothing, as
/// when Consul lists none): the call waits for one no longer than the
/// upstream's timeout, is a 504, counts against the circuit, and once the
/// circuit is open the answer is an immediate 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_with_no_instance_costs_its_timeout_not_forever() {
    let services = Services::start().await;
    let mut settings = services.settings();
    settings.consignment_service_url = "dns:///nowhere.invalid:50051".into();
    settings.breakers.consignment_service_timeout = DEADLINE.into();
    settings.breakers.failures = 2;
    settings.breakers.cool_down = COOL_DOWN.into();
    let gateway = Gateway::start_with(services, settings).await;
    let (_, token) = gateway.user("nowhere@example.com").await;
    for _ in 0..2 {
        let started = Instant::now();
        let answer = tokio::time::timeout(
            DEADLINE * 10,
            gateway.get("/api/v1/consignments", Some(&token)),
        )
        .await
        .expect("answered, not held forever");
        answer.assert_error(504, "DEADLINE_EXCEEDED");
        assert!(started.elapsed() >= DEADLINE / 2, "{:?}", started.elapsed());
    }
    let started = Instant::now();
    let answer = gateway.get("/api/v1/consignments", Some(&token)).await;
    answer.assert_error(503, "UNAVAILABLE");
    assert!(started.elapsed() < DEADLINE / 2, "{:?}", started.elapsed());
}
