//! Logs as an operator's collector reads them: `LOG_FORMAT=json` gives one
//! JSON object per line, and a request's lines carry its `trace_id` and
//! `span_id` when traces are exported.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use shippy_proto::vessel::v1::{Specification, vessel_service_client::VesselServiceClient};
use shippy_testkit::{OtlpReceiver, ServiceProcess, fresh_database_setting};
use tonic::{Request, metadata::MetadataValue, transport::Endpoint};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_trace_and_span_ids_of_the_request() {
    let receiver = OtlpReceiver::start().await;
    let log = std::env::temp_dir().join(format!("vessel-json-{}.log", uuid::Uuid::new_v4()));
    let service = ServiceProcess::start_logging_to(
        "vessel-service",
        &[
            fresh_database_setting("json_logs").await,
            ("LOG_FORMAT", "json".into()),
            ("RUST_LOG", "info".into()),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                receiver.endpoint().to_owned(),
            ),
        ],
        Some(&log),
    )
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = Request::new(Specification {
        capacity: 1,
        max_weight: 1,
    });
    request.metadata_mut().insert(
        "traceparent",
        MetadataValue::try_from(format!("00-{trace_id}-00f067aa0ba902b7-01")).unwrap(),
    );
    VesselServiceClient::new(Endpoint::from_shared(service.url()).unwrap().connect_lazy())
        .find_available(request)
        .await
        .expect("found");
    service.stop().await;

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let found = lines
        .iter()
        .find(|line| line["message"] == "vessel found")
        .unwrap_or_else(|| panic!("no 'vessel found' line in {text}"));
    let request = found["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|span| span["name"] == "grpc.server"))
        .unwrap_or_else(|| panic!("no request span in {found}"));
    assert_eq!(request["trace_id"], trace_id, "{found}");
    let span_id = request["span_id"].as_str().unwrap_or_default();
    assert_eq!(span_id.len(), 16, "{found}");
    let _ = std::fs::remove_file(log);
}
