//! Traces across processes: the real binaries export spans over OTLP to a
//! receiver in this test; one `CreateConsignment` is one trace through
//! consignment-service and vessel-service, with correct parent links and
//! OpenTelemetry's RPC attributes.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use shippy_proto::{
    consignment::v1::{Consignment, Container, shipping_service_client::ShippingServiceClient},
    user::v1::{User, user_service_client::UserServiceClient},
};
use shippy_testkit::{
    OtlpReceiver, ReceivedSpan, ServiceProcess, fresh_postgres_database, infra_var,
    init_test_logging,
};
use tonic::{Request, metadata::MetadataValue, transport::Endpoint};

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

fn find<'a>(
    spans: &'a [ReceivedSpan],
    service: &str,
    name: &str,
    kind: i32,
) -> Option<&'a ReceivedSpan> {
    spans
        .iter()
        .find(|span| span.service == service && span.name == name && span.kind == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_consignment_is_one_trace_through_consignment_and_vessel_service() {
    init_test_logging();
    let receiver = OtlpReceiver::start().await;
    let otel = (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        receiver.endpoint().to_owned(),
    );
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let users = ServiceProcess::start(
        "user-service",
        &[
            otel.clone(),
            (
                "DATABASE_URL",
                fresh_postgres_database("trace_users")
                    .await
                    .expose()
                    .to_owned(),
            ),
            ("NATS_URL", infra_var("TEST_NATS_URL")),
            ("BCRYPT_COST", "4".into()),
            ("USER_EVENTS_STREAM", format!("USERS_{unique}")),
            (
                "USER_CREATED_SUBJECT",
                format!("test.{unique}.user.created"),
            ),
        ],
    )
    .await;
    let vessels = ServiceProcess::start(
        "vessel-service",
        &[
            otel.clone(),
            (
                "DATABASE_URL",
                fresh_postgres_database("trace_vessels")
                    .await
                    .expose()
                    .to_owned(),
            ),
        ],
    )
    .await;
    let shipping = ServiceProcess::start(
        "consignment-service",
        &[
            otel.clone(),
            (
                "DATABASE_URL",
                fresh_postgres_database("trace_consignments")
                    .await
                    .expose()
                    .to_owned(),
            ),
            ("VESSEL_SERVICE_URL", vessels.url()),
            ("USER_SERVICE_URL", users.url()),
        ],
    )
    .await;

    let mut user_client =
        UserServiceClient::new(Endpoint::from_shared(users.url()).unwrap().connect_lazy());
    let credentials = User {
        name: "Tracy".into(),
        email: format!("{unique}@example.com"),
        password: "correct horse battery".into(),
        ..Default::default()
    };
    user_client.create(credentials.clone()).await.unwrap();
    let token = user_client
        .auth(credentials)
        .await
        .unwrap()
        .into_inner()
        .token;

    // The caller's own span, as a traced client would send it.
    let (trace_id, caller_span) = (random_hex(16), random_hex(8));
    let mut request = Request::new(Consignment {
        description: "Traced".into(),
        weight: 100,
        containers: vec![Container {
            customer_id: "c1".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    let metadata = request.metadata_mut();
    metadata.insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    metadata.insert(
        "traceparent",
        MetadataValue::try_from(format!("00-{trace_id}-{caller_span}-01")).unwrap(),
    );
    ShippingServiceClient::new(
        Endpoint::from_shared(shipping.url())
            .unwrap()
            .connect_lazy(),
    )
    .create_consignment(request)
    .await
    .expect("created");

    // A graceful stop flushes what each process has not exported yet.
    shipping.stop().await;
    vessels.stop().await;
    users.stop().await;

    let create = "shippy.consignment.v1.ShippingService/CreateConsignment";
    let reserve = "shippy.vessel.v1.VesselService/Reserve";
    let confirm = "shippy.vessel.v1.VesselService/Confirm";
    let spans = receiver
        .trace(&trace_id, |spans| {
            find(spans, "consignment-service", create, SERVER).is_some()
                && find(spans, "vessel-service", reserve, SERVER).is_some()
                && find(spans, "vessel-service", confirm, SERVER).is_some()
        })
        .await;
    let names: Vec<_> = spans
        .iter()
        .map(|s| format!("{}:{}", s.service, s.name))
        .collect();

    let server =
        find(&spans, "consignment-service", create, SERVER).unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!(
        server.parent_span_id, caller_span,
        "continues the caller's trace"
    );
    assert_eq!(server.attributes["rpc.system"], "grpc");
    assert_eq!(
        server.attributes["rpc.service"],
        "shippy.consignment.v1.ShippingService"
    );
    assert_eq!(server.attributes["rpc.method"], "CreateConsignment");
    assert_eq!(server.attributes["rpc.grpc.status_code"], "0");

    // Both steps of the saga in vessel-service are children of this
    // service's calls, in the one trace.
    let mut clients = Vec::new();
    for step in [reserve, confirm] {
        let client = find(&spans, "consignment-service", step, CLIENT)
            .unwrap_or_else(|| panic!("{step}: {names:?}"));
        let vessel = find(&spans, "vessel-service", step, SERVER)
            .unwrap_or_else(|| panic!("{step}: {names:?}"));
        assert_eq!(
            vessel.parent_span_id, client.span_id,
            "vessel-service's {step} span is the call's child"
        );
        assert_eq!(vessel.attributes["rpc.grpc.status_code"], "0");
        clients.push(client);
    }
    let client = clients[0];

    // The client span descends from the server span within consignment-service.
    let mut ancestor = client.parent_span_id.clone();
    let mut hops = 0;
    while ancestor != server.span_id {
        let parent = spans
            .iter()
            .find(|span| span.span_id == ancestor)
            .unwrap_or_else(|| panic!("broken parent chain at {ancestor}: {names:?}"));
        ancestor = parent.parent_span_id.clone();
        hops += 1;
        assert!(hops < 10, "no path to the server span: {names:?}");
    }
}
