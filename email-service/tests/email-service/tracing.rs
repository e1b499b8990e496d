//! A user's creation and the welcome mail are one trace: user-service's
//! Create span, the outbox relay's publish span, and email-service's
//! consumer span and SMTP send, across two processes and NATS.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use shippy_proto::user::v1::{User, user_service_client::UserServiceClient};
use shippy_testkit::{
    CallerSpan, OtlpReceiver, ReceivedSpan, ServiceProcess, SmtpServer, fresh_database_setting,
    infra_var, init_test_logging,
    otlp::kind::{CONSUMER, PRODUCER, SERVER},
};
use tonic::transport::Endpoint;

fn find<'a>(spans: &'a [ReceivedSpan], service: &str, kind: i32) -> Option<&'a ReceivedSpan> {
    shippy_testkit::find_span(spans, service, None, kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_created_and_the_welcome_mail_share_one_trace() {
    init_test_logging();
    let receiver = OtlpReceiver::start().await;
    let smtp = SmtpServer::start().await;
    let otel = (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        receiver.endpoint().to_owned(),
    );
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let stream = ("USER_EVENTS_STREAM", format!("USERS_{unique}"));
    let subject = (
        "USER_CREATED_SUBJECT",
        format!("test.{unique}.user.created"),
    );
    let nats = ("NATS_URL", infra_var("TEST_NATS_URL"));
    let users = ServiceProcess::start(
        "user-service",
        &[
            otel.clone(),
            nats.clone(),
            stream.clone(),
            subject.clone(),
            fresh_database_setting("trace_mail_users").await,
            ("BCRYPT_COST", "4".into()),
        ],
    )
    .await;
    let email = ServiceProcess::start(
        "email-service",
        &[
            otel.clone(),
            nats,
            stream,
            subject,
            ("SMTP_URL", smtp.url()),
            ("EMAIL_CONSUMER", format!("email_{unique}")),
            ("SENT_MAIL_STREAM", format!("SENT_{unique}")),
            ("DEAD_MAIL_STREAM", format!("DEAD_{unique}")),
        ],
    )
    .await;

    let caller = CallerSpan::new();
    let (trace_id, caller_span) = (caller.trace_id.clone(), caller.span_id.clone());
    let request = caller.request(User {
        name: "Traced Mail".into(),
        email: format!("{unique}@example.com"),
        password: "correct horse battery".into(),
        ..Default::default()
    });
    UserServiceClient::new(Endpoint::from_shared(users.url()).unwrap().connect_lazy())
        .create(request)
        .await
        .expect("created");
    assert_eq!(
        smtp.wait_for_mails(1, Duration::from_secs(20)).await.len(),
        1
    );

    users.stop().await;
    email.stop().await;

    let spans = receiver
        .trace(&trace_id, |spans| {
            find(spans, "email-service", CONSUMER).is_some()
                && spans.iter().any(|s| s.name == "smtp send")
        })
        .await;
    let names: Vec<_> = spans
        .iter()
        .map(|s| format!("{}:{}", s.service, s.name))
        .collect();
    let create = find(&spans, "user-service", SERVER).unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!(create.name, "shippy.user.v1.UserService/Create");
    assert_eq!(create.parent_span_id, caller_span);
    let publish = find(&spans, "user-service", PRODUCER).unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!(publish.attributes["messaging.system"], "nats");
    let consume = find(&spans, "email-service", CONSUMER).unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!(
        consume.parent_span_id, publish.span_id,
        "the mail continues the publish"
    );
    let send = spans
        .iter()
        .find(|span| span.service == "email-service" && span.name == "smtp send")
        .unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!(send.trace_id, trace_id);
}
