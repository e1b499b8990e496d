//! Traces across processes: the gateway's binary and vessel-service's
//! export spans over OTLP to a receiver in this test; a request with a W3C
//! `traceparent` is one trace through both, with the right parents.

use std::process::{Command, Stdio};

use shippy_testkit::{OtlpReceiver, ServiceProcess, fresh_postgres_database};

use crate::{Gateway, raw_request};

const SERVER: i32 = 2;

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// Where `child` says it listens: the "started" line of its log (stdout);
/// the rest of the log is drained so the child never blocks on it.
async fn started_at(child: &mut std::process::Child) -> std::net::SocketAddr {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("piped stdout");
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(address) = shippy_testkit::started_address(&line) {
                let _ = found.send(address);
            }
        }
    });
    let found = tokio::task::spawn_blocking(move || {
        address.recv_timeout(std::time::Duration::from_secs(60))
    })
    .await
    .unwrap();
    found.unwrap_or_else(|_| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("api-gateway never said where it listens")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_continues_through_the_gateway_into_the_service() {
    let receiver = OtlpReceiver::start().await;
    let otel = (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        receiver.endpoint().to_owned(),
    );
    // In-process services for the accounts; a vessel-service process that exports.
    let helper = Gateway::start().await;
    let (_, token) = helper.user("tracer@example.com").await;
    let user_url = format!("http://{}", helper.services.user_addr);
    let vessels = ServiceProcess::start(
        "vessel-service",
        &[
            otel.clone(),
            (
                "DATABASE_URL",
                fresh_postgres_database("gw_trace_vessels")
                    .await
                    .expose()
                    .to_owned(),
            ),
            ("USER_SERVICE_URL", user_url.clone()),
        ],
    )
    .await;

    // Port 0: the gateway binds its own and says which.
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_api-gateway"))
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env(otel.0, &otel.1)
        .env("USER_SERVICE_URL", &user_url)
        .env("VESSEL_SERVICE_URL", vessels.url())
        .env(
            "CONSIGNMENT_SERVICE_URL",
            format!("http://{}", helper.services.consignment_addr),
        )
        .env(
            "RUST_LOG",
            format!("warn,{}=info", shippy_testkit::STARTED_TARGET),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start api-gateway");
    let address = started_at(&mut gateway).await;
    let mut healthy = false;
    for _ in 0..100 {
        if raw_request(address, "GET", "/healthz", &[]).await.0 == 200 {
            healthy = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(healthy, "api-gateway answers /healthz");

    let (trace_id, caller_span) = (random_hex(16), random_hex(8));
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let authorization = format!("Bearer {token}");
    let (status, body) = raw_request(
        address,
        "GET",
        "/api/v1/vessels",
        &[
            ("traceparent", &traceparent),
            ("authorization", &authorization),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A graceful stop flushes what each process has not exported yet.
    Command::new("kill")
        .args(["-TERM", &gateway.id().to_string()])
        .status()
        .unwrap();
    let exit = tokio::task::spawn_blocking(move || gateway.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        exit.success(),
        "api-gateway stops cleanly on SIGTERM: {exit}"
    );
    vessels.stop().await;

    let route = "GET /api/v1/vessels";
    let list = "shippy.vessel.v1.VesselService/ListVessels";
    let spans = receiver
        .trace(&trace_id, |spans| {
            spans
                .iter()
                .any(|s| s.service == "api-gateway" && s.name == route)
                && spans
                    .iter()
                    .any(|s| s.service == "vessel-service" && s.name == list)
        })
        .await;
    let names: Vec<_> = spans
        .iter()
        .map(|s| format!("{}:{}:{}", s.service, s.name, s.kind))
        .collect();
    let http = spans
        .iter()
        .find(|s| s.service == "api-gateway" && s.name == route)
        .unwrap_or_else(|| panic!("no gateway span: {names:?}"));
    assert_eq!(http.kind, SERVER, "{names:?}");
    assert_eq!(
        http.parent_span_id, caller_span,
        "continues the caller's trace"
    );
    let grpc = spans
        .iter()
        .find(|s| s.service == "vessel-service" && s.name == list && s.kind == SERVER)
        .unwrap_or_else(|| panic!("no vessel-service span: {names:?}"));
    assert_eq!(
        grpc.parent_span_id, http.span_id,
        "vessel-service's span is the gateway request's child: {names:?}"
    );
}
