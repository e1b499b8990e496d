//! Traces across processes: the real binaries export spans over OTLP to a
//! receiver in this test; one `CreateConsignment` is one trace through
//! consignment-service and vessel-service, with correct parent links and
//! OpenTelemetry's RPC attributes.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use shippy_harness::{
    create_user, login, shipping::one_container_of, spawn::channel, with_metadata,
};
use shippy_proto::consignment::v1::{Consignment, shipping_service_client::ShippingServiceClient};
use shippy_testkit::{
    CallerSpan, OtlpReceiver, ReceivedSpan, ServiceProcess, fresh_database_setting, infra_var,
    init_test_logging,
    otlp::kind::{CLIENT, SERVER},
};

fn find<'a>(
    spans: &'a [ReceivedSpan],
    service: &str,
    name: &str,
    kind: i32,
) -> Option<&'a ReceivedSpan> {
    shippy_testkit::find_span(spans, service, Some(name), kind)
}

/// An OTLP span's kind when it is neither a call's nor a message's, as the
/// store's are.
const INTERNAL: i32 = 1;

/// Asserts `span` descends from `ancestor` (both of one process), following
/// parent links; `names` lists the trace for the message.
fn assert_descends(
    spans: &[ReceivedSpan],
    span: &ReceivedSpan,
    ancestor: &ReceivedSpan,
    names: &[String],
) {
    let mut parent = span.parent_span_id.clone();
    let mut hops = 0;
    while parent != ancestor.span_id {
        let next = spans
            .iter()
            .find(|candidate| candidate.span_id == parent)
            .unwrap_or_else(|| panic!("{}: broken parent chain at {parent}: {names:?}", span.name));
        parent = next.parent_span_id.clone();
        hops += 1;
        assert!(
            hops < 10,
            "{} has no path to {}: {names:?}",
            span.name,
            ancestor.name
        );
    }
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
            fresh_database_setting("trace_users").await,
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
        &[otel.clone(), fresh_database_setting("trace_vessels").await],
    )
    .await;
    let shipping = ServiceProcess::start(
        "consignment-service",
        &[
            otel.clone(),
            fresh_database_setting("trace_consignments").await,
            ("VESSEL_SERVICE_URL", vessels.url()),
            ("USER_SERVICE_URL", users.url()),
        ],
    )
    .await;

    let email = format!("{unique}@example.com");
    create_user(channel(users.address), "Tracy", &email).await;
    let token = login(channel(users.address), &email).await;

    // The caller's own span, as a traced client would send it.
    let caller = CallerSpan::new();
    let (trace_id, caller_span) = (caller.trace_id.clone(), caller.span_id.clone());
    let request = caller.request(Consignment {
        description: "Traced".into(),
        weight: 100,
        ..one_container_of(1)
    });
    let request = with_metadata(request, "authorization", &format!("Bearer {token}"));
    let created = ShippingServiceClient::new(channel(shipping.address))
        .create_consignment(request)
        .await
        .expect("created")
        .into_inner()
        .consignment
        .expect("the stored consignment");

    // A graceful stop flushes what each process has not exported yet.
    shipping.stop().await;
    vessels.stop().await;
    users.stop().await;

    let create = "shippy.consignment.v1.ShippingService/CreateConsignment";
    let reserve = "shippy.vessel.v1.VesselService/Reserve";
    let confirm = "shippy.vessel.v1.VesselService/Confirm";
    // The store's spans (shippy_store::dispatch!) of the consignment's
    // insert and of the room's reservation.
    let insert = "postgres.insert_consignment";
    let take_room = "postgres.reserve";
    let spans = receiver
        .trace(&trace_id, |spans| {
            find(spans, "consignment-service", create, SERVER).is_some()
                && find(spans, "vessel-service", reserve, SERVER).is_some()
                && find(spans, "vessel-service", confirm, SERVER).is_some()
                && find(spans, "consignment-service", insert, INTERNAL).is_some()
                && find(spans, "vessel-service", take_room, INTERNAL).is_some()
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

    // The client span descends from the server span within consignment-service.
    assert_descends(&spans, clients[0], server, &names);

    // Each service's store span is inside its request's, with its fields.
    let reserving = find(&spans, "vessel-service", reserve, SERVER).expect("found above");
    for (service, name, within, field, value) in [
        (
            "consignment-service",
            insert,
            server,
            "consignment.id",
            &created.id,
        ),
        (
            "vessel-service",
            take_room,
            reserving,
            "vessel.id",
            &created.vessel_id,
        ),
    ] {
        let span =
            find(&spans, service, name, INTERNAL).unwrap_or_else(|| panic!("{name}: {names:?}"));
        assert_descends(&spans, span, within, &names);
        assert_eq!(
            span.attributes.get(field),
            Some(value),
            "{name}: {:?}",
            span.attributes
        );
    }
}
