//! The email-service binary as an operator meets it.

use shippy_testkit::{assert_help, assert_start_fails};

const BINARY: &str = env!("CARGO_BIN_EXE_email-service");

#[test]
fn help_lists_every_setting_with_its_environment_variable() {
    assert_help(
        BINARY,
        &[
            ("SMTP_URL", "smtp://mailer:hunter2@mail:25"),
            ("NATS_URL", "nats://events:hunter2@nats:4222"),
            ("CONSUL_HTTP_TOKEN", "hunter2-acl"),
        ],
        &[
            "LISTEN_ADDR",
            "0.0.0.0:50054",
            "NATS_URL",
            "SMTP_URL",
            "MAIL_FROM",
            "MAIL_SUBJECT",
            "USER_EVENTS_STREAM",
            "USER_CREATED_SUBJECT",
            "EMAIL_CONSUMER",
            "SENT_MAIL_STREAM",
            "DEAD_MAIL_STREAM",
            "EMAIL_DEAD",
            "MAIL_MAX_AGE",
            "24h",
            "MAIL_STUCK_AFTER",
            "5m",
            "CONSUL_HTTP_TOKEN",
            "RUST_LOG",
            "LOG_FORMAT",
        ],
    );
}

#[test]
fn a_bad_sender_stops_the_start_with_a_clear_message() {
    assert_start_fails(
        BINARY,
        &[("MAIL_FROM", "nobody")],
        &["MAIL_FROM `nobody` is not a mail address"],
    );
}
