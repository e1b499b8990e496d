//! The ops dashboard's figures, `GET /api/v1/ops`: admins only; each
//! route's requests and errors counted as they are answered; a stopped
//! upstream (SIGSTOP: its port takes connections, nothing answers) shown
//! unhealthy with its circuit open, and closed again once it resumes.

use std::time::Duration;

use crate::{ADMIN, Gateway, signal};
use api_gateway::{
    observe::RouteFigures,
    ops::{CircuitState, OpsReport, UpstreamReport},
};

async fn report(gateway: &Gateway, token: &str) -> OpsReport {
    let answer = gateway.get("/api/v1/ops", Some(token)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    serde_json::from_value(answer.json).expect("an ops report")
}

fn upstream<'a>(report: &'a OpsReport, name: &str) -> &'a UpstreamReport {
    report
        .upstreams
        .iter()
        .find(|upstream| upstream.name == name)
        .unwrap_or_else(|| panic!("{name} missing: {report:?}"))
}

fn route<'a>(report: &'a OpsReport, method: &str, route: &str) -> &'a RouteFigures {
    report
        .routes
        .iter()
        .find(|figures| figures.method == method && figures.route == route)
        .unwrap_or_else(|| panic!("{method} {route} missing: {:?}", report.routes))
}

#[tokio::test]
async fn the_ops_report_is_for_admins_only() {
    let gateway = Gateway::start().await;
    let (_, user) = gateway.user("ops-user@example.com").await;
    let (_, admin) = gateway.user(ADMIN).await;

    let anonymous = gateway.get("/api/v1/ops", None).await;
    anonymous.assert_error(401, "UNAUTHENTICATED");
    let forged = gateway.get("/api/v1/ops", Some("aaa.bbb.ccc")).await;
    assert_eq!(forged.status, 401, "{}", forged.text);
    let forbidden = gateway.get("/api/v1/ops", Some(&user)).await;
    forbidden.assert_error(403, "PERMISSION_DENIED");
    assert!(forbidden.message().contains("admins"), "{}", forbidden.text);

    let report = report(&gateway, &admin).await;
    let names: Vec<_> = report.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(
        names,
        ["user-service", "consignment-service", "vessel-service"]
    );
    for upstream in &report.upstreams {
        assert!(upstream.healthy, "{upstream:?}");
        assert_eq!(upstream.health, "SERVING");
        assert_eq!(upstream.circuit, CircuitState::Closed);
    }
    assert_eq!(report.window_seconds, 10);
}

#[tokio::test]
async fn the_ops_report_counts_each_routes_requests_and_errors() {
    let gateway = Gateway::start().await;
    let (_, admin) = gateway.user(ADMIN).await;
    for _ in 0..5 {
        let listed = gateway.get("/api/v1/vessels", Some(&admin)).await;
        assert_eq!(listed.status, 200, "{}", listed.text);
    }
    for _ in 0..3 {
        assert_eq!(gateway.get("/api/v1/me", None).await.status, 401);
    }
    // Raw paths become their route: never a series per URL.
    for id in ["raw-id-1", "raw-id-2"] {
        let path = format!("/api/v1/consignments/{id}");
        let cancelled = gateway.send("DELETE", &path, Some(&admin), &[], None).await;
        assert_eq!(cancelled.status, 404, "{}", cancelled.text);
    }
    assert_eq!(gateway.get("/api/v1/raw-nothing", None).await.status, 404);

    let first = report(&gateway, &admin).await;
    let vessels = route(&first, "GET", "/api/v1/vessels");
    assert_eq!(vessels.requests, 5, "{vessels:?}");
    assert_eq!(vessels.error_ratio, 0.0, "{vessels:?}");
    assert!(vessels.requests_per_second > 0.0, "{vessels:?}");
    assert!(vessels.p99_ms.is_some_and(|ms| ms > 0.0), "{vessels:?}");
    let me = route(&first, "GET", "/api/v1/me");
    assert_eq!(me.requests, 3, "{me:?}");
    assert_eq!(me.error_ratio, 1.0, "{me:?}");
    assert_eq!(me.server_error_ratio, 0.0, "{me:?}");
    let cancel = route(&first, "DELETE", "/api/v1/consignments/{id}");
    assert_eq!(
        (cancel.requests, cancel.error_ratio),
        (2, 1.0),
        "{cancel:?}"
    );
    assert!(
        first
            .routes
            .iter()
            .all(|figures| !figures.route.contains("raw")),
        "{:?}",
        first.routes
    );

    // More traffic moves the figures: five more, all failing.
    for _ in 0..5 {
        assert_eq!(gateway.get("/api/v1/vessels", None).await.status, 401);
    }
    let after = report(&gateway, &admin).await;
    let vessels = route(&after, "GET", "/api/v1/vessels");
    assert_eq!(vessels.requests, 10, "{vessels:?}");
    assert_eq!(vessels.error_ratio, 0.5, "{vessels:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_upstream_is_shown_unhealthy_with_its_circuit_open_then_closed() {
    const DEADLINE: Duration = Duration::from_secs(1);
    const COOL_DOWN: Duration = Duration::from_secs(10);
    let (gateway, consignments) =
        crate::gateway_with_stoppable_consignments("gw_ops", DEADLINE, COOL_DOWN).await;
    let (_, admin) = gateway.user(ADMIN).await;
    let listed = gateway.get("/api/v1/consignments", Some(&admin)).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let before = report(&gateway, &admin).await;
    assert_eq!(
        upstream(&before, "consignment-service").circuit,
        CircuitState::Closed
    );

    signal(&consignments, "-STOP");
    for _ in 0..2 {
        let answer = gateway.get("/api/v1/consignments", Some(&admin)).await;
        assert_eq!(answer.status, 504, "{}", answer.text);
    }
    let refused = gateway.get("/api/v1/consignments", Some(&admin)).await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    let stopped = report(&gateway, &admin).await;
    let shown = upstream(&stopped, "consignment-service");
    assert_eq!(shown.circuit, CircuitState::Open, "{stopped:?}");
    assert!(!shown.healthy && shown.health != "SERVING", "{stopped:?}");
    for name in ["user-service", "vessel-service"] {
        let other = upstream(&stopped, name);
        assert!(other.healthy, "{stopped:?}");
        assert_eq!(other.circuit, CircuitState::Closed, "{stopped:?}");
    }
    let failing = route(&stopped, "GET", "/api/v1/consignments");
    // 1 answered, 2 timed out (504), 1 refused (503).
    assert_eq!(failing.requests, 4, "{failing:?}");
    assert_eq!(failing.server_error_ratio, 0.75, "{failing:?}");
    assert!(
        failing.p99_ms.is_some_and(|ms| ms >= 500.0),
        "the timed-out calls are the p99: {failing:?}"
    );

    signal(&consignments, "-CONT");
    crate::wait_until_consignments_answer(&gateway, &admin, COOL_DOWN * 4).await;
    let closed = report(&gateway, &admin).await;
    let shown = upstream(&closed, "consignment-service");
    assert_eq!(shown.circuit, CircuitState::Closed, "{closed:?}");
    assert!(shown.healthy, "{closed:?}");
    consignments.stop().await;
}
