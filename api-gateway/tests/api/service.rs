//! The gateway itself: probes, the OpenAPI document, metrics, the UI's
//! files, and how it answers when a service is down.

use serde_json::json;

use crate::{Gateway, Services};

#[tokio::test]
async fn health_readiness_and_the_openapi_document_cover_every_route() {
    let gateway = Gateway::start().await;
    let health = gateway.get("/healthz", None).await;
    assert_eq!(health.status, 200, "{}", health.text);
    let ready = gateway.get("/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json["services"]["vessel-service"], "SERVING");

    let document = gateway.get("/api/openapi.json", None).await;
    assert_eq!(document.status, 200);
    assert!(document.json["openapi"].as_str().unwrap().starts_with("3."));
    // The document is what the code generates (api::routes, which routes
    // and documents each handler in one go)...
    assert_eq!(document.json, api_gateway::openapi::document().unwrap());
    // ...and holds every operation of the JSON API: one dropped from the
    // router drops from the document, and fails here.
    let mut operations = Vec::new();
    for (path, item) in document.json["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    operations.sort();
    assert_eq!(
        operations,
        [
            "DELETE /api/v1/consignments/{id}",
            "GET /api/v1/consignments",
            "GET /api/v1/me",
            "GET /api/v1/ops",
            "GET /api/v1/vessels",
            "POST /api/v1/consignments",
            "POST /api/v1/login",
            "POST /api/v1/users",
            "POST /api/v1/vessels",
        ]
    );
    for operation in operations {
        let (method, path) = operation.split_once(' ').unwrap();
        // The router knows the route: never the fallback's 404 or a 405.
        let answer = gateway.send(method, path, None, &[], None).await;
        assert!(
            answer.status != 404 && answer.status != 405,
            "{operation} is documented but not routed: {}",
            answer.text
        );
    }
    let unknown = gateway.get("/api/v1/nothing", None).await;
    unknown.assert_error(404, "NOT_FOUND");
    let wrong_method = gateway
        .send("DELETE", "/api/v1/users", None, &[], None)
        .await;
    assert_eq!(wrong_method.status, 405, "{}", wrong_method.text);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let gateway = Gateway::start().await;
    gateway.get("/api/v1/me", None).await;
    gateway.get("/api/v1/me", None).await;
    // Made-up methods share one label: they cannot add series without end.
    for method in ["FOO1", "FOO2", "FOO3"] {
        crate::raw_request(gateway.address, method, "/api/v1/me", &[]).await;
    }
    let (status, text) = crate::raw_request(gateway.metrics, "GET", "/metrics", &[]).await;
    assert!(!text.contains("FOO"), "{text}");
    assert!(text.contains(r#"method="other""#), "{text}");
    assert_eq!(status, 200);
    assert!(
        text.contains(
            r#"http_server_requests_total{method="GET",route="/api/v1/me",status="401"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"http_server_errors_total{method="GET",route="/api/v1/me",status="401"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains("http_server_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn a_service_that_is_down_is_503_and_not_ready() {
    let services = Services::start().await;
    let mut settings = services.settings();
    // A port nothing listens on.
    let closed = shippy_testkit::ClosedPort::new();
    settings.vessel_service_url = format!("http://{}", closed.address);
    let gateway = Gateway::start_with(services, settings).await;
    let (_, token) = gateway.user("erin@example.com").await;

    let ready = gateway.get("/readyz", None).await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert_eq!(ready.json["services"]["user-service"], "SERVING");
    assert_ne!(ready.json["services"]["vessel-service"], "SERVING");
    let fleet = gateway.get("/api/v1/vessels", Some(&token)).await;
    fleet.assert_error(503, "UNAVAILABLE");
    assert_eq!(
        fleet.message(),
        "a service this request needs is unreachable; retry shortly",
        "nothing about our network leaks"
    );
    // The process itself is fine.
    assert_eq!(gateway.get("/healthz", None).await.status, 200);
}

#[tokio::test]
async fn the_web_ui_is_served_from_the_binary_with_a_strict_policy() {
    let gateway = Gateway::start().await;
    let page = gateway.get("/", None).await;
    assert_eq!(page.status, 200);
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text.contains("id=\"login-form\""), "{}", page.text);
    let policy = page.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    for (path, kind) in [("/app.js", "text/javascript"), ("/style.css", "text/css")] {
        let asset = gateway.get(path, None).await;
        assert_eq!(asset.status, 200, "{path}");
        assert!(
            asset.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert!(
            !asset.text.contains("http://") && !asset.text.contains("https://"),
            "{path} fetches nothing from elsewhere"
        );
    }
    let script = gateway.get("/app.js", None).await.text;
    assert!(
        !script.contains("innerHTML"),
        "values are written as text, never HTML"
    );
}

#[tokio::test]
async fn with_consul_the_gateway_registers_with_an_http_check_until_it_stops() {
    use shippy_service::discovery::{DiscoveryArgs, consul::ConsulClient};
    use shippy_testkit::{ConsulAgent, http_get};

    let consul = ConsulAgent::start().await;
    let services = Services::start().await;
    let mut settings = services.settings();
    settings.discovery = DiscoveryArgs {
        consul_http_addr: Some(consul.http_addr()),
        ..Default::default()
    };
    let app = api_gateway::app::Application::build(&settings)
        .await
        .unwrap();
    let address = app.local_addr().unwrap();
    let shutdown = shippy_service::Shutdown::new();
    let running = tokio::spawn(app.run(shutdown.clone()));

    // Passing means Consul's own HTTP check of /healthz succeeded.
    let client = ConsulClient::new(&consul.http_addr(), None);
    let mut urls = Vec::new();
    for _ in 0..150 {
        if let Ok(found) = client
            .healthy("api-gateway", None, std::time::Duration::ZERO)
            .await
        {
            urls = found.instances.into_iter().map(|i| i.url).collect();
            if !urls.is_empty() {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(urls, [format!("http://{address}")]);
    let catalog = format!(
        "http://{}/v1/health/service/api-gateway",
        consul.http_addr()
    );
    let entry = http_get(&catalog).await.unwrap();
    assert!(
        entry.contains(&format!("http://{address}/healthz")),
        "an HTTP check: {entry}"
    );

    shutdown.trigger();
    running.await.unwrap().expect("clean stop");
    let catalog = format!(
        "http://{}/v1/catalog/service/api-gateway",
        consul.http_addr()
    );
    assert_eq!(
        http_get(&catalog).await.unwrap().trim(),
        "[]",
        "deregistered on stop"
    );
}

#[tokio::test]
async fn the_healthcheck_subcommand_probes_healthz() {
    let gateway = Gateway::start().await;
    let probe = |address: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_api-gateway"))
                .args(["healthcheck", &address])
                .output()
                .unwrap()
        })
    };
    let healthy = probe(gateway.address.to_string()).await.unwrap();
    assert!(healthy.status.success(), "{healthy:?}");
    let closed = shippy_testkit::ClosedPort::new();
    let nobody = closed.address.to_string();
    let down = probe(nobody).await.unwrap();
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("unhealthy"),
        "{down:?}"
    );
    // Another HTTP server that is not the gateway: its /metrics has no /healthz.
    let other = probe(gateway.metrics.to_string()).await.unwrap();
    assert_eq!(other.status.code(), Some(1), "{other:?}");
}

#[tokio::test]
async fn api_answers_and_errors_are_not_sniffed_nor_stored_and_the_ui_keeps_its_policy() {
    let gateway = Gateway::start().await;
    let email = "nosniff@example.com";
    gateway.user(email).await;
    let login = |password: &str| json!({"email": email, "password": password});
    let answers = [
        gateway
            .post("/api/v1/login", None, login(crate::PASSWORD))
            .await,
        gateway.get("/healthz", None).await,
        gateway.get("/api/openapi.json", None).await,
        gateway.post("/api/v1/login", None, login("not it")).await,
        gateway.get("/api/v1/me", None).await,
        gateway.get("/api/v1/nothing", None).await,
        gateway
            .send("DELETE", "/api/v1/users", None, &[], None)
            .await,
    ];
    let statuses: Vec<_> = answers.iter().map(|answer| answer.status).collect();
    assert_eq!(statuses, [200, 200, 200, 401, 401, 404, 405]);
    for answer in &answers {
        assert_eq!(
            answer.headers["x-content-type-options"], "nosniff",
            "{answer:?}"
        );
        assert_eq!(answer.headers["cache-control"], "no-store", "{answer:?}");
        assert!(
            answer.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{answer:?}"
        );
    }
    // The UI's files are revalidated, not unstored, and keep their policy.
    let page = gateway.get("/", None).await;
    assert_eq!(page.headers["cache-control"], "no-cache");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
}
